"""Huge or non-finite samples are caught at decode, and predict never prints a NaN probability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tune_digits.audio import MAX_ABS_SAMPLE, AudioReadError, load_audio, load_audio_batch
from tune_digits.checkpoint import save_checkpoint
from tune_digits.cli import app
from tune_digits.config import load_config, to_flat
from tune_digits.demo import demo_root
from tune_digits.features import spectrogram_shape
from tune_digits.inference import build_model

runner = CliRunner()


def _float_wav(path: Path, peak: float) -> Path:
    wave = np.sin(np.linspace(0, 400, 8000)).astype(np.float32) * np.float32(peak)
    sf.write(path, wave, 8000, subtype="FLOAT")
    return path


@pytest.mark.parametrize("peak", [1e30, 1e7])
def test_huge_float_samples_are_a_read_error_naming_the_file(tmp_path: Path, peak: float) -> None:
    path = _float_wav(tmp_path / "loud.wav", peak)
    with pytest.raises(AudioReadError, match="far outside") as info:
        load_audio(path, 8000, 8000)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    waves, bad = load_audio_batch([path], 8000, 8000)
    assert [i for i, _ in bad] == [0] and not waves.any()


def test_slight_overs_and_unscaled_16_bit_floats_are_read(tmp_path: Path) -> None:
    for peak in (1.2, 32768.0):
        wave = load_audio(_float_wav(tmp_path / f"{peak:g}.wav", peak), 8000, 8000)
        assert np.isfinite(wave).all() and np.abs(wave).max() <= MAX_ABS_SAMPLE


def test_predict_skips_a_huge_recording_by_name(tmp_path: Path) -> None:
    model = _model(tmp_path / "m" / "model.pt", nan=False)
    loud = _float_wav(tmp_path / "loud.wav", 1e30)
    good = sorted(demo_root().glob("*_0.wav"))[0]
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", "--model", str(model), str(loud), str(good), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 unreadable recordings skipped" in result.output and "loud.wav" in result.output
    assert "nan" not in out.read_text().lower() and good.name in out.read_text()


def test_predict_refuses_a_model_that_gives_nan(tmp_path: Path) -> None:
    model = _model(tmp_path / "m" / "model.pt", nan=True)
    out = tmp_path / "pred.csv"
    good = sorted(demo_root().glob("*_0.wav"))[:2]
    result = runner.invoke(app, ["predict", "--model", str(model), *map(str, good), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "NaN or infinite probabilities" in result.output and not out.exists()


def _model(path: Path, nan: bool) -> Path:
    cfg = load_config(None, [])
    shape = spectrogram_shape(cfg.audio, cfg.features)
    torch.manual_seed(0)
    state = build_model(cfg, shape).state_dict()
    if nan:
        state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, state, to_flat(cfg), {"input_shape": list(shape), "norm": [0.0, 1.0]})
    return path
