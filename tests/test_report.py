"""Tests for tune_digits.report and ``tune-digits report``: plots, summary.md and report.html of hand-made folders."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tune_digits import report  # noqa: E402
from tune_digits.cli import app  # noqa: E402
from tune_digits.errors import UserError  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
TRAIN_PLOTS = ["learning_curves.png", "confusion_matrix.png", "per_class_f1.png"]
EIGHT_PLOTS = ["test_f1.png", "confusion_matrices.png", "learning_curves.png"]


def write_train_run(folder: Path, rng: np.random.Generator, test_f1: float = 0.9, epochs: int = 6) -> Path:
    """A run folder as ``tune_digits.run`` writes it, with made-up numbers."""
    folder.mkdir(parents=True)
    cm = np.diag(rng.integers(20, 30, 10))
    np.add.at(cm, (rng.integers(0, 10, 6), rng.integers(0, 10, 6)), 1)  # a few confusions, as in a good model
    metrics = {
        "val_f1": test_f1 + 0.01,
        "val_accuracy": test_f1 + 0.01,
        "val_loss": 0.3,
        "test_f1": test_f1,
        "test_accuracy": test_f1,
        "test_loss": 0.35,
        "best_epoch": epochs - 1,
        "epochs_run": epochs,
        "per_class_f1": rng.uniform(0.7, 1.0, 10).round(4).tolist(),
        "confusion_matrix": cm.tolist(),
        "num_parameters": 61706,
        "train_seconds": 12.5,
        "device": "cpu",
    }
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    epoch = np.arange(1, epochs + 1)
    val_f1 = np.minimum(0.5 + 0.08 * epoch + rng.normal(0, 0.01, epochs), 0.99)
    history = pd.DataFrame(
        {
            "epoch": epoch,
            "train_loss": 2.0 / epoch,
            "val_loss": 2.2 / epoch,
            "val_accuracy": val_f1,
            "val_f1": val_f1,
            "best_val_f1": np.maximum.accumulate(val_f1),
            "lr": 1e-3,
            "seconds": 2.0 * epoch,
            "improved": np.r_[True, np.diff(np.maximum.accumulate(val_f1)) > 0],
        }
    )
    history.to_csv(folder / "history.csv", index=False)
    config = {"model": {"name": "lenet5"}, "features": {"variant": "raw"}, "augment": {"enabled": False}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


def write_search(folder: Path, importance: bool = True, trials: int = 14) -> pd.DataFrame:
    """results.csv of a made-up search: numeric, log-scale and categorical parameters, one failed trial."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    df = pd.DataFrame(
        {
            "trial_id": [f"trial_{i:04d}" for i in range(trials)],
            "status": ["TERMINATED"] * (trials - 1) + ["ERROR"],
            "val_f1": np.r_[rng.uniform(0.5, 0.95, trials - 1), np.nan],
            "epochs_run": rng.integers(1, 20, trials),
            "checkpoint": [f"trials/trial_{i:04d}/checkpoint" for i in range(trials)],
            "train.lr": 10 ** rng.uniform(-4, -2, trials),
            "model.dropout": rng.uniform(0.0, 0.5, trials),
            "train.optimizer": rng.choice(["adamw", "sgd"], trials),
        }
    )
    df.to_csv(folder / "results.csv", index=False)
    if importance:
        imp = {"train.lr": 0.6, "model.dropout": 0.3, "train.optimizer": 0.1}
        (folder / "importance.json").write_text(json.dumps(imp), encoding="utf-8")
    return df


def write_final_eight(
    folder: Path,
    seeds: tuple[int, ...] = (0, 1),
    bilateral: float = 0.02,
    augment: float = 0.05,
    noise: float = 0.0,
    runs: bool = True,
) -> pd.DataFrame:
    """summary.csv and (unless not ``runs``) eight x seeds run folders; test_f1 = base + effects + noise."""
    rng = np.random.default_rng(7)
    rows = []
    for model, name, base in (("A", "lenet5", 0.85), ("B", "efficientnet_b0", 0.9)):
        for variant in ("raw", "bilateral"):
            for aug in (False, True):
                for seed in seeds:
                    test_f1 = base + bilateral * (variant == "bilateral") + augment * aug + 0.01 * seed
                    test_f1 += rng.normal(0, noise) if noise else 0.0
                    run = f"runs/{model}-{variant}-{'aug' if aug else 'noaug'}-s{seed}"
                    if runs:
                        write_train_run(folder / run, rng, test_f1=test_f1)
                    rows.append(
                        {
                            "model": model,
                            "model_name": name,
                            "variant": variant,
                            "augment": aug,
                            "seed": seed,
                            "val_f1": test_f1 + 0.01,
                            "test_f1": test_f1,
                            "test_accuracy": test_f1,
                            "best_epoch": 5,
                            "train_seconds": 12.5,
                            "num_parameters": 61706,
                            "run_dir": run,
                        }
                    )
    summary = pd.DataFrame(rows)
    summary.to_csv(folder / "summary.csv", index=False)
    return summary


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def embedded_pngs(html: Path) -> list[bytes]:
    text = html.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text and "https://" not in text  # self-contained
    images = [base64.b64decode(b64) for b64 in DATA_URI.findall(text)]
    assert all(img[:8] == PNG_MAGIC for img in images)
    return images


def markdown_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The 2x2x2 table of summary.md as {(model cell, variant): [no aug, aug]}."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1] in ("raw", "bilateral"):
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def test_train_run_report(tmp_path: Path) -> None:
    run = write_train_run(tmp_path / "run", np.random.default_rng(0), test_f1=0.9123)
    html = report.write_report(run)[-1]
    assert html == run / "report.html"
    for name in TRAIN_PLOTS:
        assert_png(run / name)
    images = embedded_pngs(html)
    assert len(images) == len(TRAIN_PLOTS)
    assert images[1] == (run / "confusion_matrix.png").read_bytes()
    text = html.read_text(encoding="utf-8")
    assert "0.9123" in text and "lenet5" in text
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_train_run_without_history_skips_learning_curves(tmp_path: Path) -> None:
    run = write_train_run(tmp_path / "run", np.random.default_rng(0))
    (run / "history.csv").unlink()
    files = report.write_report(run)
    assert [p.name for p in files] == ["confusion_matrix.png", "per_class_f1.png", "report.html"]
    assert len(embedded_pngs(files[-1])) == 2
    assert "No history.csv" in files[-1].read_text(encoding="utf-8")


def test_search_report_with_importance(tmp_path: Path) -> None:
    df = write_search(tmp_path / "search")
    plots = report.search_plots(tmp_path / "search")
    assert [p.name for p in plots] == ["optimization_history.png", "param_importance.png", "param_vs_f1.png"]
    for path in plots:
        assert_png(path)
    html = report.write_report(tmp_path / "search")[-1]
    assert len(embedded_pngs(html)) == 3
    text = html.read_text(encoding="utf-8")
    ranked = df.sort_values("val_f1", ascending=False, na_position="last")["trial_id"].tolist()
    assert all(trial in text for trial in ranked[:10])  # the leaderboard: top 10 only
    assert not any(trial in text for trial in ranked[10:])
    assert text.index(ranked[0]) < text.index(ranked[1]) < text.index(ranked[9])


def test_search_report_without_importance_says_so(tmp_path: Path) -> None:
    write_search(tmp_path / "search", importance=False)
    files = report.write_report(tmp_path / "search")
    assert [p.name for p in files] == ["optimization_history.png", "param_vs_f1.png", "report.html"]
    assert not (tmp_path / "search" / "param_importance.png").exists()
    assert len(embedded_pngs(files[-1])) == 2
    assert "No importance.json" in files[-1].read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "values", "scale"),
    [
        ("train.lr", [1e-3, 2e-3, 3e-3], "log"),  # named lr: log even over a narrow range
        ("train.weight_decay", [0.0, 1e-5, 1e-3], "symlog"),  # log-like, but 0 must stay visible
        ("model.width", [8.0, 64.0, 2048.0], "log"),  # spans more than two decades
        ("model.dropout", [0.1, 0.3, 0.5], "linear"),
    ],
)
def test_param_panel_scale(name: str, values: list[float], scale: str) -> None:
    fig, ax = plt.subplots()
    report._param_panel(ax, name, pd.Series(values), pd.Series([0.8, 0.85, 0.9]))
    assert ax.get_xscale() == scale
    assert ax.get_xlabel() == name
    plt.close(fig)


def test_param_panel_categorical_is_a_strip_plot() -> None:
    fig, ax = plt.subplots()
    values = pd.Series(["sgd", "adamw", "sgd", None, "adamw"])
    report._param_panel(ax, "train.optimizer", values, pd.Series([0.8, 0.85, 0.9, 0.7, 0.6]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["adamw", "sgd"]
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == 4  # the missing value is dropped
    assert np.all(np.abs(offsets[:, 0] - np.round(offsets[:, 0])) <= 0.15)  # jittered around 0 and 1
    plt.close(fig)


@pytest.mark.parametrize(("bilateral", "augment"), [(0.02, 0.05), (-0.03, 0.01)])
def test_effects_on_a_constructed_example(tmp_path: Path, bilateral: float, augment: float) -> None:
    summary = write_final_eight(tmp_path, seeds=(0, 1), bilateral=bilateral, augment=augment, runs=False)
    eff = report.effects(summary)
    assert set(eff) == {"A", "B"}
    for model in ("A", "B"):
        assert eff[model]["bilateral"] == pytest.approx(bilateral, abs=1e-9)
        assert eff[model]["augment"] == pytest.approx(augment, abs=1e-9)
    assert not (tmp_path / "summary.md").exists()  # effects() itself writes nothing
    html = report.write_report(tmp_path)[-1]  # run folders absent: empty panels, no crash
    assert len(embedded_pngs(html)) == 3
    lines = [line for line in (tmp_path / "summary.md").read_text(encoding="utf-8").splitlines() if "| A |" in line]
    assert lines == [f"| A | {bilateral:+.4f} | {augment:+.4f} |"]


def test_effects_reads_csv_spellings_and_missing_cells() -> None:
    rows = [("A", "raw", "False", 0.8), ("A", "raw", "true", 0.9), ("A", "bilateral", "0", 0.85)]
    summary = pd.DataFrame(rows, columns=["model", "variant", "augment", "test_f1"])
    eff = report.effects(summary)
    assert eff["A"]["augment"] == pytest.approx(0.1)  # only raw has both settings
    assert eff["A"]["bilateral"] == pytest.approx(0.05)  # only no-aug has both variants


def test_final_eight_report_with_two_seeds(tmp_path: Path) -> None:
    summary = write_final_eight(tmp_path, seeds=(0, 1), noise=0.01)
    html = report.write_report(tmp_path)[-1]
    assert html == tmp_path / "report.html"
    for name in EIGHT_PLOTS:
        assert_png(tmp_path / name)
    assert len(embedded_pngs(html)) == len(EIGHT_PLOTS)
    stats = summary.groupby(["model", "variant", "augment"])["test_f1"].agg(["mean", "std"])
    rows = markdown_rows((tmp_path / "summary.md").read_text(encoding="utf-8"))
    assert list(rows) == [(m, v) for m in ("A (lenet5)", "B (efficientnet_b0)") for v in ("raw", "bilateral")]
    for model, name in (("A", "lenet5"), ("B", "efficientnet_b0")):
        for variant in ("raw", "bilateral"):
            cell = stats.loc[(model, variant)]  # indexed by augment
            expected = [f"{cell.loc[aug, 'mean']:.4f} ± {cell.loc[aug, 'std']:.4f}" for aug in (False, True)]
            assert rows[(f"{model} ({name})", variant)] == expected
    eff = report.effects(summary)
    pivot = stats["mean"].unstack("augment")
    manual = (pivot.loc[("A", "bilateral")] - pivot.loc[("A", "raw")]).mean()
    assert eff["A"]["bilateral"] == pytest.approx(manual)
    assert "Mean ± std over seeds (0, 1)." in html.read_text(encoding="utf-8")


def test_final_eight_with_one_seed_has_no_std(tmp_path: Path) -> None:
    write_final_eight(tmp_path, seeds=(3,))
    files = report.write_report(tmp_path)
    assert [p.name for p in files] == ["summary.md", *EIGHT_PLOTS, "report.html"]
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "±" not in text
    assert markdown_rows(text)[("A (lenet5)", "raw")] == ["0.8800", "0.9300"]


def test_summary_missing_a_column_is_a_user_error(tmp_path: Path) -> None:
    pd.DataFrame({"model": ["A"], "variant": ["raw"], "augment": [False]}).to_csv(tmp_path / "summary.csv")
    with pytest.raises(UserError, match="test_f1"):
        report.write_report(tmp_path)


def test_unknown_and_missing_folders_are_user_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to report", encoding="utf-8")
    with pytest.raises(UserError, match="no metrics.json, results.csv or summary.csv"):
        report.write_report(tmp_path)
    with pytest.raises(UserError, match="no such folder"):
        report.write_report(tmp_path / "absent")


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_train_run(tmp_path / "run", np.random.default_rng(0))
    html = report.write_report(run)[-1]
    before = html.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(run)
    assert html.read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_cli_report_prints_the_html_path(tmp_path: Path) -> None:
    run = write_train_run(tmp_path / "run", np.random.default_rng(0))
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"report: {run / 'report.html'}"
    assert {line.removeprefix("wrote ") for line in lines[1:]} == {str(run / name) for name in TRAIN_PLOTS}


def test_cli_report_exits_2_on_a_missing_or_unknown_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "no such folder" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a train run" in result.output


@pytest.mark.parametrize("width", [80, 300])
def test_leaderboard_fits_the_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """Parameter columns are dropped (and counted) rather than squeezed into unreadable cells."""
    import io

    from rich.console import Console

    import tune_digits.cli.search as search_cli

    df = write_search(tmp_path / "s", importance=False)
    extra = {f"augment.knob_{i}": np.linspace(0, 1, len(df)) for i in range(8)}
    df.assign(**extra).sort_values("val_f1", ascending=False).to_csv(tmp_path / "s" / "results.csv", index=False)
    console = Console(width=width, file=io.StringIO(), color_system=None)
    monkeypatch.setattr(search_cli, "out", console)
    search_cli.show_leaderboard(tmp_path / "s")
    text = console.file.getvalue()
    lines = text.splitlines()
    table = [line for line in lines if not line.startswith(("results:", "best config:"))]  # paths stay whole
    assert all(len(line) <= width for line in table), text
    assert "trial_0" in text and "…" not in text  # whole trial ids and values, nothing elided
    header = next(line for line in lines if "val F1" in line)
    if width == 80:
        assert "more parameter columns in results.csv" in text
        assert "lr" in header  # the first parameters, by their short names
    else:
        assert "more parameter columns" not in text
        assert all(f"knob_{i}" in header for i in range(8)) and "optimizer" in header
