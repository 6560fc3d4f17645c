"""What the train and search commands decide, as library functions: checks, output names, the resume line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune_digits.config import load_config
from tune_digits.errors import UserError
from tune_digits.jobs import check_before_data, check_cv_flags, default_out
from tune_digits.search import SearchOptions, default_name, resume_line, settings_overrides


def test_default_out_names_the_model_variant_and_protocol() -> None:
    cfg = load_config(overrides=["model.name=resnet20", "features.variant=bilateral"])
    assert default_out(cfg, stamp="T") == Path("runs/train/T-resnet20-bilateral-aug")
    off = load_config(overrides=["augment.enabled=false"])
    assert default_out(off, stamp="T") == Path("runs/train/T-lenet5-raw")
    assert default_out(cfg, "loso", stamp="T") == Path("runs/cv/T-resnet20-loso")


@pytest.mark.parametrize(
    ("cv", "split", "message"),
    [("kfold", None, "--cv kfold: unknown protocol; use becker or loso"), ("loso", "speakers", "leave out --split")],
)
def test_cv_flags_are_checked(cv: str, split: str | None, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_cv_flags(cv, split)
    check_cv_flags(None, split)
    check_cv_flags(cv if cv in ("becker", "loso") else "becker", None)


def test_a_protocol_split_without_its_fold_fails_only_for_a_single_run() -> None:
    cfg = load_config(overrides=["data.split=loso"])
    with pytest.raises(UserError, match="use --cv loso"):
        check_before_data(cfg, None)
    check_before_data(cfg, "loso")  # --cv picks the folds
    with pytest.raises(UserError):
        check_before_data(load_config(overrides=["model.name=no_such_net"]), "loso")


def test_search_names_settings_and_the_resume_line(tmp_path: Path) -> None:
    assert default_name(Path("search_spaces/lenet.yaml"), stamp="T") == "lenet-T"
    assert settings_overrides(num_samples=4, seed=None, time_budget=1.5) == [
        "search.num_samples=4",
        "search.time_budget=1.5",
    ]
    opts = SearchOptions(name="s", storage=tmp_path)
    assert resume_line(Path("sp.yaml"), opts) is None  # nothing to resume yet
    (tmp_path / "s").mkdir()
    line = resume_line(Path("sp.yaml"), opts)
    assert line is not None and "\n" not in line
    assert line.endswith(f"resume with: tune-digits search --space sp.yaml --storage {tmp_path} --name s --resume")
