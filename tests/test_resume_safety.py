"""Limits that keep a search or a killed run from filling memory or disk."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tune_digits.cli import app
from tune_digits.errors import ConfigError
from tune_digits.run import OWNER_LOCK, clean_partials
from tune_digits.space import MAX_SAMPLES, SearchSettings

runner = CliRunner()
SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "demo.yaml"


def test_num_samples_is_capped_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=f"<= {MAX_SAMPLES}.*memory"):
        SearchSettings(num_samples=10**12)
    assert SearchSettings(num_samples=MAX_SAMPLES).num_samples == MAX_SAMPLES


def test_search_refuses_a_huge_num_samples_in_one_line(tmp_path: Path) -> None:
    args = ["search", "--space", str(SPACE), "--storage", str(tmp_path / "runs"), "--num-samples", str(10**12)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "search.num_samples" in lines[0] and str(MAX_SAMPLES) in lines[0], result.output
    assert not (tmp_path / "runs").exists()


def _partial(parent: Path, name: str, age: float) -> Path:
    folder = parent / f".{name}.partial-x1y2"
    folder.mkdir(parents=True)
    (folder / "history.jsonl").write_text("{}\n", encoding="utf-8")
    stamp = time.time() - age
    for path in (folder / "history.jsonl", folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_partial_folders_of_killed_runs_are_removed_and_said(tmp_path: Path) -> None:
    old = _partial(tmp_path, "run-a", age=3600)
    live = _partial(tmp_path, "run-b", age=-5)  # written after this process started: another run in progress
    keep = tmp_path / "run-c"
    keep.mkdir()
    with pytest.warns(UserWarning, match=r"removed 1 unfinished run folder"):
        assert clean_partials(tmp_path) == 1
    assert not old.exists() and live.is_dir() and keep.is_dir()


def test_a_running_trains_folder_is_kept_however_long_its_epoch(tmp_path: Path) -> None:
    """A run that started before this process and has not written for an hour still holds its lock."""
    live = _partial(tmp_path, "slow-epochs", age=3600)
    dead = _partial(tmp_path, "killed", age=3600)
    (dead / OWNER_LOCK).write_text("", encoding="utf-8")  # its owner died: nobody holds the lock
    owner = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(live / OWNER_LOCK)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "locked"
        with pytest.warns(UserWarning, match=r"removed 1 unfinished run folder"):
            assert clean_partials(tmp_path) == 1
        assert live.is_dir() and not dead.exists()
    finally:
        owner.kill()
        owner.wait()
    with pytest.warns(UserWarning, match=r"removed 1 unfinished run folder"):  # the owner is gone now
        assert clean_partials(tmp_path) == 1
    assert not live.exists()


HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "w")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(600)
"""


def ctrl_c_after_first_epoch(argv: list[str], env: dict[str, str], folder: Path, err_path: Path) -> tuple[int, str]:
    """Start ``argv`` in its own process group, SIGINT the group (what Ctrl-C in a terminal does) once a trial
    has logged an epoch under ``folder``; returns the exit code and stderr."""
    with err_path.open("wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        deadline = time.monotonic() + 300
        while not any(h.stat().st_size for h in folder.glob("trials/*/history.jsonl")):
            assert proc.poll() is None, err_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            rc = proc.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return rc, err_path.read_text(encoding="utf-8", errors="replace")


@pytest.mark.slow
def test_ctrl_c_during_search_exits_130_with_the_resume_line_and_no_best_yaml(
    tmp_path: Path, feature_cache: Path
) -> None:
    space = tmp_path / "space.yaml"
    fixed = {"model.name": "lenet5", "data.split": "speakers", "model.channels": [4, 8], "model.fc": [32, 16]}
    search = {"num_samples": 2, "max_epochs": 40, "grace_period": 40, "seed": 0}
    dims = {"model.dropout": {"type": "quantized", "low": 0.0, "high": 0.2, "q": 0.1}}
    space.write_text(yaml.safe_dump({"fixed": fixed, "space": dims, "search": search}), encoding="utf-8")
    env = {**os.environ, "TUNE_DIGITS_CACHE": str(feature_cache), "WANDB_MODE": "disabled"}
    argv = [sys.executable, "-m", "tune_digits.cli", "search", "--space", str(space)]
    argv += ["--storage", str(tmp_path / "runs"), "--name", "s", "--wandb", "disabled", "--max-concurrent", "1"]
    folder = tmp_path / "runs" / "s"
    rc, stderr = ctrl_c_after_first_epoch(argv, env, folder, tmp_path / "err.txt")
    assert rc == 130, stderr[-2000:]
    assert "--name s --resume" in stderr and "Tuner.restore" not in stderr, stderr[-2000:]
    # the trial that was running is listed as interrupted, with the epochs it got through
    assert re.search(r"^#1 \w+ +[0-9.]+ +[1-9]\d* +interrupted$", stderr, re.MULTILINE), stderr[-2000:]
    assert not (folder / "best.yaml").exists() and not (folder / "results.csv").exists()


@pytest.mark.slow
def test_ctrl_c_during_final_eight_exits_130_lists_interrupted_trainings_and_no_summary(
    tmp_path: Path, feature_cache: Path
) -> None:
    from tune_digits.config import load_config, save_config

    params = tmp_path / "a.yaml"
    lenet = ["model.name=lenet5", "model.channels=[4,8]", "model.fc=[32,16]", "train.patience=0"]
    save_config(load_config(None, [*lenet, "data.split=speakers"]), params)
    env = {**os.environ, "TUNE_DIGITS_CACHE": str(feature_cache), "WANDB_MODE": "disabled"}
    argv = [sys.executable, "-m", "tune_digits.cli", "final-eight", "--model-a", str(params), "--model-b", str(params)]
    argv += ["--epochs", "40", "--storage", str(tmp_path / "runs"), "--name", "e", "--wandb", "disabled"]
    folder = tmp_path / "runs" / "e"
    rc, stderr = ctrl_c_after_first_epoch(argv, env, folder, tmp_path / "err.txt")
    assert rc == 130, stderr[-2000:]
    assert "--name e --resume" in stderr and "Tuner.restore" not in stderr, stderr[-2000:]
    assert re.search(r"^[AB]-(raw|bilateral)-(no)?aug-s0 +[0-9.]+ +[1-9]\d* +interrupted$", stderr, re.MULTILINE)
    assert not (folder / "summary.csv").exists() and not (folder / "report.html").exists()
