"""Device and dtype chosen once: CUDA with bf16 (fp16 on older cards) when present, else CPU fp32."""

from __future__ import annotations

import torch


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    # bf16 on CPU is emulated on most hosts and several times slower than fp32.
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
