"""Atomic writes: a file is written beside its target, flushed to disk, then renamed into place.

A crash, a full disk or Ctrl-C leaves either the old file or the new one, never half of one; the
temporary file is removed on any failure. Files and folders get the mode a plain ``open`` or
``mkdir`` would give them (``tempfile`` makes them private).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def umask() -> int:
    """The process umask (``os.umask`` reads it only by setting it, so it is set back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_public(path: Path) -> None:
    """Give a ``mkstemp`` file 0666, a ``mkdtemp`` folder 0777, less the umask."""
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask())


def stage_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file beside ``path`` and return it; ``os.replace`` it to commit."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` (its folder created if needed) by ``data`` atomically; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = stage_bytes(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """:func:`write_bytes` of ``text`` in UTF-8, newlines as given."""
    return write_bytes(path, text.encode("utf-8"))
