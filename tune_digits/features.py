"""Spectrogram features: log-mel power in dB, an optional bilateral filter, per-batch normalisation.

Pure functions. The pipeline is

    waves (N, S) float32 --log_mel (or pcen_db)--> (N, F, T) dB --bilateral (variant "bilateral")--> (N, F, T) dB
    --features_from_waves--> float16 cache --normalize_batch (per batch, any device)--> (B, 1, F, T) float32

with ``F = n_mels`` and ``T = 1 + S // hop_length`` (centred STFT frames).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch
import torchaudio

from tune_digits.config import AudioConfig, BilateralConfig, FeatureConfig
from tune_digits.errors import ConfigError

_AMIN = 1e-10  # power floor before the log: -100 dB
_EPS = 1e-5  # utterance normalisation: guards silent (constant) items
_CHUNK = 512  # clips per STFT chunk in features_from_waves: bounds peak memory


@functools.lru_cache(maxsize=16)
def _mel_transform(
    sample_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float, f_max: float, device: str
) -> torchaudio.transforms.MelSpectrogram:
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        f_min=f_min,
        f_max=f_max,
        power=2.0,
    )
    return mel.to(device)


def log_mel(waves: torch.Tensor, sample_rate: int, cfg: FeatureConfig) -> torch.Tensor:
    """Log-mel power spectrogram in dB.

    ``waves`` (N, S) float32 -> (N, n_mels, 1 + S // hop_length) float32 on the same device.
    Each item is clamped to ``[its max - top_db, its max]``; silence gives a constant -100 dB.
    """
    if waves.ndim != 2:
        raise ValueError(f"log_mel expects (N, S) waves, got shape {tuple(waves.shape)}")
    mel = _mel_transform(sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.f_min, cfg.f_max, str(waves.device))
    power = mel(waves.float())
    db = 10.0 * torch.log10(torch.clamp(power, min=_AMIN))
    floor = db.amax(dim=(-2, -1), keepdim=True) - cfg.top_db
    return torch.maximum(db, floor)


PCEN_TIME_CONSTANT_S = 0.4  # the smoother's time constant (librosa's default)
PCEN_ALPHA, PCEN_DELTA, PCEN_R = 0.98, 2.0, 0.5  # gain exponent, bias, root (Wang et al. 2017)
_PCEN_SCALE = float(2**31)  # power of [-1, 1] audio scaled as 32-bit integer audio, where the constants hold


def pcen_db(waves: torch.Tensor, sample_rate: int, cfg: FeatureConfig) -> torch.Tensor:
    """Per-channel energy normalisation of the mel power, in dB: the same shapes as :func:`log_mel`.

    ``PCEN = (E / (eps + M)^alpha + delta)^r - delta^r`` with ``M`` a first-order smoother of the mel
    power ``E`` along time (each band's own automatic gain control: steady noise and the channel's
    gain divide out), then ``10 log10`` so that the dB-stage augmentation applies as it does to log-mel.
    """
    mel = _mel_transform(sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.f_min, cfg.f_max, str(waves.device))
    power = mel(waves.float()) * _PCEN_SCALE  # (N, F, T)
    frames = PCEN_TIME_CONSTANT_S * sample_rate / cfg.hop_length
    s = (math.sqrt(1 + 4 * frames**2) - 1) / (2 * frames**2)
    smooth = torch.empty_like(power)
    smooth[..., 0] = power[..., 0]
    for t in range(1, power.shape[-1]):
        smooth[..., t] = (1 - s) * smooth[..., t - 1] + s * power[..., t]
    out = (power / (1e-6 + smooth) ** PCEN_ALPHA + PCEN_DELTA) ** PCEN_R - PCEN_DELTA**PCEN_R
    return 10.0 * torch.log10(torch.clamp(out, min=_AMIN))


def spectrogram(waves: torch.Tensor, sample_rate: int, cfg: FeatureConfig) -> torch.Tensor:
    """(N, S) waves -> (N, n_mels, T) in dB: :func:`log_mel` or :func:`pcen_db` as ``features.frontend`` says."""
    return pcen_db(waves, sample_rate, cfg) if cfg.frontend == "pcen" else log_mel(waves, sample_rate, cfg)


def bilateral(spec_db: np.ndarray, cfg: BilateralConfig) -> np.ndarray:
    """Edge-preserving smoothing of a dB spectrogram with ``cv2.bilateralFilter``.

    ``spec_db`` (F, T) or (N, F, T) in dB -> float32 of the same shape.

    Each output pixel is a mean of its neighbours weighted by distance in the image *and*
    by difference in level. Why these defaults:

    * ``sigma_color = 8 dB``: speech harmonics, formants and onsets stand 20-60 dB above the
      background, so neighbours across such an edge get a weight of about exp(-(20/8)^2 / 2) < 5 %
      and the edge is kept, while the within-region fluctuation of a few dB (noise, the random
      phase of the STFT) is averaged away.
    * ``d = 5``, ``sigma_space = 2`` px: a neighbourhood of about +-2 mel bins and +-2 frames
      (+-16 ms at 8 kHz with a hop of 64), small next to a digit's formant bands and syllables.

    A Gaussian blur of the same spatial strength smears every edge instead (see the tests).
    """
    spec = np.ascontiguousarray(spec_db, dtype=np.float32)
    if spec.ndim == 2:
        return cv2.bilateralFilter(spec, cfg.d, cfg.sigma_color, cfg.sigma_space)
    if spec.ndim != 3:
        raise ValueError(f"bilateral expects (F, T) or (N, F, T), got shape {spec.shape}")
    out = np.empty_like(spec)
    for i in range(spec.shape[0]):
        out[i] = cv2.bilateralFilter(spec[i], cfg.d, cfg.sigma_color, cfg.sigma_space)
    return out


def normalize_batch(x: torch.Tensor, mode: str, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Normalise a (B, 1, F, T) batch; returns float32 of the same shape on the same device.

    ``utterance``: each item to zero mean and unit std; ``corpus``: ``(x - mean) / std`` with
    training-set statistics; ``none``: only the cast to float32.
    """
    x = x.float()
    if mode == "utterance":
        dims = tuple(range(1, x.ndim))
        mu = x.mean(dim=dims, keepdim=True)
        sd = x.std(dim=dims, keepdim=True, correction=0)
        return (x - mu) / (sd + _EPS)
    if mode == "corpus":
        return (x - mean) / max(std, _EPS)
    if mode == "none":
        return x
    raise ConfigError(f"features.normalize: must be utterance, corpus or none, got {mode!r}")


def features_from_waves(waves: np.ndarray, sample_rate: int, feat: FeatureConfig, bil: BilateralConfig) -> np.ndarray:
    """Cacheable features: (N, S) waves -> (N, n_mels, 1 + S // hop_length) float16 dB.

    The bilateral filter is applied when ``feat.variant == "bilateral"``. Normalisation is not
    applied here: it happens per batch (:func:`normalize_batch`).
    """
    if waves.ndim != 2:
        raise ValueError(f"features_from_waves expects (N, S) waves, got shape {waves.shape}")
    n, s = waves.shape
    out = np.empty((n, feat.n_mels, 1 + s // feat.hop_length), dtype=np.float16)
    with torch.inference_mode():
        for start in range(0, n, _CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(waves[start : start + _CHUNK], dtype=np.float32))
            spec = spectrogram(chunk, sample_rate, feat).numpy()
            if feat.variant == "bilateral":
                spec = bilateral(spec, bil)
            out[start : start + len(spec)] = spec
    return out


def spectrogram_shape(audio: AudioConfig, feat: FeatureConfig) -> tuple[int, int, int]:
    """Model input shape of one item: ``(1, n_mels, 1 + num_samples // hop_length)``."""
    return (1, feat.n_mels, 1 + audio.num_samples // feat.hop_length)
