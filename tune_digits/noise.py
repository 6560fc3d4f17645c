"""Real background noise and microphone effects on waveforms, for training and for robustness tests.

Batched torch functions on ``(B, S)`` waves at the model's rate (any device)::

    mix_at_snr   speech + noise scaled to a given SNR (speech power over its non-silent samples)
    rumble       low-frequency noise (below 100 Hz) at a level relative to the speech
    band_limit   a band pass (telephone: 300-3400 Hz), by FFT mask with raised-cosine edges
    shift        the word moved by a whole number of samples, zeros coming in

A :class:`NoiseBank` is a folder of recordings, resampled and cut in two by time: the first
:data:`TRAIN_SHARE` of every file is for training (``part="train"``), the rest for evaluation
(``part="eval"``), so evaluation noise is never training noise while both see every kind of noise.
:class:`WaveAugment` draws, per training item and per epoch, a word offset, a noise segment and SNR,
rumble, a telephone band and a gain (``augment.noise_*`` settings); :class:`NoisyFeatures` keeps the
training waves beside the feature cache and turns a share of each batch into noisy images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tune_digits.audio import AudioReadError, read_audio, resample
from tune_digits.config import AudioConfig, AugmentConfig, Config
from tune_digits.errors import ConfigError
from tune_digits.features import bilateral, spectrogram

TRAIN_SHARE = 0.7
TELEPHONE_HZ = (300.0, 3400.0)
RUMBLE_HZ = 100.0
_EDGE_HZ = 50.0  # raised-cosine edge width of band_limit
_TINY = 1e-12


@dataclass
class NoiseBank:
    """Noise recordings of one part, joined into one mono wave (``(L,)`` float32 at ``sample_rate``)."""

    wave: torch.Tensor
    names: list[str]
    sample_rate: int

    def segments(self, count: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` random stretches of ``length`` samples: (count, length) on the bank's device."""
        total = len(self.wave)
        reps = -(-length // total) + 1
        wave = self.wave.repeat(reps) if reps > 1 else self.wave
        device = self.wave.device
        u = torch.rand(count, generator=generator, device=generator.device if generator else "cpu").to(device)
        start = (u * (len(wave) - length)).long()
        return wave[start[:, None] + torch.arange(length, device=device)]

    def to(self, device: torch.device | str) -> NoiseBank:
        return NoiseBank(self.wave.to(device), self.names, self.sample_rate)


def noise_files(folder: str | Path) -> list[Path]:
    """The *.wav files under ``folder`` (recursive, sorted); a ConfigError when there are none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(f"augment.noise_dir: {root} is not a folder; point it at a folder of noise recordings")
    files = sorted(p for p in root.rglob("*.wav") if not p.name.startswith("."))
    if not files:
        raise ConfigError(f"augment.noise_dir: no *.wav recordings under {root}")
    return files


def load_noise(folder: str | Path, sample_rate: int, part: str = "train") -> NoiseBank:
    """The ``part`` ("train": first TRAIN_SHARE of each file, "eval": the rest) of every noise file."""
    if part not in ("train", "eval"):
        raise ValueError(f"part must be train or eval, got {part!r}")
    pieces, names = [], []
    for path in noise_files(folder):
        try:
            wave, sr = read_audio(path)
        except AudioReadError as exc:
            raise ConfigError(f"augment.noise_dir: {exc}") from None
        wave = resample(wave, sr, sample_rate)
        cut = int(len(wave) * TRAIN_SHARE)
        piece = wave[:cut] if part == "train" else wave[cut:]
        if len(piece) and float(np.abs(piece).max()) > 0:
            pieces.append(piece / (np.sqrt(np.mean(piece.astype(np.float64) ** 2)) + _TINY))  # unit power
            names.append(path.name)
    if not pieces:
        raise ConfigError(f"augment.noise_dir: every recording under {folder} is silent or too short")
    return NoiseBank(torch.from_numpy(np.concatenate(pieces).astype(np.float32)), names, sample_rate)


def speech_power(waves: torch.Tensor) -> torch.Tensor:
    """(B, S) -> (B,) mean power over each row's non-zero samples (zero padding is not the word)."""
    active = (waves != 0).sum(dim=1).clamp_min(1)
    return (waves.double() ** 2).sum(dim=1).div(active).float()


def mix_at_snr(speech: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """``speech + g * noise`` (both (B, S)) with ``g`` making speech power / noise power = ``snr_db``."""
    ps = speech_power(speech)
    pn = (noise.double() ** 2).mean(dim=1).float().clamp_min(_TINY)
    gain = torch.sqrt(ps / pn * torch.pow(10.0, -snr_db / 10.0))
    return speech + gain[:, None] * noise


def _band_mask(n: int, sample_rate: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    freqs = torch.fft.rfftfreq(n, 1.0 / sample_rate).to(device)
    rise = 0.5 - 0.5 * torch.cos(torch.pi * ((freqs - low + _EDGE_HZ) / _EDGE_HZ).clamp(0, 1))
    fall = 0.5 + 0.5 * torch.cos(torch.pi * ((freqs - high) / _EDGE_HZ).clamp(0, 1))
    return rise * fall


def band_limit(waves: torch.Tensor, sample_rate: int, low: float, high: float) -> torch.Tensor:
    """(B, S) band-passed to ``[low, high]`` Hz (edges 50 Hz wide, outside them)."""
    spectrum = torch.fft.rfft(waves.float(), dim=-1)
    mask = _band_mask(waves.shape[-1], sample_rate, low, high, waves.device)
    return torch.fft.irfft(spectrum * mask, n=waves.shape[-1], dim=-1)


def rumble(waves: torch.Tensor, sample_rate: int, level_db: torch.Tensor, generator: torch.Generator | None = None):
    """(B, S) plus noise below RUMBLE_HZ at ``level_db`` (B,) relative to each row's speech power."""
    b, s = waves.shape
    device = generator.device if generator is not None else torch.device("cpu")
    white = torch.randn(b, s, generator=generator, device=device).to(waves.device)
    low = band_limit(white, sample_rate, 20.0, RUMBLE_HZ)
    return mix_at_snr(waves, low, -level_db)


def shift(waves: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each row of (B, S) moved right by ``offsets`` (B,) samples (left when negative), zeros coming in."""
    s = waves.shape[1]
    source = torch.arange(s, device=waves.device)[None, :] - offsets[:, None].to(waves.device)
    inside = (source >= 0) & (source < s)
    return torch.where(inside, torch.gather(waves, 1, source.clamp(0, s - 1)), torch.zeros((), device=waves.device))


def gain(waves: torch.Tensor, db: torch.Tensor | float) -> torch.Tensor:
    """(B, S) scaled by ``db`` (a number or (B,))."""
    factor = torch.pow(10.0, torch.as_tensor(db, dtype=torch.float32, device=waves.device) / 20.0)
    return waves * (factor[:, None] if factor.ndim else factor)


class WaveAugment:
    """Real noise, word offset, rumble, telephone band and gain on (B, S) training waves."""

    def __init__(self, cfg: AugmentConfig, audio: AudioConfig, bank: NoiseBank) -> None:
        self.cfg, self.sample_rate, self.bank = cfg, audio.sample_rate, bank

    def _u(self, n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
        device = generator.device if generator is not None else torch.device("cpu")
        return (low + (high - low) * torch.rand(n, generator=generator, device=device)).to(self.bank.wave.device)

    def __call__(self, waves: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, S) -> (B, S) float32, every row changed (the caller picks which rows to augment)."""
        c, b, s = self.cfg, waves.shape[0], waves.shape[1]
        x = waves.float().to(self.bank.wave.device)
        reach = int(c.noise_offset * s)
        if reach:
            x = shift(x, torch.round(self._u(b, -reach, reach, generator)).long())
        if c.noise_rumble:
            on = self._u(b, 0, 1, generator) < c.noise_rumble
            x = torch.where(on[:, None], rumble(x, self.sample_rate, self._u(b, -10, 10, generator), generator), x)
        snr = self._u(b, c.noise_min_snr, c.noise_max_snr, generator)
        x = mix_at_snr(x, self.bank.segments(b, s, generator), snr)
        if c.noise_telephone:
            on = self._u(b, 0, 1, generator) < c.noise_telephone
            x = torch.where(on[:, None], band_limit(x, self.sample_rate, *TELEPHONE_HZ), x)
        if c.noise_gain_db:
            x = gain(x, self._u(b, -c.noise_gain_db, 0.0, generator))
        return x


class NoisyFeatures:
    """A share of every training batch recomputed from noisy copies of its waves, anew each epoch.

    ``waves`` (N, S) float16 are the training clips as the front end made them (row order of the
    training tensor); rows picked with probability ``augment.noise_share`` go through
    :class:`WaveAugment` and the feature pipeline (log-mel, bilateral for that variant) and replace
    their cached images, rounded to float16 as the cache is.
    """

    def __init__(self, cfg: Config, waves: torch.Tensor, bank: NoiseBank) -> None:
        self.cfg, self.waves = cfg, waves
        self.augment = WaveAugment(cfg.augment, cfg.audio, bank)

    def __call__(self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 1, F, T) cached images of training rows ``idx`` (B,) -> the same with some rows noisy."""
        device = generator.device if generator is not None else torch.device("cpu")
        pick = torch.rand(len(idx), generator=generator, device=device) < self.cfg.augment.noise_share
        chosen = pick.nonzero().flatten().to(x.device)
        if not len(chosen):
            return x
        waves = self.augment(self.waves[idx[chosen].to(self.waves.device)].float(), generator)
        spec = spectrogram(waves, self.cfg.audio.sample_rate, self.cfg.features)
        if self.cfg.features.variant == "bilateral":
            spec = torch.from_numpy(bilateral(spec.cpu().numpy(), self.cfg.bilateral))
        out = x.clone()
        out[chosen] = spec[:, None].to(device=x.device, dtype=torch.float16).to(x.dtype)
        return out


def noisy_features(cfg: Config, paths: list[Path], device: torch.device) -> NoisyFeatures | None:
    """The :class:`NoisyFeatures` of training recordings ``paths`` when ``augment.noise_dir`` is set, else None."""
    a = cfg.augment
    if not (a.enabled and a.noise_dir and a.noise_share > 0):
        return None
    from tune_digits.audio import load_audio_batch

    bank = load_noise(a.noise_dir, cfg.audio.sample_rate, "train").to(device)
    waves, _ = load_audio_batch(paths, cfg.audio.sample_rate, cfg.audio.num_samples, cfg.audio.trim)
    return NoisyFeatures(cfg, torch.from_numpy(waves).to(device=device, dtype=torch.float16), bank)
