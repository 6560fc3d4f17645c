"""The report of a search folder: history in start order, every trial's validation curve, settings against
val F1 (one panel per setting and all of them as parallel coordinates), importance from enough trials."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_digits.atomic import write_text
from tune_digits.report_base import Html, _h2, _p, _page, _plt, _read_csv, _read_json, _save, _style, _table

MIN_TRIALS_FOR_IMPORTANCE = 8  # fewer finished trials and an importance ranking is mostly noise
FEW_VALUES = 6  # a numeric setting with at most this many values is ticked at exactly those values
ENDS = {"TERMINATED": ("o", "tab:green", "ran every epoch"), "STOPPED": ("x", "tab:orange", "stopped early (ASHA)")}
ENDS |= {"ERROR": ("X", "tab:red", "failed"), "INTERRUPTED": ("s", "grey", "interrupted")}


def _param_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if "." in c and df[c].notna().any()]


def _finished(df: pd.DataFrame) -> pd.DataFrame:
    f1 = pd.to_numeric(df["val_f1"], errors="coerce")
    return df[f1.notna() & (df.get("status", pd.Series("", index=df.index)).astype(str) != "ERROR")]


def in_start_order(df: pd.DataFrame) -> pd.DataFrame | None:
    """The trials in the order Ray started them (results.csv's ``trial_index``); None without that column."""
    index = pd.to_numeric(df["trial_index"], errors="coerce") if "trial_index" in df.columns else None
    if index is None or index.isna().all():
        return None
    return df.assign(trial_index=index).sort_values("trial_index", kind="stable", na_position="last")


def best_so_far(f1: pd.Series) -> np.ndarray:
    """The running maximum of ``f1`` in its order; NaN (a failed trial) keeps the best before it."""
    values = pd.to_numeric(f1, errors="coerce").to_numpy(dtype=float)
    return pd.Series(values).cummax().ffill().to_numpy()


def _history(ax: Any, ordered: pd.DataFrame) -> None:
    f1 = pd.to_numeric(ordered["val_f1"], errors="coerce").reset_index(drop=True)
    x = np.arange(1, len(f1) + 1)
    status = ordered.get("status", pd.Series("", index=ordered.index)).astype(str).to_numpy()
    for name, (marker, color, what) in ENDS.items():
        keep = (status == name) & f1.notna().to_numpy()
        if keep.any():
            ax.scatter(x[keep], f1[keep], s=24, marker=marker, color=color, label=f"trial: {what}")
    other = ~np.isin(status, list(ENDS)) & f1.notna().to_numpy()
    if other.any():
        ax.scatter(x[other], f1[other], s=20, color="tab:blue", label="trial")
    ax.step(x, best_so_far(f1), where="post", color="tab:red", label="best so far")
    _style(ax, "Optimization history", "trial (start order)", "val macro-F1", legend=True)
    ax.set_xticks(x if len(x) <= 20 else ax.get_xticks())


def _read_trial_history(trial_dir: Path) -> pd.DataFrame | None:
    """epoch and val_f1 per epoch of one trial: its history.jsonl, else its history.csv."""
    jsonl, csv = trial_dir / "history.jsonl", trial_dir / "history.csv"
    try:
        if jsonl.is_file():
            rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
            hist = pd.DataFrame(rows)
        elif csv.is_file():
            hist = pd.read_csv(csv)
        else:
            return None
    except (OSError, ValueError):
        return None
    return hist if {"epoch", "val_f1"} <= set(hist.columns) and len(hist) else None


def _curves(ax: Any, search_dir: Path, ordered: pd.DataFrame) -> int:
    """Each trial's val F1 per epoch, its last epoch marked by how the trial ended; returns the curves drawn."""
    drawn, labelled = 0, set()
    best = pd.to_numeric(ordered["val_f1"], errors="coerce").idxmax() if ordered["val_f1"].notna().any() else None
    for idx, row in ordered.iterrows():
        hist = _read_trial_history(search_dir / "trials" / str(row["trial_id"]))
        if hist is None:
            continue
        is_best = idx == best
        ax.plot(
            hist["epoch"],
            hist["val_f1"],
            color="black" if is_best else "tab:blue",
            alpha=1 if is_best else 0.45,
            linewidth=2 if is_best else 1,
            label="best trial" if is_best else None,
        )
        marker, color, what = ENDS.get(str(row.get("status")), ("s", "grey", "other"))
        ax.scatter(
            hist["epoch"].iloc[-1:],
            hist["val_f1"].iloc[-1:],
            marker=marker,
            color=color,
            s=36,
            zorder=3,
            label=None if what in labelled else f"last epoch: {what}",
        )
        labelled.add(what)
        drawn += 1
    _style(ax, "Validation macro-F1 per epoch, every trial", "epoch", "val macro-F1", legend=True)
    return drawn


def _axis(values: pd.Series, name: str) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """One parallel-coordinates axis: each value's position in [0, 1] (NaN where missing) and its ticks."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    distinct = sorted(values.dropna().unique(), key=lambda v: (isinstance(v, str), v if numeric else str(v)))
    if not numeric or len(distinct) <= 1 or _few_integers(distinct):  # one value: drawn in the middle
        labels = [_short(v) for v in distinct]
        pos = {v: (i / (len(distinct) - 1) if len(distinct) > 1 else 0.5) for i, v in enumerate(distinct)}
        ticks = [(pos[v], label) for v, label in zip(distinct, labels, strict=True)]
        return values.map(pos).to_numpy(dtype=float), ticks
    x = values.to_numpy(dtype=float)
    lo, hi = np.nanmin(x), np.nanmax(x)
    log = lo > 0 and (name.endswith(("lr", "weight_decay")) or hi / lo > 100)
    f = np.log10 if log else (lambda v: v)
    span = (f(hi) - f(lo)) or 1.0
    ticks = [lo, 10 ** ((f(lo) + f(hi)) / 2) if log else (lo + hi) / 2, hi]
    return (f(x) - f(lo)) / span, [((f(t) - f(lo)) / span, _short(t)) for t in ticks]


def _few_integers(distinct: list[Any]) -> bool:
    """A choice of whole numbers (batch sizes, widths): ticked at exactly its values."""
    return 1 < len(distinct) <= FEW_VALUES and all(float(v).is_integer() for v in distinct)


def _short(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.3g}"
    return str(value)


def parallel_coordinates(fig: Any, ax: Any, df: pd.DataFrame, params: list[str]) -> list[list[tuple[float, str]]]:
    """Each finished trial as a line across its settings and its val F1, coloured by val F1; returns the ticks."""
    plt = _plt()
    done = _finished(df)
    f1 = pd.to_numeric(done["val_f1"], errors="coerce")
    columns = [_axis(done[p], p) for p in params] + [_axis(f1, "val_f1")]
    ys = np.column_stack([pos for pos, _ in columns])
    cmap, norm = plt.get_cmap("viridis"), plt.Normalize(f1.min(), f1.max() if f1.max() > f1.min() else f1.min() + 1)
    for y, score in sorted(zip(ys, f1, strict=True), key=lambda t: t[1]):  # the best lines drawn last, on top
        ax.plot(range(len(columns)), y, color=cmap(norm(score)), alpha=0.8, linewidth=1.4)
    for i, (_, ticks) in enumerate(columns):
        ax.axvline(i, color="grey", linewidth=0.8)
        for pos, label in ticks:
            box = {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1}
            ax.text(i + 0.03, pos, label, fontsize=7, va="center", ha="left", bbox=box, zorder=4)
    ax.set(xlim=(-0.1, len(columns) - 0.6), ylim=(-0.05, 1.05), yticks=[], title="Settings against val macro-F1")
    ax.set_xticks(range(len(columns)), [*params, "val macro-F1"], rotation=20, ha="right", fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="val macro-F1")
    return [ticks for _, ticks in columns]


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
        distinct = sorted(values.unique())
        if _few_integers(distinct):
            ax.set_xticks(distinct, [_short(v) for v in distinct], minor=False)  # a choice: ticks at its values
            ax.minorticks_off()
    else:
        labels = values.astype(str)
        cats = sorted(labels.unique())
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(labels))
        ax.scatter(labels.map(cats.index).to_numpy() + jitter, f1, s=16, alpha=0.8)
        ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 3 else 0)
    _style(ax, f"val macro-F1 vs {name}", name, "val macro-F1")


def _panels(search_dir: Path, df: pd.DataFrame, params: list[str]) -> Path:
    plt = _plt()
    f1 = pd.to_numeric(df["val_f1"], errors="coerce")
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, params, strict=False):
        _param_panel(ax, name, df[name], f1)
    for ax in list(axes.flat)[len(params) :]:
        ax.set_visible(False)
    return _save(fig, search_dir / "param_vs_f1.png")


def search_plots(search_dir: Path) -> list[tuple[Path, str]]:
    """Write the plots of a search folder (one row per trial in results.csv); return them with captions."""
    plt = _plt()
    search_dir = Path(search_dir)
    df = _read_csv(search_dir / "results.csv", ("trial_id", "val_f1"))
    ordered = in_start_order(df)
    images = []
    if ordered is not None:
        fig, ax = plt.subplots(figsize=(8, 4))
        _history(ax, ordered)
        images.append((_save(fig, search_dir / "optimization_history.png"), "Validation macro-F1 by start order"))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if _curves(ax, search_dir, df if ordered is None else ordered):
        images.append((_save(fig, search_dir / "trial_curves.png"), "Every trial's validation curve"))
    else:
        plt.close(fig)
    if (search_dir / "importance.json").is_file() and len(_finished(df)) >= MIN_TRIALS_FOR_IMPORTANCE:
        imp = pd.Series(_read_json(search_dir / "importance.json"), dtype=float).sort_values()
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(imp) + 1.5))
        ax.barh(imp.index, imp.values, color="tab:green")
        ax.set(title="Parameter importance (PED-ANOVA)", xlabel="importance", ylabel="parameter")
        images.append((_save(fig, search_dir / "param_importance.png"), "Parameter importance over finished trials"))
    params = _param_columns(df)
    if params:
        images.append((_panels(search_dir, df, params), "Validation macro-F1 against each setting"))
    if params and len(_finished(df)) >= 2:
        fig, ax = plt.subplots(figsize=(max(7.0, 1.7 * len(params) + 3), 4.5))
        parallel_coordinates(fig, ax, df, params)
        images.append((_save(fig, search_dir / "parallel_coordinates.png"), "All settings of each finished trial"))
    return images


def _notes(search_dir: Path, df: pd.DataFrame, images: list[tuple[Path, str]]) -> list[Html]:
    names = {p.name for p, _ in images}
    notes = []
    if "optimization_history.png" not in names:
        notes.append(_p("results.csv has no trial_index (an older search): no optimization history in start order."))
    if "trial_curves.png" not in names:
        notes.append(_p("No trial has a history.jsonl under trials/: no learning curves."))
    finished = len(_finished(df))
    if not (search_dir / "importance.json").is_file() and finished >= MIN_TRIALS_FOR_IMPORTANCE:
        notes.append(_p("No importance.json: parameter importance was not computed for this search."))
    elif finished < MIN_TRIALS_FOR_IMPORTANCE:
        notes.append(
            _p(
                f"Parameter importance needs at least {MIN_TRIALS_FOR_IMPORTANCE} finished trials; this search has "
                f"{finished}, too few to tell which setting matters."
            )
        )
    return notes


def search_report(search_dir: Path) -> list[Path]:
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
    blocks += _notes(search_dir, df, images)
    page = _page(f"Search {search_dir.name}", facts, blocks, images)
    return [*(p for p, _ in images), write_text(search_dir / "report.html", page)]
