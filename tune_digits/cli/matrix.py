"""``tune-digits final-eight``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tune_digits.cli.app import app, overrides_from_flags, user_errors
from tune_digits.cli.render import show_eight, show_line

DataOpt = Annotated[Optional[Path], typer.Option(help="Corpus folder (default: the one the params were tuned on).")]
SplitOpt = Annotated[Optional[str], typer.Option(help="becker:K, speakers, loso:SPEAKER, fsdd-official, split.json.")]
ModelAOpt = Annotated[
    Optional[Path], typer.Option(help="Model A's params (best.yaml); default: latest LeNet-5 search.")
]
ModelBOpt = Annotated[Optional[Path], typer.Option(help="Model B's params (best.yaml); default: latest timm search.")]
SeedsOpt = Annotated[int, typer.Option(help="Seeds per configuration (mean ± std when > 1).")]
EpochsOpt = Annotated[Optional[int], typer.Option(help="Epochs per training (default: the params' own).")]
NameOpt = Annotated[Optional[str], typer.Option(help="Name of the comparison (default final-eight-TIME).")]
StorageOpt = Annotated[Path, typer.Option(help="Where comparisons are kept.")]
SearchesOpt = Annotated[Path, typer.Option(help="Where to look for the latest searches.")]
WandbOpt = Annotated[str, typer.Option(help="auto, online, offline or disabled.")]
AddressOpt = Annotated[Optional[str], typer.Option(help="Join a Ray cluster: auto or ray://HOST:10001.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the comparison --name after a crash.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting of both models.")]


@app.command("final-eight")
@user_errors
def final_eight(
    data: DataOpt = None,
    split: SplitOpt = None,
    model_a: ModelAOpt = None,
    model_b: ModelBOpt = None,
    seeds: SeedsOpt = 1,
    epochs: EpochsOpt = None,
    name: NameOpt = None,
    storage: StorageOpt = Path("runs/final-eight"),
    searches: SearchesOpt = Path("runs/search"),
    wandb: WandbOpt = "auto",
    address: AddressOpt = None,
    resume: ResumeOpt = False,
    set_: SetOpt = None,
) -> None:
    """Run the eight required trainings (2 models x raw/bilateral x no-aug/aug) and compare them."""
    from tune_digits.matrix import EightOptions, default_name, resume_line, run_final_eight

    if resume and not name:
        raise typer.BadParameter("--resume needs the --name of the comparison to continue")
    overrides = tuple(overrides_from_flags(data=data, split=split) + list(set_ or []))
    opts = EightOptions(
        name or default_name(),
        storage,
        searches,
        model_a=model_a,
        model_b=model_b,
        overrides=overrides,
        seeds=seeds,
        epochs=epochs,
        wandb=wandb,
        address=address,
        resume=resume,
    )
    try:
        folder = run_final_eight(opts)
    except KeyboardInterrupt:
        line = resume_line(opts)
        if line is not None:
            show_line(line)
        raise
    show_eight(folder)
