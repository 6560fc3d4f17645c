"""A damaged best run is skipped with one warning line; the next best by validation is submitted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from tune_digits import candidates as cand
from tune_digits import ledger as led
from tune_digits.cli import app

runner = CliRunner()


def _runs_with_a_broken_best(contest_runs: Path, tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(contest_runs / "a", root / "a")
    shutil.copytree(contest_runs / "b", root / "broken-best")
    (root / "broken-best" / "model.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    return root


def test_an_unloadable_best_run_is_skipped_with_one_warning(
    contest_runs: Path, tmp_path: Path, tmp_cache: Path
) -> None:
    runs, subs = _runs_with_a_broken_best(contest_runs, tmp_path), tmp_path / "subs"
    argv = ["submit", "--attempt", "1", "--runs", str(runs), "--submissions", str(subs), "--wandb", "disabled"]
    dry = runner.invoke(app, [*argv, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    warnings = [line for line in dry.output.splitlines() if line.startswith("warning: skipped broken-best")]
    assert len(warnings) == 1 and "(#1 by val F1" in warnings[0] and "cannot be loaded" in warnings[0]
    assert "would submit a as attempt 1" in dry.output
    real = runner.invoke(app, argv)
    assert real.exit_code == 0, real.output
    assert "warning: skipped broken-best" in real.output
    assert led.read_ledger(subs)[0]["source_run"] == str((runs / "a").resolve())


def test_no_loadable_run_is_one_line(contest_runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    runs = _runs_with_a_broken_best(contest_runs, tmp_path)
    (runs / "a" / "model.pt").write_bytes(b"")
    argv = ["submit", "--attempt", "1", "--runs", str(runs), "--submissions", str(tmp_path / "subs"), "--dry-run"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert "none of the 2 runs on split" in result.output and "has a model.pt that loads" in result.output


def test_a_val_f1_outside_0_1_is_not_a_candidate(contest_runs: Path, tmp_path: Path) -> None:
    runs = _runs_with_a_broken_best(contest_runs, tmp_path)
    metrics = runs / "a" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "val_f1": 7.5}))
    found, excluded = cand.find_candidates(runs)
    assert [c.name for c in found] == ["broken-best"]
    assert excluded == ["a: metrics.json val_f1 7.5 is outside [0, 1] (damaged)"]
