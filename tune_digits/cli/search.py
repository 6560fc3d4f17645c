"""``tune-digits search``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tune_digits.cli.app import announce_data, app, console, out, overrides_from_flags, user_errors


@app.command()
@user_errors
def search(
    space: Annotated[Path, typer.Option("--space", help="A search space YAML, e.g. search_spaces/lenet.yaml.")],
    data: Annotated[Optional[Path], typer.Option(help="Corpus folder (default: the bundled demo corpus).")] = None,
    split: Annotated[
        Optional[str], typer.Option(help="becker:K, speakers, loso:SPEAKER, fsdd-official, split.json.")
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="Search name (default SPACE-TIME); --resume needs it.")] = None,
    num_samples: Annotated[Optional[int], typer.Option(help="Trials to run.")] = None,
    max_epochs: Annotated[Optional[int], typer.Option(help="Epochs of a trial that ASHA never stops.")] = None,
    time_budget: Annotated[Optional[float], typer.Option(help="Stop starting trials after this many seconds.")] = None,
    cpus_per_trial: Annotated[Optional[float], typer.Option(help="CPUs per trial (default 1).")] = None,
    gpus_per_trial: Annotated[
        Optional[float], typer.Option(help="GPUs per trial (default 0.25 LeNet-5, 1 timm).")
    ] = None,
    max_concurrent: Annotated[Optional[int], typer.Option(help="Trials at once (default: what fits).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Join a Ray cluster: auto or ray://HOST:10001.")] = None,
    storage: Annotated[Path, typer.Option(help="Where searches are kept (shared storage on a cluster).")] = Path(
        "runs/search"
    ),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the search --name after a crash.")] = False,
    wandb: Annotated[str, typer.Option(help="auto, online, offline or disabled.")] = "auto",
    seed: Annotated[Optional[int], typer.Option(help="Seed of the Optuna sampler.")] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a setting: train.patience=5, search.num_samples=4.")
    ] = None,
) -> None:
    """Tune hyperparameters with Ray Tune, Optuna (TPE) and ASHA early stopping."""
    from tune_digits.config import parse_overrides
    from tune_digits.search import SearchOptions, run_search, search_dir
    from tune_digits.space import load_space

    sp = load_space(space)
    if resume and not name:
        raise typer.BadParameter("--resume needs the --name of the search to continue")
    settings = {"num_samples": num_samples, "max_epochs": max_epochs, "time_budget": time_budget}
    settings |= {"max_concurrent": max_concurrent, "seed": seed}
    flags = overrides_from_flags(data=data, split=split)
    flags += [f"search.{key}={value}" for key, value in settings.items() if value is not None] + list(set_ or [])
    sp = sp.with_overrides(parse_overrides(flags))[0]  # a bad setting fails now, before anything is announced
    opts = SearchOptions(
        name=name or f"{space.stem}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage=storage,
        overrides=tuple(flags),
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        address=address,
        resume=resume,
        wandb=wandb,
    )
    announce_data(str(data or sp.fixed.get("data.root", "")))
    try:
        folder = run_search(sp, opts)
    except KeyboardInterrupt:
        if search_dir(opts).is_dir():
            again = f"tune-digits search --space {space} --storage {storage} --name {opts.name} --resume"
            console.print(
                f"search {opts.name} interrupted, not finished (no best.yaml); resume with: {again}",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
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
    if best.is_file():
        out.print(f"best config: {best}  (tune-digits train --config {best})", highlight=False, soft_wrap=True)


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
