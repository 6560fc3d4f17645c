"""Audio front end: the only module that decodes recordings.

Every recording goes through :func:`load_audio` (or :func:`load_audio_batch`): decode with
soundfile (any subtype it reads: 16/24/32-bit PCM, float), average the channels to mono,
resample to the configured rate and centre the clip in a fixed-length window. The result is a
``(num_samples,)`` float32 waveform, nominally in [-1, 1].

Only the frames the window keeps are decoded (plus the resampler's reach on both sides), so a
clip of any length costs the memory of ``num_samples`` output samples, and the result equals
resampling the whole clip and then cropping it, up to float rounding.

With ``trim`` (``audio.trim``), a clip longer than the window is cropped around its word instead
of its centre: :mod:`tune_digits.vad` finds the word on levels measured block by block over the whole
file at its own rate (bounded memory), and only the window around the word is decoded and resampled.
:func:`load_clip` also returns the word found (None: no word heard).

Samples must be finite and at most :data:`MAX_ABS_SAMPLE` in magnitude: PCM decodes to [-1, 1],
float files may overshoot a little, and float files written from 16-bit integers without scaling
reach 32768. Larger values come from a broken file, and from about 1e16 on the power spectrum
overflows float32 and the features become NaN.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from tune_digits import vad
from tune_digits.errors import DataError

MAX_ABS_SAMPLE = 1e5
_FIX = "re-export it as a WAV file or remove it from the data folder"
_BATCH_SAMPLES = 1 << 22  # input samples per resampling call: bounds the zero padding of a batch
_LEVEL_SAMPLES = 1 << 19  # input frames per block when a whole file's word is located


class AudioReadError(DataError):
    """A recording that cannot be decoded: empty, truncated, not audio or an unsupported format."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")


def _decode_reason(exc: Exception) -> str:
    detail = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    return f"cannot decode ({detail}); {_FIX}"


@functools.lru_cache(maxsize=8)
def _resampler(orig_sr: int, target_sr: int) -> torchaudio.transforms.Resample:
    """The windowed-sinc kernel is built once per rate pair (half the cost of a call)."""
    return torchaudio.transforms.Resample(orig_sr, target_sr)


def _crop_start(length: int, num_samples: int, centre: float | None) -> int:
    """First sample of the window in a clip of ``length``: its centre, or ``centre`` kept inside the clip."""
    if centre is None:
        return (length - num_samples) // 2  # as fit_length crops
    return min(max(round(centre) - num_samples // 2, 0), length - num_samples)


def _window(
    frames: int, orig_sr: int, target_sr: int, num_samples: int, centre: float | None = None
) -> tuple[int, int, int | None]:
    """Which input frames the front end needs: ``(first, stop, skip)``.

    ``skip`` is None when the whole clip fits the window (it is padded); otherwise the window
    starts ``skip`` samples into the resampled frames ``[first, stop)``. ``first`` is a multiple of
    the resampler's input stride, so the cropped clip resamples onto the same sample grid. The window
    is centred on the clip, or on input frame ``centre`` as far as the clip allows.
    """
    if orig_sr == target_sr:
        if frames <= num_samples:
            return 0, frames, None
        start = _crop_start(frames, num_samples, centre)
        return start, start + num_samples, 0
    length = -(-frames * target_sr // orig_sr)  # the resampled length of the whole clip
    if length <= num_samples:
        return 0, frames, None
    res = _resampler(orig_sr, target_sr)
    stride, step = orig_sr // res.gcd, target_sr // res.gcd  # input frames per block, output samples per block
    out_start = _crop_start(length, num_samples, None if centre is None else centre * target_sr / orig_sr)
    block = max(0, out_start // step - -(-res.width // stride))
    last = (out_start + num_samples - 1) // step
    stop = min(frames, (last + 1) * stride + res.width)
    return block * stride, stop, out_start - block * step


def _file_word(path: Path, fh: sf.SoundFile, frames: int, orig_sr: int, max_word_s: float) -> vad.Word | None:
    """The word of an open file, its levels measured block by block (memory bounded by _LEVEL_SAMPLES)."""
    hop, frame = vad.frame_sizes(orig_sr)
    total = vad.frame_count(frames, orig_sr)
    per = max(1, _LEVEL_SAMPLES // hop)
    levels = []
    for first in range(0, total, per):
        count = min(per, total - first)
        fh.seek(first * hop)
        data = fh.read(min(count * hop + frame - hop, frames - first * hop), dtype="float32", always_2d=True)
        levels.append(vad.band_levels(_mono(path, data), orig_sr, count))
    word = vad.find_word(np.concatenate(levels), hop / orig_sr, max_word_s)
    return None if word is None else replace(word, clip_s=frames / orig_sr)


def _decode(
    path: Path, target: tuple[int, int] | None, trim: bool = False, locate: bool = False
) -> tuple[np.ndarray, int, int | None, vad.Word | None]:
    """Decode ``path`` (all of it, or the part ``target = (sample_rate, num_samples)`` keeps) to mono.

    With ``trim``, a clip longer than the window keeps the window around its word; with ``locate`` the
    word is returned (found on the whole file when trimming, else on the part decoded).
    """
    if not path.is_file():
        raise AudioReadError(path, "file not found; check the data folder")
    word = None
    try:
        with sf.SoundFile(path) as fh:
            orig_sr, frames = int(fh.samplerate), int(fh.frames)
            first, stop, skip = _window(frames, orig_sr, *target) if target else (0, frames, None)
            if target and trim and skip is not None:
                word = _file_word(path, fh, frames, orig_sr, min(vad.MAX_WORD_S, target[1] / target[0]))
                if word is not None:
                    first, stop, skip = _window(frames, orig_sr, *target, centre=word.centre_s * orig_sr)
            fh.seek(first)
            data = fh.read(stop - first, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, EOFError) as exc:
        raise AudioReadError(path, _decode_reason(exc)) from None
    wave = _mono(path, data)
    if locate and not (target and trim and skip is not None):
        word = vad.locate(wave, orig_sr)
        word = None if word is None else replace(word, clip_s=frames / orig_sr)  # found in the part decoded
    return wave, orig_sr, skip, word


def _mono(path: Path, data: np.ndarray) -> np.ndarray:
    """(S, C) decoded frames -> (S,) float32 mono, checked: not empty, finite, not far outside [-1, 1]."""
    if data.shape[0] == 0:
        raise AudioReadError(path, f"has no samples; {_FIX}")
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioReadError(path, f"contains NaN or infinite samples; {_FIX}")
    peak = float(np.abs(wave).max())
    if peak > MAX_ABS_SAMPLE:
        raise AudioReadError(
            path, f"has samples up to {peak:.3g}, far outside [-1, 1] (at most {MAX_ABS_SAMPLE:g} is read); {_FIX}"
        )
    return np.ascontiguousarray(wave, dtype=np.float32)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode all of ``path`` to a mono float32 waveform.

    Returns ``(wave, sample_rate)`` with ``wave`` of shape ``(S,)``; channels are averaged.
    Raises :class:`AudioReadError` for a missing, empty, truncated or unreadable file, and for
    non-finite samples or samples beyond :data:`MAX_ABS_SAMPLE`.
    """
    wave, sample_rate, _, _ = _decode(Path(path), None)
    return wave, sample_rate


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


def _place(resampled: np.ndarray, skip: int | None, num_samples: int) -> np.ndarray:
    """The window of a resampled (cropped) clip, as :func:`fit_length` of the whole clip gives it."""
    return fit_length(resampled if skip is None else resampled[skip : skip + num_samples], num_samples)


def load_audio(path: str | Path, sample_rate: int, num_samples: int, trim: bool = False) -> np.ndarray:
    """Read, resample to ``sample_rate`` and centre in ``num_samples``: a ``(num_samples,)`` float32 wave.

    With ``trim`` a longer clip is cropped around its word rather than its centre.
    """
    return load_clip(path, sample_rate, num_samples, trim)[0]


def load_clip(
    path: str | Path, sample_rate: int, num_samples: int, trim: bool = False
) -> tuple[np.ndarray, vad.Word | None]:
    """:func:`load_audio` and the word found in the recording (None when none is heard)."""
    wave, orig_sr, skip, word = _decode(Path(path), (sample_rate, num_samples), trim, locate=True)
    return _place(resample(wave, orig_sr, sample_rate), skip, num_samples), word


def _batches(items: list[tuple[int, np.ndarray, int | None]]) -> list[list[tuple[int, np.ndarray, int | None]]]:
    """Clips sorted by length, cut into groups whose zero-padded size stays under ``_BATCH_SAMPLES``."""
    groups: list[list[tuple[int, np.ndarray, int | None]]] = []
    for item in sorted(items, key=lambda it: len(it[1])):
        if groups and (len(groups[-1]) + 1) * len(item[1]) <= _BATCH_SAMPLES:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def load_audio_batch(
    paths: list[str | Path], sample_rate: int, num_samples: int, trim: bool = False
) -> tuple[np.ndarray, list[tuple[int, AudioReadError]]]:
    """:func:`load_audio` for many files: ``(waves (N, num_samples), [(index, error), ...])``.

    Clips of one original rate are resampled together, zero-padded to the longest of a group of
    similar lengths: one convolution per group instead of one per clip (the sinc resampler pads
    each clip with zeros anyway, so every clip comes out as :func:`load_audio` makes it, up to
    float rounding). Unreadable files leave a row of zeros and are returned with their error.
    """
    waves = np.zeros((len(paths), num_samples), dtype=np.float32)
    bad: list[tuple[int, AudioReadError]] = []
    by_rate: dict[int, list[tuple[int, np.ndarray, int | None]]] = {}
    for i, path in enumerate(paths):
        try:
            wave, orig_sr, skip, _ = _decode(Path(path), (sample_rate, num_samples), trim)
        except AudioReadError as exc:
            bad.append((i, exc))
            continue
        by_rate.setdefault(orig_sr, []).append((i, wave, skip))
    for orig_sr, items in by_rate.items():
        if orig_sr == sample_rate:
            for i, wave, skip in items:
                waves[i] = _place(wave, skip, num_samples)
            continue
        for group in _batches(items):
            batch = np.zeros((len(group), len(group[-1][1])), dtype=np.float32)
            for row, (_, wave, _) in enumerate(group):
                batch[row, : len(wave)] = wave
            with torch.no_grad():
                out = _resampler(orig_sr, sample_rate)(torch.from_numpy(batch)).numpy()
            for row, (i, wave, skip) in enumerate(group):
                length = -(-len(wave) * sample_rate // orig_sr)  # ceil, in integers: what the resampler returns
                waves[i] = _place(out[row, :length], skip, num_samples)
    return waves, sorted(bad, key=lambda item: item[0])
