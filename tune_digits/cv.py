"""Cross-validation over whole speakers: Becker et al.'s five folds or leave-one-speaker-out.

``cross_validate(cfg, "becker")`` trains ``cfg`` on ``becker:0`` .. ``becker:4``;
``cross_validate(cfg, "loso")`` trains it once per speaker of the corpus, with ``loso:SPEAKER``
(that speaker is the test set, one other speaker validates). Only ``data.split`` changes
between folds: every fold reads the same feature cache. The result holds one row per fold
(test speakers, val F1, test F1, test accuracy, ...) and the mean and standard deviation over
folds (population std, ``ddof=0``, as ``numpy.std``).

With ``out_dir`` the table is written to ``cv.csv`` and the whole result to ``cv.json``,
each atomically (:func:`tune_digits.atomic.write_text`), and every fold's run folder (weights,
predictions, split) to ``folds/SPEC`` as it finishes: ``tune-digits evaluate --model OUT`` scores them all.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tune_digits.atomic import write_text
from tune_digits.config import Config, to_flat, with_values
from tune_digits.corpus import scan
from tune_digits.errors import UserError
from tune_digits.prepare import data_root
from tune_digits.run_folder import RUN_JSON, write_fit_run
from tune_digits.train import FitResult, Prepared, fit, prepare

PROTOCOLS = ("becker", "loso")
FOLDS = "folds"  # a --cv folder keeps each fold's run folder under it
SUMMARY_KEYS = ("test_f1", "test_accuracy", "val_f1")
CSV_COLUMNS = (
    "fold",
    "test_speakers",
    "val_speakers",
    "val_f1",
    "test_f1",
    "test_accuracy",
    "best_epoch",
    "epochs_run",
    "train_seconds",
)


@dataclass
class FoldResult:
    fold: str  # the split spec, e.g. "loso:george" or "becker:2"
    test_speakers: list[str]
    val_speakers: list[str]
    val_f1: float
    test_f1: float
    test_accuracy: float
    best_epoch: int
    epochs_run: int
    train_seconds: float
    per_class_f1: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The cv.csv row (speakers joined by spaces)."""
        out = {k: v for k, v in asdict(self).items() if k in CSV_COLUMNS}
        out["test_speakers"] = " ".join(self.test_speakers)
        out["val_speakers"] = " ".join(self.val_speakers)
        return out


@dataclass
class CVResult:
    protocol: str
    folds: list[FoldResult]
    config: dict[str, Any] = field(default_factory=dict)  # the flat config (data.split is the fold's)

    def mean(self, key: str) -> float:
        return float(np.mean([getattr(f, key) for f in self.folds]))

    def std(self, key: str) -> float:
        return float(np.std([getattr(f, key) for f in self.folds]))

    def summary(self) -> dict[str, float]:
        """``mean_test_f1``, ``std_test_f1``, ... over the folds."""
        out: dict[str, float] = {}
        for key in SUMMARY_KEYS:
            out[f"mean_{key}"] = self.mean(key)
            out[f"std_{key}"] = self.std(key)
        out["train_seconds"] = float(sum(f.train_seconds for f in self.folds))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "folds": [asdict(f) for f in self.folds],
            **self.summary(),
            "config": self.config,
        }


def check_split_spec(spec: str) -> None:
    """A split that names a protocol but not its fold is an error with the two ways out."""
    if spec == "loso":
        raise UserError(
            "split 'loso' needs a speaker: use --cv loso to hold out every speaker in turn, or --split loso:SPEAKER"
        )
    if spec == "becker":
        raise UserError("split 'becker' needs a fold: use --cv becker for all five folds, or --split becker:0..4")


def fold_specs(cfg: Config, protocol: str) -> list[str]:
    """The split specs of ``protocol``: ``becker:0..4``, or ``loso:S`` for every speaker S of the corpus."""
    if protocol == "becker":
        return [f"becker:{k}" for k in range(5)]
    if protocol == "loso":
        speakers = scan(data_root(cfg)).speakers()
        if len(speakers) < 3:
            raise UserError(f"--cv loso needs at least 3 speakers; {data_root(cfg)} has {len(speakers)}")
        return [f"loso:{s}" for s in speakers]
    raise UserError(f"unknown cross-validation protocol {protocol!r}; use {' or '.join(PROTOCOLS)}")


def _speakers(data: Prepared, part: str) -> list[str]:
    names = {data.features.speakers[int(i)] for i in data.rows[part]}
    return sorted(names, key=lambda s: (len(s), s))


def _fold_result(spec: str, data: Prepared, result: FitResult) -> FoldResult:
    m = result.metrics()
    return FoldResult(
        spec,
        _speakers(data, "test"),
        _speakers(data, "val"),
        float(m["val_f1"]),
        float(m["test_f1"]),
        float(m["test_accuracy"]),
        int(m["best_epoch"]),
        int(m["epochs_run"]),
        float(m["train_seconds"]),
        [float(v) for v in m["per_class_f1"]],
    )


FitFn = Callable[[Config, Prepared], FitResult]


def _plain_fit(cfg: Config, data: Prepared) -> FitResult:
    return fit(cfg, data=data)


def cross_validate(
    cfg: Config,
    protocol: str,
    *,
    progress: bool = True,
    out_dir: Path | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
    fit_fn: FitFn | None = None,
) -> CVResult:
    """Train ``cfg`` on every fold of ``protocol`` (``becker`` or ``loso``), one after the other.

    ``on_fold`` is called with each finished fold; ``fit_fn(cfg, data)`` replaces the plain
    ``fit`` (e.g. one that shows a progress bar). ``cfg.data.split`` is ignored.
    """
    specs = fold_specs(cfg, protocol)
    run = fit_fn or _plain_fit
    folds: list[FoldResult] = []
    for spec in specs:
        fold_cfg = with_values(cfg, {"data.split": spec})
        data = prepare(fold_cfg, progress=progress)
        fitted = run(fold_cfg, data)
        fold = _fold_result(spec, data, fitted)
        if out_dir is not None:
            write_fit_run(fold_folder(Path(out_dir), spec), fold_cfg, data, fitted, kind="cv-fold")
        folds.append(fold)
        if on_fold is not None:
            on_fold(fold)
    flat = to_flat(cfg)
    flat["data.split"] = f"cv:{protocol}"
    result = CVResult(protocol, folds, flat)
    if out_dir is not None:
        write_cv(result, Path(out_dir))
    return result


def fold_folder(cv_dir: Path, spec: str) -> Path:
    """Where fold ``spec`` of the cross-validation in ``cv_dir`` keeps its run: ``folds/loso-george``."""
    return cv_dir / FOLDS / spec.replace(":", "-")


def fold_runs(folder: Path) -> list[Path]:
    """The fold run folders of a ``--cv`` folder, in fold order; ``[folder]`` for any other folder."""
    folds = folder / FOLDS
    if not folds.is_dir():
        return [folder]
    return sorted(p for p in folds.iterdir() if (p / RUN_JSON).is_file())


def write_cv(result: CVResult, out_dir: Path) -> None:
    """``cv.csv`` (one row per fold, then ``mean`` and ``std`` rows) and ``cv.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    for fold in result.folds:
        writer.writerow(fold.row())
    for stat in ("mean", "std"):
        row: dict[str, Any] = {"fold": stat}
        for key in (*SUMMARY_KEYS, "train_seconds"):
            row[key] = getattr(result, stat)(key)
        writer.writerow(row)
    write_text(out_dir / "cv.csv", buf.getvalue())
    write_text(out_dir / "cv.json", json.dumps(result.to_json(), indent=1))
