"""``tune-digits evaluate``: the robustness table of saved runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tune_digits.cli.app import app, user_errors


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
    from tune_digits.cli.render import show_robustness
    from tune_digits.evaluate import robustness

    options = {"data_root": data, "seed": seed, "min_confidence": min_confidence, "trim": trim}
    table, folder = robustness(list(model), list(dirs or []), noise, out_dir, **options)
    show_robustness(table, folder)
