"""One training run written to a folder: the library behind ``tune-digits train``.

OUT/
    config.yaml      the fully resolved config
    metrics.json     val_f1, test_f1, test_accuracy, best_epoch, per_class_f1, confusion_matrix, ...
    model.pt         best-validation weights + config + metrics (torch.load(weights_only=True))
    history.jsonl / history.csv   one row per epoch
    split.json       the resolved split (file lists), reusable with --split OUT/split.json
    predictions.csv  test files: file, label, predicted, probability
    run.json         what made the run: kind, time, data folder, split digest, feature cache key

The folder is built under a temporary name and renamed at the end: an interrupted
run leaves no half folder under OUT's name.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tune_digits.atomic import make_public
from tune_digits.checkpoint import save_checkpoint
from tune_digits.config import Config, save_config, to_flat
from tune_digits.corpus import Split, save_split
from tune_digits.errors import UserError
from tune_digits.train import FitResult, Prepared, fit, prepare


def split_digest(split: Split) -> str:
    """Identifies a split by its file lists (not its name): equal digests, equal test speakers."""
    return hashlib.sha256(json.dumps([split.train, split.val, split.test]).encode()).hexdigest()[:16]


_STARTED = time.time()  # this process imported the module no later than it began any run


def clean_partials(parent: Path) -> int:
    """Remove ``.NAME.partial-*`` folders that a killed run left in ``parent``; returns how many.

    Only folders where nothing changed since this process started are removed: a run still in
    progress in another process writes its history every epoch and keeps its folder.
    """
    removed = 0
    for folder in parent.glob(".*.partial-*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        newest = max((p.lstat().st_mtime for p in folder.rglob("*")), default=folder.lstat().st_mtime)
        if max(newest, folder.lstat().st_mtime) < _STARTED:
            shutil.rmtree(folder, ignore_errors=True)
            removed += not folder.exists()
    if removed:
        text = f"removed {removed} unfinished run folder(s) (.*.partial-*) left in {parent} by killed runs"
        warnings.warn(text, stacklevel=2)
    return removed


def check_out_dir(out: Path) -> None:
    """Refuse a non-empty ``out`` or one below a file; creates nothing."""
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"cannot create the run folder {out}: {blocking} is a file; choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output folder {out} already exists and is not empty; choose another --out or remove it")


def write_run_files(out: Path, cfg: Config, data: Prepared, result: FitResult, kind: str = "train") -> None:
    """Write every file of a finished run into ``out`` (which exists)."""
    save_config(cfg, out / "config.yaml")
    save_split(data.split, out / "split.json")
    metrics = result.metrics()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    save_checkpoint(out / "model.pt", result.state_dict, to_flat(cfg), metrics)
    write_history_csv(out / "history.csv", result.history)
    write_predictions(out / "predictions.csv", data, result)
    meta = {
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_root": str(data.catalog.root),
        "split_spec": data.split.spec,
        "split_digest": split_digest(data.split),
        "feature_cache": data.features.key,
        "skipped_recordings": data.features.skipped,
    }
    (out / "run.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def write_predictions(path: Path, data: Prepared, result: FitResult) -> None:
    """Test predictions in row order (rows are sorted, as ``fit`` evaluates them)."""
    from tune_digits.inference import csv_name, write_csv

    fs = data.features
    rows = sorted(data.rows["test"].tolist())
    cells = (
        [csv_name(fs.files[row]), int(fs.labels[row]), pred, f"{prob:.6f}"]
        for row, pred, prob in zip(rows, result.test["predictions"], result.test["probabilities"], strict=True)
    )
    write_csv(path, ["file", "label", "predicted", "probability"], cells)


def train_run(
    cfg: Config, out: Path, *, wandb: str = "disabled", progress: bool = True, data: Prepared | None = None
) -> FitResult:
    """Prepare data, train, and write the run folder ``out`` atomically."""
    from tune_digits.tracking import Tracker, resolve_mode

    out = Path(out)
    check_out_dir(out)
    resolve_mode(wandb)  # a bad --wandb fails now, not after the feature cache is built
    data = data or prepare(cfg, progress=progress)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_partials(out.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise UserError(f"cannot create the run folder {out} ({exc.strerror or exc}); choose another --out") from None
    make_public(tmp)  # a run folder is as readable as any other
    tracker = None
    try:
        tracker = Tracker(tmp, mode=wandb, name=out.name, group="train", job_type="train", config=to_flat(cfg))
        result = _fit_with_progress(cfg, data, tracker, progress)
        tracker.summary(result.metrics(), result.test["confusion_matrix"])
        tracker.finish()
        write_run_files(tmp, cfg, data, result)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException as exc:
        if tracker is not None:
            with contextlib.suppress(Exception):  # the run's own error matters more; the folder goes either way
                tracker.finish()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk, a folder that went away: nothing half-written is left
            raise UserError(f"run {out} not saved, nothing was written: {exc.strerror or exc}") from None
        raise
    return result


def _fit_with_progress(cfg: Config, data: Prepared, tracker: Any, progress: bool) -> FitResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("epoch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=cfg.train.epochs, status="")

        def on_epoch(record: dict[str, Any], _state: Any) -> None:
            tracker.log(record)
            status = f"loss {record['train_loss']:.3f}  val_f1 {record['val_f1']:.3f}  best {record['best_val_f1']:.3f}"
            bar.update(task, completed=record["epoch"], status=status)

        result = fit(cfg, on_epoch, data=data)
        bar.update(task, total=len(result.history), completed=len(result.history))
    return result
