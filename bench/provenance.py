"""Where a result came from: package versions, git commit, hardware."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

PACKAGES = ("softprompt-bench", "torch", "transformers", "peft", "tokenizers", "safetensors", "datasets", "optuna",
            "scikit-learn", "rouge-score", "numpy", "gguf")


def package_versions() -> dict[str, str | None]:
    """Versions of the packages a result depends on, and of those the registered models' weights come from."""
    from bench.models.registry import MODELS

    versions = {}
    for name in (*PACKAGES, *(spec.package for spec in MODELS.values() if spec.package)):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(folder: Path = Path(__file__).parent) -> dict[str, str | bool | None]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    # results/ holds tracked records (the shipped reference) that a run may be rewriting: the code
    # that ran is what makes a tree dirty
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


@functools.cache
def code_loaded() -> dict[str, dict]:
    """Package versions and git state of the code this process runs, read once, as its first run
    starts: a checkout or an install that moves on mid-suite changes the files, not the code loaded,
    which every later record of the process names."""
    return {"packages": package_versions(), "git": git_state()}


def hardware(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "device": device.type,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
