"""``tune-digits submit``, ``tune-digits submissions`` and ``tune-digits predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from tune_digits.cli.app import app, console, out, user_errors
from tune_digits.cli.render import attempt_cells, say, show_attempt, show_predictions, submissions_table

SubmissionsOpt = Annotated[Path, typer.Option("--submissions", help="Folder of the attempts and their ledger.")]
AttemptOpt = Annotated[int, typer.Option("--attempt", help="Attempt number, 1 to 3; each is used once.")]
RunsOpt = Annotated[Path, typer.Option("--runs", help="Folder searched (recursively) for run folders.")]
DataOpt = Annotated[
    Optional[Path], typer.Option("--data", help="Corpus folder (default: the pick's data folder from run.json).")
]
TestDirOpt = Annotated[
    Optional[Path], typer.Option("--test-dir", help="Unlabelled *.wav files to predict into submission.csv.")
]
MessageOpt = Annotated[str, typer.Option("--message", help="A note stored with the attempt.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would be submitted; write nothing.")]
AllowSameOpt = Annotated[bool, typer.Option("--allow-same", help="Allow the checkpoint of an earlier attempt again.")]
OnnxOpt = Annotated[bool, typer.Option("--onnx", help="Also export model.onnx (checked with onnxruntime).")]
SplitDigestOpt = Annotated[
    Optional[str], typer.Option("--split-digest", help="Compete runs of this split (default: the newest run's).")
]
WandbOpt = Annotated[str, typer.Option(help="auto, online, offline or disabled.")]
NewContestOpt = Annotated[
    bool,
    typer.Option(
        "--new-contest",
        help="End this folder's contest (its split) and start a new one: the ledger and attempts are archived "
        "into contest-TIME-DIGEST/; needs --yes.",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", help="Confirm --new-contest.")]
InputsArg = Annotated[list[Path], typer.Argument(help="Recordings or folders of *.wav files (searched recursively).")]
ModelsOpt = Annotated[
    list[Path],
    typer.Option(
        "--model",
        help="A model.pt or a folder holding one (submissions/attempt-N); repeat it to average several models' "
        "probabilities (an ensemble, e.g. a LeNet-5 and a Model B run).",
    ),
]
OutCsvOpt = Annotated[Optional[Path], typer.Option("--out", help="Write file,digit,probability,note to this CSV.")]
MinConfidenceOpt = Annotated[
    float,
    typer.Option(
        "--min-confidence",
        help="Mark predictions whose (calibrated) probability is below this as low confidence; 0 = never.",
    ),
]


@app.command()
@user_errors
def submit(
    attempt: AttemptOpt,
    runs: RunsOpt = Path("runs"),
    data: DataOpt = None,
    test_dir: TestDirOpt = None,
    message: MessageOpt = "",
    dry_run: DryRunOpt = False,
    allow_same: AllowSameOpt = False,
    onnx: OnnxOpt = False,
    submissions: SubmissionsOpt = Path("submissions"),
    split_digest: SplitDigestOpt = None,
    wandb: WandbOpt = "auto",
    new_contest: NewContestOpt = False,
    yes: YesOpt = False,
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
    show_attempt(submit_attempt(opts, say), attempt)


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
        say(line)
    entries = sorted(read_ledger(submissions), key=lambda e: e["attempt"])
    table = submissions_table(submissions, entries)
    problems, notes = check_chain(submissions)
    one_split = len({(e.get("data_root"), e.get("split_digest")) for e in entries}) == 1
    for e in entries:
        found = check_attempt(submissions / f"attempt-{e['attempt']}", e)
        problems.extend(f"attempt {e['attempt']}: {line}" for line in found)
        cells = attempt_cells(e, entries)
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
        say(line)
    for line in problems:
        console.print(escape(line), style="bold red", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


def _recover(submissions: Path) -> list[str]:
    """Finish or roll back a killed submit's leftovers, unless a submit is running now."""
    from tune_digits.errors import UserError
    from tune_digits.ledger import recover, submissions_lock

    try:
        with submissions_lock(submissions):
            return recover(submissions)
    except UserError as exc:
        return [f"note: nothing recovered: {exc}"]


@app.command()
@user_errors
def predict(
    inputs: InputsArg, model: ModelsOpt, out_csv: OutCsvOpt = None, min_confidence: MinConfidenceOpt = 0.5
) -> None:
    """Predict the digit spoken in each recording with a saved model (or the mean of several).

    A recording where no word is found (near silence, noise only) says "no digit heard" and has no digit.
    """
    from tune_digits.predict import predict_inputs

    result = predict_inputs(list(inputs), list(model), out_csv, say, min_confidence)
    if result.csv is None:
        show_predictions(result.models, result.rows, min_confidence)
    else:
        out.print(f"{len(result.rows)} predictions written to {result.csv}", highlight=False, soft_wrap=True)
