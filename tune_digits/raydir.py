"""Where Ray keeps its experiment inside a run folder, and what of it is dropped once trials finish.

``<folder>/.ray/`` holds Ray's experiment state and one folder per trial named by its id
(``.ray/<trial_id>/``: result.json, progress.csv, stdout/stderr and, while the trial may still
resume, ``checkpoint_*/`` with ``model.pt`` and ``state.pt``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

RAY_FOLDER = ".ray"


def short_dirname(trial: Any) -> str:
    """Ray's trial folder: the trial id, not every parameter joined with commas and ``=``."""
    return trial.trial_id


def experiment_dir(folder: Path) -> Path:
    """Where Ray keeps a run folder's experiment: ``<folder>/.ray`` (older runs: the folder itself)."""
    hidden = folder / RAY_FOLDER
    if not hidden.is_dir() and any(folder.glob("experiment_state-*.json")):
        return folder
    return hidden


def prune_checkpoints(folder: Path, finished: set[str]) -> None:
    """Drop Ray's checkpoints (optimizer state and a model.pt copy) of trials that can no longer resume."""
    root = folder / RAY_FOLDER
    for trial in finished:
        for ckpt in (root / trial).glob("checkpoint_*"):
            shutil.rmtree(ckpt, ignore_errors=True)
