"""``tune-digits submit``, ``tune-digits submissions`` and ``tune-digits predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from tune_digits.cli.app import app, console, out, user_errors

SubmissionsOpt = Annotated[Path, typer.Option("--submissions", help="Folder of the attempts and their ledger.")]


def _say(line: str) -> None:
    style = "bold yellow" if line.startswith(("note:", "warning:")) else None
    console.print(escape(line), style=style, highlight=False, soft_wrap=True)


def _f(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


@app.command()
@user_errors
def submit(
    attempt: Annotated[int, typer.Option("--attempt", help="Attempt number, 1 to 3; each is used once.")],
    runs: Annotated[Path, typer.Option("--runs", help="Folder searched (recursively) for run folders.")] = Path("runs"),
    data: Annotated[
        Optional[Path], typer.Option("--data", help="Corpus folder (default: the pick's data folder from run.json).")
    ] = None,
    test_dir: Annotated[
        Optional[Path], typer.Option("--test-dir", help="Unlabelled *.wav files to predict into submission.csv.")
    ] = None,
    message: Annotated[str, typer.Option("--message", help="A note stored with the attempt.")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be submitted; write nothing.")] = False,
    allow_same: Annotated[
        bool, typer.Option("--allow-same", help="Allow the checkpoint of an earlier attempt again.")
    ] = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also export model.onnx (checked with onnxruntime).")] = False,
    submissions: SubmissionsOpt = Path("submissions"),
    split_digest: Annotated[
        Optional[str], typer.Option("--split-digest", help="Compete runs of this split (default: the newest run's).")
    ] = None,
    wandb: Annotated[str, typer.Option(help="auto, online, offline or disabled.")] = "auto",
    new_contest: Annotated[
        bool,
        typer.Option(
            "--new-contest",
            help="End this folder's contest (its split) and start a new one: the ledger and attempts are archived "
            "into contest-TIME-DIGEST/; needs --yes.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --new-contest.")] = False,
) -> None:
    """Submit the run with the best validation F1 as attempt N: score it on test and write submissions/attempt-N."""
    from tune_digits.submit import SubmitOptions
    from tune_digits.submit import submit as submit_attempt

    opts = SubmitOptions(
        attempt=attempt,
        runs=runs,
        submissions=submissions,
        data=data,
        test_dir=test_dir,
        message=message,
        dry_run=dry_run,
        allow_same=allow_same,
        onnx=onnx,
        split_digest=split_digest,
        wandb=wandb,
        new_contest=new_contest,
        yes=yes,
    )
    result = submit_attempt(opts, _say)
    _print_result(result, attempt)


def _print_result(result: Any, attempt: int) -> None:
    """The ranking, then what was submitted (or would be, for a dry run) and the attempts left."""
    out.print(_ranking_table(result.plan.selection))
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
        _f(e["val_f1"]),
        _f(e["test_f1"]),
        _f(e["test_accuracy"]),
        f"{params:,}" if isinstance(params, int) else "-",
        e["checkpoint_sha256"][:12],
    )
    out.print(table)
    out.print(f"attempt folder: {result.folder}", highlight=False, soft_wrap=True)
    out.print(f"attempts left: {', '.join(str(n) for n in result.plan.left if n != attempt) or 'none'}")


def _ranking_table(selection: Any, top: int = 5) -> Table:
    table = Table(title=f"candidates on split {selection.digest} (best first)")
    for col, justify in (("#", "right"), ("run", "left"), ("val F1", "right"), ("val loss", "right")):
        table.add_column(col, justify=justify)
    table.add_column("params", justify="right")
    table.add_column("created")
    for i, c in enumerate(selection.ranked[:top], start=1):
        table.add_row(str(i), escape(c.name), _f(c.val_f1), _f(c.val_loss), f"{c.num_parameters:,}", c.created)
    if len(selection.ranked) > top:
        table.caption = f"{len(selection.ranked) - top} more not shown"
    return table


@app.command()
@user_errors
def submissions(submissions: SubmissionsOpt = Path("submissions")) -> None:
    """List the attempts, their scores and the attempts left; flag files changed since submission."""
    from tune_digits.errors import UserError
    from tune_digits.ledger import attempts_left, check_attempt, check_chain, read_ledger

    if not submissions.exists():
        raise UserError(
            f"no submissions folder {submissions}: no attempt was made there yet "
            f"(attempts left: {', '.join(map(str, attempts_left([])))}); check --submissions"
        )
    for line in _recover(submissions):
        _say(line)
    entries = sorted(read_ledger(submissions), key=lambda e: e["attempt"])
    table = _submissions_table(submissions, entries)
    problems, notes = check_chain(submissions)
    one_split = len({(e.get("data_root"), e.get("split_digest")) for e in entries}) == 1
    for e in entries:
        found = check_attempt(submissions / f"attempt-{e['attempt']}", e)
        problems.extend(f"attempt {e['attempt']}: {line}" for line in found)
        cells = _attempt_cells(e, entries)
        if one_split:  # data and split are in the title, once for all attempts
            cells = cells[:2] + cells[4:]
        table.add_row(*cells, "[bold red]CHANGED[/]" if found else "ok")
    listed = {f"attempt-{e['attempt']}" for e in entries}
    stray = sorted(p.name for p in submissions.glob("attempt-*") if p.is_dir() and p.name not in listed)
    problems.extend(f"{name}: not in the ledger" for name in stray)
    out.print(table)
    archived = sorted(p.parent.name for p in submissions.glob("contest-*/ledger.jsonl"))
    if archived:
        out.print(f"earlier contests (archived): {', '.join(archived)}", highlight=False, soft_wrap=True)
    left = attempts_left(entries)
    out.print(f"attempts left: {len(left)} ({', '.join(map(str, left)) or 'none'})")
    for line in notes:
        _say(line)
    for line in problems:
        console.print(escape(line), style="bold red", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


def _submissions_table(submissions: Path, entries: list[dict[str, Any]]) -> Table:
    """The table's columns; data and split are a column each only when the attempts differ in them."""
    splits = {(e.get("data_root"), e.get("split_digest")) for e in entries}
    title = f"submissions in {submissions}"
    if len(splits) == 1:
        data, split = _attempt_cells(entries[0], entries)[2:4]
        title += f" · data {data} · split {split}"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    numbers = ("#", "val F1", "test F1", "95% interval", "P(beats)", "Δ val/test")
    for col in ("#", "time (UTC)", "data", "split", "model", "message", *numbers[1:]):
        if len(splits) == 1 and col in ("data", "split"):
            continue
        table.add_column(col, justify="right" if col in numbers else "left", no_wrap=col != "message")
    table.add_column("files", no_wrap=True)
    return table


def _recover(submissions: Path) -> list[str]:
    """Finish or roll back a killed submit's leftovers, unless a submit is running now."""
    from tune_digits.errors import UserError
    from tune_digits.ledger import recover, submissions_lock

    try:
        with submissions_lock(submissions):
            return recover(submissions)
    except UserError as exc:
        return [f"note: nothing recovered: {exc}"]


def _attempt_cells(e: dict[str, Any], entries: list[dict[str, Any]]) -> list[str]:
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
        _f(e.get("val_f1")),
        _f(e.get("test_f1")),
        *_advice_cells(e),
        f"{_delta(e, prev, 'val_f1')}/{_delta(e, prev, 'test_f1')}" if prev else "-",
    ]


def _advice_cells(e: dict[str, Any]) -> list[str]:
    """The 95 % interval of the expected test F1 (its point is the val F1) and the chance to beat the previous
    attempt, as they were before the attempt was spent."""
    from tune_digits.advice import percent

    exp, beat = e.get("expected_test_f1") or {}, e.get("p_beats_previous") or {}
    expected = f"{_f(exp.get('low'), 3)}-{_f(exp.get('high'), 3)}" if exp else "-"
    p = beat.get("p")
    chance = f"{percent(p)} vs {beat.get('attempt')}" if isinstance(p, (int, float)) else "-"
    return [expected, chance]


def _delta(entry: dict[str, Any], prev: dict[str, Any] | None, key: str) -> str:
    if prev is None or not isinstance(entry.get(key), (int, float)) or not isinstance(prev.get(key), (int, float)):
        return "-"
    return f"{entry[key] - prev[key]:+.3f}"


@app.command()
@user_errors
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="Recordings or folders of *.wav files (searched recursively).")],
    model: Annotated[
        list[Path],
        typer.Option(
            "--model",
            help="A model.pt or a folder holding one (submissions/attempt-N); repeat it to average several models' "
            "probabilities (an ensemble, e.g. a LeNet-5 and a Model B run).",
        ),
    ],
    out_csv: Annotated[
        Optional[Path], typer.Option("--out", help="Write file,digit,probability,note to this CSV.")
    ] = None,
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence",
            help="Mark predictions whose (calibrated) probability is below this as low confidence; 0 = never.",
        ),
    ] = 0.5,
) -> None:
    """Predict the digit spoken in each recording with a saved model (or the mean of several).

    A recording where no word is found (near silence, noise only) says "no digit heard" and has no digit.
    """
    from dataclasses import replace

    from tune_digits.errors import UserError
    from tune_digits.inference import (
        collect_audio,
        load_model,
        predict_files,
        prediction_note,
        relative_name,
        write_prediction_csv,
    )

    if out_csv is not None and (out_csv.is_dir() or not out_csv.parent.is_dir()):
        problem = "is a folder" if out_csv.is_dir() else f"cannot be written: no folder {out_csv.parent}"
        raise UserError(f"--out {out_csv} {problem}; pass a CSV file name in an existing folder")
    if not 0.0 <= min_confidence <= 1.0:
        raise UserError(f"--min-confidence {min_confidence}: must be in [0, 1], e.g. 0.5")
    models = [load_model(m) for m in model]
    audio, other = collect_audio(list(inputs))
    if other:
        _say(f"warning: {len(other)} non-audio files skipped (first: {relative_name(other[0], inputs)})")
    errors: list[str] = []
    preds = predict_files(models, audio, errors=errors)
    if errors:
        _say(f"warning: {len(errors)} unreadable recordings skipped (first: {errors[0]})")
    if not preds:
        raise UserError("no readable recordings among the inputs; pass *.wav files or folders holding them")
    preds = [replace(p, file=relative_name(p.file, inputs)) for p in preds]
    if out_csv is not None:
        try:
            write_prediction_csv(out_csv, preds, min_confidence)
        except OSError as exc:
            raise UserError(f"--out {out_csv} cannot be written ({exc.strerror or exc})") from None
        out.print(f"{len(preds)} predictions written to {out_csv}", highlight=False, soft_wrap=True)
        return
    title = " + ".join(f"{m.cfg.model.name} · {m.path}" for m in models)
    table = Table(title=title if len(models) == 1 else f"mean of {title}")
    table.add_column("file", overflow="fold")
    table.add_column("digit", justify="right")
    table.add_column("probability", justify="right")
    table.add_column("note")
    for p in preds:
        note = prediction_note(p, min_confidence)
        digit = "-" if not p.heard else str(p.digit)
        table.add_row(escape(p.file), digit, f"{p.probability:.4f}", note)
    out.print(table)
