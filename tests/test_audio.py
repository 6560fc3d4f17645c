"""The audio front end: decoding, mono mix-down, resampling, centring and unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from tune_digits.audio import AudioReadError, fit_length, load_audio, load_audio_batch, read_audio, resample
from tune_digits.errors import DataError

SR = 8000
N = 8000


def _sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, data: np.ndarray, sr: int, subtype: str) -> Path:
    sf.write(path, data, sr, subtype=subtype)
    return path


def _peak_hz(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("sr", "subtype", "tol"),
    [(8000, "PCM_16", 1e-4), (48000, "PCM_24", 1e-6), (44100, "FLOAT", 0.0)],
)
def test_read_audio_subtypes(tmp_path: Path, sr: int, subtype: str, tol: float) -> None:
    data = _sine(300, sr, 0.5)
    wave, got_sr = read_audio(_write(tmp_path / f"x_{subtype}.wav", data, sr, subtype))
    assert got_sr == sr
    assert wave.dtype == np.float32 and wave.shape == data.shape
    np.testing.assert_allclose(wave, data, atol=tol)


@pytest.mark.parametrize(("sr", "subtype"), [(8000, "PCM_16"), (48000, "PCM_24"), (44100, "FLOAT")])
def test_load_audio_shape(tmp_path: Path, sr: int, subtype: str) -> None:
    path = _write(tmp_path / "x.wav", _sine(300, sr, 1.0), sr, subtype)
    wave = load_audio(path, SR, N)
    assert wave.shape == (N,) and wave.dtype == np.float32
    assert np.isfinite(wave).all() and np.abs(wave).max() > 0.3


def test_stereo_is_averaged(tmp_path: Path) -> None:
    left, right = _sine(200, SR, 0.5, 0.6), _sine(700, SR, 0.5, 0.2)
    path = _write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SR, "FLOAT")
    wave, _ = read_audio(path)
    assert wave.shape == left.shape
    np.testing.assert_allclose(wave, (left + right) / 2, atol=1e-6)


def test_long_clip_is_centre_cropped(tmp_path: Path) -> None:
    data = np.linspace(-0.9, 0.9, 3 * SR, dtype=np.float32)
    wave = load_audio(_write(tmp_path / "long.wav", data, SR, "FLOAT"), SR, N)
    np.testing.assert_array_equal(wave, data[SR : 2 * SR])


def test_short_clip_is_centred_with_zeros(tmp_path: Path) -> None:
    data = _sine(500, SR, 0.3)
    wave = load_audio(_write(tmp_path / "short.wav", data, SR, "FLOAT"), SR, N)
    left = (N - len(data)) // 2
    np.testing.assert_array_equal(wave[left : left + len(data)], data)
    assert not wave[:left].any() and not wave[left + len(data) :].any()
    energy = wave**2
    assert energy[N // 4 : 3 * N // 4].sum() == pytest.approx(energy.sum())


def test_resample_keeps_frequency() -> None:
    wave = resample(_sine(440, 48000, 1.0), 48000, SR)
    assert wave.shape == (SR,) and wave.dtype == np.float32
    assert abs(_peak_hz(wave, SR) - 440) <= 1.0
    assert np.abs(wave).max() == pytest.approx(0.5, abs=0.02)


def test_resample_identity() -> None:
    data = _sine(440, SR, 0.1)
    np.testing.assert_array_equal(resample(data, SR, SR), data)


def _broken_files(tmp_path: Path) -> dict[str, Path]:
    real = _write(tmp_path / "real.wav", _sine(300, SR, 0.5), SR, "PCM_16")
    files = {
        "zero_length": tmp_path / "zero_length.wav",
        "no_frames": tmp_path / "no_frames.wav",
        "text": tmp_path / "notes.wav",
        "truncated": tmp_path / "truncated.wav",
    }
    files["zero_length"].write_bytes(b"")
    sf.write(files["no_frames"], np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    files["text"].write_text("this is not audio\nsecond line\n", encoding="utf-8")
    files["truncated"].write_bytes(real.read_bytes()[:30])
    files["missing"] = tmp_path / "missing.wav"
    return files


@pytest.mark.parametrize("kind", ["zero_length", "no_frames", "text", "truncated", "missing"])
def test_unreadable_recordings(tmp_path: Path, kind: str) -> None:
    path = _broken_files(tmp_path)[kind]
    with pytest.raises(AudioReadError) as info:
        load_audio(path, SR, N)
    message = str(info.value)
    assert isinstance(info.value, DataError)
    assert "\n" not in message and path.name in message
    assert message.startswith(f"{path}: ")


def test_no_frames_message(tmp_path: Path) -> None:
    with pytest.raises(AudioReadError, match="has no samples"):
        read_audio(_broken_files(tmp_path)["no_frames"])


@pytest.mark.real_data
def test_real_audiomnist_recordings(shared_data: Path) -> None:
    folder = shared_data / "audiomnist_sample" / "data"
    files = sorted(folder.glob("*/*.wav"))
    if not files:
        pytest.skip("../shared/data not found: real-recording tests need it")
    assert len(files) == 6
    for path in files:
        raw, sr = read_audio(path)
        assert sr == 48000 and raw.ndim == 1
        wave = load_audio(path, SR, N)
        assert wave.shape == (N,) and wave.dtype == np.float32
        assert np.isfinite(wave).all()
        # AudioMNIST is recorded quietly (peaks of 0.007-0.04 full scale): far above 16-bit silence
        assert np.abs(wave).max() > 100 / 32768, path.name
        assert np.sqrt(np.mean(wave**2)) > 1e-4, path.name


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(min_value=1, max_value=400),
    num_samples=st.integers(min_value=1, max_value=400),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_fit_length_property(length: int, num_samples: int, seed: int) -> None:
    wave = np.random.default_rng(seed).uniform(-1, 1, length).astype(np.float32)
    out = fit_length(wave, num_samples)
    assert out.shape == (num_samples,) and out.dtype == np.float32
    if length <= num_samples:
        left = (num_samples - length) // 2
        np.testing.assert_array_equal(out[left : left + length], wave)
        assert np.count_nonzero(out) == np.count_nonzero(wave)
    else:
        start = (length - num_samples) // 2
        np.testing.assert_array_equal(out, wave[start : start + num_samples])


def test_batch_loading_equals_one_file_at_a_time(tmp_path: Path) -> None:
    """Mixed rates and lengths (shorter and longer than the window), stereo, and a broken file in between."""
    rng = np.random.default_rng(3)
    paths = []
    for n, (sr, seconds) in enumerate([(48000, 0.61), (8000, 0.4), (44100, 1.3), (48000, 0.97), (16000, 0.05)]):
        data = (0.3 * rng.standard_normal(round(sr * seconds))).astype(np.float32)
        if n == 3:
            data = np.stack([data, -0.5 * data], axis=1)  # stereo
        paths.append(_write(tmp_path / f"{n}.wav", data, sr, "PCM_16"))
    (tmp_path / "bad.wav").write_text("not audio")
    paths.insert(2, tmp_path / "bad.wav")
    paths.append(_write(tmp_path / "last.wav", _sine(440, 48000, 0.5), 48000, "PCM_16"))

    waves, bad = load_audio_batch(paths, SR, N)
    assert waves.shape == (len(paths), N) and waves.dtype == np.float32
    assert [i for i, _ in bad] == [2] and isinstance(bad[0][1], AudioReadError) and "bad.wav" in str(bad[0][1])
    assert not waves[2].any()
    for i, path in enumerate(paths):
        if i != 2:
            np.testing.assert_allclose(waves[i], load_audio(path, SR, N), atol=1e-5, err_msg=str(path))
