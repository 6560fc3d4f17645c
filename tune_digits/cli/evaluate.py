"""``tune-digits evaluate``: the robustness table of saved runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tune_digits.cli.app import app, out, user_errors


@app.command()
@user_errors
def evaluate(
    dirs: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Extra folders of {digit}_{speaker}_{index}.wav recordings, each scored as it is."),
    ] = None,
    model: Annotated[
        list[Path],
        typer.Option("--model", help="A run folder (train's --out), or a --cv folder for all its folds; repeatable."),
    ] = ...,  # type: ignore[assignment]
    noise: Annotated[
        Optional[Path],
        typer.Option(
            "--noise",
            help="Folder of noise recordings (default: the run's augment.noise_dir); its "
            "last 30 % is used, never the part training mixes in.",
        ),
    ] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="The corpus (default: the run's data folder).")] = None,
    min_confidence: Annotated[
        float, typer.Option("--min-confidence", help="Probability under which a prediction counts as low-confidence.")
    ] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the noise draws and offsets.")] = 0,
    trim: Annotated[
        Optional[bool],
        typer.Option("--trim/--no-trim", help="Override the runs' audio.trim (default: as each run was trained)."),
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out", help="Folder for robustness.csv and robustness.png (default runs/evaluate/TIME)."),
    ] = None,
) -> None:
    """Macro-F1 per condition (clean, real noise at 20/10/5/0 dB SNR, word at a random offset in 3 s of noise,
    -30 dB gain, telephone band, 48 kHz stereo, extra folders) over the test speakers of each run's split."""
    from tune_digits.errors import UserError
    from tune_digits.evaluate import evaluate_runs, write_table

    noise = noise or _noise_of(model[0])
    if noise is None:
        raise UserError("no noise folder: pass --noise DIR (e.g. ../shared/data/noise)")
    if not 0.0 <= min_confidence <= 1.0:
        raise UserError(f"--min-confidence {min_confidence}: must be in [0, 1]")
    target = out_dir or Path("runs/evaluate") / time.strftime("%Y%m%d-%H%M%S")
    table = evaluate_runs(
        list(model), list(dirs or []), noise, data_root=data, seed=seed, min_confidence=min_confidence, trim=trim
    )
    try:
        target.mkdir(parents=True, exist_ok=True)
        write_table(table, target / "robustness.csv", target / "robustness.png")
    except OSError as exc:
        raise UserError(f"--out {target} cannot be written ({exc.strerror or exc})") from None
    show = Table(title=f"robustness · {len(table.runs)} run(s)")
    for col in ("condition", "clips", "macro-F1", "accuracy", "no digit heard", "low confidence", "commonest"):
        show.add_column(col, justify="left" if col == "condition" else "right")
    for cond, scores in table.scores.items():
        cells = [table.mean(cond, a) for a in ("f1", "accuracy", "no_digit", "low_confidence")]
        numbers = ("-" if c is None else f"{c:.4f}" for c in cells)
        show.add_row(cond, str(sum(s.clips for s in scores)), *numbers, scores[0].commonest)
    out.print(show)
    out.print(f"written: {target / 'robustness.csv'}, {target / 'robustness.png'}", highlight=False, soft_wrap=True)


def _noise_of(run: Path) -> Path | None:
    """The ``augment.noise_dir`` that ``run`` (or a --cv folder's first fold) was trained with, if any."""
    from tune_digits.cv import fold_runs
    from tune_digits.inference import load_model

    folder = load_model(fold_runs(run)[0]).cfg.augment.noise_dir
    return Path(folder).expanduser() if folder else None
