"""The report of a final-eight folder: test macro-F1 of the eight configurations, the effects of the bilateral
filter and of augmentation, and the pick, which validation F1 makes (test F1 is shown beside it, never used)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_digits.atomic import write_text
from tune_digits.report_base import (
    Html,
    _confusion,
    _h2,
    _p,
    _page,
    _plt,
    _read_csv,
    _read_json,
    _save,
    _style,
    _table,
)

VARIANTS = ["raw", "bilateral"]


def _tidy(s: pd.DataFrame) -> pd.DataFrame:
    """model and variant as text, augment as bool (a CSV may spell it True, true or 1)."""
    augment = s["augment"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))
    return s.assign(model=s["model"].astype(str), variant=s["variant"].astype(str), augment=augment)


def _configs(summary: pd.DataFrame, metric: str = "test_f1") -> pd.DataFrame:
    """Mean, std and count of ``metric`` per (model, variant, augment), in report order."""
    stats = summary.groupby(["model", "variant", "augment"])[metric].agg(["mean", "std", "count"])
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


def best_configuration(summary: pd.DataFrame) -> dict[str, Any]:
    """The configuration with the highest mean validation macro-F1 over its seeds, and its mean test macro-F1
    beside it; test F1 never decides. Without a val_f1 column there is no pick (empty dict)."""
    summary = _tidy(summary)
    if "val_f1" not in summary or pd.to_numeric(summary["val_f1"], errors="coerce").isna().all():
        return {}
    summary = summary.assign(val_f1=pd.to_numeric(summary["val_f1"], errors="coerce"))
    val = _configs(summary, "val_f1")["mean"]
    key = val.idxmax()
    test = float(_configs(summary)["mean"][key])
    return {"key": key, "label": _label(key), "val_f1": float(val[key]), "test_f1": test}


def _label(key: tuple[str, str, bool]) -> str:
    model, variant, aug = key
    return f"{model} {variant}{' +aug' if aug else ''}"


def seeds_text(summary: pd.DataFrame) -> str:
    """``1 seed (0)``, ``3 seeds (0, 1, 2)``; ``—`` without a seed column."""
    seeds = sorted(summary["seed"].unique()) if "seed" in summary else []
    if not seeds:
        return "—"
    return f"{len(seeds)} seed{'s' * (len(seeds) > 1)} ({', '.join(map(str, seeds))})"


def _grid(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    stats = _configs(summary, metric)
    names = summary.groupby("model")["model_name"].first() if "model_name" in summary else {}
    cell = lambda r: f"{r['mean']:.4f}" + (f" ± {r['std']:.4f}" if r["count"] > 1 else "")  # noqa: E731
    rows = stats.index.droplevel("augment").unique()  # report order (raw first): unstack sorts by name
    grid = stats.apply(cell, axis=1).unstack("augment").reindex(index=rows, columns=[False, True]).fillna("—")
    grid = grid.reset_index()
    grid["model"] = [f"{m} ({names[m]})" if m in names else m for m in grid["model"]]
    grid.columns = ["model", "variant", "no aug", "aug"]
    return grid


def _summary_tables(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    eff = pd.DataFrame(effects(summary)).T.rename(columns={"bilateral": "bilateral − raw", "augment": "aug − no aug"})
    return _grid(summary, "test_f1"), eff.rename_axis("model").reset_index()


def _markdown(df: pd.DataFrame) -> str:
    cells = [[f"{v:+.4f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def sources(folder: Path) -> pd.DataFrame:
    """Per model: its params file (a search's best.yaml, or a file given), that search, and the data it trained
    on; from sources.json (written by final-eight), else the data alone from bases.json."""
    if (folder / "sources.json").is_file():
        rows = _read_json(folder / "sources.json")
    elif (folder / "bases.json").is_file():
        bases = _read_json(folder / "bases.json")
        rows = {arm: {"data": b.get("data.root"), "split": b.get("data.split")} for arm, b in bases.items()}
    else:
        return pd.DataFrame()
    columns = ["model", "model_name", "params", "search", "data", "split"]
    table = pd.DataFrame([{"model": arm, **row} for arm, row in sorted(rows.items())]).replace("", None)  # "" -> —
    return table.reindex(columns=[c for c in columns if c in table.columns])


def _sources_md(folder: Path) -> str:
    """One line per model: ``Model A (lenet5): params FILE (search NAME); data ROOT, split SPEC``."""
    lines = []
    for row in sources(folder).fillna("").to_dict("records"):
        search = f" (search {row['search']})" if row.get("search") else ""
        name = f" ({row['model_name']})" if row.get("model_name") else ""
        params = f"params {row['params']}{search}; " if row.get("params") else ""
        data = f"data {row.get('data') or '—'}, split {row.get('split') or '—'}"
        lines.append(f"Model {row['model']}{name}: {params}{data}")
    return "".join(f"{line}  \n" for line in lines) + "\n" if lines else ""


def _bars(folder: Path, stats: pd.DataFrame, labels: list[str]) -> Path:
    plt = _plt()
    colors = ["tab:blue" if m == stats.index[0][0] else "tab:orange" for m, _, _ in stats.index]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    spread = stats["count"].max() > 1  # error bars only when there is a spread to show
    bars = ax.bar(labels, stats["mean"], yerr=stats["std"].fillna(0) if spread else None, capsize=4, color=colors)
    ax.bar_label(bars, fmt="%.3f", label_type="center", color="white")
    title = "Test macro-F1 of the eight configurations" + (" (mean ± std over seeds)" if spread else "")
    _style(ax, title, "configuration", "test macro-F1", ylim=(0.0, 1.0))
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, folder / "test_f1.png")


def _run_plots(folder: Path, summary: pd.DataFrame, stats: pd.DataFrame, labels: list[str]) -> list[Path]:
    """confusion_matrices.png (test split, summed over seeds) and learning_curves.png (val F1, mean over seeds)."""
    plt = _plt()
    fig, axes = plt.subplots(2, 4, figsize=(17, 8.5), squeeze=False)
    fig2, axes2 = plt.subplots(1, 2, figsize=(12, 4.5), squeeze=False)
    models = list(stats.index.get_level_values("model").unique())
    for ax, label, key in zip(axes.flat, labels, stats.index, strict=False):
        rows = summary[(summary["model"] == key[0]) & (summary["variant"] == key[1]) & (summary["augment"] == key[2])]
        runs = [folder / r for r in rows.get("run_dir", []) if isinstance(r, str) and r]  # absolute r stays absolute
        cms = [_read_json(p / "metrics.json").get("confusion_matrix") for p in runs if (p / "metrics.json").is_file()]
        cms = [cm for cm in cms if cm]
        if cms:
            _confusion(ax, np.sum(cms, axis=0), f"{label}: test ({len(cms)} run{'s' * (len(cms) > 1)})", fontsize=6)
        else:
            ax.set(title=f"{label}: no metrics.json")
        hists = [_read_csv(p / "history.csv", ("epoch", "val_f1")) for p in runs if (p / "history.csv").is_file()]
        if hists and key[0] in models[:2]:
            curve = pd.concat(hists).groupby("epoch")["val_f1"].mean()
            ax2 = axes2.flat[models.index(key[0])]
            ax2.plot(curve.index, curve.values, linestyle="--" if key[2] else "-", label=label)
    for ax in list(axes.flat)[len(labels) :]:
        ax.set_visible(False)
    fig.suptitle("Confusion matrices on the test split (summed over seeds)")
    written = [_save(fig, folder / "confusion_matrices.png")]
    for ax, model in zip(axes2.flat, models + ["", ""], strict=False):
        _style(ax, f"Model {model}: val macro-F1 per epoch (mean over seeds)", "epoch", "val macro-F1", legend=True)
    return [*written, _save(fig2, folder / "learning_curves.png")]


def _facts(folder: Path, summary: pd.DataFrame, best: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {"folder": str(folder), "runs": len(summary), "seeds": seeds_text(summary)}
    if best:
        facts |= {"best configuration (by val macro-F1)": best["label"], "its val macro-F1": best["val_f1"]}
        facts["its test macro-F1 (not used to pick)"] = best["test_f1"]
    else:
        facts["best configuration"] = "— (summary.csv has no val_f1: test F1 must not pick)"
    return facts


def final_eight_files(folder: Path) -> list[Path]:
    """summary.md, test_f1.png, confusion_matrices.png, learning_curves.png and report.html, in that order."""
    summary = _tidy(_read_csv(folder / "summary.csv", ("model", "variant", "augment", "test_f1")))
    stats = _configs(summary)
    labels = [_label(k) for k in stats.index]
    grid, eff = _summary_tables(summary)
    seeds = seeds_text(summary)
    many = stats["count"].max() > 1
    note = f"Mean ± std over {seeds}." if many else f"{seeds[0].upper() + seeds[1:]} per configuration: no spread."
    best = best_configuration(summary)
    pick = f"Best by validation macro-F1: {best['label']} (val {best['val_f1']:.4f}, test {best['test_f1']:.4f}).\n\n"
    md = f"# Final eight: test macro-F1\n\n{_sources_md(folder)}{note}\n\n{pick if best else ''}{_markdown(grid)}"
    md += "\n## Effects (test macro-F1)\n\n"
    md += "Bilateral: mean over aug settings of bilateral − raw. Augmentation: mean over variants of aug − no aug.\n\n"
    written = [write_text(folder / "summary.md", md + _markdown(eff))]
    written += [_bars(folder, stats, labels), *_run_plots(folder, summary, stats, labels)]
    captions = ["Test macro-F1 per configuration", "Test-split confusion matrices", "Validation curves"]
    blocks = _blocks(folder, summary, grid, eff, note)
    images = list(zip(written[1:], captions, strict=True))
    page = _page(f"Final eight {folder.name}", _facts(folder, summary, best), blocks, images)
    return [*written, write_text(folder / "report.html", page)]


def _blocks(folder: Path, summary: pd.DataFrame, grid: pd.DataFrame, eff: pd.DataFrame, note: str) -> list[Html]:
    blocks = [_h2("Where each model came from")]
    src = sources(folder)
    blocks.append(_table(src) if len(src) else _p("No sources.json or bases.json: the params' origin is unknown."))
    if "val_f1" in summary:
        blocks += [_h2("Validation macro-F1 (this picks the best)"), _table(_grid(summary, "val_f1"))]
    blocks += [_h2("Test macro-F1"), _p(note), _table(grid), _h2("Effects"), _table(eff, "+.4f")]
    return [*blocks, _h2("All runs"), _table(summary)]
