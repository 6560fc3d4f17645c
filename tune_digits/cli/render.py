"""Rendering for the terminal: every table and summary line the commands print (rich), in one place.

Commands call the library, then one ``show_*`` function here; nothing here decides anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from tune_digits.cli.app import console, out


def say(line: str) -> None:
    style = "bold yellow" if line.startswith(("note:", "warning:")) else None
    console.print(escape(line), style=style, highlight=False, soft_wrap=True)


def fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def show_leaderboard(folder: Path, top: int = 10) -> None:
    import pandas as pd

    table_df = pd.read_csv(folder / "results.csv")
    shown = table_df.head(top)
    params, hidden = _fitting_params(shown, out.width)
    table = Table(title=f"search {folder.name}: top {len(shown)} of {len(table_df)} trials")
    for col in ("trial", "val F1", "epochs", "status", *(_short(p, params) for p in params)):
        table.add_column(col, justify="right")
    for _, row in shown.iterrows():
        cells = [_fmt(row[p]) for p in params]
        table.add_row(str(row["trial_id"]), _fmt(row["val_f1"]), str(row["epochs_run"]), row["status"], *cells)
    out.print(table)
    if hidden:
        columns = "column" if hidden == 1 else "columns"
        out.print(f"{hidden} more parameter {columns} in results.csv (a wider terminal shows them)", highlight=False)
    if "error" in table_df.columns:
        failed = table_df[table_df["error"].notna() & (table_df["error"].astype(str) != "")]
        if len(failed):
            first = failed.iloc[0]
            out.print(
                f"{len(failed)} trials failed (see the error column of results.csv); "
                f"first: {first['trial_id']}: {first['error']}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
    best = folder / "best.yaml"
    out.print(f"results: {folder / 'results.csv'}", highlight=False, soft_wrap=True)
    show_paths(folder, best if best.is_file() else None)


def show_paths(folder: Path, best: Path | None = None) -> None:
    """The report, best.yaml, the W&B line and the folder's size: one unwrapped line each, to copy."""
    from tune_digits.live import folder_size, human_size
    from tune_digits.tracking import wandb_note

    lines = [f"report: {folder / 'report.html'}"] if (folder / "report.html").is_file() else []
    if best is not None:
        lines += [f"best config: {best}", f"  train it: tune-digits train --config {best}"]
    lines += wandb_note(folder)
    lines.append(f"folder: {folder} ({human_size(folder_size(folder))})")
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True, markup=False)


def _short(key: str, keys: list[str]) -> str:
    """``train.lr`` -> ``lr`` unless another shown key ends the same way."""
    tail = key.split(".", 1)[-1]
    return tail if sum(k.split(".", 1)[-1] == tail for k in keys) == 1 else key


def _fitting_params(df, width: int) -> tuple[list[str], int]:
    """The parameter columns that fit beside the fixed ones in ``width`` characters, and how many did not."""
    params = [c for c in df.columns if "." in c]
    used = 4 + sum(max(len(h), 8) + 3 for h in ("trial", "val F1", "epochs", "status"))
    kept: list[str] = []
    for p in params:
        cells = [len(_fmt(v)) for v in df[p]] if len(df) else [0]
        need = max(len(_short(p, params)), *cells) + 3
        if used + need > width:
            break
        kept.append(p)
        used += need
    return kept, len(params) - len(kept)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def show_attempt(result: Any, attempt: int) -> None:
    """The ranking, then what was submitted (or would be, for a dry run) and the attempts left."""
    out.print(ranking_table(result.plan.selection))
    if result.folder is None:
        left = ", ".join(map(str, result.plan.left))
        out.print(f"dry run: would submit {result.plan.selection.pick.name} as attempt {attempt}; nothing was written")
        out.print(f"attempts left: {left}")
        return
    e = result.entry
    table = Table(title=f"attempt {attempt} · {e['model']} · {result.plan.selection.pick.name}")
    for col in ("val F1", "test F1", "test acc", "params", "checkpoint"):
        table.add_column(col, justify="right")
    params = e.get("num_parameters")
    table.add_row(
        fmt(e["val_f1"]),
        fmt(e["test_f1"]),
        fmt(e["test_accuracy"]),
        f"{params:,}" if isinstance(params, int) else "-",
        e["checkpoint_sha256"][:12],
    )
    out.print(table)
    out.print(f"attempt folder: {result.folder}", highlight=False, soft_wrap=True)
    out.print(f"attempts left: {', '.join(str(n) for n in result.plan.left if n != attempt) or 'none'}")


def ranking_table(selection: Any, top: int = 5) -> Table:
    table = Table(title=f"candidates on split {selection.digest} (best first)")
    for col, justify in (("#", "right"), ("run", "left"), ("val F1", "right"), ("val loss", "right")):
        table.add_column(col, justify=justify)
    table.add_column("params", justify="right")
    table.add_column("created")
    for i, c in enumerate(selection.ranked[:top], start=1):
        table.add_row(str(i), escape(c.name), fmt(c.val_f1), fmt(c.val_loss), f"{c.num_parameters:,}", c.created)
    if len(selection.ranked) > top:
        table.caption = f"{len(selection.ranked) - top} more not shown"
    return table


def show_submissions(submissions: Path, report: Any) -> None:
    """``submissions``: recovered lines, the attempts' table, earlier contests, attempts left, notes, problems."""
    for line in report.recovered:
        say(line)
    entries = report.entries
    table = submissions_table(submissions, entries)
    one_split = len({(e.get("data_root"), e.get("split_digest")) for e in entries}) == 1
    for e in entries:
        cells = attempt_cells(e, entries)
        if one_split:  # data and split are in the title, once for all attempts
            cells = cells[:2] + cells[4:]
        table.add_row(*cells, "[bold red]CHANGED[/]" if report.changed[e["attempt"]] else "ok")
    out.print(table)
    if report.archived:
        out.print(f"earlier contests (archived): {', '.join(report.archived)}", highlight=False, soft_wrap=True)
    out.print(f"attempts left: {len(report.left)} ({', '.join(map(str, report.left)) or 'none'})")
    for line in report.notes:
        say(line)
    for line in report.problems:
        console.print(escape(line), style="bold red", highlight=False, soft_wrap=True)


def submissions_table(submissions: Path, entries: list[dict[str, Any]]) -> Table:
    """The table's columns; data and split are a column each only when the attempts differ in them."""
    splits = {(e.get("data_root"), e.get("split_digest")) for e in entries}
    title = f"submissions in {submissions}"
    if len(splits) == 1:
        data, split = attempt_cells(entries[0], entries)[2:4]
        title += f" · data {data} · split {split}"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    numbers = ("#", "val F1", "test F1", "95% interval", "P(beats)", "Δ val/test")
    for col in ("#", "time (UTC)", "data", "split", "model", "message", *numbers[1:]):
        if len(splits) == 1 and col in ("data", "split"):
            continue
        table.add_column(col, justify="right" if col in numbers else "left", no_wrap=col != "message")
    table.add_column("files", no_wrap=True)
    return table


def attempt_cells(e: dict[str, Any], entries: list[dict[str, Any]]) -> list[str]:
    """One row of ``submissions``: the deltas are against the previous attempt on the same split only."""
    same_split = [p for p in entries if p["attempt"] < e["attempt"] and p.get("split_digest") == e.get("split_digest")]
    prev = same_split[-1] if same_split else None
    data = Path(str(e.get("data_root") or "-"))
    return [
        str(e["attempt"]),
        str(e.get("created") or "").replace("T", " ")[5:16] or "-",
        escape(data.parent.name if data.name == "recordings" else data.name),
        escape(f"{e.get('split_spec') or '-'} {str(e.get('split_digest', ''))[:6]}"),
        escape(str(e.get("model", "-"))),
        escape(str(e.get("message") or "-")),
        fmt(e.get("val_f1")),
        fmt(e.get("test_f1")),
        *advice_cells(e),
        f"{_delta(e, prev, 'val_f1')}/{_delta(e, prev, 'test_f1')}" if prev else "-",
    ]


def advice_cells(e: dict[str, Any]) -> list[str]:
    """The 95 % interval of the expected test F1 (its point is the val F1) and the chance to beat the previous
    attempt, as they were before the attempt was spent."""
    from tune_digits.advice import percent

    exp, beat = e.get("expected_test_f1") or {}, e.get("p_beats_previous") or {}
    expected = f"{fmt(exp.get('low'), 3)}-{fmt(exp.get('high'), 3)}" if exp else "-"
    p = beat.get("p")
    chance = f"{percent(p)} vs {beat.get('attempt')}" if isinstance(p, (int, float)) else "-"
    return [expected, chance]


def _delta(entry: dict[str, Any], prev: dict[str, Any] | None, key: str) -> str:
    if prev is None or not isinstance(entry.get(key), (int, float)) or not isinstance(prev.get(key), (int, float)):
        return "-"
    return f"{entry[key] - prev[key]:+.3f}"


def show_predictions(models: list[Any], preds: list[Any], min_confidence: float) -> None:
    """One row per recording: its file, the digit, its probability and a note; the title names the model(s)."""
    from tune_digits.inference import prediction_note

    title = " + ".join(f"{m.cfg.model.name} · {m.path}" for m in models)
    table = Table(title=title if len(models) == 1 else f"mean of {title}")
    table.add_column("file", overflow="fold")
    table.add_column("digit", justify="right")
    table.add_column("probability", justify="right")
    table.add_column("note")
    for p in preds:
        digit = "-" if not p.heard else str(p.digit)
        table.add_row(escape(p.file), digit, f"{p.probability:.4f}", prediction_note(p, min_confidence))
    out.print(table)


def show_eight(folder: Path) -> None:
    """A finished final-eight: its summary table, then the report and folder lines."""
    out.print((folder / "summary.md").read_text(encoding="utf-8"))
    show_paths(folder)


def show_line(line: str) -> None:
    """One unwrapped line to copy (a resume command)."""
    console.print(line, soft_wrap=True, markup=False, highlight=False)


def show_robustness(table: Any, folder: Path) -> None:
    """``evaluate``'s table: the mean over runs of each condition, then the files written."""
    show = Table(title=f"robustness · {len(table.runs)} run(s)")
    show.add_column("condition", no_wrap=True)  # whole names; on a narrow terminal the headers wrap instead
    for col in ("clips", "macro-F1", "accuracy", "no digit heard", "low confidence", "commonest"):
        show.add_column(col, justify="right")
    for cond, scores in table.scores.items():
        cells = [table.mean(cond, a) for a in ("f1", "accuracy", "no_digit", "low_confidence")]
        numbers = ("-" if c is None else f"{c:.4f}" for c in cells)
        show.add_row(escape(cond), str(sum(s.clips for s in scores)), *numbers, scores[0].commonest)
    out.print(show)
    written = f"written: {folder / 'robustness.csv'}, {folder / 'robustness.png'}"
    out.print(written, highlight=False, soft_wrap=True, markup=False)


def show_prepared(prepared: Any, variant: str, seconds: float) -> None:
    """``data prepare``: recordings per speaker and digit with their split part, the split sizes, the cache."""
    cat, fs = prepared.catalog, prepared.features
    part_of = prepared.split.part_of()
    table = Table(title=f"{cat.root} · {len(cat.recordings)} recordings · split {prepared.split.spec}")
    table.add_column("speaker")
    for d in range(10):
        table.add_column(str(d), justify="right")
    table.add_column("total", justify="right")
    table.add_column("part")
    for spk, total in cat.counts_by_speaker().items():
        recs = [r for r in cat.recordings if r.speaker == spk]
        per_digit = [sum(r.digit == d for r in recs) for d in range(10)]
        parts = sorted({part_of.get(cat.rel(r), "-") for r in recs})
        table.add_row(spk, *map(str, per_digit), str(total), ",".join(parts))
    digits = cat.counts_by_digit()
    table.add_row("all", *(str(digits.get(d, 0)) for d in range(10)), str(len(cat.recordings)), "")
    out.print(table)
    sizes = {p: len(prepared.rows[p]) for p in ("train", "val", "test")}
    out.print(f"split: train {sizes['train']}, val {sizes['val']}, test {sizes['test']} recordings")
    out.print(f"features: {fs.x.shape} float16 ({variant}) in {fs.path} · {seconds:.1f} s")
    if fs.skipped:
        console.print(f"warning: {len(fs.skipped)} unreadable recordings skipped (first: {fs.skipped[0]})")


def show_run(cfg: Any, m: dict[str, Any], target: Path) -> None:
    """The finished run as one table row, and where its folder is."""
    table = Table(title=f"{cfg.model.name} · {cfg.features.variant} · augment {cfg.augment.enabled}")
    for col in ("val F1", "test F1", "test acc", "best epoch", "params", "train s", "device"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{m['val_f1']:.4f}",
        f"{m['test_f1']:.4f}",
        f"{m['test_accuracy']:.4f}",
        str(m["best_epoch"]),
        f"{m['num_parameters']:,}",
        f"{m['train_seconds']:.1f}",
        m["device"],
    )
    out.print(table)
    out.print(f"run folder: {target}", highlight=False, soft_wrap=True)


def show_cv_header(cfg: Any, protocol: str) -> None:
    out.print(f"{protocol} cross-validation · {cfg.model.name} · {cfg.features.variant}")
    out.print(f"{'fold':<20} {'test speakers':<16} {'val F1':>7} {'test F1':>8} {'test acc':>8} {'epoch':>5} {'s':>6}")


def show_fold(f: Any) -> None:
    """One finished fold of a cross-validation, as a row under :func:`show_cv_header`."""
    spk = " ".join(f.test_speakers)
    spk = spk if len(spk) <= 16 else spk[:15] + "…"
    out.print(
        f"{f.fold:<20} {spk:<16} {f.val_f1:>7.4f} {f.test_f1:>8.4f} {f.test_accuracy:>8.4f} "
        f"{f.best_epoch:>5} {f.train_seconds:>6.1f}"
    )


def show_cv_summary(result: Any, target: Path) -> None:
    """Mean and std rows, the one-line summary, the folder and the evaluate command for all folds."""
    s = result.summary()
    for stat in ("mean", "std"):
        val, test, acc = (s[f"{stat}_{k}"] for k in ("val_f1", "test_f1", "test_accuracy"))
        out.print(f"{stat:<20} {'':<16} {val:>7.4f} {test:>8.4f} {acc:>8.4f}")
    out.print(
        f"test macro-F1 {s['mean_test_f1']:.4f} ± {s['std_test_f1']:.4f} · "
        f"accuracy {s['mean_test_accuracy']:.4f} ± {s['std_test_accuracy']:.4f} over {len(result.folds)} folds"
    )
    out.print(f"cv folder: {target}", highlight=False, soft_wrap=True)
    line = f"every fold's robustness: tune-digits evaluate --model {target} --noise DIR"
    out.print(line, highlight=False, soft_wrap=True)
