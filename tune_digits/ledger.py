"""The submissions folder: its ledger, its lock, the atomic commit of an attempt and its integrity check.

SUBMISSIONS/
    ledger.jsonl    one JSON line per attempt, append-only
    .lock           held (flock) while an attempt is decided and written
    attempt-N/      model.pt, config.yaml, metrics.json, predictions.csv, manifest.json,
                    submission.csv (--test-dir), model.onnx (--onnx)

An attempt is written under a temporary name inside SUBMISSIONS and renamed; the ledger
is replaced by a copy with one more line right after. A failure leaves neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tune_digits.atomic import stage_bytes
from tune_digits.checkpoint import sha256_file
from tune_digits.errors import UserError

MAX_ATTEMPTS = 3
LEDGER = "ledger.jsonl"


def check_folder(submissions: Path) -> None:
    """A submissions path that exists must be a folder (a file there is a one-line error)."""
    if submissions.exists() and not submissions.is_dir():
        raise UserError(f"--submissions {submissions} is a file, not a folder; pass the submissions folder")


def read_ledger(submissions: Path) -> list[dict[str, Any]]:
    """The ledger's entries in order; a damaged line is a UserError."""
    check_folder(submissions)
    path = submissions / LEDGER
    if not path.is_file():
        return []
    entries = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise UserError(f"{path} line {i} is not JSON; restore the ledger from a backup") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("attempt"), int):
            raise UserError(f"{path} line {i} is not an attempt record; restore the ledger from a backup")
        entries.append(entry)
    return entries


def attempts_left(entries: list[dict[str, Any]]) -> list[int]:
    used = {e["attempt"] for e in entries}
    return [n for n in range(1, MAX_ATTEMPTS + 1) if n not in used]


def check_attempt_number(attempt: int) -> None:
    if not 1 <= attempt <= MAX_ATTEMPTS:
        raise UserError(f"--attempt {attempt}: the contest allows attempts 1 to {MAX_ATTEMPTS}")


@contextlib.contextmanager
def submissions_lock(submissions: Path) -> Iterator[None]:
    """Hold an exclusive flock on SUBMISSIONS/.lock; a second holder is refused at once."""
    check_folder(submissions)
    try:
        submissions.mkdir(parents=True, exist_ok=True)
        fh = (submissions / ".lock").open("a")
    except OSError as exc:
        raise UserError(f"cannot use --submissions {submissions} ({exc.strerror or exc})") from None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another submit is running (lock {submissions / '.lock'}); try again when it ends"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def stage_ledger(submissions: Path, entry: dict[str, Any]) -> Path:
    """A copy of the ledger with ``entry`` appended, beside it; os.replace it to commit."""
    path = submissions / LEDGER
    old = path.read_bytes() if path.is_file() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return stage_bytes(path, old + (json.dumps(entry, sort_keys=True) + "\n").encode())


def commit_attempt(tmp: Path, final: Path, ledger_tmp: Path) -> None:
    """Rename the finished folder into place, then the ledger; undo the first if the second fails."""
    os.rename(tmp, final)
    try:
        os.replace(ledger_tmp, final.parent / LEDGER)
    except BaseException:
        os.rename(final, tmp)
        raise


def discard(*paths: Path | None) -> None:
    for p in paths:
        if p is not None and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p is not None:
            p.unlink(missing_ok=True)


def check_attempt(folder: Path, entry: dict[str, Any]) -> list[str]:
    """What no longer matches the attempt's manifest (and the ledger's record of it); [] when intact."""
    if not folder.is_dir():
        return [f"MISSING: folder {folder.name}"]
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return ["TAMPERED: file manifest.json missing"]
    problems = []
    if entry.get("manifest_sha256") not in (None, sha256_file(manifest_path)):
        problems.append("TAMPERED: file manifest.json changed")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = {"model.pt": manifest["checkpoint_sha256"], **manifest["files"]}
    except (ValueError, KeyError, TypeError):
        return [*problems, "TAMPERED: file manifest.json unreadable"]
    for name, sha in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"TAMPERED: file {name} missing")
        elif sha256_file(path) != sha:
            problems.append(f"TAMPERED: file {name} changed")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in expected and p.name != "manifest.json")
    problems.extend(f"TAMPERED: file {name} added" for name in extra)
    return problems
