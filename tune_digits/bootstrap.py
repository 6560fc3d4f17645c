"""Bootstrap estimates of macro-F1 from validation predictions: an interval, and paired comparisons.

Pure numpy, seeded. Clips of one speaker are not independent, so the unit resampled is the
speaker (a cluster bootstrap: draw speakers with replacement, keep all their clips) when there
are at least ``MIN_SPEAKERS`` of them, else the clip. A paired comparison draws the same units
for both models, so what they share (the same hard clips) cancels out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tune_digits.metrics import confusion_matrix, macro_f1

MIN_SPEAKERS = 5
N_BOOT = 2000
SEED = 0


@dataclass(frozen=True)
class Estimate:
    point: float  # macro-F1 of all clips
    low: float  # the interval's ends (percentiles of the resampled macro-F1)
    high: float
    unit: str  # "speakers" or "clips": what was resampled
    units: int  # how many of them
    level: float = 0.95


def _draws(groups: Sequence[str], n_boot: int, seed: int) -> tuple[list[np.ndarray], str, int]:
    """``n_boot`` arrays of clip indices, each one bootstrap sample; the unit and how many units there are."""
    rng = np.random.default_rng(seed)
    names, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n = len(inverse)
    if len(names) < MIN_SPEAKERS:
        return [rng.integers(0, n, n) for _ in range(n_boot)], "clips", n
    members = [np.flatnonzero(inverse == g) for g in range(len(names))]
    picks = rng.integers(0, len(names), (n_boot, len(names)))
    return [np.concatenate([members[g] for g in row]) for row in picks], "speakers", len(names)


def _f1(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> float:
    return macro_f1(confusion_matrix(y[idx], pred[idx]))


def check_inputs(y: Sequence[int], preds: Sequence[Sequence[int]], groups: Sequence[str]) -> None:
    if not len(y):
        raise ValueError("no clips to bootstrap")
    if any(len(p) != len(y) for p in preds) or len(groups) != len(y):
        raise ValueError("labels, predictions and groups must have one entry per clip")


def interval(
    y: Sequence[int], pred: Sequence[int], groups: Sequence[str], *, n_boot: int = N_BOOT, seed: int = SEED
) -> Estimate:
    """Macro-F1 of ``pred`` against ``y`` with a 95 % percentile interval (unit: see the module docstring)."""
    check_inputs(y, [pred], groups)
    ya, pa = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    draws, unit, units = _draws(groups, n_boot, seed)
    scores = np.array([_f1(ya, pa, idx) for idx in draws])
    low, high = np.quantile(scores, [0.025, 0.975])
    return Estimate(_f1(ya, pa, np.arange(len(ya))), float(low), float(high), unit, units)


def prob_better(
    y: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    groups: Sequence[str],
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> float:
    """The share of paired bootstrap samples where ``pred_a`` has the higher macro-F1 (ties count half)."""
    check_inputs(y, [pred_a, pred_b], groups)
    ya = np.asarray(y, dtype=np.int64)
    pa, pb = np.asarray(pred_a, dtype=np.int64), np.asarray(pred_b, dtype=np.int64)
    draws, _, _ = _draws(groups, n_boot, seed)
    diff = np.array([_f1(ya, pa, idx) - _f1(ya, pb, idx) for idx in draws])
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))
