"""Real Ray Tune searches on the bundled demo corpus, on the CPU."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import wandb_files  # tests/wandb_files.py
import yaml
from run_folders import assert_quiet, assert_small  # tests/run_folders.py
from typer.testing import CliRunner

from tune_digits.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()

# Two hopeless learning rates and two good ones: ASHA has something to stop.
SPACE = {
    "fixed": {"model.name": "lenet5", "data.split": "speakers", "model.channels": [4, 8], "model.fc": [32, 16]},
    "space": {
        "train.lr": {"type": "choice", "values": [1.0e-7, 3.0e-3, 2.0e-7, 5.0e-3]},
        "model.dropout": {"type": "quantized", "low": 0.0, "high": 0.2, "q": 0.1},
    },
    "search": {"num_samples": 4, "max_epochs": 4, "grace_period": 1, "reduction_factor": 2, "seed": 1},
}


def _write_space(folder: Path, **search: object) -> Path:
    data = json.loads(json.dumps(SPACE))
    data["search"].update(search)
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory: pytest.TempPathFactory, feature_cache: Path) -> Path:
    tmp = tmp_path_factory.mktemp("search")
    env = {"TUNE_DIGITS_CACHE": str(feature_cache), "WANDB_MODE": "offline", "WANDB_SILENT": "true", "COLUMNS": "100"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        space = _write_space(tmp, num_samples=6)  # --set search.num_samples=4 below wins: 4 trials
        args = ["search", "--space", str(space), "--storage", str(tmp / "runs"), "--name", "s1"]
        args += ["--wandb", "offline", "--max-concurrent", "2", "--set", "search.num_samples=4"]
        result = runner.invoke(app, args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert result.exit_code == 0, result.output
    (tmp / "output.txt").write_text(result.output, encoding="utf-8")
    return tmp / "runs" / "s1"


def _output(folder: Path) -> str:
    return (folder.parents[1] / "output.txt").read_text(encoding="utf-8")


def test_search_writes_one_row_per_trial_and_a_usable_best_yaml(finished_search: Path, tmp_path, tmp_cache) -> None:
    table = pd.read_csv(finished_search / "results.csv")
    assert len(table) == 4 and table["trial_id"].is_unique
    assert {"train.lr", "model.dropout", "val_f1", "epochs_run", "status", "checkpoint"} <= set(table.columns)
    assert table["val_f1"].iloc[0] == table["val_f1"].max()
    best = yaml.safe_load((finished_search / "best.yaml").read_text())
    assert best["train"]["lr"] == pytest.approx(table["train.lr"].iloc[0])
    assert best["data"]["split"] == str(finished_search / "split.json")
    out = tmp_path / "again"
    result = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(finished_search / "best.yaml"),
            "--epochs",
            "1",
            "--out",
            str(out),
            "--wandb",
            "disabled",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        json.loads((out / "split.json").read_text())["test"]
        == json.loads((finished_search / "split.json").read_text())["test"]
    )


def test_every_trial_folder_is_a_run_folder(finished_search: Path) -> None:
    import torch

    table = pd.read_csv(finished_search / "results.csv")
    for _, row in table.iterrows():
        folder = finished_search / "trials" / row["trial_id"]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["val_f1"] == pytest.approx(row["val_f1"])
        assert json.loads((folder / "run.json").read_text())["kind"] == "search-trial"
        payload = torch.load(folder / "model.pt", weights_only=True)
        assert payload["config"]["train.lr"] == pytest.approx(row["train.lr"])
        lines = (folder / "history.jsonl").read_text().splitlines()
        assert len(lines) == row["epochs_run"]


def test_asha_stops_poor_trials_early(finished_search: Path) -> None:
    table = pd.read_csv(finished_search / "results.csv")
    stopped = table[table["epochs_run"] < 4]
    assert len(stopped) >= 1, table[["train.lr", "epochs_run", "val_f1"]]
    assert (stopped["status"] == "STOPPED").all()
    assert table.iloc[0]["epochs_run"] == 4  # the winner ran to the end


def test_wandb_offline_runs_land_on_disk(finished_search: Path) -> None:
    runs = sorted(finished_search.glob("wandb/offline-run-*"))  # all of them in one folder
    assert len(runs) == 4 and not list(finished_search.glob("trials/*/wandb"))
    names = set()
    for run in runs:
        log = wandb_files.wait_written(next(run.glob("run-*.wandb")))
        assert {"val_f1", "train_loss"} <= set(wandb_files.history(log)[0])
        record = next(r.run for r in wandb_files.records(log) if r.WhichOneof("record_type") == "run")
        assert record.run_group == "s1"
        names.add(record.display_name)
    assert names == {"s1-1", "s1-2", "s1-3", "s1-4"}  # the search's name and the trial's number
    lines = _output(finished_search).splitlines()
    assert f"W&B: 4 runs logged offline in {finished_search / 'wandb'}" in lines
    assert f"  upload them: wandb sync {finished_search / 'wandb'}/offline-run-*" in lines


def test_the_terminal_shows_the_search_not_ray(finished_search: Path) -> None:
    text = _output(finished_search)
    lines = text.splitlines()
    assert_quiet(text, finished_search.parents[1])
    assert f"best config: {finished_search / 'best.yaml'}" in lines
    assert f"report: {finished_search / 'report.html'}" in lines
    assert sum(f"Ray's own log: {finished_search / 'ray.log'}" in line for line in lines) == 1
    assert (finished_search / "ray.log").stat().st_size > 0
    assert "4/4 finished" in text
    table = pd.read_csv(finished_search / "results.csv")
    assert f"best val F1 {table['val_f1'].max():.4f}" in text  # the live view's best is the leaderboard's
    assert any(line.startswith(f"folder: {finished_search} (") for line in lines)


def test_a_finished_search_keeps_one_model_per_trial_and_no_optimizer_state(finished_search: Path) -> None:
    assert_small(finished_search, 4)
    assert {p.name for p in finished_search.iterdir() if p.is_dir()} == {".ray", "trials", "wandb"}


def _drawn(path: Path) -> np.ndarray:
    """The RGB pixels of a written plot: a real image with ink on it, not a blank canvas."""
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400, (path.name, image.shape)
    rgb = image[..., :3]
    assert (rgb.min(axis=-1) < 0.5).mean() > 0.005, f"{path.name} is blank"
    return rgb


def test_plots_are_drawn_from_the_search_results(finished_search: Path, tmp_path: Path) -> None:
    """The plots hold the trials' values: the same folder with other val F1s draws other pictures."""
    from tune_digits.report_search import search_plots

    names = ("optimization_history.png", "param_vs_f1.png")
    before = {name: _drawn(finished_search / name) for name in names}
    assert before[names[0]].shape != before[names[1]].shape or (before[names[0]] != before[names[1]]).any()
    html = (finished_search / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= len(names)
    other = tmp_path / "other"
    shutil.copytree(finished_search, other, ignore=shutil.ignore_patterns(".ray", "wandb", "*.pt", "*.png"))
    table = pd.read_csv(other / "results.csv")
    assert table["val_f1"].notna().all()
    table["val_f1"] = 1.0 - table["val_f1"]  # the best trial becomes the worst
    table.to_csv(other / "results.csv", index=False)
    written = {path.name for path, _ in search_plots(other)}
    assert set(names) <= written
    for name in names:
        after = _drawn(other / name)
        assert after.shape != before[name].shape or (after != before[name]).any(), f"{name} ignores val_f1"


def test_search_refuses_bad_input_and_creates_nothing(tmp_path, tmp_cache) -> None:
    storage = tmp_path / "runs"
    space = _write_space(tmp_path)
    cases = [
        ["--space", str(tmp_path / "missing.yaml")],
        ["--space", str(space), "--data", str(tmp_path / "nodata")],
        ["--space", str(space), "--resume", "--name", "ghost"],
    ]
    for args in cases:
        result = runner.invoke(app, ["search", *args, "--storage", str(storage), "--wandb", "disabled"])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert not storage.exists()


def test_unreachable_address_is_a_one_line_error(tmp_path, tmp_cache) -> None:
    args = [
        "search",
        "--space",
        str(_write_space(tmp_path)),
        "--storage",
        str(tmp_path / "runs"),
        "--address",
        "127.0.0.1:1",
        "--wandb",
        "disabled",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "cannot reach a Ray cluster" in result.output
    assert not (tmp_path / "runs").exists()


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_a_planted_tuner_pkl_and_runs_nothing(finished_search: Path, tmp_path: Path) -> None:
    """A copy of the finished search whose tuner.pkl was replaced: ``--resume`` refuses before Ray starts."""
    from tune_digits.storage_guard import MANIFEST, check_storage

    folder = tmp_path / "runs" / finished_search.name
    shutil.copytree(finished_search, folder, ignore=shutil.ignore_patterns("wandb"))
    ray_dir = folder / ".ray"  # Ray's experiment, inside the search folder
    assert (ray_dir / MANIFEST).is_file() and (ray_dir / "tuner.pkl").is_file()
    check_storage(ray_dir)  # every pickle Ray wrote is signed (a killed search resuming: test_reliability)

    marker = tmp_path / "code-ran"
    (ray_dir / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "300"}
    argv = [
        sys.executable,
        "-m",
        "tune_digits.cli",
        "search",
        "--space",
        str(finished_search.parents[1] / "space.yaml"),
    ]
    argv += ["--storage", str(folder.parent), "--name", folder.name, "--wandb", "disabled", "--resume"]
    refused = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    lines = [line for line in refused.stderr.splitlines() if line.strip() and not line.startswith("data: ")]
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr[-3000:]  # Ray did not even start
    assert "tuner.pkl: changed" in lines[0], lines[0]
    assert not marker.exists(), "the planted pickle ran"
