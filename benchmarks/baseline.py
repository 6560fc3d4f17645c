"""The per-item baseline: spectrograms computed in ``Dataset.__getitem__``, every epoch, through a DataLoader.

This is how course notebooks usually write it, and it is deliberately left that way: each
item is decoded with soundfile, resampled with torchaudio, turned into a log-mel image with
``MelSpectrogram`` + ``AmplitudeToDB``, optionally smoothed with ``cv2.bilateralFilter`` and
normalised, one clip at a time. Every setting is taken from the same :class:`Config` that
tune-digits uses, so both sides compute the same spectrograms (``tests/test_benchmarks.py``
checks it against the feature cache) and a speed ratio compares equal work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tune_digits.config import Config


class PerItemSpectrogramDataset(Dataset):
    """(1, n_mels, T) normalised log-mel images and digit labels, computed from the audio on every access."""

    def __init__(
        self, files: Sequence[str | Path], labels: Sequence[int], cfg: Config, bilateral: bool = False
    ) -> None:
        self.files = [str(f) for f in files]
        self.labels = [int(v) for v in labels]
        self.sample_rate = cfg.audio.sample_rate
        self.num_samples = cfg.audio.num_samples
        f = cfg.features
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=f.n_fft,
            hop_length=f.hop_length,
            n_mels=f.n_mels,
            f_min=f.f_min,
            f_max=f.f_max,
            power=2.0,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=f.top_db)
        self.bilateral = bilateral
        self.bil = cfg.bilateral

    def __len__(self) -> int:
        return len(self.files)

    def spectrogram(self, i: int) -> torch.Tensor:
        """The (n_mels, T) log-mel image in dB of item ``i`` (bilateral-filtered when asked), float32."""
        data, sr = sf.read(self.files[i], dtype="float32", always_2d=True)
        wave = torch.from_numpy(data.mean(axis=1, dtype=np.float32))  # mono
        if sr != self.sample_rate:
            wave = torchaudio.functional.resample(wave, sr, self.sample_rate)
        extra = self.num_samples - wave.shape[0]  # centre in a fixed window: pad or crop both sides
        if extra >= 0:
            wave = F.pad(wave, (extra // 2, extra - extra // 2))
        else:
            start = -extra // 2
            wave = wave[start : start + self.num_samples]
        spec = self.to_db(self.mel(wave))
        if self.bilateral:
            img = cv2.bilateralFilter(spec.numpy(), self.bil.d, self.bil.sigma_color, self.bil.sigma_space)
            spec = torch.from_numpy(img)
        return spec

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        spec = self.spectrogram(i)
        spec = (spec - spec.mean()) / (spec.std(correction=0) + 1e-5)  # per-utterance normalisation
        return spec.unsqueeze(0), self.labels[i]


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, *, shuffle: bool = True, seed: int = 0):
    """The notebook's DataLoader: shuffled batches, ``num_workers`` worker processes (0 = in the main process)."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=gen)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device,
    max_batches: int | None = None,
) -> tuple[float, int, float]:
    """The notebook's training loop over ``loader``; returns (mean loss, samples, seconds)."""
    model.train()
    total, count = 0.0, 0
    start = time.perf_counter()
    for b, (xb, yb) in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        xb, yb = xb.to(device), yb.to(device)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(yb)
        count += len(yb)
    return total / max(count, 1), count, time.perf_counter() - start


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The same optimiser tune-digits builds for ``cfg`` (AdamW or Nesterov SGD)."""
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True
        )
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)
