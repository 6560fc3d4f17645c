"""The submissions folder: its ledger, its lock, the atomic commit of an attempt and its integrity check.

SUBMISSIONS/
    ledger.jsonl    one JSON line per attempt, append-only; each line's ``prev_sha256`` is the sha256
                    of the line before it (null on the first line): a hash chain
    .lock           held (flock) while an attempt is decided and written
    attempt-N/      model.pt, config.yaml, metrics.json, predictions.csv, val_predictions.csv,
                    manifest.json, submission.csv (--test-dir), model.onnx (--onnx)
    contest-TIME-DIGEST/   an earlier contest (its ledger and attempts), archived by --new-contest
    unrecorded-attempt-N-TIME/   an attempt folder that had no ledger line, set aside by ``recover``

An attempt is staged in ``.attempt-N.tmp-*`` inside SUBMISSIONS; the one commit point is the
``os.replace`` of the ledger by a copy with one more line; the staged folder is renamed into
place right after. A failure before the commit leaves neither (the staged folder is removed);
a kill leaves a state that ``recover`` (run under the lock by the next ``submit`` or
``submissions``) finishes or rolls back, in one line each.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


def _lines(data: bytes) -> list[tuple[int, bytes]]:
    """(line number, bytes without the newline) of every non-blank line."""
    return [(i, raw) for i, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]


def stage_ledger(submissions: Path, entry: dict[str, Any]) -> Path:
    """A copy of the ledger with ``entry`` appended, beside it; os.replace it to commit.

    ``entry`` gets its ``prev_sha256``: the sha256 of the ledger's last line (None for the first).
    """
    path = submissions / LEDGER
    old = path.read_bytes() if path.is_file() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    last = _lines(old)[-1][1] if _lines(old) else None
    entry["prev_sha256"] = hashlib.sha256(last).hexdigest() if last is not None else None
    return stage_bytes(path, old + (json.dumps(entry, sort_keys=True) + "\n").encode())


def commit_ledger(submissions: Path, ledger_tmp: Path) -> None:
    """The commit point of an attempt: the staged ledger replaces the ledger in one ``os.replace``."""
    os.replace(ledger_tmp, submissions / LEDGER)
    with contextlib.suppress(OSError):  # durability of the rename; the commit itself has happened
        fd = os.open(submissions, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _manifest_sha(folder: Path) -> str | None:
    path = folder / "manifest.json"
    return sha256_file(path) if path.is_file() else None


def _finish_staged(submissions: Path, entries: list[dict[str, Any]], staged: list[Path]) -> list[str]:
    """Rename into place the staged folder of each recorded attempt whose folder is missing."""
    lines = []
    for e in entries:
        n, final = e["attempt"], submissions / f"attempt-{e['attempt']}"
        if final.exists():
            continue
        mine = [p for p in staged if p.name.startswith(f".attempt-{n}.tmp-")]
        match = next((p for p in mine if _manifest_sha(p) == e.get("manifest_sha256")), None)
        if match is not None:
            os.rename(match, final)
            staged.remove(match)
            lines.append(
                f"recovered: attempt {n} was recorded but its folder was still staged; "
                f"moved {match.name} to {final.name}"
            )
    return lines


def _set_aside_unrecorded(submissions: Path, entries: list[dict[str, Any]]) -> list[str]:
    """Move aside (never delete) each ``attempt-N`` folder that has no ledger line."""
    recorded, lines = {e["attempt"] for e in entries}, []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for folder in sorted(submissions.glob("attempt-*")):
        found = re.fullmatch(r"attempt-(\d+)", folder.name)
        if not found or not folder.is_dir() or int(found[1]) in recorded:
            continue
        aside = submissions / f"unrecorded-{folder.name}-{stamp}"
        os.rename(folder, aside)
        lines.append(
            f"recovered: {folder.name} has no ledger line (a submit stopped before recording it); "
            f"moved it aside to {aside.name}; attempt {found[1]} is free"
        )
    return lines


def archive_contest(submissions: Path, entries: list[dict[str, Any]]) -> str:
    """Move the ledger and the attempt folders into ``contest-TIME-DIGEST/``; the new contest starts empty.

    They are gathered in ``.contest-*.tmp`` first and that folder is renamed last; ``recover``
    finishes an archive a kill interrupted.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"contest-{stamp}-{str(entries[0].get('split_digest', 'unknown'))[:8]}"
    tmp = submissions / f".{name}.tmp"
    tmp.mkdir()
    return _finish_archive(submissions, tmp, entries)


def _finish_archive(submissions: Path, tmp: Path, entries: list[dict[str, Any]]) -> str:
    for e in entries:
        folder = submissions / f"attempt-{e['attempt']}"
        if folder.is_dir():
            os.rename(folder, tmp / folder.name)
    if (submissions / LEDGER).is_file():
        os.replace(submissions / LEDGER, tmp / LEDGER)
    final = submissions / tmp.name[1 : -len(".tmp")]
    os.rename(tmp, final)
    return f"archived the earlier contest ({len(entries)} attempts) to {final.name}; a new contest starts"


def recover(submissions: Path) -> list[str]:
    """Finish or roll back what a killed ``submit`` left; call it holding ``submissions_lock``.

    A ledger line whose folder is still staged: the staged folder is renamed into place (finish).
    An ``attempt-N`` folder without a ledger line: moved aside to ``unrecorded-attempt-N-TIME``
    (roll back; nothing the user may want is deleted). Staged folders and ledger copies without
    a line are the tool's own half-written files: removed. Returns one line per thing done.
    """
    if not submissions.is_dir():
        return []
    lines = []
    for tmp in sorted(submissions.glob(".contest-*.tmp")):
        if tmp.is_dir() and not tmp.is_symlink():
            lines.append("recovered: " + _finish_archive(submissions, tmp, read_ledger(submissions)))
    entries = read_ledger(submissions)
    broken, _ = check_chain(submissions)
    if broken:
        raise UserError(
            f"{submissions / LEDGER}: the hash chain is broken ({broken[0].split(': ', 1)[0]}); "
            "see tune-digits submissions and restore the ledger from a backup"
        )
    staged = sorted(p for p in submissions.glob(".attempt-*.tmp-*") if p.is_dir() and not p.is_symlink())
    lines += _finish_staged(submissions, entries, staged)
    lines += _set_aside_unrecorded(submissions, entries)
    leftovers = staged + sorted(p for p in submissions.glob(f".{LEDGER}-*") if p.is_file())
    discard(*leftovers)
    if leftovers:
        names = ", ".join(p.name for p in leftovers[:3]) + (", ..." if len(leftovers) > 3 else "")
        lines.append(f"recovered: removed {len(leftovers)} unfinished file(s) of a stopped submit ({names})")
    return lines


def discard(*paths: Path | None) -> None:
    for p in paths:
        if p is not None and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p is not None:
            p.unlink(missing_ok=True)


def check_chain(submissions: Path) -> tuple[list[str], list[str]]:
    """(problems, notes) of the ledger's hash chain: a ``prev_sha256`` that is not the sha256 of the
    line before it is a broken chain; lines written before chaining (no field) are noted as unchained."""
    path = submissions / LEDGER
    if not path.is_file():
        return [], []
    problems, unchained, prev, chained = [], [], None, False
    for i, raw in _lines(path.read_bytes()):
        entry = json.loads(raw)
        if "prev_sha256" not in entry:
            if chained:
                problems.append(f"ledger line {i}: BROKEN CHAIN: an unchained line after chained ones (inserted?)")
            unchained.append(i)
        else:
            chained = True
            if entry["prev_sha256"] != (hashlib.sha256(prev).hexdigest() if prev is not None else None):
                where = f"line {i - 1}" if prev is not None else "nothing (it is the first line)"
                problems.append(
                    f"ledger line {i} (attempt {entry.get('attempt')}): BROKEN CHAIN: its prev_sha256 does not "
                    f"match {where}; a line before it was edited, removed or inserted"
                )
        prev = raw
    notes = []
    if unchained and not problems:
        lines = ", ".join(map(str, unchained))
        notes.append(
            f"note: ledger line(s) {lines} are unchained (written before hash chaining): edits there go unseen"
        )
    return problems, notes


def _disagreements(folder: Path, entry: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """Where the ledger line and the attempt's own manifest.json and metrics.json differ."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # reported as a changed or missing file
    theirs = {"checkpoint_sha256": manifest.get("checkpoint_sha256"), "attempt": manifest.get("attempt")}
    theirs |= {k: metrics.get(k) for k in ("val_f1", "test_f1", "test_accuracy")}
    out = []
    for key, value in theirs.items():
        mine = entry.get(key)
        same = mine == value or (
            isinstance(mine, (int, float)) and isinstance(value, (int, float)) and abs(mine - value) < 1e-12
        )
        if key in entry and not same:
            source = "metrics.json" if key in metrics else "manifest.json"
            out.append(f"LEDGER: {key} is {mine} in the ledger but {value} in {folder.name}/{source}")
    return out


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
    metrics_changed = "TAMPERED: file metrics.json changed" in problems
    metrics = folder / "metrics.json"
    if metrics.is_file() and not metrics_changed and entry.get("metrics_sha256") not in (None, sha256_file(metrics)):
        problems.append("TAMPERED: file metrics.json differs from the ledger's metrics_sha256")
    return problems + _disagreements(folder, entry, manifest)


@dataclass(frozen=True)
class Audit:
    """What ``tune-digits submissions`` shows: the attempts, what changed since each, and the chain's health."""

    recovered: list[str]  # lines of a killed submit's leftovers finished or rolled back (or why not)
    entries: list[dict[str, Any]]  # the ledger's lines, by attempt
    changed: dict[int, list[str]]  # attempt -> what in its folder differs from the ledger
    problems: list[str]
    notes: list[str]
    archived: list[str]  # earlier contests' folders
    left: list[int]


def _recover_unless_busy(submissions: Path) -> list[str]:
    """Finish or roll back a killed submit's leftovers, unless a submit is running now."""
    try:
        with submissions_lock(submissions):
            return recover(submissions)
    except UserError as exc:
        return [f"note: nothing recovered: {exc}"]


def audit(submissions: Path) -> Audit:
    """Recover, then check the ledger's chain and every attempt folder against its ledger line."""
    if not submissions.exists():
        raise UserError(
            f"no submissions folder {submissions}: no attempt was made there yet "
            f"(attempts left: {', '.join(map(str, attempts_left([])))}); check --submissions"
        )
    recovered = _recover_unless_busy(submissions)
    entries = sorted(read_ledger(submissions), key=lambda e: e["attempt"])
    problems, notes = check_chain(submissions)
    changed = {e["attempt"]: check_attempt(submissions / f"attempt-{e['attempt']}", e) for e in entries}
    for e in entries:
        problems.extend(f"attempt {e['attempt']}: {line}" for line in changed[e["attempt"]])
    listed = {f"attempt-{e['attempt']}" for e in entries}
    stray = sorted(p.name for p in submissions.glob("attempt-*") if p.is_dir() and p.name not in listed)
    problems.extend(f"{name}: not in the ledger" for name in stray)
    archived = sorted(p.parent.name for p in submissions.glob("contest-*/ledger.jsonl"))
    return Audit(recovered, entries, changed, problems, notes, archived, attempts_left(entries))
