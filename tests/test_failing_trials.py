"""Failing trials: retried, marked ERROR with a one-line reason, and the search goes on (a real Ray search)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from spaces import write_space  # tests/spaces.py
from typer.testing import CliRunner

from tune_digits.cli import app
from tune_digits.config import load_config
from tune_digits.search import count_failures, error_reason

runner = CliRunner()
HUGE = 2**40  # fc units: a petabyte-sized weight, which no allocator grants


def test_error_reason_is_one_readable_line() -> None:
    class Wrapped(Exception):  # what Ray hands back: the worker's name first, the real exception as cause
        cause = ValueError("model.channels: must be two positive ints,\ngot (0,)")

    raw = "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1, ip=1.2.3.4)\n  File 'x.py', line 3\nKeyError: 'lr'\n"
    assert error_reason(Wrapped("ray::ImplicitFunc.train() (pid=1)")) == (
        "ValueError: model.channels: must be two positive ints, got (0,)"
    )
    assert error_reason(raw) == "KeyError: 'lr'"
    assert error_reason(RuntimeError("disk\nfull")) == "RuntimeError: disk full"
    assert error_reason(None) == "" and error_reason("") == ""
    assert len(error_reason(RuntimeError("x" * 1000))) == 300


def test_count_failures_reads_rays_error_file(tmp_path: Path) -> None:
    assert count_failures(tmp_path) == 0
    (tmp_path / "error.txt").write_text("Failure # 1 (occurred at t)\nboom\nFailure # 2 (occurred at t)\nboom\n")
    assert count_failures(tmp_path) == 2


@pytest.mark.slow
def test_failing_trials_are_retried_marked_and_explained(
    tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A diverging learning rate (NaN loss), a model that cannot be built and one that does not fit in
    memory (a real allocation failure: a 2**40-unit fc layer): ERROR rows with the reason.

    Each failing trial is tried 1 + search.max_failures times; the search goes on and the good trial wins.
    """
    space = write_space(
        tmp_path / "space.yaml",
        {
            "train.lr": {"type": "choice", "values": [10.0, 0.003]},
            "model.name": {"type": "choice", "values": ["lenet5", "nosuchnet"]},
            "model.fc": {"type": "choice", "values": [[32, 16], [HUGE, 16]]},
        },
        # lr * weight_decay = 10 with SGD: the weights flip sign and grow tenfold per step -> inf -> NaN loss
        {"train.optimizer": "sgd", "train.schedule": "constant", "train.weight_decay": 1.0, "train.batch_size": 16}
        | {"augment.enabled": False},
        # the four trials are these points, one of each case, whatever the sampler would draw
        start=[
            {"train.lr": 0.003, "model.name": "lenet5", "model.fc": [32, 16]},
            {"train.lr": 10.0, "model.name": "lenet5", "model.fc": [32, 16]},
            {"train.lr": 0.003, "model.name": "nosuchnet", "model.fc": [32, 16]},
            {"train.lr": 0.003, "model.name": "lenet5", "model.fc": [HUGE, 16]},
        ],
        num_samples=4,
        max_epochs=2,
        grace_period=2,
        max_failures=1,
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    storage = tmp_path / "runs"
    args = ["search", "--space", space, "--storage", storage, "--name", "f", "--wandb", "disabled"]
    result = runner.invoke(app, [str(a) for a in [*args, "--max-concurrent", "2"]])
    assert result.exit_code == 0, result.output

    folder = storage / "f"
    table = pd.read_csv(folder / "results.csv", keep_default_na=False)
    assert len(table) == 4 and table["trial_id"].is_unique
    kinds = set()
    for _, row in table.iterrows():
        error = str(row["error"])
        assert "\n" not in error and "\x1b" not in error and "ray::" not in error and "pid=" not in error
        if row["model.name"] == "nosuchnet":
            kinds.add("exception")
            assert row["status"] == "ERROR" and error.startswith("ConfigError: unknown model 'nosuchnet'")
        elif str(HUGE) in str(row["model.fc"]):
            kinds.add("oom")
            assert row["status"] == "ERROR" and error.startswith("OutOfMemory: out of memory on cpu"), error
            assert "lower train.batch_size" in error
        elif float(row["train.lr"]) == 10.0:
            kinds.add("nan")
            assert row["status"] == "ERROR" and error.startswith("TrainingDiverged: training loss became nan")
        else:
            kinds.add("ok")
            assert row["status"] == "TERMINATED" and error == "" and row["failures"] == 0
            assert row["checkpoint"] == f"trials/{row['trial_id']}/model.pt"
            assert math.isfinite(float(row["val_f1"])) and row["epochs_run"] == 2
            continue
        assert row["failures"] == 2, row.to_dict()  # the first try and one retry (search.max_failures: 1)
        assert row["checkpoint"] == "" and row["epochs_run"] == 0
    assert kinds == {"exception", "nan", "oom", "ok"}, kinds
    assert "3 trials failed (see the error column" in result.output
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "Failed trials" in page and "unknown model" in page and "training loss became nan" in page
    assert "out of memory on cpu" in page
    best = load_config(folder / "best.yaml")
    assert best.model.name == "lenet5" and best.train.lr == pytest.approx(0.003)
    assert list(work.iterdir()) == []  # nothing written outside the search folder (and the feature cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["space.yaml", "work", "runs", tmp_cache.name])
