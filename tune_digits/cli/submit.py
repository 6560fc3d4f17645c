"""``tune-digits submit``, ``tune-digits submissions`` and ``tune-digits predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tune_digits.cli.app import app, out, user_errors
from tune_digits.cli.render import say, show_attempt, show_predictions, show_submissions

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
    from tune_digits.ledger import audit

    report = audit(submissions)
    show_submissions(submissions, report)
    if report.problems:
        raise typer.Exit(1)


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
