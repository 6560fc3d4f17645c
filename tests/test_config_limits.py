"""Limits at the edges: a full disk while saving a model is a one-line error (exit 2), nothing half-written."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from tune_digits import atomic
from tune_digits.checkpoint import save_checkpoint
from tune_digits.cli import app
from tune_digits.errors import UserError

TINY = ["model.channels=[4,8]", "model.fc=[32,16]", "train.threads=2", "train.device=cpu"]


def disk_full(*_: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_save_checkpoint_on_a_full_disk_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(UserError, match="disk is full"):
        save_checkpoint(tmp_path / "model.pt", {"w": torch.zeros(3)}, {}, {})
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_save_checkpoint_reports_other_write_errors_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*_: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.os, "fsync", read_only)
    with pytest.raises(UserError, match="Read-only file system"):
        save_checkpoint(tmp_path / "model.pt", {"w": torch.zeros(3)}, {}, {})


def test_train_on_a_full_disk_exits_2_with_one_line(
    tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    sets = [a for s in TINY for a in ("--set", s)]
    out = tmp_path / "runs" / "full"
    result = CliRunner().invoke(app, ["train", "--epochs", "1", "--wandb", "disabled", "--out", str(out), *sets])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "disk is full" in errors[0], result.stderr
    assert not out.exists() and not any(p.name.startswith(".") for p in out.parent.iterdir())


BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["train: {lr: *i}"]
)


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path: Path, tmp_cache: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB, encoding="utf-8")
    assert len(BOMB) < 400
    result = CliRunner().invoke(
        app, ["train", "--config", str(bomb), "--wandb", "disabled", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2, result.output[:500]
    assert "Traceback" not in result.output
    assert len(result.output) < 600
    assert "alias *a repeats a list or mapping" in result.stderr


def test_aliases_of_plain_values_still_load(tmp_path: Path) -> None:
    from tune_digits.config import parse_yaml_text

    assert parse_yaml_text("a: &x 3\nb: *x\n", "t") == {"a": 3, "b": 3}


def test_too_many_aliases_are_refused() -> None:
    from tune_digits.config import MAX_ALIASES, parse_yaml_text

    text = "a: &x 3\n" + "".join(f"k{i}: *x\n" for i in range(MAX_ALIASES + 1))
    with pytest.raises(UserError, match="more than"):
        parse_yaml_text(text, "t")


def test_long_error_messages_are_cut_to_one_short_line(tmp_path: Path) -> None:
    from tune_digits.cli.app import MAX_MESSAGE

    deep = tmp_path.joinpath(*["x" * 200] * 10, "model.pt")
    result = CliRunner().invoke(app, ["predict", "--model", str(deep), str(tmp_path)])
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert len(result.stderr.strip().splitlines()) == 1 and len(line) < MAX_MESSAGE + 100
    assert "more characters)" in line


def test_a_model_name_too_long_for_the_file_system_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / ("x" * 300)), str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "cannot be opened" in result.stderr
