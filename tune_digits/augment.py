"""Training-time augmentation of spectrogram batches: other voices, rooms and masks.

Two stages, both the identity when ``cfg.enabled`` is False or in eval mode (``model.eval()``), which
guarantees that evaluation never sees augmented inputs:

* :meth:`SpecAugment.signal`, on the (B, 1, F, T) log-mel batch in dB *before* normalisation:
  ``freq_warp`` (VTLP: every frequency scaled by a random factor, the mel axis resampled),
  ``time_stretch`` (speaking rate), ``eq_db`` (a random smooth spectral colour: microphone, room)
  and additive noise at a random SNR (``noise_prob``, in linear power).
  Warp and stretch are one ``grid_sample`` over the batch.
* :meth:`SpecAugment.forward`, on the normalised batch (after
  :func:`tune_digits.features.normalize_batch`): a random circular time shift, then ``freq_masks``
  bands of U{0..freq_width} mel bins and ``time_masks`` spans of U{0..time_width} frames. Masked
  cells take the item's own mean (0 after utterance normalisation).

All random numbers come from the given generator: a seeded generator gives the same batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tune_digits.config import AugmentConfig, FeatureConfig


def _draw(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device (CPU when None)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=device)


def _band_mask(
    batch: int, count: int, max_width: int, size: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(batch, size) bool: the union of ``count`` bands of width U{0..max_width} per row."""
    if count == 0 or max_width == 0 or size == 0:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    max_width = min(max_width, size)
    u = _draw((2, batch, count, 1), generator).to(device)
    width = torch.clamp((u[0] * (max_width + 1)).long(), max=max_width)
    start = torch.clamp((u[1] * (size - width + 1)).long(), max=size - width)
    pos = torch.arange(size, device=device)
    return ((pos >= start) & (pos < start + width)).any(dim=1)


def _time_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None) -> torch.Tensor:
    """Roll each item of (B, C, F, T) circularly along T by U{-max_shift..max_shift} frames."""
    if max_shift == 0:
        return x
    b, _, _, t = x.shape
    u = _draw((b, 1, 1, 1), generator).to(x.device)
    shift = torch.clamp((u * (2 * max_shift + 1)).long(), max=2 * max_shift) - max_shift
    index = (torch.arange(t, device=x.device) - shift) % t  # out[..., j] = x[..., j - shift]
    return torch.gather(x, -1, index.expand_as(x))


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(n,) uniform numbers in [low, high) on ``device``."""
    return low + (high - low) * _draw((n,), generator).to(device)


def _mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale, as torchaudio's MelSpectrogram uses by default."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def warp_rows(alpha: torch.Tensor, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(B,) warp factors -> (B, n_mels) fractional source rows of a VTLP warp.

    Output bin i (centre frequency f_i) reads the input at frequency ``f_i / alpha``: alpha > 1 moves
    formants up (a shorter vocal tract), alpha < 1 down. Rows outside the image are clamped later.
    """
    lo, hi = _mel(torch.tensor(f_min)), _mel(torch.tensor(f_max))
    delta = (hi - lo) / (n_mels + 1)
    centres = lo + delta * torch.arange(1, n_mels + 1, dtype=torch.float32)
    hz = 700.0 * (10.0 ** (centres / 2595.0) - 1.0)
    source = hz.to(alpha.device)[None, :] / alpha[:, None]
    return (_mel(source) - lo.to(alpha.device)) / delta.to(alpha.device) - 1.0


def _warp(x: torch.Tensor, cfg: AugmentConfig, feat: FeatureConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Frequency warp and time stretch of a (B, C, F, T) batch by one bilinear ``grid_sample``."""
    b, _, f, t = x.shape
    alpha = _uniform(b, 1.0 - cfg.freq_warp, 1.0 + cfg.freq_warp, generator, x.device) if cfg.freq_warp else None
    rate = (
        _uniform(b, 1.0 - cfg.time_stretch, 1.0 + cfg.time_stretch, generator, x.device) if cfg.time_stretch else None
    )
    rows = torch.arange(f, dtype=torch.float32, device=x.device).expand(b, f)
    if alpha is not None:
        rows = warp_rows(alpha, f, feat.f_min, feat.f_max)
    centre = (t - 1) / 2.0
    cols = torch.arange(t, dtype=torch.float32, device=x.device).expand(b, t)
    if rate is not None:
        cols = centre + (cols - centre) * rate[:, None]
    gy = (2.0 * rows / max(f - 1, 1) - 1.0)[:, :, None].expand(b, f, t)
    gx = (2.0 * cols / max(t - 1, 1) - 1.0)[:, None, :].expand(b, f, t)
    grid = torch.stack((gx, gy), dim=-1)  # (B, F, T, 2): x = time, y = frequency
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _colour(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Add a smooth spectral curve of at most ``eq_db`` dB to each item."""
    b, _, f, _ = x.shape
    tilt, bow = _uniform(2 * b, -1.0, 1.0, generator, x.device).view(2, b, 1)
    z = torch.linspace(-1.0, 1.0, f, device=x.device)[None, :]
    curve = 0.5 * cfg.eq_db * (tilt * z + bow * torch.cos(torch.pi * z))  # (B, F), |curve| <= eq_db
    return x + curve[:, None, :, None]


def _noise(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Add noise of flat mel spectrum (exponentially distributed cells) at a random SNR, in linear power."""
    b = x.shape[0]
    chosen = (_draw((b,), generator).to(x.device) < cfg.noise_prob).float().view(b, 1, 1, 1)
    snr = _uniform(b, cfg.noise_snr_low, cfg.noise_snr_high, generator, x.device).view(b, 1, 1, 1)
    cells = -torch.log1p(-_draw(tuple(x.shape), generator).to(x.device))  # Exp(1): a noise periodogram
    power = torch.pow(10.0, x / 10.0)
    level = power.mean(dim=(1, 2, 3), keepdim=True) * torch.pow(10.0, -snr / 10.0)
    return 10.0 * torch.log10(power + chosen * level * cells)


class SpecAugment(torch.nn.Module):
    """Voice and room changes (:meth:`signal`, in dB) and shift plus masks (:meth:`forward`, normalised).

    ``features`` gives the mel grid (``f_min``, ``f_max``) the VTLP warp maps frequencies on.
    """

    def __init__(self, cfg: AugmentConfig, features: FeatureConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.features = features or FeatureConfig()

    @property
    def signal_active(self) -> bool:
        """Whether :meth:`signal` changes anything in training mode."""
        c = self.cfg
        return c.enabled and bool(c.freq_warp or c.time_stretch or c.eq_db or c.noise_prob)

    def signal(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, C, F, T) dB batch, before normalisation -> same shape; ``x`` itself when nothing applies."""
        if not self.training or not self.signal_active:
            return x
        if x.ndim != 4:
            raise ValueError(f"SpecAugment expects (B, C, F, T), got shape {tuple(x.shape)}")
        x = x.float()
        if self.cfg.freq_warp or self.cfg.time_stretch:
            x = _warp(x, self.cfg, self.features, generator)
        if self.cfg.eq_db:
            x = _colour(x, self.cfg, generator)
        if self.cfg.noise_prob:
            x = _noise(x, self.cfg, generator)
        return x

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, C, F, T) -> same shape and dtype; a new tensor when augmenting, ``x`` itself otherwise.

        Random numbers come from ``generator`` (any device; moved to ``x.device``), so a seeded
        generator gives the same augmentation on CPU and GPU.
        """
        if not self.cfg.enabled or not self.training:
            return x
        if x.ndim != 4:
            raise ValueError(f"SpecAugment expects (B, C, F, T), got shape {tuple(x.shape)}")
        b, _, f, t = x.shape
        x = _time_shift(x, int(self.cfg.time_shift * t), generator)
        freq = _band_mask(b, self.cfg.freq_masks, self.cfg.freq_width, f, generator, x.device)
        time = _band_mask(b, self.cfg.time_masks, self.cfg.time_width, t, generator, x.device)
        mask = freq[:, None, :, None] | time[:, None, None, :]
        fill = x.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(mask, fill, x)
