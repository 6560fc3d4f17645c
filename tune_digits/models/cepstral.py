"""Cepstral smoothing in front of a model: each frame's log-mel spectrum keeps its envelope, not its harmonics.

A voiced frame's log spectrum is a smooth envelope (the formants: what the digit is) times a comb of
pitch harmonics (who is speaking). The DCT of a frame along the mel axis, its cepstrum, puts the
envelope in the first coefficients and the harmonics' ripple in later ones, as MFCCs do. Keeping the
first ``keep`` coefficients and transforming back is one fixed linear map ``P = D_k^T D_k`` on the mel
axis (``D_k``: the first ``keep`` rows of the orthonormal DCT-II), so the image keeps its (F, T) shape
and any network reads it unchanged.

``P`` maps a constant column to itself (the DCT's first row is constant), so an image's mean is kept.
It runs on the normalised (and, in training, augmented) batch, and the same map runs in training,
evaluation, prediction and ONNX export because it is part of the model.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from tune_digits.errors import ConfigError


def smoothing_matrix(n_bins: int, keep: int) -> torch.Tensor:
    """(n_bins, n_bins) float32 projection that keeps the first ``keep`` DCT-II coefficients of a column."""
    if not 1 <= keep <= n_bins:
        raise ConfigError(f"model.lifter: must be in [1, {n_bins}] (the mel bands), got {keep}; or 0 for off")
    dct = torchaudio.functional.create_dct(keep, n_bins, norm="ortho").double()  # (n_bins, keep), as for MFCCs
    return (dct @ dct.T).float()


class CepstralSmoothing(nn.Module):
    """(B, C, F, T) -> (B, C, F, T): every column projected on the first ``keep`` cepstral coefficients."""

    def __init__(self, n_bins: int, keep: int) -> None:
        super().__init__()
        self.keep = keep
        self.register_buffer("projection", smoothing_matrix(n_bins, keep), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("gf,bcft->bcgt", self.projection.to(x.dtype), x)


class Smoothed(nn.Module):
    """``body`` fed cepstrally smoothed spectrograms (``model.lifter``)."""

    def __init__(self, body: nn.Module, n_bins: int, keep: int) -> None:
        super().__init__()
        self.smooth = CepstralSmoothing(n_bins, keep)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.smooth(x))
