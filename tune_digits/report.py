"""Plots, tables and a self-contained report.html for a run folder: ``tune-digits report``.

The kind of folder is told by what it holds (first match wins):
    summary.csv   final eight -> summary.md, test_f1.png, confusion_matrices.png, learning_curves.png
    results.csv   search      -> optimization_history.png, trial_curves.png, param_importance.png (from 8
                                 finished trials), param_vs_f1.png, parallel_coordinates.png
    metrics.json  train run   -> learning_curves.png, confusion_matrix.png, per_class_f1.png
Each also gets report.html: one page, images embedded as data URIs, readable offline. Every file
is written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tune_digits.atomic import write_text
from tune_digits.config import flatten, read_yaml
from tune_digits.errors import UserError
from tune_digits.report_base import (
    _confusion,
    _h2,
    _p,
    _page,
    _plt,
    _read_csv,
    _read_json,
    _save,
    _style,
    _table,
)
from tune_digits.report_eight import best_configuration, effects, final_eight_files
from tune_digits.report_search import _param_panel, parallel_coordinates, search_plots, search_report

__all__ = ["best_configuration", "effects", "search_plots", "write_report"]
__all__ += ["_param_panel", "parallel_coordinates"]
TRAIN_FACTS = ("model.name", "features.variant", "augment.enabled", "data.root", "data.split", "train.seed")
TRAIN_METRICS = ("val_f1", "val_accuracy", "val_loss", "test_f1", "test_accuracy", "test_loss", "best_epoch")
TRAIN_METRICS += ("epochs_run", "num_parameters", "train_seconds", "device")
UNKNOWN = "is not a train run, a search or a final-eight folder: it has no metrics.json, results.csv or summary.csv"


def _train(run_dir: Path) -> list[Path]:
    plt = _plt()
    metrics = _read_json(run_dir / "metrics.json")
    images: list[Path] = []
    notes = [] if (run_dir / "history.csv").is_file() else [_p("No history.csv: no learning curves.")]
    if (run_dir / "history.csv").is_file():
        hist = _read_csv(run_dir / "history.csv", ("epoch", "train_loss", "val_loss", "val_f1"))
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ax1.plot(hist["epoch"], hist["train_loss"], label="train loss")
        ax1.plot(hist["epoch"], hist["val_loss"], label="val loss")
        _style(ax1, "Loss per epoch", "epoch", "cross-entropy loss", legend=True)
        ax2.plot(hist["epoch"], hist["val_f1"], marker=".", label="val macro-F1")
        if "best_epoch" in metrics:
            ax2.axvline(metrics["best_epoch"], color="grey", linestyle="--", label="best epoch")
        _style(ax2, "Validation macro-F1 per epoch", "epoch", "macro-F1", legend=True)
        images.append(_save(fig, run_dir / "learning_curves.png"))
    if metrics.get("confusion_matrix"):
        fig, ax = plt.subplots(figsize=(6, 5.5))
        _confusion(ax, metrics["confusion_matrix"], "Test confusion matrix")
        images.append(_save(fig, run_dir / "confusion_matrix.png"))
    per_class = metrics.get("per_class_f1") or {}
    if per_class:
        per_class = per_class if isinstance(per_class, dict) else {str(i): v for i, v in enumerate(per_class)}
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar(list(map(str, per_class)), list(per_class.values()), color="tab:blue")
        _style(ax, "Test F1 per digit", "digit", "F1", ylim=(0, 1.05))
        images.append(_save(fig, run_dir / "per_class_f1.png"))
    cfg = flatten(read_yaml(run_dir / "config.yaml") or {}) if (run_dir / "config.yaml").is_file() else {}
    facts = {"run folder": str(run_dir)} | {k: cfg[k] for k in TRAIN_FACTS if k in cfg}
    table = pd.DataFrame([{k: metrics[k] for k in TRAIN_METRICS if k in metrics}])
    blocks = [_h2("Metrics"), _table(table), *notes]
    page = _page(f"Train run {run_dir.name}", facts, blocks, images)
    return [*images, write_text(run_dir / "report.html", page)]


def write_report(run_dir: Path) -> list[Path]:
    """Rebuild the plots, tables and report.html of ``run_dir``; return every file written, report.html last."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such folder")
    if (run_dir / "summary.csv").is_file():
        return final_eight_files(run_dir)
    if (run_dir / "results.csv").is_file():
        return search_report(run_dir)
    if (run_dir / "metrics.json").is_file():
        return _train(run_dir)
    raise UserError(f"{run_dir} {UNKNOWN}")
