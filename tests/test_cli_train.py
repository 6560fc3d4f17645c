"""``tune-digits train`` and ``tune-digits data prepare`` through the typer app: the run folder and the errors."""

from __future__ import annotations

import csv
import glob
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import wandb_files  # tests/wandb_files.py
from typer.testing import CliRunner

import tune_digits.run as run_mod
from tune_digits.checkpoint import load_checkpoint
from tune_digits.cli import app
from tune_digits.config import load_config
from tune_digits.models import create_model
from tune_digits.train import out_of_memory

RATE = 8000
runner = CliRunner()


def make_corpus(root: Path, speakers: int = 5) -> Path:
    """One noisy tone per (speaker, digit): 50 recordings."""
    rng = np.random.default_rng(2)
    t = np.arange(int(0.4 * RATE)) / RATE
    for s in range(speakers):
        for digit in range(10):
            wave = 0.3 * np.sin(2 * np.pi * (250 + 170 * digit + 10 * s) * t) * np.hanning(len(t))
            wave += 0.02 * rng.standard_normal(len(t))
            sf.write(root / f"{digit}_s{s}_0.wav", wave.astype(np.float32), RATE, subtype="PCM_16")
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    return make_corpus(root)


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def train_args(corpus: Path, out: Path, *extra: str) -> list[str | Path]:
    return [
        "train",
        "--data",
        corpus,
        "--epochs",
        "1",
        "--out",
        out,
        "--wandb",
        "disabled",
        "--set",
        "train.threads=1",
        *extra,
    ]


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_train_writes_the_run_folder(corpus: Path, tmp_path: Path, tmp_cache: Path) -> None:
    out = tmp_path / "runs" / "x"
    old_umask = os.umask(0o022)
    try:
        result = invoke(*train_args(corpus, out))
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    assert f"run folder: {out}" in result.stdout
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "metrics.json", "model.pt", "history.csv", "split.json", "predictions.csv"} <= names
    assert not [p for p in out.parent.iterdir() if ".partial" in p.name]
    # readable like any folder the user makes, not private like a temporary one
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "model.pt").stat().st_mode) == 0o644

    cfg = load_config(out / "config.yaml")
    assert cfg.data.root == str(corpus.resolve()) and cfg.train.epochs == 1 and cfg.data.split == "speakers"

    split = json.loads((out / "split.json").read_text())
    assert set(split) >= {"train", "val", "test"}
    every = split["train"] + split["val"] + split["test"]
    assert len(every) == len(set(every)) == 50
    n_test = len(split["test"])

    m = json.loads((out / "metrics.json").read_text())
    for key in ("val_f1", "test_f1", "test_accuracy"):
        assert 0.0 <= m[key] <= 1.0
    assert m["best_epoch"] == 1
    assert len(m["per_class_f1"]) == 10
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == n_test
    assert m["test_accuracy"] == pytest.approx(np.trace(cm) / n_test)

    payload = torch.load(out / "model.pt", weights_only=True)
    assert load_checkpoint(out / "model.pt")["metrics"]["test_f1"] == m["test_f1"]
    assert payload["config"]["train.epochs"] == 1
    model = create_model("lenet5", tuple(m["input_shape"]), 10)
    model.load_state_dict(payload["state_dict"])

    with (out / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and float(rows[0]["val_f1"]) == pytest.approx(m["val_f1"])

    with (out / "predictions.csv").open() as fh:
        preds = list(csv.DictReader(fh))
    assert sorted(p["file"] for p in preds) == sorted(split["test"])
    assert all(p["label"] == p["file"].split("_")[0] for p in preds)
    correct = sum(p["label"] == p["predicted"] for p in preds)
    assert correct == np.trace(cm)

    # the saved split is reused exactly
    again = tmp_path / "runs" / "y"
    result = invoke(*train_args(corpus, again, "--split", str(out / "split.json")))
    assert result.exit_code == 0, result.output
    assert json.loads((again / "split.json").read_text())["test"] == split["test"]


def test_existing_out_is_refused_untouched(corpus: Path, tmp_path: Path, tmp_cache: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = one_line_error(invoke(*train_args(corpus, out)))
    assert "already exists" in line and str(out) in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert list(tmp_cache.iterdir()) == []  # refused before any work


def test_empty_existing_out_is_used(corpus: Path, tmp_path: Path, tmp_cache: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert invoke(*train_args(corpus, out)).exit_code == 0
    assert (out / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "train.lrr=0.1"], "unknown config key 'train.lrr'; did you mean train.lr"),
        (["--set", "foo"], "expected key=value"),
        (["--set", "train.lr=-1"], "train.lr: must be in (0, 10]"),
        (["--split", "becker:9"], "becker:0 to becker:4"),
        (["--wandb", "sometimes"], "--wandb 'sometimes'"),
    ],
)
def test_bad_settings_are_one_line_errors(
    extra: list[str], message: str, corpus: Path, tmp_path: Path, tmp_cache: Path
) -> None:
    out = tmp_path / "out"
    line = one_line_error(invoke(*train_args(corpus, out, *extra)))
    assert message in line
    assert not out.exists()
    if extra[0] == "--wandb":
        assert list(tmp_cache.iterdir()) == []  # checked before the feature cache is built


def test_bad_config_file_line(corpus: Path, tmp_path: Path, tmp_cache: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1\n")
    line = one_line_error(invoke(*train_args(corpus, tmp_path / "o", "--config", bad)))
    assert str(bad) in line and "line" in line


def test_missing_data_folder(tmp_path: Path, tmp_cache: Path) -> None:
    line = one_line_error(invoke(*train_args(tmp_path / "nope", tmp_path / "out")))
    assert "does not exist" in line and "nope" in line


def test_diverging_training_is_a_one_line_error(corpus: Path, tmp_path: Path, tmp_cache: Path) -> None:
    out = tmp_path / "out"
    extra = [
        "--epochs",
        "30",
        "--set",
        "train.lr=10",
        "--set",
        "train.optimizer=sgd",
        "--set",
        "train.schedule=constant",
    ]
    line = one_line_error(invoke(*train_args(corpus, out, *extra)))
    assert "training loss became" in line and "lower train.lr" in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_out_of_memory_is_a_one_line_error(corpus: Path, tmp_path: Path, tmp_cache: Path) -> None:
    """A real allocation failure (a 2**40-unit fc layer) names the fix; nothing is left behind."""
    out = tmp_path / "out"
    line = one_line_error(
        invoke(*train_args(corpus, out, "--set", f"model.fc=[{2**40},16]", "--set", "train.batch_size=8"))
    )
    assert line.startswith("error: out of memory on cpu"), line
    assert "lower train.batch_size (now 8)" in line and "--max-concurrent" in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_out_of_memory_recognises_the_allocators_messages() -> None:
    cfg = load_config(None, ["train.device=cpu"])
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")
    assert "Tried to allocate 2.00 GiB" in str(out_of_memory(cuda, cfg))
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 9 bytes"), cfg)
    assert out_of_memory(MemoryError(), cfg) is not None
    assert out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), cfg) is None
    assert out_of_memory(ValueError("out of memory"), cfg) is None  # only allocator errors
    assert len(str(out_of_memory(RuntimeError("out of memory " + "x" * 2000), cfg))) < 400


def test_interrupted_run_leaves_nothing(
    corpus: Path, tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "fit", interrupted)
    parent = tmp_path / "runs"
    parent.mkdir()
    result = invoke(*train_args(corpus, parent / "x"))
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "Traceback" not in result.output
    assert list(parent.iterdir()) == []


def test_data_prepare_prints_counts(corpus: Path, tmp_cache: Path) -> None:
    result = invoke("data", "prepare", "--data", corpus, "--split", "speakers")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "50 recordings" in text
    counts = [
        int(n) for n in text.split("split: train ")[1].split(" recordings")[0].replace(",", "").split() if n.isdigit()
    ]
    assert sum(counts) == 50 and all(counts)  # train, val and test, together all 50
    assert "(50, 1, 40, 63)" in text
    assert len(list(tmp_cache.iterdir())) == 1
    assert one_line_error(invoke("data", "prepare", "--data", corpus / "missing"))


def test_data_prepare_reports_unreadable(corpus: Path, tmp_cache: Path) -> None:
    (corpus / "9_s9_0.wav").write_text("junk")
    with pytest.warns(UserWarning, match="skipped unreadable recording .*9_s9_0.wav"):
        result = invoke("data", "prepare", "--data", corpus, "--split", "speakers")
    assert result.exit_code == 0, result.output
    assert "1 unreadable recordings skipped (first: 9_s9_0.wav)" in result.stderr
    strict = invoke("data", "prepare", "--data", corpus, "--split", "speakers", "--strict")
    assert "9_s9_0.wav" in one_line_error(strict)


@pytest.mark.slow
def test_wandb_offline_run(corpus: Path, tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "wb"
    args = train_args(corpus, out)
    args[args.index("--epochs") + 1] = "2"
    args[args.index("--wandb") + 1] = "offline"
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    runs = glob.glob(str(out / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    local = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in local] == [1, 2]
    run_files = list(Path(runs[0]).glob("run-*.wandb"))
    assert len(run_files) == 1
    logged = [h for h in wandb_files.history(run_files[0]) if "epoch" in h]
    assert [int(h["epoch"]) for h in logged] == [1, 2]
    for h, r in zip(logged, local, strict=True):
        assert float(h["val_f1"]) == pytest.approx(r["val_f1"])
        assert float(h["train_loss"]) == pytest.approx(r["train_loss"])
    assert (out / "metrics.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
