"""Limits at the edges: a full disk while saving a model is a one-line error (exit 2), nothing half-written."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from tune_digits import checkpoint
from tune_digits.checkpoint import save_checkpoint
from tune_digits.cli import app
from tune_digits.errors import UserError

TINY = ["model.channels=[4,8]", "model.fc=[32,16]", "train.threads=2", "train.device=cpu"]


def disk_full(*_: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_save_checkpoint_on_a_full_disk_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    with pytest.raises(UserError, match="disk is full"):
        save_checkpoint(tmp_path / "model.pt", {"w": torch.zeros(3)}, {}, {})
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_save_checkpoint_reports_other_write_errors_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*_: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(checkpoint.os, "fsync", read_only)
    with pytest.raises(UserError, match="Read-only file system"):
        save_checkpoint(tmp_path / "model.pt", {"w": torch.zeros(3)}, {}, {})


def test_train_on_a_full_disk_exits_2_with_one_line(
    tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    sets = [a for s in TINY for a in ("--set", s)]
    out = tmp_path / "runs" / "full"
    result = CliRunner().invoke(app, ["train", "--epochs", "1", "--wandb", "disabled", "--out", str(out), *sets])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "disk is full" in errors[0], result.stderr
    assert not out.exists() and not any(p.name.startswith(".") for p in out.parent.iterdir())
