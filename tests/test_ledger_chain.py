"""The ledger's hash chain: edits of a line, removed lines and lines that disagree with their attempt are found."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tune_digits import ledger as led
from tune_digits import submit as sub
from tune_digits.cli import app
from tune_digits.errors import UserError

runner = CliRunner()


@pytest.fixture
def two_attempts(contest_runs: Path, tmp_path: Path, tmp_cache: Path) -> Path:
    subs = tmp_path / "subs"
    sub.submit(sub.SubmitOptions(attempt=1, runs=contest_runs / "a", submissions=subs, wandb="disabled"))
    sub.submit(sub.SubmitOptions(attempt=2, runs=contest_runs / "b", submissions=subs, wandb="disabled"))
    return subs


def _lines(subs: Path) -> list[str]:
    return (subs / led.LEDGER).read_text().splitlines()


def _edit(subs: Path, index: int, **changes: object) -> None:
    lines = _lines(subs)
    lines[index] = json.dumps({**json.loads(lines[index]), **changes}, sort_keys=True)
    (subs / led.LEDGER).write_text("\n".join(lines) + "\n")


def _listing(subs: Path):
    return runner.invoke(app, ["submissions", "--submissions", str(subs)])


def test_lines_are_chained_and_name_their_metrics(two_attempts: Path) -> None:
    lines = _lines(two_attempts)
    first, second = (json.loads(line) for line in lines)
    assert first["prev_sha256"] is None
    assert second["prev_sha256"] == hashlib.sha256(lines[0].encode()).hexdigest()
    metrics = two_attempts / "attempt-2" / "metrics.json"
    assert second["metrics_sha256"] == hashlib.sha256(metrics.read_bytes()).hexdigest()
    listed = _listing(two_attempts)
    assert listed.exit_code == 0, listed.output
    assert "BROKEN" not in listed.output and "unchained" not in listed.output


def test_an_edited_test_f1_is_found_in_a_middle_and_in_the_last_line(two_attempts: Path) -> None:
    _edit(two_attempts, 0, test_f1=0.99)
    middle = _listing(two_attempts)
    assert middle.exit_code == 1
    assert "ledger line 2 (attempt 2): BROKEN CHAIN" in middle.output
    assert "attempt 1: LEDGER: test_f1 is 0.99 in the ledger but" in middle.output
    with pytest.raises(UserError, match="hash chain is broken"):
        sub.submit(sub.SubmitOptions(attempt=3, runs=two_attempts, submissions=two_attempts, wandb="disabled"))


def test_an_edited_last_line_disagrees_with_its_attempt(two_attempts: Path) -> None:
    real = json.loads(_lines(two_attempts)[1])["test_f1"]
    _edit(two_attempts, 1, test_f1=0.99)
    listed = _listing(two_attempts)
    assert listed.exit_code == 1
    assert f"attempt 2: LEDGER: test_f1 is 0.99 in the ledger but {real} in attempt-2/metrics.json" in listed.output


def test_a_removed_first_line_breaks_the_chain_and_nothing_is_set_aside(two_attempts: Path) -> None:
    (two_attempts / led.LEDGER).write_text(_lines(two_attempts)[1] + "\n")
    listed = _listing(two_attempts)
    assert listed.exit_code == 1
    assert "ledger line 1 (attempt 2): BROKEN CHAIN" in listed.output and "nothing recovered" in listed.output
    assert (two_attempts / "attempt-1").is_dir()


def test_a_legacy_ledger_is_read_and_noted_as_unchained(two_attempts: Path, contest_runs: Path) -> None:
    legacy = []
    for line in _lines(two_attempts):
        entry = json.loads(line)
        entry.pop("prev_sha256"), entry.pop("metrics_sha256")
        legacy.append(json.dumps(entry, sort_keys=True))
    (two_attempts / led.LEDGER).write_text("\n".join(legacy) + "\n")
    listed = _listing(two_attempts)
    assert listed.exit_code == 0, listed.output
    assert "ledger line(s) 1, 2 are unchained" in listed.output
    opts = sub.SubmitOptions(attempt=3, runs=contest_runs / "a", submissions=two_attempts, wandb="disabled")
    opts.allow_same = True
    sub.submit(opts)
    third = json.loads(_lines(two_attempts)[2])
    assert third["prev_sha256"] == hashlib.sha256(legacy[1].encode()).hexdigest()
    again = _listing(two_attempts)
    assert again.exit_code == 0 and "ledger line(s) 1, 2 are unchained" in again.output
