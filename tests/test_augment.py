"""SpecAugment: identity unless training, bounded masks, deterministic per generator."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tune_digits.augment import SpecAugment
from tune_digits.config import AugmentConfig
from tune_digits.features import normalize_batch

ON = AugmentConfig(enabled=True)


def _batch(b: int = 16, f: int = 64, t: int = 126, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return normalize_batch(torch.randn(b, 1, f, t, generator=g) * 10 - 50, "utterance")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _masked_rows(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) number of mel rows that were replaced by the item's mean."""
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((out == fill) & (out != x)).all(dim=3).sum(dim=(1, 2))


def test_disabled_is_identity() -> None:
    x = _batch()
    aug = SpecAugment(AugmentConfig(enabled=False)).train()
    assert aug(x, _gen(0)) is x


def test_eval_mode_is_identity_even_when_enabled() -> None:
    x = _batch()
    aug = SpecAugment(ON).eval()
    out = aug(x, _gen(0))
    assert out is x and torch.equal(out, _batch())


def test_train_mode_masks_and_keeps_shape() -> None:
    x = _batch()
    out = SpecAugment(ON).train()(x, _gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    near_zero = (out.abs() < 1e-4).float().mean()
    assert near_zero > 0.02  # masked cells hold the item mean, 0 after utterance normalisation
    assert torch.equal(x, _batch())  # the input is not modified in place


def test_deterministic_per_seed() -> None:
    x, aug = _batch(), SpecAugment(ON).train()
    assert torch.equal(aug(x, _gen(3)), aug(x, _gen(3)))
    assert not torch.equal(aug(x, _gen(3)), aug(x, _gen(4)))


def test_items_are_augmented_independently() -> None:
    x = _batch(b=1).expand(8, -1, -1, -1).contiguous()
    out = SpecAugment(ON).train()(x, _gen(0))
    assert len({tuple(item.flatten()[::97].tolist()) for item in out}) > 1


@pytest.mark.parametrize("seed", range(5))
def test_freq_masks_within_width(seed: int) -> None:
    cfg = AugmentConfig(enabled=True, freq_masks=2, freq_width=8, time_masks=0, time_shift=0.0)
    x = _batch(b=64, seed=seed)
    out = SpecAugment(cfg).train()(x, _gen(seed))
    rows = _masked_rows(out, x)
    assert (rows <= cfg.freq_masks * cfg.freq_width).all()
    assert rows.max() > 0
    changed_columns = (out != x).any(dim=2).sum(dim=(1, 2))
    assert ((changed_columns == 0) | (changed_columns == x.shape[3])).all()  # whole rows only, no time masks


def test_time_masks_within_width() -> None:
    cfg = AugmentConfig(enabled=True, freq_masks=0, time_masks=2, time_width=12, time_shift=0.0)
    x = _batch(b=64)
    out = SpecAugment(cfg).train()(x, _gen(1))
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    columns = ((out == fill) & (out != x)).all(dim=2).sum(dim=(1, 2))
    assert (columns <= cfg.time_masks * cfg.time_width).all() and columns.max() > 0


def test_time_shift_is_a_bounded_roll() -> None:
    cfg = AugmentConfig(enabled=True, freq_masks=0, time_masks=0, time_shift=0.1)
    x = _batch(b=32)
    out = SpecAugment(cfg).train()(x, _gen(2))
    max_shift = int(0.1 * x.shape[3])
    for item, orig in zip(out, x, strict=True):
        shifts = [s for s in range(-max_shift, max_shift + 1) if torch.equal(item, torch.roll(orig, s, dims=-1))]
        assert len(shifts) == 1


def test_zero_widths_are_identity_values() -> None:
    cfg = dataclasses.replace(ON, freq_width=0, time_width=0, time_shift=0.0)
    x = _batch()
    assert torch.equal(SpecAugment(cfg).train()(x, _gen(0)), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_for_same_seed() -> None:
    x, aug = _batch(), SpecAugment(ON).train()
    torch.testing.assert_close(aug(x.cuda(), _gen(5)).cpu(), aug(x, _gen(5)))
