"""``tune-digits final-eight``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from tune_digits.cli.app import app, console, out, overrides_from_flags, user_errors


@app.command("final-eight")
@user_errors
def final_eight(
    data: Annotated[
        Optional[Path], typer.Option(help="Corpus folder (default: the one the params were tuned on).")
    ] = None,
    split: Annotated[
        Optional[str], typer.Option(help="becker:K, speakers, loso:SPEAKER, fsdd-official, split.json.")
    ] = None,
    model_a: Annotated[
        Optional[Path], typer.Option(help="Model A's params (best.yaml); default: latest LeNet-5 search.")
    ] = None,
    model_b: Annotated[
        Optional[Path], typer.Option(help="Model B's params (best.yaml); default: latest timm search.")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per configuration (mean ± std when > 1).")] = 1,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per training (default: the params' own).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name of the comparison (default final-eight-TIME).")] = None,
    storage: Annotated[Path, typer.Option(help="Where comparisons are kept.")] = Path("runs/final-eight"),
    searches: Annotated[Path, typer.Option(help="Where to look for the latest searches.")] = Path("runs/search"),
    wandb: Annotated[str, typer.Option(help="auto, online, offline or disabled.")] = "auto",
    address: Annotated[Optional[str], typer.Option(help="Join a Ray cluster: auto or ray://HOST:10001.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the comparison --name after a crash.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting of both models.")] = None,
) -> None:
    """Run the eight required trainings (2 models x raw/bilateral x no-aug/aug) and compare them."""
    from tune_digits.matrix import EightOptions, run_final_eight

    if resume and not name:
        raise typer.BadParameter("--resume needs the --name of the comparison to continue")
    opts = EightOptions(
        name=name or f"final-eight-{time.strftime('%Y%m%d-%H%M%S')}",
        storage=storage,
        searches=searches,
        model_a=model_a,
        model_b=model_b,
        overrides=tuple(overrides_from_flags(data=data, split=split) + list(set_ or [])),
        seeds=seeds,
        epochs=epochs,
        wandb=wandb,
        address=address,
        resume=resume,
    )
    try:
        folder = run_final_eight(opts)
    except KeyboardInterrupt:
        if (storage / opts.name).is_dir():
            again = f"tune-digits final-eight --storage {storage} --name {opts.name} --resume"
            console.print(
                f"final-eight {opts.name} interrupted, not finished (no summary); resume with: {again}",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
        raise
    from tune_digits.cli.search import show_paths

    out.print((folder / "summary.md").read_text(encoding="utf-8"))
    show_paths(folder)
