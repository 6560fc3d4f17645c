"""SpecAugment and the voice/room stage: identity unless training, bounded changes, deterministic per generator."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tune_digits.augment import SpecAugment, warp_rows
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


# --- voices and rooms: the dB stage before normalisation -------------------------------------------

SIGNAL = {
    "freq_warp": {"freq_warp": 0.15},
    "time_stretch": {"time_stretch": 0.15},
    "eq_db": {"eq_db": 10.0},
    "noise": {"noise_prob": 1.0},
}


def _db(b: int = 8, f: int = 40, t: int = 63, seed: int = 0) -> torch.Tensor:
    """A dB batch: a background near -60 dB and louder random cells."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, f, t, generator=g) * 10 - 40


@pytest.mark.parametrize("name", list(SIGNAL))
def test_signal_changes_train_batches_only(name: str) -> None:
    cfg = AugmentConfig(enabled=True, **SIGNAL[name])
    x = _db()
    aug = SpecAugment(cfg).train()
    out = aug.signal(x, _gen(0))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not torch.equal(out, x)
    assert torch.equal(aug.signal(x, _gen(0)), out)  # the same generator seed, the same batch
    assert not torch.equal(aug.signal(x, _gen(1)), out)
    assert aug.eval().signal(x, _gen(0)) is x
    assert SpecAugment(dataclasses.replace(cfg, enabled=False)).train().signal(x, _gen(0)) is x


def test_signal_is_identity_with_defaults() -> None:
    x, gen = _db(), _gen(0)
    state = gen.get_state()
    assert SpecAugment(ON).train().signal(x, gen) is x
    assert torch.equal(gen.get_state(), state)  # nothing drawn: existing seeds give the same runs as before


def test_warp_rows_identity_and_direction() -> None:
    rows = warp_rows(torch.tensor([0.9, 1.0, 1.1]), 40, 20.0, 4000.0)
    torch.testing.assert_close(rows[1], torch.arange(40, dtype=torch.float32), atol=1e-3, rtol=0)
    assert (rows[0] > rows[1]).all() and (rows[2] < rows[1]).all()  # alpha < 1 reads higher bins: formants move down


def test_freq_warp_moves_a_formant_the_right_way() -> None:
    x = torch.full((64, 1, 40, 63), -60.0)
    x[:, :, 20, :] = 0.0  # one bright mel band
    cfg = AugmentConfig(enabled=True, freq_warp=0.2)
    out = SpecAugment(cfg).train().signal(x, _gen(0))
    peaks = out.mean(dim=3)[:, 0].argmax(dim=1)
    assert (peaks != 20).any() and (peaks >= 15).all() and (peaks <= 25).all()
    assert torch.equal(out[:, :, :, 0], out[:, :, :, 40])  # a pure frequency warp: every frame alike


def test_time_stretch_keeps_the_centre() -> None:
    x = torch.full((16, 1, 40, 63), -60.0)
    x[:, :, :, 31] = 0.0  # a click in the centre frame
    out = SpecAugment(AugmentConfig(enabled=True, time_stretch=0.3)).train().signal(x, _gen(0))
    assert (out[:, 0, 0, :].argmax(dim=1) == 31).all()
    assert torch.equal(out[:, :, 0, :], out[:, :, 39, :])  # a pure time stretch: every mel band alike


def test_eq_is_a_bounded_curve_over_frequency() -> None:
    x = _db(b=32)
    out = SpecAugment(AugmentConfig(enabled=True, eq_db=6.0)).train().signal(x, _gen(0))
    curve = out - x  # (B, 1, F, T), constant along time
    torch.testing.assert_close(curve, curve[..., :1].expand_as(curve), atol=1e-4, rtol=0)
    assert curve.abs().max() <= 6.0 + 1e-4 and curve.abs().max() > 1.0
    assert not torch.allclose(normalize_batch(out, "utterance"), normalize_batch(x, "utterance"), atol=1e-2)


@pytest.mark.parametrize(("low", "high"), [(0.0, 0.0), (30.0, 30.0)])
def test_noise_only_adds_power_at_the_snr(low: float, high: float) -> None:
    x = _db(b=16)
    cfg = AugmentConfig(enabled=True, noise_prob=1.0, noise_snr_low=low, noise_snr_high=high)
    out = SpecAugment(cfg).train().signal(x, _gen(0))
    assert (out >= x - 1e-4).all()
    signal, total = torch.pow(10, x / 10), torch.pow(10, out / 10)
    snr = 10 * torch.log10(signal.mean(dim=(1, 2, 3)) / (total - signal).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(snr, torch.full_like(snr, low), atol=0.5, rtol=0)  # mean of Exp(1) cells ~ 1


def test_noise_prob_picks_items() -> None:
    x = _db(b=200)
    out = SpecAugment(AugmentConfig(enabled=True, noise_prob=0.5)).train().signal(x, _gen(0))
    noisy = (out - x).abs().flatten(1).amax(dim=1) > 1e-4
    assert 60 < int(noisy.sum()) < 140
