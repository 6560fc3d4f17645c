"""What ``tune-digits train`` decides before and around training, as library functions.

The command parses its flags, then calls these: the ``--cv`` and ``--split`` checks, the checks
that fail in milliseconds before any data is read, the default output folder, and a
cross-validation written into a folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tune_digits.config import Config, save_config
from tune_digits.cv import PROTOCOLS, CVResult, FoldResult, check_split_spec, cross_validate
from tune_digits.errors import UserError


def check_cv_flags(cv: str | None, split: str | None) -> None:
    """``--cv`` names a known protocol and comes without ``--split`` (it chooses the splits itself)."""
    if cv is not None and cv not in PROTOCOLS:
        raise UserError(f"--cv {cv}: unknown protocol; use {' or '.join(PROTOCOLS)}")
    if cv is not None and split is not None:
        raise UserError(f"--cv {cv} chooses the splits itself; leave out --split {split}")


def check_before_data(cfg: Config, cv: str | None) -> None:
    """Fail before any data is read: the model must build, and a single run's split must name its fold."""
    check_model(cfg)
    if cv is None:
        check_split_spec(cfg.data.split)


def check_model(cfg: Config) -> None:
    """Build the model once, untrained: a bad name or setting fails in milliseconds."""
    from tune_digits.features import spectrogram_shape
    from tune_digits.models import model_from_config

    try:
        model_from_config(cfg.model, spectrogram_shape(cfg.audio, cfg.features), pretrained=False)
    except (RuntimeError, MemoryError):  # too big for memory: training reports it, with its own advice
        return


def default_out(cfg: Config, cv: str | None = None, stamp: str | None = None) -> Path:
    """``runs/train/TIME-MODEL-VARIANT[-aug]``, or ``runs/cv/TIME-MODEL-PROTOCOL`` with ``--cv``."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    if cv is not None:
        return Path("runs/cv") / f"{stamp}-{cfg.model.name}-{cv}"
    aug = "-aug" if cfg.augment.enabled else ""
    return Path("runs/train") / f"{stamp}-{cfg.model.name}-{cfg.features.variant}{aug}"


def cross_validate_into(
    cfg: Config,
    protocol: str,
    target: Path,
    *,
    on_fold: Callable[[FoldResult], None] | None = None,
    fit_fn: Callable[..., Any] | None = None,
) -> CVResult:
    """Every fold of ``protocol`` into ``target`` (refused when not empty): config.yaml, then cv.csv and cv.json."""
    from tune_digits.run_folder import check_out_dir

    check_out_dir(target)
    target.mkdir(parents=True, exist_ok=True)
    save_config(cfg, target / "config.yaml")
    return cross_validate(cfg, protocol, progress=True, out_dir=target, on_fold=on_fold, fit_fn=fit_fn)
