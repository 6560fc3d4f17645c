"""What the terminal shows while Ray Tune runs trials: the tool's own view, not Ray's.

Ray's status tables, per-trial boxes and log lines go to ``ray.log`` in the run folder
(``capture_ray_logs`` / ``ray_log_to``); ``Board`` counts the trials and ``shown`` draws it:
a live panel on a terminal, one plain line per finished trial otherwise (CI logs, tests).
``LiveTrials`` is the Ray callback that feeds the board; it holds no state of its own, so the
copy Ray pickles with the experiment (and unpickles on ``--resume``) feeds the board of the
process that runs it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console, Group
from rich.text import Text

RAY_LOGGERS = ("ray", "ray._private")  # ray.init drops the "ray" logger's handlers; its children keep theirs
_held: dict[str, Any] = {}  # logger name -> (handlers, propagate) while Ray's lines are captured
_board: Board | None = None


class _Buffer(logging.Handler):
    """Keeps Ray's records until the run folder exists, then writes them to its ``ray.log``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.target: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.target is not None:
            self.target.handle(record)
        elif len(self.records) < 10_000:
            self.records.append(record)


_buffer = _Buffer()


def capture_ray_logs() -> None:
    """From now on Ray's Python log lines are kept for ``ray.log``, not printed (call again after ray.init)."""
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        if name not in _held:
            _held[name] = (list(logger.handlers), logger.propagate, logger.level)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(_buffer)
        logger.propagate = False
        logger.setLevel(logging.INFO)


def ray_log_to(path: Path) -> Path:
    """Write Ray's captured lines (and those to come) to ``path``; returns it."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _buffer.target = handler
    for record in _buffer.records:
        handler.handle(record)
    _buffer.records.clear()
    return path


def release_ray_logs() -> None:
    """Give Ray's loggers back their own handlers."""
    for name, (handlers, propagate, level) in _held.items():
        logger = logging.getLogger(name)
        logger.removeHandler(_buffer)
        for handler in handlers:
            logger.addHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)
    _held.clear()
    if _buffer.target is not None:
        _buffer.target.close()
        _buffer.target = None
    _buffer.records.clear()


def trial_number(trial: Any) -> int:
    """The trial's place in its search, from 1 (Ray's experiment tag starts ``3_lr=...``)."""
    head = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def eight_label(config: dict[str, Any]) -> str:
    """A final-eight training's name: ``A-bilateral-aug-s0``."""
    aug = "aug" if config.get("augment.enabled") else "noaug"
    return f"{config.get('arm', '?')}-{config.get('features.variant', '?')}-{aug}-s{config.get('train.seed', 0)}"


def settings(config: dict[str, Any], keys: tuple[str, ...]) -> str:
    """``lr=0.0031 dropout=0.1``: the sampled settings, by the last part of their dotted key."""
    parts = []
    for key in keys:
        value = config.get(key)
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{key.rsplit('.', 1)[-1]}={shown}")
    return " ".join(parts)


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Row:
    label: str
    status: str = "not started"  # running, done, stopped early, errored, interrupted
    best: float | None = None
    epochs: int = 0
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Board:
    """The trials of one search or final-eight as the terminal shows them."""

    title: str
    total: int
    keys: tuple[str, ...] = ()  # settings shown beside the best trial
    max_epochs: int | None = None  # None: a trial that ends early is not "stopped early" (final-eight)
    eight: bool = False  # final-eight: trials are named A-bilateral-aug-s0
    console: Console = field(default_factory=lambda: Console(stderr=True))
    rows: dict[str, Row] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished_here: int = 0
    seen_restored: bool = False

    def row(self, trial: Any) -> Row:
        if trial.trial_id not in self.rows:
            config = dict(trial.config or {})
            label = eight_label(config) if self.eight else f"#{trial_number(trial)} {trial.trial_id}"
            self.rows[trial.trial_id] = Row(label, config=config)
        return self.rows[trial.trial_id]

    def result(self, trial: Any, result: dict[str, Any]) -> None:
        row = self.row(trial)
        row.status = "running"
        row.epochs = int(result.get("training_iteration", row.epochs + 1))
        f1 = result.get("best_val_f1", result.get("val_f1"))
        if f1 is not None and (row.best is None or f1 > row.best):
            row.best = float(f1)

    def end(self, trial: Any, status: str) -> None:
        row = self.row(trial)
        if status == "done" and self.max_epochs is not None and row.epochs < self.max_epochs:
            status = "stopped early"
        if row.status not in ("done", "stopped early", "errored"):
            self.finished_here += 1
        row.status = status
        if not self.console.is_terminal:
            f1 = f"best val F1 {row.best:.4f}" if row.best is not None else "no val F1"
            self.line(f"{row.label} {row.status} after {row.epochs} epochs, {f1}")
            self.line(f"  {self.counts_line()}; {self.time_line()}")

    def restored(self, trials: list[Any]) -> None:
        """Trials that finished before a ``--resume`` count as finished, not as work of this run."""
        for trial in trials:
            row = self.row(trial)
            if trial.status in ("TERMINATED", "ERROR") and row.status == "not started":
                last = trial.last_result or {}
                row.epochs = int(last.get("training_iteration", 0))
                row.best = last.get("best_val_f1")
                row.status = "errored" if trial.status == "ERROR" else "done"
                if row.status == "done" and self.max_epochs is not None and row.epochs < self.max_epochs:
                    row.status = "stopped early"

    def count(self, status: str) -> int:
        return sum(r.status == status for r in list(self.rows.values()))  # the live view reads from its thread

    def best(self) -> Row | None:
        scored = [r for r in list(self.rows.values()) if r.best is not None]
        return max(scored, key=lambda r: r.best or 0.0, default=None)

    def counts_line(self) -> str:
        done, early, err = self.count("done"), self.count("stopped early"), self.count("errored")
        text = f"{done + early + err}/{self.total} finished"
        if self.max_epochs is not None:
            text += f" ({done} done, {early} stopped early, {err} errored)"
        elif err:
            text += f" ({err} errored)"
        return f"{text}, {self.count('running')} running"

    def best_line(self) -> str:
        best = self.best()
        if best is None:
            return "best val F1: none reported yet"
        shown = f" ({settings(best.config, self.keys)})" if self.keys and not self.eight else ""
        return f"best val F1 {best.best:.4f}: {best.label}{shown}"

    def time_line(self) -> str:
        elapsed = time.monotonic() - self.started
        left = self.total - sum(self.count(s) for s in ("done", "stopped early", "errored"))
        if left <= 0:
            return f"{duration(elapsed)} elapsed"
        if not self.finished_here:
            return f"{duration(elapsed)} elapsed"
        return f"{duration(elapsed)} elapsed, about {duration(elapsed / self.finished_here * left)} left"

    def line(self, text: str) -> None:
        self.console.print(Text(text, no_wrap=True, overflow="ellipsis"), crop=True, soft_wrap=False)

    def render(self) -> Group:
        texts = [self.title, self.counts_line(), self.best_line(), self.time_line()]
        if not self.finished_here:
            texts[-1] += ", the time left is known after the first trial ends"
        return Group(*(Text(t, no_wrap=True, overflow="ellipsis") for t in texts))

    def summary_lines(self) -> list[str]:
        """After an interrupt: every trial with its state; the ones that were running say interrupted."""
        lines = [f"{'trial':<20} {'val F1':>7} {'epochs':>6}  state"]
        for row in sorted(self.rows.values(), key=lambda r: -(r.best if r.best is not None else -1.0)):
            if row.status == "running":
                row.status = "interrupted"
            f1 = f"{row.best:.4f}" if row.best is not None else "-"
            lines.append(f"{row.label:<20} {f1:>7} {row.epochs:>6}  {row.status}")
        return lines


class LiveTrials(Callback):
    """Feeds the board of this process (see ``shown``) from Ray's trial events."""

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if _board is not None and not _board.seen_restored:
            _board.seen_restored = True
            _board.restored(trials)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _board is not None:
            _board.row(trial).status = "running"

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if _board is not None:
            _board.result(trial, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _board is not None:
            _board.end(trial, "done")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _board is not None:
            _board.end(trial, "errored")


@contextlib.contextmanager
def shown(board: Board, log: Path) -> Iterator[Board]:
    """Show ``board`` while the block runs trials; on Ctrl-C print each trial's state, then re-raise."""
    from rich.live import Live

    global _board
    board.line(board.title)
    board.console.print(f"Ray's own log: {log}", soft_wrap=True, markup=False, highlight=False)  # whole, to copy
    _board = board
    live = None
    if board.console.is_terminal:
        live = Live(console=board.console, get_renderable=board.render, refresh_per_second=2, transient=True)
        live.start()
    try:
        yield board
    except KeyboardInterrupt:
        _stop(live)
        live = None
        for text in board.summary_lines():
            board.line(text)
        raise
    finally:
        _stop(live)
        _board = None
    board.line(f"{board.counts_line()}; {board.time_line()}")
    board.line(board.best_line())


def _stop(live: Any) -> None:
    if live is not None:
        live.stop()


def folder_size(folder: Path) -> int:
    """Bytes of every file below ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
