"""Advice before an attempt: expected test macro-F1 with a 95 % interval and the chance to beat the last attempt."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tune_digits import ledger as led
from tune_digits.advice import VAL_PREDICTIONS, percent, speaker
from tune_digits.cli import app
from tune_digits.cli.render import advice_cells

runner = CliRunner()
EXPECTED = re.compile(r"expected test macro-F1: (\d\.\d{4}) \(95% interval (\d\.\d{4}) to (\d\.\d{4}); bootstrap over")


def _submit(runs: Path, subs: Path, *args: str):
    argv = ["submit", "--runs", str(runs), "--submissions", str(subs), "--wandb", "disabled", *args]
    return runner.invoke(app, argv)


def test_runs_save_their_validation_predictions(contest_runs: Path) -> None:
    with (contest_runs / "b" / VAL_PREDICTIONS).open() as fh:
        rows = list(csv.DictReader(fh))
    metrics = json.loads((contest_runs / "b" / "metrics.json").read_text())
    split = json.loads((contest_runs / "b" / "split.json").read_text())
    assert sorted(r["file"] for r in rows) == sorted(split["val"])
    right = sum(r["label"] == r["predicted"] for r in rows)
    assert right / len(rows) == pytest.approx(metrics["val_accuracy"])


def test_dry_run_and_submit_give_the_expected_f1_and_the_chance_to_beat(
    contest_runs: Path, tmp_path: Path, tmp_cache: Path
) -> None:
    subs = tmp_path / "subs"
    dry = _submit(contest_runs / "a", subs, "--attempt", "1", "--dry-run")
    assert dry.exit_code == 0, dry.output
    point, low, high = map(float, EXPECTED.search(dry.output).groups())
    val_f1 = json.loads((contest_runs / "a" / "metrics.json").read_text())["val_f1"]
    assert point == pytest.approx(val_f1, abs=1e-4) and low <= point <= high
    assert "probability the pick beats" not in dry.output
    assert not any(tmp_cache.iterdir())  # advice reads saved predictions: nothing was scored
    assert _submit(contest_runs / "a", subs, "--attempt", "1").exit_code == 0
    assert (subs / "attempt-1" / VAL_PREDICTIONS).is_file()
    second = _submit(contest_runs / "b", subs, "--attempt", "2", "--dry-run")
    chance = re.search(
        r"probability the pick beats attempt 1: ([<>]?\d+)% \(paired bootstrap over (\d+) shared", second.output
    )
    assert chance, second.output
    assert _submit(contest_runs / "b", subs, "--attempt", "2").exit_code == 0
    first, entry = led.read_ledger(subs)
    assert "p_beats_previous" not in first and first["expected_test_f1"]["point"] == pytest.approx(val_f1)
    p = entry["p_beats_previous"]["p"]
    assert f"{percent(p)}" == f"{chance[1]}%" and entry["p_beats_previous"]["attempt"] == 1
    files = {r["file"] for r in csv.DictReader((subs / "attempt-2" / VAL_PREDICTIONS).open())}
    assert entry["p_beats_previous"]["clips"] == int(chance[2]) == len(files)
    est, n_speakers = entry["expected_test_f1"], len({speaker(f) for f in files})
    assert (est["unit"], est["units"]) == (("speakers", n_speakers) if n_speakers >= 5 else ("clips", len(files)))
    cells = advice_cells(entry)
    assert cells == [f"{est['low']:.3f}-{est['high']:.3f}", f"{percent(p)} vs 1"]
    assert runner.invoke(app, ["submissions", "--submissions", str(subs)]).exit_code == 0


def test_percent_never_rounds_to_certainty() -> None:
    assert [percent(p) for p in (0.0, 0.004, 0.5, 0.834, 0.996, 1.0)] == ["<1%", "<1%", "50%", "83%", ">99%", ">99%"]


def test_a_run_without_saved_validation_predictions(contest_runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    """A folder without val_predictions.csv (a search trial, an older run) is scored on validation for the advice."""
    runs, subs = tmp_path / "runs", tmp_path / "subs"
    shutil.copytree(contest_runs / "b", runs / "old")
    saved = (runs / "old" / VAL_PREDICTIONS).read_text()
    (runs / "old" / VAL_PREDICTIONS).unlink()
    dry = _submit(runs, subs, "--attempt", "1", "--dry-run")
    assert dry.exit_code == 0 and "not available" not in dry.output, dry.output
    found = EXPECTED.search(dry.output)
    val_f1 = json.loads((runs / "old" / "metrics.json").read_text())["val_f1"]
    assert found and abs(float(found.group(1)) - val_f1) < 1e-3, (dry.output, val_f1, saved[:80])
    assert not (runs / "old" / VAL_PREDICTIONS).exists()  # a dry run writes nothing
    done = _submit(runs, subs, "--attempt", "1")
    assert done.exit_code == 0, done.output
    assert EXPECTED.search(done.output) and "expected_test_f1" in led.read_ledger(subs)[0]
