"""``tune-digits search``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tune_digits.cli.app import announce_data, app, overrides_from_flags, user_errors
from tune_digits.cli.render import show_leaderboard, show_line

SpaceOpt = Annotated[Path, typer.Option("--space", help="A search space YAML, e.g. search_spaces/lenet.yaml.")]
DataOpt = Annotated[Optional[Path], typer.Option(help="Corpus folder (default: the bundled demo corpus).")]
SplitOpt = Annotated[Optional[str], typer.Option(help="becker:K, speakers, loso:SPEAKER, fsdd-official, split.json.")]
NameOpt = Annotated[Optional[str], typer.Option(help="Search name (default SPACE-TIME); --resume needs it.")]
SamplesOpt = Annotated[Optional[int], typer.Option(help="Trials to run.")]
EpochsOpt = Annotated[Optional[int], typer.Option(help="Epochs of a trial that ASHA never stops.")]
BudgetOpt = Annotated[Optional[float], typer.Option(help="Stop starting trials after this many seconds.")]
CpusOpt = Annotated[Optional[float], typer.Option(help="CPUs per trial (default 1).")]
GpusOpt = Annotated[Optional[float], typer.Option(help="GPUs per trial (default 0.25 LeNet-5, 1 timm).")]
ConcurrentOpt = Annotated[Optional[int], typer.Option(help="Trials at once (default: what fits).")]
AddressOpt = Annotated[Optional[str], typer.Option(help="Join a Ray cluster: auto or ray://HOST:10001.")]
StorageOpt = Annotated[Path, typer.Option(help="Where searches are kept (shared storage on a cluster).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the search --name after a crash.")]
WandbOpt = Annotated[str, typer.Option(help="auto, online, offline or disabled.")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed of the Optuna sampler.")]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a setting: train.patience=5, search.num_samples=4.")
]


@app.command()
@user_errors
def search(
    space: SpaceOpt,
    data: DataOpt = None,
    split: SplitOpt = None,
    name: NameOpt = None,
    num_samples: SamplesOpt = None,
    max_epochs: EpochsOpt = None,
    time_budget: BudgetOpt = None,
    cpus_per_trial: CpusOpt = None,
    gpus_per_trial: GpusOpt = None,
    max_concurrent: ConcurrentOpt = None,
    address: AddressOpt = None,
    storage: StorageOpt = Path("runs/search"),
    resume: ResumeOpt = False,
    wandb: WandbOpt = "auto",
    seed: SeedOpt = None,
    set_: SetOpt = None,
) -> None:
    """Tune hyperparameters with Ray Tune, Optuna (TPE) and ASHA early stopping."""
    from tune_digits.config import parse_overrides
    from tune_digits.search import SearchOptions, default_name, resume_line, run_search, settings_overrides
    from tune_digits.space import load_space

    sp = load_space(space)
    if resume and not name:
        raise typer.BadParameter("--resume needs the --name of the search to continue")
    searched = settings_overrides(num_samples=num_samples, max_epochs=max_epochs, time_budget=time_budget, seed=seed)
    flags = overrides_from_flags(data=data, split=split) + searched + settings_overrides(max_concurrent=max_concurrent)
    flags += list(set_ or [])
    sp = sp.with_overrides(parse_overrides(flags))[0]  # a bad setting fails now, before anything is announced
    resources = {"cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial, "address": address}
    opts = SearchOptions(name or default_name(space), storage, tuple(flags), resume=resume, wandb=wandb, **resources)
    announce_data(str(data or sp.fixed.get("data.root", "")))
    try:
        folder = run_search(sp, opts)
    except KeyboardInterrupt:
        line = resume_line(space, opts)
        if line is not None:
            show_line(line)
        raise
    show_leaderboard(folder)
