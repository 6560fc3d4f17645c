"""final-eight on the demo corpus: eight real trainings through a Ray Tune grid, killed and resumed."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import wandb_files  # tests/wandb_files.py
from processes import cli_argv, kill, start, wait_for  # tests/processes.py
from run_folders import assert_quiet, assert_small  # tests/run_folders.py
from typer.testing import CliRunner

from tune_digits.cli import app
from tune_digits.config import load_config, save_config
from tune_digits.live import eight_label
from tune_digits.matrix import log_summary_run
from tune_digits.tuning import TrialContext, run_name

pytestmark = pytest.mark.slow
runner = CliRunner()


def _params(folder: Path) -> tuple[Path, Path]:
    a = load_config(None, ["model.name=lenet5", "model.channels=[4,8]", "model.fc=[32,16]", "train.epochs=1"])
    b = load_config(None, ["model.name=resnet20", "train.epochs=1", "train.batch_size=64"])
    save_config(a, folder / "a.yaml")
    save_config(b, folder / "b.yaml")
    return folder / "a.yaml", folder / "b.yaml"


@pytest.fixture(scope="module")
def eight(tmp_path_factory: pytest.TempPathFactory, feature_cache: Path) -> Path:
    """A final-eight killed (SIGKILL, Ray included) once its first training finished, then resumed to the end.

    Every test of this module reads the folder the resumed command leaves: it must be what an uninterrupted
    comparison writes. ``before.json`` holds the trainings finished before the kill and their metrics files.
    """
    tmp = tmp_path_factory.mktemp("eight")
    env = {**os.environ, "TUNE_DIGITS_CACHE": str(feature_cache), "WANDB_MODE": "disabled", "COLUMNS": "100"}
    a, b = _params(tmp)
    common = ["--storage", tmp / "runs", "--name", "e1", "--wandb", "disabled"]
    folder = tmp / "runs" / "e1"

    def finished() -> list[Path]:
        return sorted(p.parent for p in folder.glob("trials/*/labels.json"))

    proc = start(cli_argv("final-eight", "--model-a", a, "--model-b", b, "--epochs", "1", *common), env, tmp)
    wait_for(lambda: len(finished()) >= 1, proc, "a finished training")
    kill(proc)
    before = {p.name: (p / "metrics.json").read_text(encoding="utf-8") for p in finished()}
    summary_before_resume = (folder / "summary.csv").exists()
    resumed = subprocess.run(
        cli_argv("final-eight", "--resume", *common), env=env, cwd=tmp, capture_output=True, text=True, timeout=500
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (tmp / "output.txt").write_text(resumed.stdout + resumed.stderr, encoding="utf-8")
    (tmp / "before.json").write_text(json.dumps({"finished": before, "summary": summary_before_resume}))
    return folder


def test_a_killed_final_eight_resumes_to_eight_rows_without_training_twice(eight: Path) -> None:
    before = json.loads((eight.parents[1] / "before.json").read_text())
    assert 1 <= len(before["finished"]) < 8 and not before["summary"]  # killed in the middle, no summary yet
    table = pd.read_csv(eight / "summary.csv")
    combos = list(zip(table["model"], table["variant"], table["augment"], table["seed"], strict=True))
    assert len(combos) == len(set(combos)) == 8  # no duplicates
    assert set(combos) == {(m, v, g, 0) for m in "AB" for v in ("raw", "bilateral") for g in (False, True)}
    assert len(list(eight.glob("trials/*/labels.json"))) == len(list(eight.glob("trials/*"))) == 8  # no extra folders
    for name, metrics in before["finished"].items():  # finished trainings were not run again
        assert (eight / "trials" / name / "metrics.json").read_text(encoding="utf-8") == metrics


def test_the_terminal_shows_the_eight_trainings_then_where_things_are(eight: Path) -> None:
    text = (eight.parents[1] / "output.txt").read_text(encoding="utf-8")
    assert_quiet(text, eight.parents[1])
    lines = text.splitlines()
    assert "8/8 finished, 0 running" in text and "A-bilateral-aug-s0 done after 1 epochs" in text
    assert "after 0 epochs" not in text  # a training resumed from its last epoch's checkpoint says so too
    assert f"report: {eight / 'report.html'}" in lines
    assert any(line.startswith(f"folder: {eight} (") for line in lines)


def test_a_finished_final_eight_keeps_one_model_per_training(eight: Path) -> None:
    assert_small(eight, 8)


def test_wandb_runs_are_named_by_what_they_train() -> None:
    class Trial:
        trial_id, experiment_tag = "bd203_00005", "5_arm=B,augment.enabled=True"
        config = {"arm": "B", "features.variant": "bilateral", "augment.enabled": True, "train.seed": 2}

    eight_ctx = TrialContext("out", "e1", {"A": {}, "B": {}})
    assert run_name(eight_ctx, Trial()) == "B-bilateral-aug-s2"
    assert eight_label({**Trial.config, "augment.enabled": False, "features.variant": "raw"}) == "B-raw-noaug-s2"
    Trial.experiment_tag = "3_train.lr=0.001"
    assert run_name(TrialContext("out", "lenet-1", {"": {}}), Trial()) == "lenet-1-3"


def test_eight_rows_cover_exactly_the_eight_combinations(eight: Path) -> None:
    table = pd.read_csv(eight / "summary.csv")
    assert len(table) == 8
    combos = set(zip(table["model"], table["variant"], table["augment"], strict=True))
    assert combos == {(m, v, a) for m in "AB" for v in ("raw", "bilateral") for a in (False, True)}
    assert set(table[table["model"] == "B"]["model_name"]) == {"resnet20"}
    assert table["test_f1"].between(0, 1).all()


def test_report_and_plots_are_written_and_images_decode(eight: Path) -> None:
    for name in ("summary.md", "test_f1.png", "confusion_matrices.png", "learning_curves.png"):
        assert (eight / name).stat().st_size > 0, name
    html = (eight / "report.html").read_text()
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(images) >= 3
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "±" not in (eight / "summary.md").read_text()  # one seed: no spread to show
    assert "1 seed (0)" in html and "seeds 0" not in html


def test_report_names_where_each_model_came_from(eight: Path) -> None:
    sources = json.loads((eight / "sources.json").read_text())
    assert sorted(sources) == ["A", "B"]
    assert Path(sources["A"]["params"]).name == "a.yaml" and sources["A"]["search"] == ""  # a file given, no search
    assert sources["B"]["model_name"] == "resnet20"
    table = pd.read_csv(eight / "summary.csv")
    assert {s["data"] for s in sources.values()} == {json.loads((eight / "bases.json").read_text())["A"]["data.root"]}
    html = (eight / "report.html").read_text()
    assert sources["A"]["params"] in html and sources["A"]["data"] in html
    best = table.groupby(["model", "variant", "augment"])["val_f1"].mean().idxmax()
    label = f"{best[0]} {best[1]}{' +aug' if best[2] else ''}"
    assert f"best configuration (by val macro-F1)</th><td>{label}</td>" in html


def test_variant_and_augmentation_really_differ_between_runs(eight: Path) -> None:
    table = pd.read_csv(eight / "summary.csv")
    caches = {}
    for _, row in table.iterrows():
        run = eight / row["run_dir"]
        meta = json.loads((run / "run.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        caches.setdefault((row["model"], row["variant"]), set()).add(meta["feature_cache"])
        assert (metrics["augmented_batches"] > 0) == bool(row["augment"]), row.to_dict()
    for model in "AB":
        raw, bil = caches[(model, "raw")], caches[(model, "bilateral")]
        assert len(raw) == 1 and len(bil) == 1 and raw != bil  # the bilateral runs read the bilateral cache
    splits = {(eight / r / "split.json").read_text() for r in table["run_dir"]}
    assert len(splits) == 1  # one split for all eight


def test_wandb_summary_run_holds_the_eight_rows(eight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The extra W&B run of the group: summary.csv as a table, the effects as summary values (offline here)."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    log_summary_run(eight, "offline", out_dir=tmp_path)
    runs = list(tmp_path.glob("wandb/offline-run-*"))
    assert len(runs) == 1
    tables = list(runs[0].glob("files/media/table/final_eight_*.table.json"))
    assert len(tables) == 1
    logged = json.loads(tables[0].read_text())
    expected = pd.read_csv(eight / "summary.csv")
    assert logged["columns"] == list(expected.columns) and len(logged["data"]) == 8
    f1 = logged["columns"].index("test_f1")
    assert [row[f1] for row in logged["data"]] == pytest.approx(expected["test_f1"].tolist())
    log = wandb_files.wait_written(next(runs[0].glob("run-*.wandb")))
    summary = wandb_files.summary(log)
    run = next(r.run for r in wandb_files.records(log) if r.WhichOneof("record_type") == "run")
    assert run.run_group == "e1" and run.display_name == "e1-summary"  # the final-eight's own group
    best = expected.loc[expected["val_f1"].idxmax()]  # one seed: the best run is the best configuration
    assert float(summary["best_val_f1"]) == pytest.approx(best["val_f1"])
    assert float(summary["best_config_test_f1"]) == pytest.approx(best["test_f1"])
    assert "best_test_f1" not in summary  # test F1 picks nothing
    assert {"A/bilateral_effect", "A/augment_effect", "B/bilateral_effect", "B/augment_effect"} <= set(summary)
    log_summary_run(eight, "disabled", out_dir=tmp_path / "off")
    assert not (tmp_path / "off").exists()


def test_refuses_without_params(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "final-eight",
            "--searches",
            str(tmp_path / "none"),
            "--storage",
            str(tmp_path / "runs"),
            "--wandb",
            "disabled",
        ],
    )
    assert result.exit_code == 2
    assert "no params for Model A" in result.output and "search_spaces/lenet.yaml" in result.output
    assert not (tmp_path / "runs").exists()
