"""Advice before an attempt is spent: the pick's expected test macro-F1 and its chance to beat the last attempt.

Both come from validation predictions only (``val_predictions.csv`` in a run folder and in
an attempt folder) through ``tune_digits.bootstrap``: the expected test macro-F1 is the
validation macro-F1 with a 95 % interval (speakers resampled, or clips when there are
fewer than five speakers); the probability that the pick beats the previous attempt is a
paired bootstrap over the validation clips both have. The pick was chosen for its
validation score, so the figure leans optimistic. Nothing here reads a test label.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_digits import bootstrap
from tune_digits.corpus import parse_name

VAL_PREDICTIONS = "val_predictions.csv"


def read_val_predictions(folder: Path) -> dict[str, tuple[int, int]] | None:
    """``file -> (label, predicted)`` from ``folder/val_predictions.csv``; None when absent or unreadable."""
    path = folder / VAL_PREDICTIONS
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return {row["file"]: (int(row["label"]), int(row["predicted"])) for row in csv.DictReader(fh)}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def speaker(file: str) -> str:
    """The speaker of ``{digit}_{speaker}_{index}.wav`` (the file itself when the name is off the pattern)."""
    parsed = parse_name(Path(file).name)
    return parsed[1] if parsed else file


def percent(p: float) -> str:
    """``83%``; ``>99%`` and ``<1%`` rather than a rounded 100 % or 0 % from a finite bootstrap."""
    return ">99%" if p > 0.99 else "<1%" if p < 0.01 else f"{p:.0%}"


@dataclass
class Advice:
    lines: list[str]  # what to print
    record: dict[str, Any]  # what the ledger keeps


def _previous_predictions(previous: dict[str, Any], submissions: Path) -> dict[str, tuple[int, int]] | None:
    found = read_val_predictions(submissions / f"attempt-{previous['attempt']}")
    if found is None and previous.get("source_run"):
        found = read_val_predictions(Path(str(previous["source_run"])))
    return found


def advise(
    run_folder: Path,
    previous: dict[str, Any] | None,
    submissions: Path,
    scored: dict[str, tuple[int, int]] | None = None,
) -> Advice:
    """The figures for a pick in ``run_folder`` against the ``previous`` ledger line (None: the first).

    ``scored`` stands in for the folder's ``val_predictions.csv`` when the folder keeps none.
    """
    mine = read_val_predictions(run_folder) or scored
    if not mine:
        why = f"{run_folder.name} has no readable {VAL_PREDICTIONS} (a run written before it was saved)"
        return Advice([f"expected test macro-F1: not available: {why}"], {})
    files = sorted(mine)
    est = bootstrap.interval([mine[f][0] for f in files], [mine[f][1] for f in files], [speaker(f) for f in files])
    record: dict[str, Any] = {
        "expected_test_f1": {"point": est.point, "low": est.low, "high": est.high, "unit": est.unit, "units": est.units}
    }
    caveat = (
        "" if est.unit == "speakers" else f", fewer than {bootstrap.MIN_SPEAKERS} speakers: too narrow for new voices"
    )
    lines = [
        f"expected test macro-F1: {est.point:.4f} (95% interval {est.low:.4f} to {est.high:.4f}; bootstrap over "
        f"{est.units} validation {est.unit}{caveat}; optimistic, as the pick was chosen on validation)"
    ]
    if previous is not None:
        lines.append(_versus(previous, mine, submissions, record))
    return Advice(lines, record)


def _versus(previous: dict[str, Any], mine: dict[str, tuple[int, int]], submissions: Path, record: dict) -> str:
    n = previous["attempt"]
    theirs = _previous_predictions(previous, submissions)
    shared = sorted(set(mine) & set(theirs or {}))
    if not theirs or not shared:
        why = f"no validation predictions of attempt {n} on these clips"
        return f"probability the pick beats attempt {n}: not available ({why})"
    y = [mine[f][0] for f in shared]
    p = bootstrap.prob_better(
        y, [mine[f][1] for f in shared], [theirs[f][1] for f in shared], [speaker(f) for f in shared]
    )
    record["p_beats_previous"] = {"attempt": n, "p": p, "clips": len(shared)}
    how = f"paired bootstrap over {len(shared)} shared validation clips"
    return f"probability the pick beats attempt {n}: {percent(p)} ({how})"
