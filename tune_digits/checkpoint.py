"""Checkpoints: weights + resolved config + metrics in one file, loadable with ``weights_only=True``."""

from __future__ import annotations

import errno
import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from tune_digits.atomic import write_bytes
from tune_digits.errors import UserError

FORMAT = 1


def save_checkpoint(
    path: str | Path, state_dict: dict[str, torch.Tensor], config: dict, metrics: dict | None = None
) -> None:
    """Save weights (moved to CPU), the flat resolved config and metrics; plain types only."""
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "config": config,
        "metrics": metrics or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)  # in memory: torch's own file writer reports a full disk as a RuntimeError
    path = Path(path)
    try:
        write_bytes(path, buf.getvalue())
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        why = "the disk is full (or the quota is used up)" if full else (exc.strerror or str(exc))
        raise UserError(f"checkpoint {path} not saved: {why}; free some space or choose another folder") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load safely (``weights_only=True``); a damaged or foreign file is a one-line error."""
    path = Path(path)
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise UserError(f"checkpoint {path} cannot be opened ({exc.strerror or exc})") from None
    if not found:
        raise UserError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise UserError(
            f"checkpoint {path} cannot be loaded ({type(exc).__name__}); it is damaged or not a tune-digits model"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state_dict" not in payload:
        raise UserError(f"checkpoint {path} is not a tune-digits checkpoint (format {FORMAT})")
    return payload


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
