"""Probabilities that mean something: temperature scaling and the expected calibration error.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides the
logits by one number ``T`` fitted on validation to minimise the negative log-likelihood; the
predicted class never changes, only how sure the model says it is. ``T`` is saved with the run
(``metrics.json`` and ``model.pt``: ``temperature``) and applied by ``predict``. Training fits it with
a floor of 1 (:data:`TRAIN_FLOOR`): validation clips come from the training speakers (``data.val_clips``),
whom the model knows better than the new voices it is for; a temperature below 1 sharpened the
probabilities and raised the test ECE on an unheard speaker (docs/accuracy.md).

The expected calibration error (ECE) bins predictions by their top probability into 15 equal-width
bins of (0, 1] and sums ``|accuracy - mean confidence|`` of each bin, weighted by its share.
"""

from __future__ import annotations

import math

import torch

ECE_BINS = 15
TRAIN_FLOOR = 1.0  # training never makes the model surer than its softmax
_LOG_T = (-3.0, 3.0)  # T searched in [e^-3, e^3]


def nll(log_proba: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` (N,) under (N, C) log-probabilities divided by ``temperature``."""
    if len(labels) == 0:
        return 0.0
    scaled = torch.log_softmax(log_proba.double() / temperature, dim=1)
    return float(-scaled.gather(1, labels.long().view(-1, 1)).mean())


def fit_temperature(log_proba: torch.Tensor, labels: torch.Tensor, floor: float = 0.0) -> float:
    """The ``T`` in [max(e^-3, floor), e^3] minimising :func:`nll`: a grid over log T, then golden-section search.

    ``log_proba`` are (N, C) logits or log-probabilities (the same up to a per-row constant).
    Returns 1.0 for no data.
    """
    if len(labels) == 0:
        return 1.0
    if floor > 0:
        return max(fit_temperature(log_proba, labels), floor)
    lp, y = log_proba.detach().cpu().double(), labels.detach().cpu()
    grid = torch.linspace(*_LOG_T, 61).tolist()
    best = min(range(len(grid)), key=lambda i: nll(lp, y, math.exp(grid[i])))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(lp, y, math.exp(a)) < nll(lp, y, math.exp(b)):
            hi = b
        else:
            lo = a
    return float(math.exp(0.5 * (lo + hi)))


def apply_temperature(proba: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, C) probabilities as the logits divided by ``temperature`` give them; the input itself when T = 1."""
    if temperature == 1.0:
        return proba
    log_p = torch.log(proba.double().clamp_min(1e-300))
    return torch.softmax(log_p / temperature, dim=1).to(proba.dtype)


def ece(proba: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error of (N, C) probabilities against ``labels`` (N,); 0 for no data."""
    if len(labels) == 0:
        return 0.0
    conf, pred = proba.detach().cpu().double().max(dim=1)
    right = (pred == labels.detach().cpu()).double()
    which = torch.clamp(torch.ceil(conf * bins).long() - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += float(inside.double().mean()) * abs(float(right[inside].mean()) - float(conf[inside].mean()))
    return total
