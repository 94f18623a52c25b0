"""Device and dtype chosen once: CUDA with bf16 (fp16 on older cards) when present, else CPU fp32.

The low-precision dtype is the compute dtype: frozen base weights are stored in it and forward
passes run under autocast to it. Trainable parameters stay fp32 (master weights): AdamW updates
at fine-tuning rates are mostly below bf16's resolution and overflow fp16.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import time
import warnings

import torch

from tasks.notices import UserNotice


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def compute_precision() -> str:
    """Where and in what dtype runs compute here ("cpu/float32", "cuda/bfloat16"), as records name it."""
    device = pick_device()
    return f"{device.type}/{str(pick_dtype(device)).removeprefix('torch.')}"


@contextlib.contextmanager
def worker_share(index: int, workers: int, *, alongside: bool = True):
    """Worker `index` of `workers` processes training at once (0: the main process) on its share
    of the machine. On CPU, its share of the cores: PyTorch starts a thread per core in every
    process, and N processes then oversubscribe the cores (two search workers on two cores ran 3.1x
    slower than one). On CUDA, GPU `index` modulo the number of GPUs, so N workers use N GPUs
    rather than all sharing the first. `alongside` False: the others have ended, and the share is
    kept only so that figures compare with theirs (no notice that they train beside it)."""
    threads = torch.get_num_threads()
    if pick_device().type == "cuda":
        gpus = torch.cuda.device_count()
        torch.cuda.set_device(index % gpus)
        if index == 0 and alongside and workers > gpus:
            warnings.warn(f"{workers} workers share {gpus} GPU(s): each run's time and latency figures are "
                          "measured while another trains beside it", UserNotice, stacklevel=3)
    elif workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, min(threads, cores) // workers))  # threads: the user's or PyTorch's pick
        if index == 0 and alongside and workers > cores:
            warnings.warn(f"{workers} workers share {cores} CPU core(s): each trains slower than one alone would, "
                          "and each run's time and latency figures are measured beside the others", UserNotice,
                          stacklevel=3)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pick_dtype(device: torch.device) -> torch.dtype:
    # bf16 on CPU is emulated on most hosts and several times slower than fp32.
    if device.type != "cuda":
        return torch.float32
    # bf16 is native from Ampere (compute capability 8) on; before it, torch.cuda.is_bf16_supported()
    # says yes to a slow emulation (and only later releases can be asked not to), while fp16 is native
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def device_clock(device: torch.device) -> float:
    """`time.perf_counter()` once the device has finished the work queued on it: CUDA runs kernels
    asynchronously, and a clock read without waiting charges their time to whatever waits next."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed-precision forward context for `dtype`; nothing at all for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class FullPrecision:
    """Mixed into a module's class: the module runs in fp32 under any autocast around it, its
    floating inputs cast to fp32."""

    def forward(self, *args, **kwargs):
        with torch.autocast(device_type=next(self.parameters()).device.type, enabled=False):
            args = tuple(arg.float() if torch.is_tensor(arg) and arg.is_floating_point() else arg for arg in args)
            return super().forward(*args, **kwargs)


@functools.cache
def _full_precision_class(cls: type) -> type:
    return type(f"FullPrecision{cls.__name__}", (FullPrecision, cls), {"__module__": __name__})


def compute_in_fp32(module: torch.nn.Module) -> None:
    """`module` runs in fp32 under any autocast from now on (its class changed in place, so copies
    keep it; a pickle does not, the class being made at run time). Its weights must be fp32 already."""
    if not isinstance(module, FullPrecision):
        module.__class__ = _full_precision_class(type(module))


def kept_in_fp32(model: torch.nn.Module, dtype: torch.dtype) -> re.Pattern | None:
    """The parameters transformers keeps in fp32 when it loads `model` in `dtype`, as its loader finds
    them: the globs of `_keep_in_fp32_modules` (under fp16) and `_keep_in_fp32_modules_strict` (under
    fp16 and bf16), searched for in parameter names. None: no such parameters."""
    globs = list(getattr(model, "_keep_in_fp32_modules", None) or ()) if dtype == torch.float16 else []
    if dtype in (torch.float16, torch.bfloat16):
        globs += list(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    return re.compile("|".join(glob.replace("*", ".*") for glob in globs)) if globs else None


def keep_fp32_layers_in_fp32(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Layers transformers keeps in fp32 for compute dtype `dtype` run in fp32.

    transformers keeps some layers in fp32 where fp16 overflows (T5's `wo`: its
    `_keep_in_fp32_modules`), but autocast casts every linear layer's inputs and weights to the
    autocast dtype whatever the weight's own dtype, so they would overflow all the same. Found by
    name, so the same layers are kept whether the model was loaded in `dtype` or in fp32 (see
    `load_base_model`'s full-precision weights)."""
    pattern = kept_in_fp32(model, dtype)
    if pattern is None:
        return
    for module_name, module in model.named_modules():
        own = [f"{module_name}.{name}" for name, p in module.named_parameters(recurse=False) if p.is_floating_point()]
        if own and all(pattern.search(name) for name in own):
            compute_in_fp32(module)


def upcast_trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Make every trainable parameter fp32 in place (tied weights stay tied); returns them."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        if parameter.is_floating_point() and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    return trainable
