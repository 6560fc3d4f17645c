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
SEARCH_PLOTS = ["optimization_history.png", "trial_curves.png", "param_importance.png", "param_vs_f1.png"]
SEARCH_PLOTS += ["parallel_coordinates.png"]


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
            "status": ["STOPPED", "TERMINATED"] * ((trials - 1) // 2) + ["STOPPED"] * ((trials - 1) % 2) + ["ERROR"],
            "val_f1": np.r_[rng.uniform(0.5, 0.95, trials - 1), np.nan],
            "epochs_run": [rng.integers(1, 10) if i % 2 == 0 else 12 for i in range(trials)],  # ASHA stops at 1-9
            "checkpoint": [f"trials/trial_{i:04d}/checkpoint" for i in range(trials)],
            "trial_index": np.arange(1, trials + 1),
            "train.lr": 10 ** rng.uniform(-4, -2, trials),
            "model.dropout": rng.uniform(0.0, 0.5, trials),
            "train.optimizer": rng.choice(["adamw", "sgd"], trials),
        }
    )
    df.sort_values("val_f1", ascending=False).to_csv(folder / "results.csv", index=False)  # as search writes it
    for row in df.itertuples():
        epochs = np.arange(1, row.epochs_run + 1)
        final = 0.4 if np.isnan(row.val_f1) else row.val_f1
        curve = [{"epoch": int(e), "val_f1": float(final * (1 - 0.5 * 0.6**e))} for e in epochs]
        trial = folder / "trials" / row.trial_id
        trial.mkdir(parents=True)
        (trial / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve), encoding="utf-8")
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
    plots = [path for path, _ in report.search_plots(tmp_path / "search")]
    assert [p.name for p in plots] == SEARCH_PLOTS
    for path in plots:
        assert_png(path)
    html = report.write_report(tmp_path / "search")[-1]
    assert len(embedded_pngs(html)) == 5
    text = html.read_text(encoding="utf-8")
    ranked = df.sort_values("val_f1", ascending=False, na_position="last")["trial_id"].tolist()
    assert all(trial in text for trial in ranked[:10])  # the leaderboard: top 10 only
    assert not any(trial in text for trial in ranked[10:])
    assert text.index(ranked[0]) < text.index(ranked[1]) < text.index(ranked[9])


def test_search_report_without_importance_says_so(tmp_path: Path) -> None:
    write_search(tmp_path / "search", importance=False)
    files = report.write_report(tmp_path / "search")
    assert [p.name for p in files] == [*(n for n in SEARCH_PLOTS if n != "param_importance.png"), "report.html"]
    assert not (tmp_path / "search" / "param_importance.png").exists()
    assert len(embedded_pngs(files[-1])) == 4
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
    assert "Mean ± std over 2 seeds (0, 1)." in html.read_text(encoding="utf-8")


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

    import tune_digits.cli.render as search_cli

    df = write_search(tmp_path / "s", importance=False)
    extra = {f"augment.knob_{i}": np.linspace(0, 1, len(df)) for i in range(8)}
    df.assign(**extra).sort_values("val_f1", ascending=False).to_csv(tmp_path / "s" / "results.csv", index=False)
    console = Console(width=width, file=io.StringIO(), color_system=None)
    monkeypatch.setattr(search_cli, "out", console)
    search_cli.show_leaderboard(tmp_path / "s")
    text = console.file.getvalue()
    lines = text.splitlines()
    paths = ("results:", "report:", "best config:", "  train it:", "W&B:", "  upload them:", "folder:")
    table = [line for line in lines if not line.startswith(paths)]  # paths stay whole, to copy
    assert all(len(line) <= width for line in table), text
    assert "trial_0" in text and "…" not in text  # whole trial ids and values, nothing elided
    header = next(line for line in lines if "val F1" in line)
    if width == 80:
        assert "more parameter columns in results.csv" in text
        assert "lr" in header  # the first parameters, by their short names
    else:
        assert "more parameter columns" not in text
        assert all(f"knob_{i}" in header for i in range(8)) and "optimizer" in header


def test_history_plots_start_order_with_a_running_best(tmp_path: Path) -> None:
    from tune_digits.report_search import _history, in_start_order

    df = pd.read_csv(write_search(tmp_path / "s").pipe(lambda _: tmp_path / "s" / "results.csv"))
    assert df["val_f1"].is_monotonic_decreasing is False or df["val_f1"].dropna().is_monotonic_decreasing
    ordered = in_start_order(df)
    assert ordered["trial_index"].tolist() == list(range(1, 15))  # results.csv is sorted by val F1, not start
    fig, ax = plt.subplots()
    _history(ax, ordered)
    points = sorted((x, y) for c in ax.collections for x, y in c.get_offsets())
    expected = ordered["val_f1"].tolist()
    assert [y for _, y in points] == pytest.approx([v for v in expected if not np.isnan(v)])
    assert [x for x, _ in points] == [i + 1 for i, v in enumerate(expected) if not np.isnan(v)]
    best = ax.lines[0].get_ydata()
    assert list(best) == pytest.approx(list(pd.Series(expected).cummax().ffill()))
    assert best[0] < best[-1] and np.all(np.diff(best) >= 0)  # it rises: not a flat line from the best trial
    plt.close(fig)


def test_results_without_trial_index_get_no_history_and_say_so(tmp_path: Path) -> None:
    df = write_search(tmp_path / "s")
    df.drop(columns="trial_index").to_csv(tmp_path / "s" / "results.csv", index=False)
    files = report.write_report(tmp_path / "s")
    assert "optimization_history.png" not in [p.name for p in files]
    assert "no trial_index (an older search)" in files[-1].read_text(encoding="utf-8")


def test_trial_curves_mark_where_each_trial_ended(tmp_path: Path) -> None:
    from tune_digits.report_search import _curves, in_start_order

    write_search(tmp_path / "s")
    ordered = in_start_order(pd.read_csv(tmp_path / "s" / "results.csv"))
    fig, ax = plt.subplots()
    assert _curves(ax, tmp_path / "s", ordered) == 14
    assert len(ax.lines) == 14
    stopped = ordered[ordered["status"] == "STOPPED"]
    orange = matplotlib.colors.to_rgba("tab:orange")

    def colour(c) -> tuple:
        return tuple(c.get_facecolor()[0]) if len(c.get_facecolor()) else tuple(c.get_edgecolor()[0])

    ends = {int(c.get_offsets()[0][0]) for c in ax.collections if colour(c) == pytest.approx(orange)}
    assert ends == set(stopped["epochs_run"])  # an orange end mark at the epoch where each stopped trial ended
    assert len([c for c in ax.collections if colour(c) == pytest.approx(orange)]) == len(stopped)
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"last epoch: stopped early (ASHA)", "last epoch: ran every epoch", "last epoch: failed"} <= legend
    plt.close(fig)


def test_parallel_coordinates_tick_categories_at_their_values() -> None:
    from tune_digits.report_search import parallel_coordinates

    df = pd.DataFrame(
        {
            "trial_id": list("abcdef"),
            "status": ["TERMINATED"] * 5 + ["ERROR"],
            "val_f1": [0.6, 0.7, 0.8, 0.9, 0.75, np.nan],
            "train.optimizer": ["sgd", "adamw", "sgd", "adamw", "sgd", "sgd"],
            "train.batch_size": [128, 32, 64, 32, 128, 64],
            "train.lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-3],
        }
    )
    fig, ax = plt.subplots()
    ticks = parallel_coordinates(fig, ax, df, ["train.optimizer", "train.batch_size", "train.lr"])
    assert ticks[0] == [(0.0, "adamw"), (1.0, "sgd")]
    assert ticks[1] == [(0.0, "32"), (0.5, "64"), (1.0, "128")]  # numeric order, not text order ("128" < "32")
    assert [label for _, label in ticks[2]] == ["0.0001", "0.001", "0.01"]  # log axis: the middle is 1e-3
    trials = [ln for ln in ax.lines if len(ln.get_xdata()) == 4]  # the others are the 4 vertical axes
    assert len(trials) == 5  # the failed trial has no val F1 to draw
    line = next(ln for ln in trials if ln.get_ydata()[-1] == 1.0)  # the best trial (0.9): adamw, 32, 3e-3
    assert list(line.get_ydata()[:2]) == [0.0, 0.0]
    assert {t.get_text() for t in ax.texts} >= {"adamw", "sgd", "32", "64", "128"}
    plt.close(fig)


def test_choice_of_numbers_is_ticked_at_its_values() -> None:
    fig, ax = plt.subplots()
    report._param_panel(ax, "train.batch_size", pd.Series([32, 64, 32, 128]), pd.Series([0.8, 0.85, 0.9, 0.7]))
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["32", "64", "128"]
    plt.close(fig)


def test_importance_needs_eight_finished_trials(tmp_path: Path) -> None:
    write_search(tmp_path / "s", trials=8)  # 7 finished, 1 failed; importance.json present
    files = report.write_report(tmp_path / "s")
    assert "param_importance.png" not in [p.name for p in files]
    text = files[-1].read_text(encoding="utf-8")
    assert "needs at least 8 finished trials; this search has 7" in text
    write_search(tmp_path / "t", trials=9)
    assert "param_importance.png" in [p.name for p in report.write_report(tmp_path / "t")]


def _captured_figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    import tune_digits.report_eight as eight

    figures: dict[str, object] = {}
    real = eight._save

    def save(fig, path: Path) -> Path:
        figures[path.name] = fig
        return real(fig, path)

    monkeypatch.setattr(eight, "_save", save)
    return figures


@pytest.mark.parametrize(("seeds", "errorbars"), [((0,), False), ((0, 1), True)])
def test_error_bars_only_with_seeds_to_spread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seeds: tuple[int, ...], errorbars: bool
) -> None:
    figures = _captured_figures(monkeypatch)
    write_final_eight(tmp_path, seeds=seeds, runs=False)
    html = report.write_report(tmp_path)[-1].read_text(encoding="utf-8")
    kinds = {type(c).__name__ for c in figures["test_f1.png"].axes[0].containers}
    assert ("ErrorbarContainer" in kinds) == errorbars and "BarContainer" in kinds
    assert ("1 seed (0)" if len(seeds) == 1 else "2 seeds (0, 1)") in html


def test_confusion_matrices_say_they_are_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _captured_figures(monkeypatch)
    write_final_eight(tmp_path, seeds=(0,))
    html = report.write_report(tmp_path)[-1].read_text(encoding="utf-8")
    fig = figures["confusion_matrices.png"]
    assert "test split" in fig._suptitle.get_text()
    assert all(": test (1 run)" in ax.get_title() for ax in fig.axes if ax.get_visible())
    assert "Test-split confusion matrices" in html


def test_final_eight_picks_by_validation_and_shows_test_beside_it(tmp_path: Path) -> None:
    summary = write_final_eight(tmp_path, seeds=(0,), runs=False)
    # B bilateral +aug has the best test F1; make A raw the best on validation
    summary.loc[(summary["model"] == "A") & (summary["variant"] == "raw") & ~summary["augment"], "val_f1"] = 0.99
    summary.to_csv(tmp_path / "summary.csv", index=False)
    sources = {"A": {"model_name": "lenet5", "params": "/x/runs/search/s7/best.yaml", "search": "s7", "data": "/d"}}
    (tmp_path / "sources.json").write_text(json.dumps(sources), encoding="utf-8")
    best = report.best_configuration(summary)
    assert best["label"] == "A raw" and best["val_f1"] == pytest.approx(0.99) and best["test_f1"] == pytest.approx(0.85)
    text = report.write_report(tmp_path)[-1].read_text(encoding="utf-8")
    assert "best configuration (by val macro-F1)</th><td>A raw</td>" in text
    assert "its test macro-F1 (not used to pick)</th><td>0.8500</td>" in text
    assert "B bilateral +aug" not in text.split("<h2>")[0]  # the test-best is no headline
    assert "/x/runs/search/s7/best.yaml" in text and "<td>s7</td>" in text
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "Best by validation macro-F1: A raw (val 0.9900, test 0.8500)." in md
    assert "Model A (lenet5): params /x/runs/search/s7/best.yaml (search s7); data /d, split —" in md


def test_tables_scroll_inside_their_box(tmp_path: Path) -> None:
    write_search(tmp_path / "s")
    text = report.write_report(tmp_path / "s")[-1].read_text(encoding="utf-8")
    assert text.count('<div class="table"><table>') == text.count("<table>") >= 2
    assert ".table{overflow-x:auto" in text
