"""Limits that keep a search or a killed run from filling memory or disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tune_digits.cli import app
from tune_digits.errors import ConfigError
from tune_digits.run import clean_partials
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
