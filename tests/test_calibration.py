"""Temperature scaling lowers the NLL of over-confident logits; the ECE is computed as defined."""

from __future__ import annotations

import pytest
import torch

from tune_digits.calibration import apply_temperature, ece, fit_temperature, nll


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a 70 %-accurate classifier, scaled up 4x: far too sure of itself."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    logits = torch.randn(n, 10, generator=gen)
    right = torch.rand(n, generator=gen) < 0.7
    logits[torch.arange(n)[right], labels[right]] += 3.0
    return 4.0 * logits, labels


def test_temperature_scaling_reduces_the_nll_of_overconfident_logits() -> None:
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels)
    assert 2.5 < t < 6.0  # undoes most of the 4x
    assert nll(logits, labels, t) < 0.7 * nll(logits, labels)
    held_out, held_labels = _overconfident(seed=1)
    proba = torch.softmax(held_out, dim=1)
    calibrated = apply_temperature(proba, t)
    assert torch.equal(calibrated.argmax(dim=1), proba.argmax(dim=1))  # the predictions stay
    assert ece(calibrated, held_labels) < 0.5 * ece(proba, held_labels)


def test_a_calibrated_model_keeps_a_temperature_near_one() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4000, 10, generator=gen) * 2
    labels = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).flatten()  # drawn from its own belief
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)


def test_ece_by_hand() -> None:
    # bins of width 1/15: 0.95 -> bin 14, 0.55 -> bin 8; bin 14: conf 0.95, acc 1/2; bin 8: conf 0.55, acc 1
    proba = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 1])
    expected = 2 / 3 * abs(0.5 - 0.95) + 1 / 3 * abs(1.0 - 0.55)
    assert ece(proba, labels) == pytest.approx(expected)
    assert ece(torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 0.0
    assert ece(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)) == 0.0


def test_the_floor_keeps_an_underconfident_model_as_it_is() -> None:
    logits, labels = _overconfident()
    shy = logits / 16  # far too unsure: the best temperature is below 1
    assert fit_temperature(shy, labels) < 0.5
    assert fit_temperature(shy, labels, floor=1.0) == 1.0
    assert fit_temperature(logits, labels, floor=1.0) == fit_temperature(logits, labels)
