"""Check an AudioMNIST copy file by file against the shipped checksums (``tune-digits data verify``).

``corpora/audiomnist_sha256.tsv.gz`` lists the path, sha256 and size of each of the 30,000
recordings; a file is compared by size first and by sha256 only when the size matches.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import gzip
import hashlib
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tune_digits.errors import DataError

KNOWN_EXTRAS = frozenset({"audioMNIST_meta.txt"})
PREFIX = "AudioMNIST/"


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int


@dataclass
class Report:
    """What a check found; paths are relative to the data folder (``NN/d_NN_i.wav``)."""

    expected: int
    matched: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)
    subset: bool = False

    @property
    def ok(self) -> bool:
        bad = self.extra or self.changed or (self.missing and not self.subset)
        return not bad and self.matched > 0

    def summary(self) -> str:
        parts = [f"{self.matched} of {self.expected} recordings match"]
        if self.changed:
            name, why = self.changed[0]
            parts.append(f"{len(self.changed)} changed (first: {name}, {why})")
        if self.extra:
            parts.append(f"{len(self.extra)} extra (first: {self.extra[0]})")
        if self.missing:
            note = " (not checked: --subset)" if self.subset else f" (first: {self.missing[0]})"
            parts.append(f"{len(self.missing)} missing{note}")
        return ", ".join(parts)


def load_manifest(path: Path | None = None) -> dict[str, Entry]:
    """``NN/d_NN_i.wav`` -> expected sha256 and size, from ``path`` (.tsv or .tsv.gz) or the shipped list."""
    if path is None:
        raw = (resources.files("tune_digits") / "corpora" / "audiomnist_sha256.tsv.gz").read_bytes()
    else:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read checksum list {path}: {exc.strerror or exc}") from exc
    try:
        text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
        return {r["path"].removeprefix(PREFIX): Entry(r["sha256"].lower(), int(r["bytes"])) for r in rows}
    except (OSError, EOFError, UnicodeDecodeError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"checksum list {path} is not a path/sha256/bytes TSV ({exc})") from exc


def data_folder(root: Path) -> Path:
    """The folder holding ``NN/`` speaker folders: ``root/data`` when there is one, else ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist: pass the AudioMNIST folder (holding data/NN/)")
    return root / "data" if (root / "data").is_dir() else root


def _check(path: Path, entry: Entry) -> str | None:
    size = path.stat().st_size
    if size != entry.size:
        return f"{size} bytes instead of {entry.size}"
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return None if digest == entry.sha256 else "sha256 differs"


def verify_tree(
    folder: Path, manifest: dict[str, Entry], *, subset: bool = False, progress: bool = False, workers: int = 4
) -> Report:
    """Compare every file under ``folder`` (a data folder, see :func:`data_folder`) with ``manifest``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    report = Report(expected=len(manifest), subset=subset)
    report.extra = [name for name in present if name not in manifest and name not in KNOWN_EXTRAS]
    names = [name for name in present if name in manifest]
    report.missing = sorted(set(manifest) - set(names))
    columns = (TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with (
        Progress(*columns, console=Console(stderr=True), disable=not progress, transient=True) as bar,
        cf.ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        task = bar.add_task("verify", total=len(names))
        for name, why in zip(names, pool.map(lambda n: _check(folder / n, manifest[n]), names), strict=True):
            if why is None:
                report.matched += 1
            else:
                report.changed.append((name, why))
            bar.advance(task)
    return report
