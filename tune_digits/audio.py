"""Audio front end: the only module that decodes recordings.

Every recording goes through :func:`load_audio`: decode with soundfile (any
subtype it reads: 16/24/32-bit PCM, float), average the channels to mono,
resample to the configured rate and centre the clip in a fixed-length window.
The result is a ``(num_samples,)`` float32 waveform in [-1, 1].
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from tune_digits.errors import DataError

_FIX = "re-export it as a WAV file or remove it from the data folder"


class AudioReadError(DataError):
    """A recording that cannot be decoded: empty, truncated, not audio or an unsupported format."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")


def _decode_reason(exc: Exception) -> str:
    detail = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    return f"cannot decode ({detail}); {_FIX}"


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` to a mono float32 waveform.

    Returns ``(wave, sample_rate)`` with ``wave`` of shape ``(S,)``; channels are averaged.
    Raises :class:`AudioReadError` for a missing, empty, truncated or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(path, "file not found; check the data folder")
    try:
        data, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, EOFError) as exc:
        raise AudioReadError(path, _decode_reason(exc)) from None
    if data.shape[0] == 0:
        raise AudioReadError(path, f"has no samples; {_FIX}")
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioReadError(path, f"contains NaN or infinite samples; {_FIX}")
    return np.ascontiguousarray(wave, dtype=np.float32), int(sample_rate)


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Centre ``wave`` (S,) in a window of ``num_samples``: zero-pad both sides or centre-crop.

    Padding puts the extra sample (odd difference) on the right; cropping drops it on the right too.
    Returns a new ``(num_samples,)`` float32 array.
    """
    if wave.ndim != 1:
        raise ValueError(f"fit_length expects a 1-D wave, got shape {wave.shape}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    extra = num_samples - wave.shape[0]
    if extra >= 0:
        left = extra // 2
        out = np.zeros(num_samples, dtype=np.float32)
        out[left : left + wave.shape[0]] = wave
        return out
    start = -extra // 2
    return np.array(wave[start : start + num_samples], dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _resampler(orig_sr: int, target_sr: int) -> torchaudio.transforms.Resample:
    """The windowed-sinc kernel is built once per rate pair (half the cost of a call)."""
    return torchaudio.transforms.Resample(orig_sr, target_sr)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of a (S,) wave with torchaudio; identity when the rates match.

    Returns float32 of shape ``(ceil(S * target_sr / orig_sr),)``.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return np.asarray(wave, dtype=np.float32)
    with torch.no_grad():
        out = _resampler(orig_sr, target_sr)(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
    return out.numpy()


def load_audio(path: str | Path, sample_rate: int, num_samples: int) -> np.ndarray:
    """Read, resample to ``sample_rate`` and centre in ``num_samples``: a ``(num_samples,)`` float32 wave."""
    wave, orig_sr = read_audio(path)
    return fit_length(resample(wave, orig_sr, sample_rate), num_samples)


def load_audio_batch(
    paths: list[str | Path], sample_rate: int, num_samples: int
) -> tuple[np.ndarray, list[tuple[int, AudioReadError]]]:
    """:func:`load_audio` for many files: ``(waves (N, num_samples), [(index, error), ...])``.

    Clips of one original rate are resampled together, zero-padded to the longest: one
    convolution per rate instead of one per clip (the sinc resampler pads each clip with zeros
    anyway, so every clip comes out as :func:`load_audio` makes it, up to float rounding).
    Unreadable files leave a row of zeros and are returned with their error.
    """
    waves = np.zeros((len(paths), num_samples), dtype=np.float32)
    bad: list[tuple[int, AudioReadError]] = []
    by_rate: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, path in enumerate(paths):
        try:
            wave, orig_sr = read_audio(path)
        except AudioReadError as exc:
            bad.append((i, exc))
            continue
        by_rate.setdefault(orig_sr, []).append((i, wave))
    for orig_sr, items in by_rate.items():
        if orig_sr == sample_rate:
            for i, wave in items:
                waves[i] = fit_length(wave, num_samples)
            continue
        longest = max(len(w) for _, w in items)
        batch = np.zeros((len(items), longest), dtype=np.float32)
        for row, (_, wave) in enumerate(items):
            batch[row, : len(wave)] = wave
        with torch.no_grad():
            out = _resampler(orig_sr, sample_rate)(torch.from_numpy(batch)).numpy()
        for row, (i, wave) in enumerate(items):
            length = -(-len(wave) * sample_rate // orig_sr)  # ceil, in integers: what the resampler returns
            waves[i] = fit_length(out[row, :length], num_samples)
    return waves, sorted(bad, key=lambda item: item[0])
