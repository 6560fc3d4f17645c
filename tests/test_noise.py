"""Real-noise mixing on waveforms: the SNR asked for, band limits, shifts, disjoint noise parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tune_digits.config import AudioConfig, AugmentConfig
from tune_digits.errors import ConfigError
from tune_digits.noise import (
    WaveAugment,
    band_limit,
    gain,
    load_noise,
    mix_at_snr,
    rumble,
    shift,
    speech_power,
)

SR = 8000


def _snr(speech: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    noise = mixed - speech
    return 10 * torch.log10(speech_power(speech) / (noise.double() ** 2).mean(dim=1).float())


def test_noise_is_mixed_at_the_snr_asked_for() -> None:
    gen = torch.Generator().manual_seed(0)
    speech = torch.zeros(3, SR)
    speech[:, 2000:5000] = torch.randn(3, 3000, generator=gen)  # zero padding around the word
    noise = torch.randn(3, SR, generator=gen) * 7.0
    snr = torch.tensor([0.0, 10.0, 20.0])
    np.testing.assert_allclose(_snr(speech, mix_at_snr(speech, noise, snr)).numpy(), snr.numpy(), atol=1e-3)


def test_band_limit_keeps_the_band_and_removes_the_rest() -> None:
    t = torch.arange(SR) / SR
    low, mid = torch.sin(2 * torch.pi * 100 * t), torch.sin(2 * torch.pi * 1000 * t)
    out = band_limit(torch.stack([low, mid]), SR, 300.0, 3400.0)
    assert out[0].abs().max() < 1e-3
    torch.testing.assert_close(out[1], mid, atol=1e-3, rtol=0)


def test_rumble_is_low_frequency_at_its_level() -> None:
    gen = torch.Generator().manual_seed(1)
    speech = torch.randn(2, SR, generator=gen)
    out = rumble(speech, SR, torch.tensor([0.0, -10.0]), gen)
    added = out - speech
    spectrum = torch.fft.rfft(added, dim=1).abs() ** 2
    freqs = torch.fft.rfftfreq(SR, 1 / SR)
    assert spectrum[:, freqs > 150].sum() < 1e-3 * spectrum.sum()
    np.testing.assert_allclose(_snr(speech, out).numpy(), [0.0, 10.0], atol=1e-3)


def test_shift_moves_with_zeros_coming_in() -> None:
    x = torch.arange(1.0, 6.0).repeat(2, 1)
    out = shift(x, torch.tensor([2, -1]))
    assert out.tolist() == [[0, 0, 1, 2, 3], [2, 3, 4, 5, 0]]
    assert gain(torch.ones(1, 2), -20.0).tolist() == [[pytest.approx(0.1)] * 2]


def _noise_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "noise"
    folder.mkdir()
    ramp = np.linspace(-1, 1, 16000 * 10, dtype=np.float32) * np.random.default_rng(0).standard_normal(160000)
    sf.write(folder / "a.wav", ramp.astype(np.float32), 16000, subtype="FLOAT")
    return folder


def test_training_and_evaluation_noise_are_disjoint_parts(tmp_path: Path) -> None:
    folder = _noise_folder(tmp_path)
    train, test = load_noise(folder, SR, "train"), load_noise(folder, SR, "eval")
    assert len(train.wave) == int(10 * SR * 0.7) and len(test.wave) == 10 * SR - int(10 * SR * 0.7)
    seg = train.segments(4, SR, torch.Generator().manual_seed(0))
    assert seg.shape == (4, SR)
    assert float((train.wave**2).mean()) == pytest.approx(1.0, rel=1e-3)  # every file scaled to unit power


def test_a_missing_or_empty_noise_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        load_noise(tmp_path / "nope", SR)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no \\*.wav"):
        load_noise(tmp_path / "empty", SR)


def test_wave_augment_is_seeded_and_noisy(tmp_path: Path) -> None:
    bank = load_noise(_noise_folder(tmp_path), SR)
    cfg = AugmentConfig(noise_min_snr=5.0, noise_max_snr=5.0, noise_gain_db=0.0, noise_rumble=0.0, noise_telephone=0.0)
    aug = WaveAugment(cfg, AudioConfig(), bank)
    speech = torch.zeros(4, SR)
    speech[:, 3000:5000] = torch.randn(4, 2000, generator=torch.Generator().manual_seed(2))
    a = aug(speech, torch.Generator().manual_seed(5))
    b = aug(speech, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert (a[:, :1000] != 0).all()  # noise fills the window, the padding included
    power = speech_power(speech)
    assert torch.allclose((a**2).mean(dim=1) - power * 2000 / SR, power / 10**0.5, rtol=0.3)


def test_training_mixes_noise_into_a_share_of_each_batch(tmp_path: Path, tmp_cache: Path) -> None:
    from tests.test_train import make_corpus
    from tune_digits.config import load_config
    from tune_digits.train import Trainer, prepare

    root = make_corpus(tmp_path / "tones", speakers=4, takes=1)
    overrides = [f"data.root={root}", "data.split=speakers", "train.epochs=1", "train.device=cpu", "train.threads=1"]
    noisy_cfg = load_config(overrides=[*overrides, f"augment.noise_dir={_noise_folder(tmp_path)}"])
    data = prepare(noisy_cfg)
    trainer = Trainer(noisy_cfg, data)
    assert trainer.noisy is not None and trainer.noisy.waves.shape == (len(data.rows["train"]), 8000)
    idx = torch.arange(len(trainer.x_train))
    x = trainer.x_train[idx]
    out = trainer.noisy(x, idx, torch.Generator().manual_seed(0))
    changed = (out != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.2 < changed < 0.8  # noise_share 0.5: about half the rows are noisy copies
    assert np.isfinite(trainer.train_epoch())
    assert Trainer(load_config(overrides=overrides), data).noisy is None  # off without augment.noise_dir


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("augment.noise_min_snr=30", "augment.noise_min_snr"),  # above noise_max_snr (20)
        ("augment.noise_share=1.5", "augment.noise_share"),
        ("augment.noise_offset=0.9", "augment.noise_offset"),
        ("augment.noise_gain_db=-3", "augment.noise_gain_db"),
    ],
)
def test_real_noise_settings_are_checked(override: str, key: str) -> None:
    from tune_digits.config import load_config

    with pytest.raises(ConfigError, match=key):
        load_config(overrides=[override])
