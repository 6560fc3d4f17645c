"""Cross-validation: becker and loso folds, the mean and std, cv.csv/cv.json, and ``train --cv``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tune_digits.cli import app
from tune_digits.config import Config, load_config
from tune_digits.corpus import BECKER_GROUPS
from tune_digits.cv import CVResult, FoldResult, check_split_spec, cross_validate, fold_runs, fold_specs
from tune_digits.errors import UserError
from tune_digits.evaluate import evaluate_runs
from tune_digits.run_folder import read_run
from tune_digits.train import FitResult, Prepared, fit

RATE = 8000
runner = CliRunner()


def make_corpus(root: Path, speakers: list[str]) -> Path:
    """One noisy tone per (speaker, digit)."""
    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.3 * RATE)) / RATE
    for s, name in enumerate(speakers):
        for digit in range(10):
            wave = 0.3 * np.sin(2 * np.pi * (250 + 170 * digit + 10 * s) * t) * np.hanning(len(t))
            wave += 0.02 * rng.standard_normal(len(t))
            sf.write(root / f"{digit}_{name}_0.wav", wave.astype(np.float32), RATE, subtype="PCM_16")
    return root


def quick(root: Path, *extra: str) -> Config:
    return load_config(overrides=[f"data.root={root}", "train.epochs=1", "train.threads=1", "train.device=cpu", *extra])


@pytest.fixture
def five(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "five", ["anna", "bob", "cara", "dan", "eve"])


def test_loso_holds_out_every_speaker_once(five: Path, tmp_path: Path, tmp_cache: Path) -> None:
    seen: list[FoldResult] = []
    out = tmp_path / "cv"
    result = cross_validate(quick(five), "loso", progress=False, out_dir=out, on_fold=seen.append)
    assert [f.fold for f in result.folds] == ["loso:anna", "loso:bob", "loso:cara", "loso:dan", "loso:eve"]
    assert seen == result.folds
    assert [f.test_speakers for f in result.folds] == [[s] for s in ("anna", "bob", "cara", "dan", "eve")]
    for f in result.folds:
        assert len(f.val_speakers) == 1 and f.val_speakers != f.test_speakers
        assert 0.0 <= f.test_f1 <= 1.0 and f.epochs_run == 1 and len(f.per_class_f1) == 10
    test_f1 = [f.test_f1 for f in result.folds]
    s = result.summary()
    assert s["mean_test_f1"] == pytest.approx(np.mean(test_f1)) and s["std_test_f1"] == pytest.approx(np.std(test_f1))

    rows = list(csv.DictReader((out / "cv.csv").open()))
    assert [r["fold"] for r in rows] == [f.fold for f in result.folds] + ["mean", "std"]
    assert float(rows[0]["test_f1"]) == pytest.approx(test_f1[0]) and rows[0]["test_speakers"] == "anna"
    assert float(rows[-2]["test_f1"]) == pytest.approx(s["mean_test_f1"])
    saved = json.loads((out / "cv.json").read_text())
    assert saved["protocol"] == "loso" and len(saved["folds"]) == 5
    assert saved["mean_test_f1"] == pytest.approx(s["mean_test_f1"]) and saved["config"]["data.split"] == "cv:loso"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    # every fold keeps its run folder, which the robustness table scores on the fold's own test speaker
    folds = fold_runs(out)
    assert [p.name for p in folds] == ["loso-anna", "loso-bob", "loso-cara", "loso-dan", "loso-eve"]
    for fold, run in zip(result.folds, folds, strict=True):
        kept = read_run(run)
        assert kept.meta["kind"] == "cv-fold" and kept.meta["split_spec"] == fold.fold
        assert json.loads((run / "metrics.json").read_text())["test_f1"] == pytest.approx(fold.test_f1)
    noise = tmp_path / "noise"
    noise.mkdir()
    hum = 0.1 * np.random.default_rng(0).standard_normal(RATE * 8)
    sf.write(noise / "hum.wav", hum.astype(np.float32), RATE, subtype="FLOAT")
    table = evaluate_runs([out], [], noise)
    assert table.runs == [str(p) for p in folds]
    clean = table.scores["clean"]
    assert [c.clips for c in clean] == [10] * 5  # each fold: its held-out speaker's ten clips
    assert table.mean("clean", "f1") == pytest.approx(np.mean(test_f1), abs=0.02)
    assert fold_runs(tmp_path / "five") == [tmp_path / "five"]  # any other folder stands for itself


def test_becker_uses_the_five_published_folds(tmp_path: Path, tmp_cache: Path) -> None:
    root = make_corpus(tmp_path / "am", [f"{n:02d}" for n in range(1, 11)])
    calls: list[str] = []

    def spy(cfg: Config, data: Prepared) -> FitResult:
        calls.append(cfg.data.split)
        return fit(cfg, data=data)

    result = cross_validate(quick(root), "becker", progress=False, fit_fn=spy)
    assert calls == [f"becker:{k}" for k in range(5)]
    for k, fold in enumerate(result.folds):
        expected = sorted(f"{n:02d}" for n in BECKER_GROUPS[(k + 1) % 5] if n <= 10)
        assert fold.test_speakers == expected
        assert fold.val_speakers == sorted(f"{n:02d}" for n in BECKER_GROUPS[k] if n <= 10)


def test_fold_specs_and_errors(five: Path) -> None:
    assert fold_specs(quick(five), "becker") == [f"becker:{k}" for k in range(5)]
    with pytest.raises(UserError, match="unknown cross-validation protocol"):
        fold_specs(quick(five), "kfold")
    with pytest.raises(UserError, match="--cv loso"):
        check_split_spec("loso")
    with pytest.raises(UserError, match="--cv becker"):
        check_split_spec("becker")
    check_split_spec("loso:anna")  # a full spec passes


def test_summary_of_given_folds() -> None:
    folds = [FoldResult(f"loso:{i}", [str(i)], ["x"], 0.9, v, v, 1, 1, 1.0) for i, v in enumerate((0.8, 0.9, 1.0))]
    s = CVResult("loso", folds).summary()
    assert s["mean_test_f1"] == pytest.approx(0.9) and s["std_test_f1"] == pytest.approx(np.std([0.8, 0.9, 1.0]))
    assert s["train_seconds"] == pytest.approx(3.0)


def _cli(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_cv_prints_folds_and_writes_files(five: Path, tmp_path: Path, tmp_cache: Path) -> None:
    out = tmp_path / "runs" / "cv"
    result = _cli("train", "--data", five, "--cv", "loso", "--epochs", "1", "--out", out, "--set", "train.threads=1")
    assert result.exit_code == 0, result.output
    for speaker in ("anna", "bob", "cara", "dan", "eve"):
        assert f"loso:{speaker}" in result.stdout
    assert "test macro-F1" in result.stdout and "±" in result.stdout and f"cv folder: {out}" in result.stdout
    assert {p.name for p in out.iterdir()} == {"config.yaml", "cv.csv", "cv.json", "folds"}
    assert len(list((out / "folds").glob("loso-*/model.pt"))) == 5
    assert f"tune-digits evaluate --model {out}" in result.stdout
    no_noise = _cli("evaluate", "--model", out)  # the folds were trained without augment.noise_dir
    assert no_noise.exit_code == 2 and "no noise folder: pass --noise DIR" in no_noise.output
    assert load_config(out / "config.yaml").train.epochs == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--split", "loso"], "--cv loso"),
        (["--cv", "loso", "--split", "loso:anna"], "leave out --split"),
        (["--cv", "kfold"], "unknown protocol"),
    ],
)
def test_cli_cv_errors(five: Path, tmp_path: Path, tmp_cache: Path, args: list[str], needle: str) -> None:
    result = _cli("train", "--data", five, "--epochs", "1", "--out", tmp_path / "x", "--wandb", "disabled", *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert not (tmp_path / "x").exists()
