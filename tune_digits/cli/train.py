"""``tune-digits train`` and ``tune-digits data prepare|download``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from tune_digits.cli.app import announce_data, app, console, data_app, out, overrides_from_flags, user_errors

if TYPE_CHECKING:
    from tune_digits.config import Config
    from tune_digits.train import FitResult, Prepared

DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Corpus folder (default: the bundled demo corpus).")]
SplitOpt = Annotated[
    Optional[str],
    typer.Option("--split", help="becker:0..4, speakers, loso:SPEAKER, fsdd-official, random, or a split.json."),
]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override any setting: --set train.lr=3e-4 (repeatable).")
]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="A YAML config, e.g. a search's best.yaml.")]


CvOpt = Annotated[
    Optional[str],
    typer.Option(
        "--cv",
        help="Cross-validate instead of one run: becker (folds becker:0..4) or loso (one fold per speaker); "
        "prints each fold and mean ± std, writes OUT/cv.csv, cv.json and config.yaml (no W&B).",
    ),
]
PresetOpt = Annotated[
    Optional[str],
    typer.Option(
        "--preset",
        help=(
            "Start from a bundled recipe (lenet5, lenet5-wide, model-b, model-b-resnet18); "
            "flags, --config and --set override."
        ),
    ),
]


ModelOpt = Annotated[
    Optional[str], typer.Option(help="lenet5, resnet20 (ResNet for small images) or a timm model name (resnet18, ...).")
]
VariantOpt = Annotated[Optional[str], typer.Option(help="raw or bilateral spectrograms.")]
AugmentOpt = Annotated[Optional[bool], typer.Option("--augment/--no-augment", help="SpecAugment on training batches.")]
EpochsOpt = Annotated[Optional[int], typer.Option(help="Training epochs.")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Random seed.")]
OutOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--out", help="Run folder (default runs/train/TIME-MODEL-VARIANT; with --cv runs/cv/TIME-MODEL-PROTOCOL)."
    ),
]
WandbOpt = Annotated[str, typer.Option(help="auto, online, offline or disabled.")]
StrictOpt = Annotated[Optional[bool], typer.Option("--strict/--lenient", help="Unreadable recordings are errors.")]


@app.command()
@user_errors
def train(
    model: ModelOpt = None,
    data: DataOpt = None,
    variant: VariantOpt = None,
    augment: AugmentOpt = None,
    split: SplitOpt = None,
    cv: CvOpt = None,
    preset: PresetOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    out_dir: OutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    wandb: WandbOpt = "auto",
    strict: StrictOpt = None,
) -> None:
    """Train one model and write config, metrics, checkpoint, history and predictions to a run folder.

    With --cv becker|loso: train once per fold and report each fold and the mean ± std of test macro-F1.
    """
    from tune_digits.cli.render import show_run
    from tune_digits.config import load_config
    from tune_digits.jobs import check_before_data, check_cv_flags, default_out
    from tune_digits.run import train_run

    check_cv_flags(cv, split)
    flags = overrides_from_flags(
        model=model, data=data, variant=variant, augment=augment, split=split, epochs=epochs, seed=seed, strict=strict
    )
    cfg = load_config(config, flags + list(set_ or []), preset=preset)
    check_before_data(cfg, cv)
    announce_data(cfg.data.root)
    target = out_dir or default_out(cfg, cv)
    if cv is not None:
        _train_cv(cfg, cv, target)
    else:
        show_run(cfg, train_run(cfg, target, wandb=wandb).metrics(), target)


def _fit_with_bar(cfg: Config, data: Prepared) -> FitResult:
    """``fit`` with an epoch progress bar on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tune_digits.train import fit

    columns = (TextColumn(data.split.spec), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("fold", total=cfg.train.epochs, status="")

        def on_epoch(record: dict[str, Any], _state: Any) -> None:
            status = f"val_f1 {record['val_f1']:.3f}  best {record['best_val_f1']:.3f}"
            bar.update(task, completed=record["epoch"], status=status)

        return fit(cfg, on_epoch, data=data)


def _train_cv(cfg: Config, protocol: str, target: Path) -> None:
    """Every fold of ``protocol``, one table row each as it finishes, then mean ± std."""
    from tune_digits.cli.render import show_cv_header, show_cv_summary, show_fold
    from tune_digits.jobs import cross_validate_into

    show_cv_header(cfg, protocol)
    result = cross_validate_into(cfg, protocol, target, on_fold=show_fold, fit_fn=_fit_with_bar)
    show_cv_summary(result, target)


@data_app.command("prepare")
@user_errors
def prepare_cmd(
    data: DataOpt = None,
    variant: Annotated[Optional[str], typer.Option(help="raw or bilateral.")] = None,
    split: SplitOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    strict: StrictOpt = None,
) -> None:
    """Build the feature cache and print counts per digit, speaker and split."""
    from tune_digits.cli.render import show_prepared
    from tune_digits.config import load_config
    from tune_digits.train import prepare

    cfg = load_config(
        config, overrides_from_flags(data=data, variant=variant, split=split, strict=strict) + list(set_ or [])
    )
    announce_data(cfg.data.root)
    start = time.perf_counter()
    prepared = prepare(cfg, progress=True)
    seconds = time.perf_counter() - start
    show_prepared(prepared, cfg.features.variant, seconds)


@data_app.command("download")
@user_errors
def download_cmd(
    name: Annotated[str, typer.Argument(help="audiomnist or fsdd")],
    to: Annotated[Path, typer.Option("--to", help="Folder to download into.")] = Path("datasets"),
) -> None:
    """Download a public corpus (resumes a broken download) and check its file count."""
    from tune_digits.download import download_dataset

    root = download_dataset(name, to)
    out.print(f"ready: use --data {root}")
