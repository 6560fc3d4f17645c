"""Download and unpack the public spoken-digit datasets (``tune-digits data download``).

The archive is fetched with the standard library into ``DIR/.download/NAME.zip.part``,
resumed with an HTTP ``Range`` request after a broken connection, renamed to
``NAME.zip`` once complete, and only the recordings (plus the metadata file) are
extracted into ``DIR/NAME`` through a temporary folder moved into place at the end,
so a folder at ``DIR/NAME`` is never half-written.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from tune_digits.errors import DataError

CHUNK = 1 << 16
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and what its archive holds."""

    name: str
    url: str
    archive_root: str  # the top folder inside the zip
    expected_files: int  # number of WAV recordings
    layout: str  # human description of the extracted folder
    wav_dir: str  # folder (relative to archive_root) holding the recordings
    extra_files: tuple[str, ...] = ()  # other files to keep, relative to archive_root
    checksums: bool = False  # verify every recording against the shipped AudioMNIST checksums


SOURCES: dict[str, Source] = {
    "audiomnist": Source(
        name="audiomnist",
        url="https://github.com/soerenab/AudioMNIST/archive/refs/heads/master.zip",
        archive_root="AudioMNIST-master",
        expected_files=30000,
        layout="data/NN/{digit}_{NN}_{index}.wav for 60 speakers NN, plus data/audioMNIST_meta.txt",
        wav_dir="data",
        extra_files=("data/audioMNIST_meta.txt",),
        checksums=True,
    ),
    "fsdd": Source(
        name="fsdd",
        url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip",
        archive_root="free-spoken-digit-dataset-master",
        expected_files=3000,
        layout="recordings/{digit}_{speaker}_{index}.wav",
        wav_dir="recordings",
    ),
}


def download_dataset(
    name: str,
    to: Path,
    *,
    url: str | None = None,
    expected_files: int | None = None,
    progress: bool = True,
    checksums: Path | None = None,
) -> Path:
    """Download dataset ``name`` into ``to/name`` and return that folder (the value for ``--data``).

    ``url`` and ``expected_files`` override the entries of :data:`SOURCES`;
    ``progress=False`` silences the progress bar and the status lines; ``checksums`` replaces the
    shipped checksum list of a source that has one.
    """
    source = _lookup(name)
    expected = source.expected_files if expected_files is None else expected_files
    console = Console(stderr=True, quiet=not progress)
    to = Path(to)
    target = to / source.name
    if target.exists():
        found = count_wavs(target)
        if found != expected:
            raise DataError(
                f"{target} exists but holds {found} recordings instead of {expected}: delete it and run again"
            )
        console.print(f"{source.name} is already in {target} ({found} recordings); nothing to download")
        return target
    archive = to / ".download" / f"{source.name}.zip"
    _make_dir(archive.parent)
    if not archive.exists():
        fetch(url or source.url, archive, label=source.name, progress=progress)
    _extract(archive, source, target, expected, checksums)
    archive.unlink()
    _remove_if_empty(archive.parent)
    console.print(f"{source.name}: {expected} recordings in {target} ({source.layout})")
    return target


def count_wavs(folder: Path) -> int:
    """Number of ``.wav`` files anywhere under ``folder``."""
    return sum(1 for path in folder.rglob("*") if path.suffix.lower() == ".wav" and path.is_file())


def _lookup(name: str) -> Source:
    source = SOURCES.get(name.lower())
    if source is None:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(SOURCES))}")
    return source


def _make_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {folder}: {exc.strerror or exc}; pick another --to folder") from exc


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # other downloads are still there
        folder.rmdir()


def fetch(url: str, archive: Path, *, label: str, progress: bool = True) -> None:
    """Download ``url`` to ``archive``, resuming ``archive.part`` when a previous try broke off."""
    part = archive.with_name(archive.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    try:
        if not _fetch_into(url, part, offset, progress=progress):  # stale part: start again from zero
            _fetch_into(url, part, 0, progress=progress)
    except urllib.error.HTTPError as exc:
        raise DataError(
            f"download of {label} failed: HTTP {exc.code} {exc.reason} for {url}; check the network and run again"
        ) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"download of {label} failed: {reason}; check the network and run again to resume") from exc
    except _Truncated as exc:
        raise DataError(f"download of {label} stopped after {exc}; run again to resume") from exc
    os.replace(part, archive)


class _Truncated(Exception):
    """The connection closed before Content-Length bytes arrived."""


def _fetch_into(url: str, part: Path, offset: int, *, progress: bool) -> bool:
    """Write the body of ``url`` into ``part`` from byte ``offset``.

    A server that answers a range request with the whole file (200 instead of 206)
    overwrites the part from zero. Returns False when the range cannot be satisfied
    and the part is not the complete file either (the caller then starts over).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "tune-digits"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if offset and exc.code == 416:  # range not satisfiable: the part is complete or stale
            return _part_is_complete(exc, offset)
        raise
    with response:
        if response.status != 206:
            offset = 0  # the whole file follows, whatever was asked
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        received = _copy(response, part, offset, total, progress=progress)
    if total is not None and received < total:
        raise _Truncated(f"{received} of {total} bytes")
    return True


def _part_is_complete(exc: urllib.error.HTTPError, offset: int) -> bool:
    content_range = exc.headers.get("Content-Range", "") if exc.headers else ""
    size = content_range.rpartition("/")[2]
    return size.isdigit() and int(size) == offset


def _copy(response: http.client.HTTPResponse, part: Path, offset: int, total: int | None, *, progress: bool) -> int:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    received = offset
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(part.name.removesuffix(".part"), total=total, completed=offset)
        with open(part, "ab" if offset else "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(task, completed=received)
    return received


def _relative_member(member: str, source: Source) -> PurePosixPath | None:
    """Path of an archive member inside the dataset folder, or None when it is not wanted."""
    path = PurePosixPath(member)
    if not path.parts or path.parts[0] != source.archive_root or ".." in path.parts or member.endswith("/"):
        return None
    relative = PurePosixPath(*path.parts[1:])
    if str(relative) in source.extra_files:
        return relative
    if relative.suffix.lower() == ".wav" and relative.parts[:1] == (source.wav_dir,):
        return relative
    return None


def _extract(archive: Path, source: Source, target: Path, expected: int, checksums: Path | None) -> None:
    """Unpack the wanted members of ``archive`` into ``target`` through a temporary sibling folder."""
    staging = Path(tempfile.mkdtemp(prefix=f".{source.name}-", suffix=".partial", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as bundle:
                for info in bundle.infolist():
                    relative = _relative_member(info.filename, source)
                    if relative is None:
                        continue
                    dest = staging.joinpath(*relative.parts)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with bundle.open(info) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{archive} is not a valid zip archive ({exc}): delete it and run again") from exc
        found = count_wavs(staging)
        if found != expected:
            raise DataError(
                f"expected {expected} recordings, found {found} in {archive}: "
                f"the archive is incomplete; delete {archive} and run again"
            )
        if source.checksums:
            _verify(staging / source.wav_dir, archive, checksums)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _verify(folder: Path, archive: Path, checksums: Path | None) -> None:
    """Every extracted file must be in the checksum list with its size and sha256 (the count is checked apart)."""
    from tune_digits.verify import load_manifest, verify_tree

    report = verify_tree(folder, load_manifest(checksums), subset=True)
    bad = [f"{name} ({why})" for name, why in report.changed] + [f"{name} (not in the corpus)" for name in report.extra]
    if bad:
        raise DataError(
            f"{len(bad)} files in {archive} do not match the AudioMNIST checksums (first: {bad[0]}): "
            f"nothing was moved into place; delete {archive} and run again"
        )
