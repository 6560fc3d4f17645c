"""PCEN (features.frontend=pcen): log-mel's shapes, a level change divided out by the per-band gain control."""

from __future__ import annotations

import numpy as np
import torch

from tune_digits.config import BilateralConfig, FeatureConfig, load_config
from tune_digits.features import features_from_waves, log_mel, pcen_db, spectrogram

SR = 8000


def test_pcen_has_log_mels_shape_and_divides_out_the_level() -> None:
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(1, SR, generator=gen) * 0.05
    wave[:, 3000:5000] += torch.sin(torch.arange(2000) * 2 * torch.pi * 440 / SR) * 0.3
    cfg = FeatureConfig(frontend="pcen")
    quiet, loud = pcen_db(wave, SR, cfg), pcen_db(wave * 10, SR, cfg)  # +20 dB
    assert quiet.shape == log_mel(wave, SR, cfg).shape and torch.isfinite(quiet).all()
    assert float((loud - quiet)[..., 20:].abs().mean()) < 1.0  # log-mel would move by 20 dB
    db = log_mel(wave * 10, SR, cfg) - log_mel(wave, SR, cfg)
    assert float(db[..., 20:].mean()) > 19
    torch.testing.assert_close(spectrogram(wave, SR, cfg), quiet)
    cached = features_from_waves(wave.numpy(), SR, cfg, BilateralConfig())
    np.testing.assert_allclose(cached, quiet.numpy().astype(np.float16), atol=0.05)


def test_frontend_is_checked() -> None:
    import pytest

    from tune_digits.errors import ConfigError

    with pytest.raises(ConfigError, match="features.frontend"):
        load_config(overrides=["features.frontend=mfcc"])
