"""The one atomic writer: whole files or none, and the mode a plain open would give."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tune_digits import atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_write_replaces_the_file_with_the_umask_mode(tmp_path: Path, umask_027: None) -> None:
    target = tmp_path / "sub" / "a.txt"
    assert atomic.write_text(target, "one\r\n") == target
    atomic.write_text(target, "two\n")
    assert target.read_bytes() == b"two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # not mkstemp's private 0600
    assert atomic.umask() == 0o027  # reading the umask leaves it as it was
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = atomic.write_bytes(tmp_path / "a.bin", b"old")

    def disk_full(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_a_staged_file_waits_beside_the_target(tmp_path: Path, umask_027: None) -> None:
    target = atomic.write_bytes(tmp_path / "ledger.jsonl", b"a\n")
    staged = atomic.stage_bytes(target, b"a\nb\n")
    assert staged.parent == tmp_path and target.read_bytes() == b"a\n"
    assert stat.S_IMODE(staged.stat().st_mode) == 0o640
    os.replace(staged, target)
    assert target.read_bytes() == b"a\nb\n"


def test_make_public_gives_folders_the_mkdir_mode(tmp_path: Path, umask_027: None) -> None:
    folder = tmp_path / "d"
    folder.mkdir(mode=0o700)
    atomic.make_public(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_cv_tables_are_readable_like_any_other_file(tmp_path: Path, umask_027: None) -> None:
    from tune_digits.cv import CVResult, FoldResult, write_cv

    fold = FoldResult("loso:a", ["a"], ["b"], 0.5, 0.5, 0.5, 1, 1, 1.0)
    write_cv(CVResult("loso", [fold], {}), tmp_path)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"cv.csv": 0o640, "cv.json": 0o640}
