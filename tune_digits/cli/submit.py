"""``tune-digits submit``, ``tune-digits submissions`` and ``tune-digits predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
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
    )
    result = submit_attempt(opts, _say)
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
    from tune_digits.ledger import attempts_left, check_attempt, read_ledger

    if not submissions.exists():
        raise UserError(
            f"no submissions folder {submissions}: no attempt was made there yet "
            f"(attempts left: {', '.join(map(str, attempts_left([])))}); check --submissions"
        )
    entries = sorted(read_ledger(submissions), key=lambda e: e["attempt"])
    table = Table(title=f"submissions in {submissions}")
    for col in ("#", "time (UTC)", "model", "source run", "val F1", "test F1", "Δ val", "Δ test", "files"):
        table.add_column(col, justify="right" if col[0] in "#vtΔ" and col != "time (UTC)" else "left")
    problems: list[str] = []
    prev: dict[str, Any] | None = None
    for e in entries:
        found = check_attempt(submissions / f"attempt-{e['attempt']}", e)
        problems.extend(f"attempt {e['attempt']}: {line}" for line in found)
        table.add_row(
            str(e["attempt"]),
            str(e.get("created", "-")).replace("T", " ").rstrip("Z")[:16],
            escape(str(e.get("model", "-"))),
            escape(Path(str(e.get("source_run", "-"))).name),
            _f(e.get("val_f1")),
            _f(e.get("test_f1")),
            _delta(e, prev, "val_f1"),
            _delta(e, prev, "test_f1"),
            "[bold red]CHANGED[/]" if found else "ok",
        )
        prev = e
    listed = {f"attempt-{e['attempt']}" for e in entries}
    stray = sorted(p.name for p in submissions.glob("attempt-*") if p.is_dir() and p.name not in listed)
    problems.extend(f"{name}: not in the ledger" for name in stray)
    out.print(table)
    left = attempts_left(entries)
    out.print(f"attempts left: {len(left)} ({', '.join(map(str, left)) or 'none'})")
    for line in problems:
        console.print(escape(line), style="bold red", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


def _delta(entry: dict[str, Any], prev: dict[str, Any] | None, key: str) -> str:
    if prev is None or not isinstance(entry.get(key), (int, float)) or not isinstance(prev.get(key), (int, float)):
        return "-"
    return f"{entry[key] - prev[key]:+.4f}"


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
