"""Where a PRM runs: the device names prefkit accepts, as PyTorch and Hugging Face spell them
(a public module: the CLI and the other packages resolve ``--device`` through it).

``"auto"`` (the default) is the GPU when ``torch.cuda.is_available()``, else the CPU;
``"cpu"``; ``"cuda"`` (the current GPU) or ``"cuda:N"``. A GPU that is not there is refused
with the fix (:func:`resolve_device`), never silently replaced by the CPU.

``precision``: ``"fp32"``, or ``"bf16"``: the forward passes under bfloat16 autocast (the
weights, the optimizer state and the loss stay float32), as ``transformers.Trainer`` with
``bf16=True`` and prefkit's align and reward fine-tuning (``--precision bf16``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["DEVICE_HELP", "PRECISIONS", "autocast", "check_device_name", "resolve_device"]

#: what a device option accepts, for help texts and errors
DEVICE_HELP = "auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N"
PRECISIONS = ("fp32", "bf16")


def check_device_name(device: str | torch.device | None, option: str = "device") -> None:
    """A ValueError unless ``device`` names auto, cpu, cuda or cuda:N (whether that GPU is
    there is :func:`resolve_device`'s question: a config naming one must still load on a
    machine without it)."""
    if device is None or str(device) == "auto":
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"{option} {device!r} is not a device prefkit runs a PRM on; give "
                         f"{DEVICE_HELP}")


def resolve_device(device: str | torch.device | None = "auto", *, option: str = "device"
                   ) -> torch.device:
    """The ``torch.device`` that ``device`` names (module docstring); ``cuda`` becomes the
    current GPU's index. ``option`` is how the caller spells the setting in errors (the CLI:
    ``--device``)."""
    check_device_name(device, option)
    if device is None or str(device) == "auto":
        return torch.device("cuda", torch.cuda.current_device()) \
            if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cpu":
        return torch.device("cpu")
    fix = f"use {option} cpu" if option.startswith("--") else f"use {option}='cpu'"
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
        raise ValueError(f"{option} {device}: cuda requested but torch.cuda.is_available() is "
                         f"False (torch {torch.__version__}, {build}); {fix}, or auto (the "
                         "GPU where there is one)")
    n = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= n:
        raise ValueError(f"{option} {device}: this machine has {n} GPU(s), cuda:0 to "
                         f"cuda:{n - 1}; {fix} or name one of them")
    return torch.device("cuda", index)


def autocast(device: torch.device, precision: str) -> Any:
    """The forward pass's autocast context: bfloat16 for ``"bf16"``, none for ``"fp32"``
    (no context at all, so float32 runs exactly as without this)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
