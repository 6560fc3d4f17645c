"""Voice activity: a word placed in noise is found where it is; silence and steady noise hold no word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tune_digits import audio, vad
from tune_digits.audio import load_audio, load_clip

SR = 8000


def _word(sr: int, seconds: float = 0.4, pitch: float = 140.0) -> np.ndarray:
    """A voiced, word-like sound: harmonics of ``pitch`` under a smooth envelope, peak about 0.5."""
    t = np.arange(round(sr * seconds)) / sr
    tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 20) if pitch * k < 3500)
    envelope = np.sin(np.pi * t / seconds) ** 2
    wave = tone * envelope
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def _in_noise(word: np.ndarray, sr: int, total_s: float, offset_s: float, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clip = np.zeros(round(sr * total_s), dtype=np.float32)
    start = round(sr * offset_s)
    clip[start : start + len(word)] = word
    noise = rng.standard_normal(len(clip)).astype(np.float32)
    noise *= np.sqrt(np.mean(word**2) / np.mean(noise**2) * 10 ** (-snr_db / 10))
    return clip + noise


@pytest.mark.parametrize(("offset", "snr"), [(0.1, 20.0), (1.3, 10.0), (2.5, 5.0)])
def test_a_word_at_a_known_offset_in_noise_is_found(offset: float, snr: float) -> None:
    word = _word(SR)
    found = vad.locate(_in_noise(word, SR, 3.0, offset, snr), SR)
    assert found is not None
    true_centre = offset + len(word) / SR / 2
    assert abs(found.centre_s - true_centre) < 0.08
    assert found.start_s <= offset + 0.1 and found.stop_s >= offset + len(word) / SR - 0.1
    assert vad.heard(found) or snr < 20  # in a long recording a word must rise 12 dB to be heard


@pytest.mark.parametrize("wave", [np.zeros(3 * SR, np.float32), np.full(3 * SR, 1e-5, np.float32)])
def test_silence_holds_no_word(wave: np.ndarray) -> None:
    assert vad.locate(wave, SR) is None
    assert not vad.heard(vad.locate(wave, SR))


def test_steady_noise_holds_no_word() -> None:
    noise = np.random.default_rng(3).standard_normal(3 * SR).astype(np.float32) * 0.1
    assert vad.locate(noise, SR) is None


def test_a_quiet_word_is_found_as_a_loud_one() -> None:
    """The thresholds are relative to the floor: -30 dB gain finds the same word."""
    clip = _in_noise(_word(SR), SR, 2.0, 0.7, 15.0)
    loud, quiet = vad.locate(clip, SR), vad.locate(clip * 10 ** (-30 / 20), SR)
    assert loud is not None and quiet is not None
    assert quiet.centre_s == pytest.approx(loud.centre_s, abs=0.02)


def test_a_long_sound_is_cut_to_its_loudest_second() -> None:
    wave = np.concatenate([_word(SR, 1.5) * 0.2, _word(SR, 0.5)])
    found = vad.find_word(vad.band_levels(wave, SR), vad.HOP_S, max_word_s=1.0)
    assert found is not None
    assert found.stop_s - found.start_s <= 1.0 + 2 * vad.MARGIN_S + 1e-9
    assert found.stop_s >= 1.9  # the loud part, at the end, is kept


def test_levels_measured_in_blocks_equal_the_whole_wave() -> None:
    wave = _in_noise(_word(48000), 48000, 2.0, 0.8, 10.0)
    hop, frame = vad.frame_sizes(48000)
    whole = vad.band_levels(wave, 48000)
    per = 37
    parts = [
        vad.band_levels(wave[i * hop : i * hop + per * hop + frame - hop], 48000, min(per, len(whole) - i))
        for i in range(0, len(whole), per)
    ]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-4)


def test_trim_crops_a_long_file_around_its_word(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3 s, 48 kHz stereo file with the word in its first half second: the window holds the word."""
    sr = 48000
    clip = _in_noise(_word(sr), sr, 3.0, 0.1, 20.0)
    path = tmp_path / "late.wav"
    sf.write(path, np.stack([clip, clip], axis=1), sr, subtype="PCM_16")
    monkeypatch.setattr(audio, "_LEVEL_SAMPLES", 4096)  # located in many blocks
    centred = load_audio(path, SR, SR)
    trimmed, word = load_clip(path, SR, SR, trim=True)
    assert word is not None and abs(word.centre_s - 0.3) < 0.08
    energy = lambda w: float(np.sum(w.astype(np.float64) ** 2))  # noqa: E731
    word_energy = energy(_word(SR))
    assert energy(trimmed) > 0.9 * word_energy  # the whole word is in the window
    assert energy(centred) < 0.2 * word_energy  # the centre second holds only noise
    np.testing.assert_allclose(trimmed, load_audio(path, SR, SR, trim=True))
    np.testing.assert_allclose(trimmed, audio.load_audio_batch([path], SR, SR, trim=True)[0][0], atol=1e-5)


def test_trim_leaves_a_clip_shorter_than_the_window_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, _word(SR, 0.5), SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, SR, SR, trim=True), load_audio(path, SR, SR))


def test_a_burst_in_a_long_recording_is_not_heard_but_a_cut_word_is() -> None:
    burst = np.zeros(3 * SR, np.float32)
    burst[SR : SR + 400] = 0.5 * np.random.default_rng(4).standard_normal(400)  # 50 ms: a clink
    burst += 1e-3 * np.random.default_rng(5).standard_normal(len(burst)).astype(np.float32)
    assert not vad.heard(vad.locate(burst, SR))
    word = _word(SR, 0.5)
    found = vad.locate(word, SR)  # a tightly cut clip: the floor lies inside the word
    assert found is not None and found.clip_s == pytest.approx(0.5) and vad.heard(found)


def test_a_very_quiet_16_bit_recording_is_still_heard(tmp_path: Path) -> None:
    """-60 dB (peak -66 dBFS): near the 16-bit floor, but a word, as loud recordings 30 dB down are."""
    path = tmp_path / "quiet.wav"
    sf.write(path, _word(SR, 0.5) * 10 ** (-60 / 20), SR, subtype="PCM_16")
    assert vad.heard(load_clip(path, SR, SR, trim=True)[1])
