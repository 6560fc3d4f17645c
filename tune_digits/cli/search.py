"""``tune-digits search``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tune_digits.cli.app import announce_data, app, console, out, overrides_from_flags, user_errors

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
            console.print(line, soft_wrap=True, markup=False, highlight=False)
        raise
    show_leaderboard(folder)


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
