"""Honest output and the robustness table on a tiny trained run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.test_train import make_corpus
from tune_digits.cli import app
from tune_digits.config import load_config
from tune_digits.evaluate import SNRS, evaluate_runs
from tune_digits.run import train_run

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A LeNet-5 trained 3 epochs on 80 tone recordings (4 speakers), and a folder of noise."""
    base = tmp_path_factory.mktemp("evaluate")
    root = make_corpus(base / "tones", speakers=4, takes=2)
    noise = base / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    sf.write(noise / "hum.wav", (0.1 * rng.standard_normal(16000 * 8)).astype(np.float32), 16000, subtype="FLOAT")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNE_DIGITS_CACHE", str(base / "cache"))
        over = [f"data.root={root}", "data.split=speakers", "train.epochs=3", "train.device=cpu", "train.threads=1"]
        train_run(load_config(overrides=over), base / "run", progress=False)
    return base / "run", noise


def test_metrics_hold_the_temperature_and_calibration_error(tiny_run: tuple[Path, Path]) -> None:
    metrics = json.loads((tiny_run[0] / "metrics.json").read_text())
    assert 0.04 < metrics["temperature"] < 21
    assert 0.0 <= metrics["test_ece"] <= 1.0 and 0.0 <= metrics["test_ece_uncalibrated"] <= 1.0


def test_predict_says_no_digit_heard_for_silence_and_steady_noise(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = tiny_run
    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 8000)
    hiss = 0.05 * np.random.default_rng(1).standard_normal(24000)
    sf.write(tmp_path / "hiss.wav", hiss.astype(np.float32), 8000)
    word = next((run.parent / "tones").glob("3_*.wav"))
    out = tmp_path / "pred.csv"
    args = ["predict", "--model", str(run), str(tmp_path / "silence.wav"), str(tmp_path / "hiss.wav"), str(word)]
    result = runner.invoke(app, [*args, "--out", str(out), "--min-confidence", "1.0"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in csv.DictReader(out.open())}
    assert rows["silence.wav"]["note"] == rows["hiss.wav"]["note"] == "no digit heard"
    assert rows["silence.wav"]["digit"] == ""
    assert rows[word.name]["note"] == "low confidence" and rows[word.name]["digit"] != ""  # every p < 1.0
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "no digit heard" in table.output
    bad = runner.invoke(app, [*args, "--min-confidence", "2"])
    assert bad.exit_code == 2 and "--min-confidence" in bad.output


def test_evaluate_writes_the_robustness_table(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, noise = tiny_run
    extra = tmp_path / "mine"
    extra.mkdir()
    for path in sorted((run.parent / "tones").glob("*_spk0_0.wav"))[:4]:
        (extra / path.name).write_bytes(path.read_bytes())
    args = ["evaluate", "--model", str(run), "--noise", str(noise), "--out", str(tmp_path / "out"), str(extra)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["condition"]: r for r in csv.DictReader((tmp_path / "out" / "robustness.csv").open())}
    expected = ["clean", *(f"snr{s:g}" for s in SNRS), "offset-3s", "gain-30", "telephone", "48k-stereo"]
    assert list(rows) == [*expected, "noise-only", "mine"]
    test_clips = len(json.loads((run / "split.json").read_text())["test"])
    assert all(int(rows[c]["clips"]) == test_clips for c in expected)
    assert rows["mine"]["clips"] == "4" and rows["noise-only"]["macro_f1"] == ""
    assert float(rows["noise-only"]["no_digit_heard"]) > 0.9  # steady noise holds no word
    metrics = json.loads((run / "metrics.json").read_text())
    assert float(rows["clean"]["macro_f1"]) == pytest.approx(metrics["test_f1"], abs=0.02)
    assert (tmp_path / "out" / "robustness.png").stat().st_size > 1000
    missing = runner.invoke(app, ["evaluate", "--model", str(run), "--noise", str(noise), str(tmp_path / "gone")])
    assert missing.exit_code == 2 and "no such folder" in missing.output


def test_no_trim_misses_a_word_off_centre(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    """``--no-trim`` overrides the run's ``audio.trim``: the word at a random offset in 3 s falls out of the window."""
    run, noise = tiny_run
    trimmed = evaluate_runs([run], [], noise)
    args = ["evaluate", "--model", str(run), "--noise", str(noise), "--no-trim", "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["condition"]: r for r in csv.DictReader((tmp_path / "out" / "robustness.csv").open())}
    assert float(rows["clean"]["macro_f1"]) == pytest.approx(trimmed.mean("clean", "f1"))  # clips of 1 s or less
    assert float(rows["offset-3s"]["macro_f1"]) < trimmed.mean("offset-3s", "f1") - 0.3
