"""Log-mel features, the bilateral filter's edge preservation and batch normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tune_digits import features
from tune_digits.config import AudioConfig, BilateralConfig, FeatureConfig
from tune_digits.errors import ConfigError
from tune_digits.features import bilateral, features_from_waves, log_mel, normalize_batch, spectrogram_shape

SR = 8000


def _waves(n: int, samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    freqs = rng.uniform(200, 3000, size=(n, 1))
    tone = 0.5 * np.sin(2 * np.pi * freqs * t) * np.hanning(samples)
    return (tone + 0.01 * rng.standard_normal((n, samples))).astype(np.float32)


@pytest.mark.parametrize(
    ("n_fft", "hop", "n_mels", "samples"),
    [(256, 64, 64, 8000), (512, 128, 40, 8000), (256, 64, 32, 4000), (128, 32, 16, 1000)],
)
def test_log_mel_shape(n_fft: int, hop: int, n_mels: int, samples: int) -> None:
    cfg = FeatureConfig(n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    spec = log_mel(torch.from_numpy(_waves(3, samples)), SR, cfg)
    assert spec.shape == (3, n_mels, 1 + samples // hop) and spec.dtype == torch.float32
    audio = AudioConfig(sample_rate=SR, duration=samples / SR)
    assert spectrogram_shape(audio, cfg) == (1, *spec.shape[1:])


@pytest.mark.parametrize("top_db", [40.0, 80.0])
def test_top_db_clamp(top_db: float) -> None:
    waves = _waves(4, SR)
    waves[:, : SR // 4] = 0.0  # digital silence (-100 dB) so that the clamp is active
    spec = log_mel(torch.from_numpy(waves), SR, FeatureConfig(top_db=top_db))
    span = spec.amax(dim=(1, 2)) - spec.amin(dim=(1, 2))
    assert (span <= top_db + 1e-3).all()
    assert (span >= top_db - 1e-3).all()


def test_silence_is_finite() -> None:
    spec = log_mel(torch.zeros(2, SR), SR, FeatureConfig())
    assert torch.isfinite(spec).all()
    assert torch.allclose(spec, torch.full_like(spec, -100.0))


def test_tone_lands_in_its_mel_band() -> None:
    t = torch.arange(SR) / SR
    tones = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (300.0, 1000.0, 3000.0)])
    peaks = log_mel(tones, SR, FeatureConfig()).mean(dim=2).argmax(dim=1)
    assert peaks[0] < peaks[1] < peaks[2]


def test_features_from_waves_float16_and_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    waves = _waves(7, SR)
    cfg = FeatureConfig()
    expected = log_mel(torch.from_numpy(waves), SR, cfg).numpy()
    monkeypatch.setattr(features, "_CHUNK", 3)
    out = features_from_waves(waves, SR, cfg, BilateralConfig())
    assert out.dtype == np.float16 and out.shape == (7, cfg.n_mels, 1 + SR // cfg.hop_length)
    np.testing.assert_allclose(out.astype(np.float32), expected, atol=0.05)


def test_features_from_waves_bilateral_variant() -> None:
    waves = _waves(3, SR)
    bil = BilateralConfig()
    raw = features_from_waves(waves, SR, FeatureConfig(variant="raw"), bil).astype(np.float32)
    smooth = features_from_waves(waves, SR, FeatureConfig(variant="bilateral"), bil).astype(np.float32)
    np.testing.assert_allclose(smooth, bilateral(raw, bil), atol=0.1)
    assert np.abs(np.diff(smooth, axis=2)).mean() < np.abs(np.diff(raw, axis=2)).mean()


def _step_image(seed: int = 0) -> tuple[np.ndarray, int]:
    """(64, 126) dB image: -80 dB left of column 63, -20 dB from it on, plus 1.5 dB noise."""
    rng = np.random.default_rng(seed)
    edge = 63
    image = np.full((64, 126), -80.0, dtype=np.float32)
    image[:, edge:] = -20.0
    return image + rng.normal(0.0, 1.5, image.shape).astype(np.float32), edge


def _step(image: np.ndarray, edge: int) -> float:
    return float(np.mean(image[:, edge] - image[:, edge - 1]))


def _flat_variance(image: np.ndarray, edge: int) -> float:
    return float((image[2:-2, 2 : edge - 4].var() + image[2:-2, edge + 4 : -2].var()) / 2)


def test_bilateral_keeps_edges_that_gaussian_smears() -> None:
    cfg = BilateralConfig()
    image, edge = _step_image()
    smooth = bilateral(image, cfg)
    blurred = cv2.GaussianBlur(image, (cfg.d, cfg.d), cfg.sigma_space)
    original = _step(image, edge)
    assert original == pytest.approx(60.0, abs=1.0)
    assert _step(smooth, edge) > 0.9 * original
    assert _step(blurred, edge) < 0.5 * original
    assert _flat_variance(smooth, edge) < 0.5 * _flat_variance(image, edge)


def test_bilateral_stack_matches_single_images() -> None:
    cfg = BilateralConfig()
    stack = np.stack([_step_image(seed)[0] for seed in range(3)])
    out = bilateral(stack, cfg)
    assert out.shape == stack.shape and out.dtype == np.float32
    for item, single in zip(out, stack, strict=True):
        np.testing.assert_array_equal(item, bilateral(single, cfg))


def test_normalize_utterance() -> None:
    x = torch.randn(5, 1, 64, 126) * torch.arange(1, 6).view(5, 1, 1, 1) - 40
    x[4] = -100.0  # a silent item stays finite
    out = normalize_batch(x.half(), "utterance")
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.isfinite(out).all()
    means, stds = out.mean(dim=(1, 2, 3)), out.std(dim=(1, 2, 3), correction=0)
    assert torch.allclose(means, torch.zeros(5), atol=1e-3)
    assert torch.allclose(stds[:4], torch.ones(4), atol=1e-3)


def test_normalize_corpus_and_none() -> None:
    x = torch.randn(2, 1, 8, 10, dtype=torch.float16) - 50
    torch.testing.assert_close(normalize_batch(x, "corpus", mean=-50.0, std=2.0), (x.float() + 50) / 2)
    none = normalize_batch(x, "none")
    assert none.dtype == torch.float32 and torch.equal(none, x.float())
    with pytest.raises(ConfigError, match=r"features\.normalize"):
        normalize_batch(x, "global")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    waves = torch.from_numpy(_waves(4, SR))
    cpu = log_mel(waves, SR, FeatureConfig())
    gpu = log_mel(waves.cuda(), SR, FeatureConfig())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-2, rtol=1e-4)
    x = cpu.unsqueeze(1)
    torch.testing.assert_close(normalize_batch(x.cuda(), "utterance").cpu(), normalize_batch(x, "utterance"))
