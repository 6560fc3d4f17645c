"""Plots, tables and a self-contained report.html for a run folder: ``tune-digits report``.

The kind of folder is told by what it holds (first match wins):
    summary.csv   final eight -> summary.md, test_f1.png, confusion_matrices.png, learning_curves.png
    results.csv   search      -> optimization_history.png, param_importance.png (with importance.json), param_vs_f1.png
    metrics.json  train run   -> learning_curves.png, confusion_matrix.png, per_class_f1.png
Each also gets report.html: one page, images embedded as data URIs, readable offline. Every file
is written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_digits.atomic import write_bytes, write_text
from tune_digits.config import flatten, read_yaml
from tune_digits.errors import UserError

DPI = 110
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f2f2f2}img{max-width:100%}figure{margin:1em 0}figcaption{color:#666;font-size:90%}"
)
VARIANTS = ["raw", "bilateral"]
TRAIN_FACTS = ("model.name", "features.variant", "augment.enabled", "data.root", "data.split", "train.seed")
TRAIN_METRICS = ("val_f1", "val_accuracy", "val_loss", "test_f1", "test_accuracy", "test_loss", "best_epoch")
TRAIN_METRICS += ("epochs_run", "num_parameters", "train_seconds", "device")
UNKNOWN = "is not a train run, a search or a final-eight folder: it has no metrics.json, results.csv or summary.csv"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return write_bytes(path, buf.getvalue())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as JSON ({exc})") from None


def _read_csv(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as CSV ({exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


class Html(str):
    """Markup built only by :func:`_h2`, :func:`_p`, :func:`_table` and :func:`_page`, which escape every text."""


def _cell(value: Any, fmt: str = ".4g") -> str:
    """The one place a value becomes page text: formatted (floats with ``fmt``, missing as —) and escaped."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "—"
    if isinstance(value, float | np.floating):
        return html.escape(f"{float(value):{fmt}}")
    return html.escape(str(value))


def _h2(text: str) -> Html:
    return Html(f"<h2>{_cell(text)}</h2>")


def _p(text: str) -> Html:
    return Html(f"<p>{_cell(text)}</p>")


def _table(df: pd.DataFrame, fmt: str = ".4g") -> Html:
    head = "".join(f"<th>{_cell(c)}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v, fmt)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False)
    )
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _page(title: str, facts: dict[str, Any], blocks: list[Html], images: list[Path]) -> str:
    if not all(isinstance(b, Html) for b in blocks):
        raise TypeError("report blocks must be built by _h2, _p or _table (they escape their text)")
    rows = "".join(f"<tr><th>{_cell(k)}</th><td>{_cell(v, '.4f')}</td></tr>" for k, v in facts.items())
    figures = "".join(
        f'<figure><img alt="{_cell(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode("ascii")}"><figcaption>{_cell(p.name)}</figcaption></figure>'
        for p in images
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_cell(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_cell(title)}</h1><table>{rows}</table>"
        f"{''.join(blocks)}<h2>Plots</h2>{figures}</body></html>\n"
    )


def _style(ax: Any, title: str, xlabel: str, ylabel: str, legend: bool = False, **kw: Any) -> None:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, **kw)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _confusion(ax: Any, cm: Any, title: str, fontsize: float = 8) -> None:
    cm = np.asarray(cm, dtype=float)
    ax.imshow(cm, cmap="Blues")
    for i, j in zip(*np.nonzero(cm), strict=True):  # zero cells stay blank: a matrix of 0s is hard to read
        color = "white" if cm[i, j] > cm.max() / 2 else "black"
        ax.text(j, i, f"{cm[i, j]:g}", ha="center", va="center", fontsize=fontsize, color=color, in_layout=False)
    ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(cm)), yticks=range(len(cm)))


def _train(run_dir: Path) -> list[Path]:
    plt = _plt()
    metrics = _read_json(run_dir / "metrics.json")
    images: list[Path] = []
    notes = [] if (run_dir / "history.csv").is_file() else [_p("No history.csv: no learning curves.")]
    if (run_dir / "history.csv").is_file():
        hist = _read_csv(run_dir / "history.csv", ("epoch", "train_loss", "val_loss", "val_f1"))
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ax1.plot(hist["epoch"], hist["train_loss"], label="train loss")
        ax1.plot(hist["epoch"], hist["val_loss"], label="val loss")
        _style(ax1, "Loss per epoch", "epoch", "cross-entropy loss", legend=True)
        ax2.plot(hist["epoch"], hist["val_f1"], marker=".", label="val macro-F1")
        if "best_epoch" in metrics:
            ax2.axvline(metrics["best_epoch"], color="grey", linestyle="--", label="best epoch")
        _style(ax2, "Validation macro-F1 per epoch", "epoch", "macro-F1", legend=True)
        images.append(_save(fig, run_dir / "learning_curves.png"))
    if metrics.get("confusion_matrix"):
        fig, ax = plt.subplots(figsize=(6, 5.5))
        _confusion(ax, metrics["confusion_matrix"], "Test confusion matrix")
        images.append(_save(fig, run_dir / "confusion_matrix.png"))
    per_class = metrics.get("per_class_f1") or {}
    if per_class:
        per_class = per_class if isinstance(per_class, dict) else {str(i): v for i, v in enumerate(per_class)}
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar(list(map(str, per_class)), list(per_class.values()), color="tab:blue")
        _style(ax, "Test F1 per digit", "digit", "F1", ylim=(0, 1.05))
        images.append(_save(fig, run_dir / "per_class_f1.png"))
    cfg = flatten(read_yaml(run_dir / "config.yaml") or {}) if (run_dir / "config.yaml").is_file() else {}
    facts = {"run folder": str(run_dir)} | {k: cfg[k] for k in TRAIN_FACTS if k in cfg}
    table = pd.DataFrame([{k: metrics[k] for k in TRAIN_METRICS if k in metrics}])
    blocks = [_h2("Metrics"), _table(table), *notes]
    page = _page(f"Train run {run_dir.name}", facts, blocks, images)
    return [*images, write_text(run_dir / "report.html", page)]


def _param_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if "." in c and df[c].notna().any()]


def search_plots(search_dir: Path) -> list[Path]:
    """Write the plots of a search folder (one row per trial in results.csv); return their paths."""
    plt = _plt()
    search_dir = Path(search_dir)
    df = _read_csv(search_dir / "results.csv", ("trial_id", "val_f1"))
    f1 = pd.to_numeric(df["val_f1"], errors="coerce")
    images = []
    fig, ax = plt.subplots(figsize=(8, 4))
    order = np.arange(1, len(df) + 1)
    ax.scatter(order, f1, s=18, label="trial val macro-F1")
    ax.step(order, f1.fillna(-np.inf).cummax().replace(-np.inf, np.nan), where="post", color="tab:red", label="best")
    _style(ax, "Optimization history", "trial (start order)", "val macro-F1", legend=True)
    images.append(_save(fig, search_dir / "optimization_history.png"))
    if (search_dir / "importance.json").is_file():
        imp = pd.Series(_read_json(search_dir / "importance.json"), dtype=float).sort_values()
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(imp) + 1.5))
        ax.barh(imp.index, imp.values, color="tab:green")
        ax.set(title="Parameter importance", xlabel="importance", ylabel="parameter")
        images.append(_save(fig, search_dir / "param_importance.png"))
    params = _param_columns(df)
    if params:
        cols = min(3, len(params))
        rows = math.ceil(len(params) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
        for ax, name in zip(axes.flat, params, strict=False):
            _param_panel(ax, name, df[name], f1)
        for ax in list(axes.flat)[len(params) :]:
            ax.set_visible(False)
        images.append(_save(fig, search_dir / "param_vs_f1.png"))
    return images


def _param_panel(ax: Any, name: str, values: pd.Series, f1: pd.Series) -> None:
    keep = values.notna() & f1.notna()
    values, f1 = values[keep], f1[keep]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        ax.scatter(values, f1, s=16, alpha=0.8)
        positive = values[values > 0]
        if name.endswith(("lr", "weight_decay")) or (len(positive) and positive.max() / positive.min() > 100):
            smallest = positive.min() if len(positive) else 1e-6
            scale = {"value": "log"} if values.min() > 0 else {"value": "symlog", "linthresh": smallest}
            ax.set_xscale(**scale)
    else:
        labels = values.astype(str)
        cats = sorted(labels.unique())
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(labels))
        ax.scatter(labels.map(cats.index).to_numpy() + jitter, f1, s=16, alpha=0.8)
        ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 3 else 0)
    _style(ax, f"val macro-F1 vs {name}", name, "val macro-F1")


def _search(search_dir: Path) -> list[Path]:
    images = search_plots(search_dir)
    df = _read_csv(search_dir / "results.csv")
    f1 = pd.to_numeric(df["val_f1"], errors="coerce")
    shown = [c for c in ("trial_id", "status", "val_f1", "epochs_run") if c in df.columns] + _param_columns(df)
    top = df.assign(val_f1=f1).sort_values("val_f1", ascending=False, na_position="last").head(10)[shown]
    facts: dict[str, Any] = {"search folder": str(search_dir), "trials": len(df), "best val macro-F1": f1.max()}
    facts |= {f"status {k}": v for k, v in df.get("status", pd.Series(dtype=str)).value_counts().items()}
    blocks = [_h2("Leaderboard (top 10 by val macro-F1)"), _table(top)]
    if "error" in df.columns and df["error"].notna().any():
        failed = df[df["error"].notna() & (df["error"].astype(str) != "")]
        cols = [c for c in ("trial_id", "failures", "error") if c in failed.columns] + _param_columns(df)
        blocks += [_h2("Failed trials"), _table(failed[cols])]
    if not (search_dir / "importance.json").is_file():
        blocks.append(_p("No importance.json: parameter importance was not computed for this search."))
    page = _page(f"Search {search_dir.name}", facts, blocks, images)
    return [*images, write_text(search_dir / "report.html", page)]


def _tidy(s: pd.DataFrame) -> pd.DataFrame:
    """model and variant as text, augment as bool (a CSV may spell it True, true or 1)."""
    augment = s["augment"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))
    return s.assign(model=s["model"].astype(str), variant=s["variant"].astype(str), augment=augment)


def _configs(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count of test_f1 per (model, variant, augment), in report order."""
    stats = summary.groupby(["model", "variant", "augment"])["test_f1"].agg(["mean", "std", "count"])
    variants = VARIANTS + sorted(set(summary["variant"]) - set(VARIANTS))
    return stats.sort_index(key=lambda k: k.map(variants.index) if k.name == "variant" else k)


def effects(summary: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per model: ``bilateral`` = mean over aug settings of (bilateral - raw) test macro-F1, and ``augment`` =
    mean over variants of (aug - no aug); configurations are first averaged over seeds. NaN when a cell is missing."""
    mean = _configs(_tidy(summary))["mean"]
    result = {}
    for model in mean.index.get_level_values("model").unique():
        grid = mean.xs(model, level="model").unstack("augment").reindex(index=VARIANTS, columns=[False, True])
        bilateral = (grid.loc["bilateral"] - grid.loc["raw"]).mean()
        augment = (grid[True] - grid[False]).mean()
        result[model] = {"bilateral": float(bilateral), "augment": float(augment)}
    return result


def _summary_tables(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    stats = _configs(summary)
    names = summary.groupby("model")["model_name"].first() if "model_name" in summary else {}
    cell = lambda r: f"{r['mean']:.4f}" + (f" ± {r['std']:.4f}" if r["count"] > 1 else "")  # noqa: E731
    rows = stats.index.droplevel("augment").unique()  # report order (raw first): unstack sorts by name
    grid = stats.apply(cell, axis=1).unstack("augment").reindex(index=rows, columns=[False, True]).fillna("—")
    grid = grid.reset_index()
    grid["model"] = [f"{m} ({names[m]})" if m in names else m for m in grid["model"]]
    grid.columns = ["model", "variant", "no aug", "aug"]
    eff = pd.DataFrame(effects(summary)).T.rename(columns={"bilateral": "bilateral − raw", "augment": "aug − no aug"})
    return grid, eff.rename_axis("model").reset_index()


def _markdown(df: pd.DataFrame) -> str:
    cells = [[f"{v:+.4f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def _final_eight(folder: Path) -> list[Path]:
    """summary.md, test_f1.png, confusion_matrices.png, learning_curves.png and report.html, in that order."""
    plt = _plt()
    summary = _tidy(_read_csv(folder / "summary.csv", ("model", "variant", "augment", "test_f1")))
    stats = _configs(summary)
    labels = [f"{m} {v}{' +aug' if a else ''}" for m, v, a in stats.index]
    grid, eff = _summary_tables(summary)
    seeds = sorted(summary["seed"].unique()) if "seed" in summary else []
    note = f"Mean ± std over seeds ({', '.join(map(str, seeds))})." if len(seeds) > 1 else "One seed per configuration."
    md = f"# Final eight: test macro-F1\n\n{note}\n\n{_markdown(grid)}\n## Effects (test macro-F1)\n\n"
    md += "Bilateral: mean over aug settings of bilateral − raw. Augmentation: mean over variants of aug − no aug.\n\n"
    written = [write_text(folder / "summary.md", md + _markdown(eff))]
    colors = ["tab:blue" if m == stats.index[0][0] else "tab:orange" for m, _, _ in stats.index]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.bar(labels, stats["mean"], yerr=stats["std"].fillna(0), capsize=4, color=colors)
    ax.bar_label(bars, fmt="%.3f", label_type="center", color="white")
    _style(ax, "Test macro-F1 of the eight configurations", "configuration", "test macro-F1", ylim=(0.0, 1.0))
    ax.tick_params(axis="x", rotation=30)
    written.append(_save(fig, folder / "test_f1.png"))
    fig, axes = plt.subplots(2, 4, figsize=(17, 8.5), squeeze=False)
    fig2, axes2 = plt.subplots(1, 2, figsize=(12, 4.5), squeeze=False)
    models = list(stats.index.get_level_values("model").unique())
    for ax, label, key in zip(axes.flat, labels, stats.index, strict=False):
        rows = summary[(summary["model"] == key[0]) & (summary["variant"] == key[1]) & (summary["augment"] == key[2])]
        runs = [folder / r for r in rows.get("run_dir", []) if isinstance(r, str) and r]  # absolute r stays absolute
        cms = [_read_json(p / "metrics.json").get("confusion_matrix") for p in runs if (p / "metrics.json").is_file()]
        cms = [cm for cm in cms if cm]
        if cms:
            _confusion(ax, np.sum(cms, axis=0), f"{label} ({len(cms)} run{'s' * (len(cms) > 1)})", fontsize=6)
        else:
            ax.set(title=f"{label}: no metrics.json")
        hists = [_read_csv(p / "history.csv", ("epoch", "val_f1")) for p in runs if (p / "history.csv").is_file()]
        if hists and key[0] in models[:2]:
            curve = pd.concat(hists).groupby("epoch")["val_f1"].mean()
            ax2 = axes2.flat[models.index(key[0])]
            ax2.plot(curve.index, curve.values, linestyle="--" if key[2] else "-", label=label)
    for ax in list(axes.flat)[len(labels) :]:
        ax.set_visible(False)
    written.append(_save(fig, folder / "confusion_matrices.png"))
    for ax, model in zip(axes2.flat, models + ["", ""], strict=False):
        _style(ax, f"Model {model}: val macro-F1 per epoch (mean over seeds)", "epoch", "val macro-F1", legend=True)
    written.append(_save(fig2, folder / "learning_curves.png"))
    facts = {"folder": str(folder), "runs": len(summary), "seeds": ", ".join(map(str, seeds)) or "—"}
    facts |= {"best configuration": labels[int(np.argmax(stats["mean"]))], "best test macro-F1": stats["mean"].max()}
    blocks = [_h2("Test macro-F1"), _p(note), _table(grid), _h2("Effects"), _table(eff, "+.4f")]
    blocks += [_h2("All runs"), _table(summary)]
    page = _page(f"Final eight {folder.name}", facts, blocks, written[1:])
    return [*written, write_text(folder / "report.html", page)]


def write_report(run_dir: Path) -> list[Path]:
    """Rebuild the plots, tables and report.html of ``run_dir``; return every file written, report.html last."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such folder")
    if (run_dir / "summary.csv").is_file():
        return _final_eight(run_dir)
    if (run_dir / "results.csv").is_file():
        return _search(run_dir)
    if (run_dir / "metrics.json").is_file():
        return _train(run_dir)
    raise UserError(f"{run_dir} {UNKNOWN}")
