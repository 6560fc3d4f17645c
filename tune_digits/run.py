"""One training run written to a folder: the library behind ``tune-digits train``.

The folder's files are :mod:`tune_digits.run_folder`'s. It is built under a temporary name and
renamed at the end: an interrupted run leaves no half folder under OUT's name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tune_digits.atomic import make_public
from tune_digits.config import Config, to_flat
from tune_digits.errors import UserError
from tune_digits.run_folder import check_out_dir, split_digest, write_fit_run  # noqa: F401  (for callers)
from tune_digits.train import FitResult, Prepared, fit, prepare

_STARTED = time.time()  # this process imported the module no later than it began any run
OWNER_LOCK = ".owner.lock"  # held (flock) by the run that builds a partial folder, for as long as it runs


def _hold(folder: Path) -> Any:
    """Lock ``folder/.owner.lock`` for this process; the kernel releases it when the process dies."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the modification-time rule alone decides
        return None
    handle = (folder / OWNER_LOCK).open("w")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def _release(folder: Path, handle: Any) -> None:
    if handle is not None:
        (folder / OWNER_LOCK).unlink(missing_ok=True)
        handle.close()


def _owner_alive(folder: Path) -> bool | None:
    """True while another process holds the folder's lock, False when it died, None when there is no lock."""
    try:
        import fcntl

        handle = (folder / OWNER_LOCK).open("r")
    except (ImportError, OSError):
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        return False


def clean_partials(parent: Path) -> int:
    """Remove ``.NAME.partial-*`` folders that a killed run left in ``parent``; returns how many.

    A run in progress holds a lock in its folder, so its folder is kept however long an epoch
    takes; a folder whose owner died is removed. A folder without the lock (made by an older
    version, or on a system without flock) is removed only when nothing in it changed since this
    process started.
    """
    removed = 0
    for folder in parent.glob(".*.partial-*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        alive = _owner_alive(folder)
        if alive is None:
            newest = max((p.lstat().st_mtime for p in folder.rglob("*")), default=folder.lstat().st_mtime)
            alive = max(newest, folder.lstat().st_mtime) >= _STARTED
        if not alive:
            shutil.rmtree(folder, ignore_errors=True)
            removed += not folder.exists()
    if removed:
        text = f"removed {removed} unfinished run folder(s) (.*.partial-*) left in {parent} by killed runs"
        warnings.warn(text, stacklevel=2)
    return removed


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
    tracker = lock = None
    try:
        lock = _hold(tmp)
        tracker = Tracker(tmp, mode=wandb, name=out.name, group="train", job_type="train", config=to_flat(cfg))
        result = _fit_with_progress(cfg, data, tracker, progress)
        tracker.summary(result.metrics(), result.test["confusion_matrix"])
        tracker.finish()
        write_fit_run(tmp, cfg, data, result)
        _release(tmp, lock)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException as exc:
        if tracker is not None:
            with contextlib.suppress(Exception):  # the run's own error matters more; the folder goes either way
                tracker.finish()
        with contextlib.suppress(OSError):
            _release(tmp, lock)
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
