"""Voice activity: where the word is in a recording of any length, or that there is none.

Pure functions on waveforms (no decoding; :mod:`tune_digits.audio` feeds them, block by block for
long files). The measure is the speech-band level of short frames::

    wave (S,) at any rate --band_levels--> (L,) dB, one per 10 ms hop (25 ms Hann frames, 200-3600 Hz)
    --find_word--> Word(start_s, stop_s, rise_db) or None

:func:`find_word` smooths the levels over 50 ms, estimates the noise floor (:func:`noise_floor`),
and thresholds with hysteresis relative to floor and peak: a segment starts above the high
threshold and extends while the level stays above the low one. Segments closer than
:data:`MERGE_GAP_S` are one word (the stop in "six", the gap in "seven"); segments shorter than
:data:`MIN_WORD_S` are clicks; the dominant word is the segment with most energy above the floor,
cut to its loudest :data:`MAX_WORD_S` when longer. No word: the loudest frame is below
:data:`SILENCE_DB` (near silence), or less than :data:`MIN_RISE_DB` over the floor (stationary noise).
A word is placed from 6 dB over the floor on (found at SNR 0 dB); :func:`heard` asks more of a word in
a long recording, so that a burst of noise is less often taken for a digit.
The band leaves out rumble below 200 Hz and hiss above 3.6 kHz; docs/accuracy.md compares the
method with torchaudio's ``functional.vad``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

FRAME_S = 0.025
HOP_S = 0.010
BAND_HZ = (200.0, 3600.0)
SMOOTH_FRAMES = 5  # 50 ms moving average of the power
FLOOR_PERCENTILE = 10.0
MIN_RISE_DB = 6.0  # the loudest smoothed frame must stand this far over the floor to be a word
# In a recording longer than the window, a word counts as heard from this rise and core length on
# (docs/accuracy.md: found words in noise-only clips against FSDD and own-voice words).
HEARD_RISE_DB = 12.0
HEARD_MIN_S = 0.15
HIGH_SHARE, LOW_SHARE = 0.5, 0.2  # thresholds: floor + share * (peak - floor) ...
HIGH_MIN_DB, LOW_MIN_DB = 6.0, 3.0  # ... and at least this far over the floor
SILENCE_DB = -95.0  # loudest frame below this (dB re full scale): near silence (16-bit quantisation), no word
MERGE_GAP_S = 0.25
MIN_WORD_S = 0.06
MAX_WORD_S = 1.0
MARGIN_S = 0.05  # added on both sides of a found word
_TINY = 1e-12


@dataclass(frozen=True)
class Word:
    """The dominant utterance: ``[start_s, stop_s)`` in seconds from the start of the recording."""

    start_s: float
    stop_s: float
    rise_db: float  # its loudest smoothed frame over the noise floor
    clip_s: float = 0.0  # the length of the recording it was found in

    @property
    def centre_s(self) -> float:
        return 0.5 * (self.start_s + self.stop_s)


def heard(word: Word | None, window_s: float = 1.0) -> bool:
    """Whether a found word is a digit heard, not a burst of noise.

    A recording no longer than the window is a cut word (a found word is enough: the floor of a tightly
    trimmed clip lies inside the word itself); in a longer one the word must rise HEARD_RISE_DB over the
    floor and last HEARD_MIN_S without its margins.
    """
    if word is None:
        return False
    if word.clip_s <= window_s:
        return True
    core = word.stop_s - word.start_s - 2 * MARGIN_S
    return word.rise_db >= HEARD_RISE_DB and core >= HEARD_MIN_S


def frame_sizes(sample_rate: int) -> tuple[int, int]:
    """``(hop, frame)`` in samples at ``sample_rate``."""
    hop = max(1, round(HOP_S * sample_rate))
    return hop, max(hop, round(FRAME_S * sample_rate))


def frame_count(num_samples: int, sample_rate: int) -> int:
    """Frames :func:`band_levels` gives for a whole wave: one per hop started inside it."""
    hop, _ = frame_sizes(sample_rate)
    return -(-num_samples // hop)


def band_levels(wave: np.ndarray, sample_rate: int, count: int | None = None) -> np.ndarray:
    """Speech-band level in dB (re a full-scale square wave) of ``count`` frames starting every hop.

    ``wave`` (S,) float -> (count,) float32; frames running past the end see zeros. ``count``
    defaults to :func:`frame_count`; a long recording can be measured in blocks that start on a hop
    and hold ``count * hop + frame - hop`` samples, giving the same levels as the whole wave.
    """
    hop, frame = frame_sizes(sample_rate)
    count = frame_count(len(wave), sample_rate) if count is None else count
    if count <= 0:
        return np.zeros(0, dtype=np.float32)
    need = (count - 1) * hop + frame
    padded = np.zeros(need, dtype=np.float32)
    part = np.asarray(wave[:need], dtype=np.float32)
    padded[: len(part)] = part
    frames = torch.from_numpy(padded).unfold(0, frame, hop)[:count]  # (count, frame), a view
    window = torch.from_numpy(np.hanning(frame + 2)[1:-1].astype(np.float32))
    with torch.no_grad():
        spectrum = torch.fft.rfft(frames * window, dim=1).abs().square().numpy()  # float32: twice numpy's speed
    freqs = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    band = (freqs >= BAND_HZ[0]) & (freqs <= min(BAND_HZ[1], 0.5 * sample_rate))
    power = spectrum[:, band].astype(np.float64).sum(axis=1) * 2.0 / (frame * float(window.square().sum()))
    return (10.0 * np.log10(power + _TINY)).astype(np.float32)


def _smooth(levels: np.ndarray) -> np.ndarray:
    power = np.power(10.0, levels.astype(np.float64) / 10.0)
    kernel = np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES
    return 10.0 * np.log10(np.convolve(power, kernel, mode="same") + _TINY)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a 1-D bool array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _segments(level: np.ndarray, high: float, low: float, hop_s: float) -> list[tuple[int, int]]:
    """Runs above ``low`` that reach ``high``, merged across gaps shorter than MERGE_GAP_S."""
    runs = [(a, b) for a, b in _runs(level > low) if level[a:b].max() > high]
    merged: list[tuple[int, int]] = []
    gap = round(MERGE_GAP_S / hop_s)
    for a, b in runs:
        if merged and a - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return [(a, b) for a, b in merged if (b - a) * hop_s >= MIN_WORD_S]


def _loudest_span(energy: np.ndarray, a: int, b: int, width: int) -> tuple[int, int]:
    """The ``width`` frames of ``[a, b)`` holding most energy."""
    if b - a <= width:
        return a, b
    sums = np.convolve(energy[a:b], np.ones(width), mode="valid")
    start = a + int(np.argmax(sums))
    return start, start + width


def noise_floor(level: np.ndarray) -> float:
    """The background level of smoothed frame levels (dB): the median of the frames in the lower half
    of the range from the 10th percentile to the peak (a fade-in or a dropout pulls the percentile
    itself below the room's noise)."""
    low = float(np.percentile(level, FLOOR_PERCENTILE))
    quiet = level[level <= 0.5 * (low + float(level.max()))]
    return float(np.median(quiet))


def find_word(levels: np.ndarray, hop_s: float = HOP_S, max_word_s: float = MAX_WORD_S) -> Word | None:
    """The dominant utterance in frame ``levels`` (dB, one per ``hop_s``), or None when there is none."""
    if len(levels) == 0 or float(np.max(levels)) < SILENCE_DB:
        return None
    level = _smooth(levels)
    floor = noise_floor(level)
    peak = float(level.max())
    rise = peak - floor
    if rise < MIN_RISE_DB:
        return None
    high = floor + max(HIGH_MIN_DB, HIGH_SHARE * rise)
    low = floor + max(LOW_MIN_DB, LOW_SHARE * rise)
    segments = _segments(level, high, low, hop_s)
    if not segments:
        return None
    energy = np.maximum(np.power(10.0, (level - floor) / 10.0) - 1.0, 0.0)
    a, b = max(segments, key=lambda s: float(energy[s[0] : s[1]].sum()))
    a, b = _loudest_span(energy, a, b, max(1, round(max_word_s / hop_s)))
    margin = round(MARGIN_S / hop_s)
    a, b = max(0, a - margin), min(len(levels), b + margin)
    return Word(a * hop_s, b * hop_s, rise)


def locate(wave: np.ndarray, sample_rate: int, max_word_s: float = MAX_WORD_S) -> Word | None:
    """:func:`find_word` of a whole (S,) wave: the word's place in seconds, or None."""
    hop, _ = frame_sizes(sample_rate)
    word = find_word(band_levels(wave, sample_rate), hop / sample_rate, max_word_s)
    return None if word is None else replace(word, clip_s=len(wave) / sample_rate)
