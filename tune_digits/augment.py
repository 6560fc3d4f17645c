"""SpecAugment on normalised spectrogram batches (training only).

Applied per batch after :func:`tune_digits.features.normalize_batch`. For each item independently:
a random circular shift along time, then ``freq_masks`` bands of U{0..freq_width} mel bins and
``time_masks`` spans of U{0..time_width} frames. Masked cells take the item's own mean (0 after
utterance normalisation), so a mask removes information without adding an unusual level.

The module is the identity when ``cfg.enabled`` is False or in eval mode (``model.eval()``): this is
what guarantees that evaluation never sees augmented inputs.
"""

from __future__ import annotations

import torch

from tune_digits.config import AugmentConfig


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


class SpecAugment(torch.nn.Module):
    """Time shift, frequency masks and time masks on a (B, C, F, T) batch; identity unless training."""

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg

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
