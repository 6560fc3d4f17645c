"""The live view of a search or final-eight, without Ray: counts, lines within 100 columns, interrupts."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from rich.console import Console

from tune_digits.live import Board, capture_ray_logs, ray_log_to, release_ray_logs, shown


class Trial:
    def __init__(self, n: int, **config: object) -> None:
        self.trial_id, self.experiment_tag, self.config = f"a1b2c{n:03d}", f"{n}_x=1", config
        self.status, self.last_result = "PENDING", {}


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=100, force_terminal=terminal, color_system=None), buffer


def _board(console: Console) -> Board:
    keys = ("train.lr", "model.dropout", "train.batch_size", "model.a_very_long_setting_name_for_the_width")
    return Board("search s: 3 trials, up to 2 at once", 3, keys=keys, max_epochs=4, console=console)


def _epochs(board: Board, trial: Trial, f1s: list[float]) -> None:
    for epoch, f1 in enumerate(f1s, 1):
        board.result(trial, {"training_iteration": epoch, "val_f1": f1, "best_val_f1": max(f1s[:epoch])})


def test_counts_stopped_early_and_the_best_so_far_with_its_settings() -> None:
    console, buffer = _console(terminal=False)
    board = _board(console)
    good = Trial(1, **{"train.lr": 0.00312345, "model.dropout": 0.1, "train.batch_size": 32})
    poor = Trial(2, **{"train.lr": 0.9, "model.dropout": 0.2, "train.batch_size": 64})
    _epochs(board, good, [0.5, 0.8, 0.75, 0.83])
    _epochs(board, poor, [0.1])
    board.end(poor, "done")  # ASHA ended it after 1 of 4 epochs
    board.end(good, "done")
    assert board.counts_line() == "2/3 finished (1 done, 1 stopped early, 0 errored), 0 running"
    assert board.best_line().startswith("best val F1 0.8300: #1 a1b2c001 (lr=0.00312 dropout=0.1 batch_size=32")
    assert "#2 a1b2c002 stopped early after 1 epochs, best val F1 0.1000" in buffer.getvalue()
    assert "about" in board.time_line() and "left" in board.time_line()
    assert all(len(line) <= 100 for line in buffer.getvalue().splitlines())


def test_the_live_view_on_a_terminal_stays_within_100_columns(tmp_path: Path) -> None:
    console, buffer = _console(terminal=True)
    board = _board(console)
    trial = Trial(7, **{"train.lr": 0.001, "model.a_very_long_setting_name_for_the_width": "x" * 80})
    with shown(board, tmp_path / "a-log-file-with-a-long-name" / ("d" * 80) / "ray.log"):
        _epochs(board, trial, [0.4, 0.6])
        rendered = Console(file=io.StringIO(), width=100, record=True)
        rendered.print(board.render())
        lines = rendered.export_text().splitlines()
    assert len(lines) == 4 and all(len(line) <= 100 for line in lines), lines
    assert "1 running" in lines[1] and lines[2].startswith("best val F1 0.6000: #7 a1b2c007")
    assert ("d" * 80) + "/ray.log" in buffer.getvalue()  # the log's path is printed whole, once


def test_ctrl_c_lists_every_trial_with_running_ones_interrupted(tmp_path: Path) -> None:
    console, buffer = _console(terminal=False)
    board = _board(console)
    finished, running = Trial(1), Trial(2)
    with pytest.raises(KeyboardInterrupt), shown(board, tmp_path / "ray.log"):
        _epochs(board, finished, [0.5, 0.6, 0.7, 0.9])
        board.end(finished, "done")
        _epochs(board, running, [0.3, 0.4])
        raise KeyboardInterrupt
    lines = buffer.getvalue().splitlines()
    assert any(line.startswith("#1 a1b2c001") and line.endswith("  done") for line in lines), lines
    assert any(line.startswith("#2 a1b2c002") and line.split()[-2:] == ["2", "interrupted"] for line in lines)


def test_ray_log_lines_go_to_the_run_folder_not_the_terminal(tmp_path: Path, capsys) -> None:
    ray_logger = logging.getLogger("ray")
    before = list(ray_logger.handlers)
    capture_ray_logs()
    logging.getLogger("ray._private.worker").warning("kept until the folder exists")
    path = ray_log_to(tmp_path / "ray.log")
    logging.getLogger("ray.tune.tune").warning("written at once")
    release_ray_logs()
    text = path.read_text(encoding="utf-8")
    assert "kept until the folder exists" in text and "written at once" in text
    assert "kept until" not in capsys.readouterr().err
    assert ray_logger.handlers == before


def test_only_finished_trials_lose_their_ray_checkpoints(tmp_path: Path) -> None:
    from tune_digits.raydir import experiment_dir, prune_checkpoints

    for trial in ("done1", "open2"):
        (tmp_path / ".ray" / trial / "checkpoint_000003").mkdir(parents=True)
        (tmp_path / ".ray" / trial / "checkpoint_000003" / "state.pt").write_bytes(b"x" * 100)
        (tmp_path / ".ray" / trial / "result.json").write_text("{}", encoding="utf-8")
    prune_checkpoints(tmp_path, {"done1"})
    assert not (tmp_path / ".ray" / "done1" / "checkpoint_000003").exists()
    assert (tmp_path / ".ray" / "done1" / "result.json").is_file()
    assert (tmp_path / ".ray" / "open2" / "checkpoint_000003" / "state.pt").is_file()  # it may still resume
    assert experiment_dir(tmp_path) == tmp_path / ".ray"
    old = tmp_path / "old"
    old.mkdir()
    (old / "experiment_state-2026-01-01_00-00-00.json").write_text("{}", encoding="utf-8")
    assert experiment_dir(old) == old  # a search made before .ray/ resumes where its state is
