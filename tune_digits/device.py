"""The training device: which one, its autocast, memory format, and out-of-memory errors as one line."""

from __future__ import annotations

from typing import Any

import torch

from tune_digits.config import Config
from tune_digits.errors import ConfigError, UserError
from tune_digits.models import model_spec


class TrainingDiverged(FloatingPointError, UserError):
    """The training loss became NaN or infinite; the CLI prints it as one line."""


class OutOfMemory(MemoryError, UserError):
    """The model or a batch did not fit in the device's memory; the CLI prints it as one line."""


# What the allocators say: CUDA ("CUDA out of memory"), the CPU allocator ("not enough memory: you
# tried to allocate ..."; "can't allocate memory") and MPS ("MPS backend out of memory").
_OOM_TEXT = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")


def out_of_memory(exc: BaseException, cfg: Config) -> OutOfMemory | None:
    """``exc`` as an :class:`OutOfMemory` with the fix, or None when it is not an allocation failure."""
    if isinstance(exc, OutOfMemory):
        return exc
    text = str(exc)
    is_oom = isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and any(s in text.lower() for s in _OOM_TEXT)
    )
    if not is_oom:
        return None
    detail = " ".join(text.split())
    detail = detail if len(detail) <= 160 else detail[:157] + "..."
    device = pick_device(cfg.train.device).type
    fewer = (
        "fewer trials per GPU (--gpus-per-trial 1)" if device == "cuda" else "fewer trials at once (--max-concurrent)"
    )
    return OutOfMemory(
        f"out of memory on {device} ({detail or type(exc).__name__}); lower train.batch_size "
        f"(now {cfg.train.batch_size}) or the model's size, or run {fewer}"
    )


def channels_last(model: str, channels: tuple[int, ...], device: torch.device) -> bool:
    """Whether the model trains faster in channels-last memory format.

    timm networks: always (their depthwise and 1x1 convolutions are faster so on a CPU). LeNet-5: on a CPU
    from 16 channels in its first convolution; narrower ones are slower in it (docs/accuracy.md,
    "Measurements behind code defaults").
    """
    if not model_spec(model).is_lenet:
        return True
    return device.type == "cpu" and bool(channels) and channels[0] >= 16


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but no CUDA GPU is visible; use train.device=auto")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def autocast(device: torch.device) -> Any:
    """bfloat16 autocast on CUDA; a no-op context on the CPU."""
    return (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
