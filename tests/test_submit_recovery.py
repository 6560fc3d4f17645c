"""A submit killed at each step of its commit: the next ``submit`` or ``submissions`` finishes or rolls it back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tune_digits import ledger as led
from tune_digits import submit as sub
from tune_digits.cli import app

runner = CliRunner()


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup either."""


def _opts(runs: Path, subs: Path, attempt: int = 1) -> sub.SubmitOptions:
    return sub.SubmitOptions(attempt=attempt, runs=runs, submissions=subs, wandb="disabled")


def _kill_at(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Kill the submit at ``step``: "commit" (the ledger replace) or "place" (the rename of the staged folder)."""
    real_replace, real_rename = os.replace, os.rename

    def replace(src: str | Path, dst: str | Path) -> None:
        if step == "commit" and Path(dst).name == led.LEDGER:
            raise Killed
        real_replace(src, dst)

    def rename(src: str | Path, dst: str | Path) -> None:
        if step == "place" and Path(dst).name.startswith("attempt-"):
            raise Killed
        real_rename(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(sub, "discard", lambda *_paths: None)  # a killed process cleans nothing up


def _listing(subs: Path):
    return runner.invoke(app, ["submissions", "--submissions", str(subs)])


def test_killed_before_the_ledger_commit_rolls_back(contest_runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    subs = tmp_path / "subs"
    with pytest.MonkeyPatch.context() as mp:
        _kill_at(mp, "commit")
        with pytest.raises(Killed):
            sub.submit(_opts(contest_runs, subs))
    assert len(list(subs.glob(".attempt-1.tmp-*"))) == 1 and list(subs.glob(".ledger.jsonl-*"))
    listed = _listing(subs)
    assert listed.exit_code == 0, listed.output
    assert "recovered: removed 2 unfinished file(s) of a stopped submit" in listed.output
    assert "attempts left: 3 (1, 2, 3)" in listed.output
    assert sorted(p.name for p in subs.iterdir()) == [".lock"]
    lines: list[str] = []
    sub.submit(_opts(contest_runs, subs), lines.append)
    assert [e["attempt"] for e in led.read_ledger(subs)] == [1] and (subs / "attempt-1" / "manifest.json").is_file()


@pytest.mark.parametrize("next_command", ["submit", "submissions"])
def test_killed_after_the_ledger_commit_finishes_the_attempt(
    contest_runs: Path, tmp_path: Path, tmp_cache: Path, next_command: str
) -> None:
    subs = tmp_path / "subs"
    with pytest.MonkeyPatch.context() as mp:
        _kill_at(mp, "place")
        with pytest.raises(Killed):
            sub.submit(_opts(contest_runs, subs))
    assert [e["attempt"] for e in led.read_ledger(subs)] == [1] and not (subs / "attempt-1").exists()
    if next_command == "submit":
        lines: list[str] = []
        sub.submit(_opts(contest_runs / "a", subs, attempt=2), lines.append)
        assert any(
            line.startswith("recovered: attempt 1 was recorded but its folder was still staged") for line in lines
        )
    else:
        listed = _listing(subs)
        assert listed.exit_code == 0, listed.output
        assert "recovered: attempt 1 was recorded but its folder was still staged" in listed.output
    assert not list(subs.glob(".attempt-*")) and led.check_attempt(subs / "attempt-1", led.read_ledger(subs)[0]) == []
    again = runner.invoke(app, ["submit", "--attempt", "1", "--runs", str(contest_runs), "--submissions", str(subs)])
    assert again.exit_code == 2 and "attempt 1 was already used" in again.output


def test_an_attempt_folder_without_a_ledger_line_is_set_aside(
    contest_runs: Path, tmp_path: Path, tmp_cache: Path
) -> None:
    """What the old order (folder renamed first, then the ledger) left when killed in between."""
    subs = tmp_path / "subs"
    sub.submit(_opts(contest_runs, subs))
    (subs / led.LEDGER).unlink()
    before = sorted(p.name for p in (subs / "attempt-1").iterdir())
    dry = runner.invoke(
        app, ["submit", "--attempt", "1", "--runs", str(contest_runs), "--submissions", str(subs), "--dry-run"]
    )
    assert dry.exit_code == 0 and "attempt-1 has no ledger line; submit moves it aside" in dry.output
    lines: list[str] = []
    sub.submit(_opts(contest_runs, subs), lines.append)
    assert lines[0].startswith("recovered: attempt-1 has no ledger line") and "attempt 1 is free" in lines[0]
    aside = list(subs.glob("unrecorded-attempt-1-*"))
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == before
    assert [e["attempt"] for e in led.read_ledger(subs)] == [1]
    assert _listing(subs).exit_code == 0


KILL_ON_PLACE = """
import os, signal, sys
from pathlib import Path
from tune_digits import submit as sub
real = os.rename
def rename(src, dst):
    if Path(dst).name.startswith("attempt-"):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.rename = rename
sub.submit(sub.SubmitOptions(attempt=1, runs=Path(sys.argv[1]), submissions=Path(sys.argv[2]), wandb="disabled"))
"""


def test_a_real_sigkill_between_commit_and_rename(contest_runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    subs = tmp_path / "subs"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILL_ON_PLACE, str(contest_runs), str(subs)], env=env, timeout=300)
    assert done.returncode == -signal.SIGKILL
    assert json.loads((subs / led.LEDGER).read_text())["attempt"] == 1 and not (subs / "attempt-1").exists()
    listed = _listing(subs)
    assert listed.exit_code == 0, listed.output
    assert "recovered: attempt 1 was recorded" in listed.output and "attempts left: 2 (2, 3)" in listed.output
    assert (subs / "attempt-1" / "model.pt").is_file()
