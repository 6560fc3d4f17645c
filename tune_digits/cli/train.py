"""``tune-digits train`` and ``tune-digits data prepare|download``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tune_digits.cli.app import announce_data, app, console, data_app, out, overrides_from_flags, user_errors

DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Corpus folder (default: the bundled demo corpus).")]
SplitOpt = Annotated[
    Optional[str],
    typer.Option("--split", help="becker:0..4, speakers, loso:SPEAKER, fsdd-official, random, or a split.json."),
]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override any setting: --set train.lr=3e-4 (repeatable).")
]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="A YAML config, e.g. a search's best.yaml.")]


@app.command()
@user_errors
def train(
    model: Annotated[
        Optional[str], typer.Option(help="lenet5 or a timm model name (efficientnet_b0, resnet18, ...).")
    ] = None,
    data: DataOpt = None,
    variant: Annotated[Optional[str], typer.Option(help="raw or bilateral spectrograms.")] = None,
    augment: Annotated[
        Optional[bool], typer.Option("--augment/--no-augment", help="SpecAugment on training batches.")
    ] = None,
    split: SplitOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Run folder (default runs/train/TIME-MODEL-VARIANT).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    wandb: Annotated[str, typer.Option(help="auto, online, offline or disabled.")] = "auto",
    strict: Annotated[
        Optional[bool], typer.Option("--strict/--lenient", help="Unreadable recordings are errors.")
    ] = None,
) -> None:
    """Train one model and write config, metrics, checkpoint, history and predictions to a run folder."""
    from tune_digits.config import load_config
    from tune_digits.run import train_run

    flags = overrides_from_flags(
        model=model, data=data, variant=variant, augment=augment, split=split, epochs=epochs, seed=seed, strict=strict
    )
    cfg = load_config(config, flags + list(set_ or []))
    announce_data(cfg.data.root)
    aug = "-aug" if cfg.augment.enabled else ""
    target = (
        out_dir or Path("runs/train") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.name}-{cfg.features.variant}{aug}"
    )
    result = train_run(cfg, target, wandb=wandb)
    m = result.metrics()
    table = Table(title=f"{cfg.model.name} · {cfg.features.variant} · augment {cfg.augment.enabled}")
    for col in ("val F1", "test F1", "test acc", "best epoch", "params", "train s", "device"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{m['val_f1']:.4f}",
        f"{m['test_f1']:.4f}",
        f"{m['test_accuracy']:.4f}",
        str(m["best_epoch"]),
        f"{m['num_parameters']:,}",
        f"{m['train_seconds']:.1f}",
        m["device"],
    )
    out.print(table)
    out.print(f"run folder: {target}")


@data_app.command("prepare")
@user_errors
def prepare_cmd(
    data: DataOpt = None,
    variant: Annotated[Optional[str], typer.Option(help="raw or bilateral.")] = None,
    split: SplitOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    strict: Annotated[
        Optional[bool], typer.Option("--strict/--lenient", help="Unreadable recordings are errors.")
    ] = None,
) -> None:
    """Build the feature cache and print counts per digit, speaker and split."""
    from tune_digits.config import load_config
    from tune_digits.train import prepare

    cfg = load_config(
        config, overrides_from_flags(data=data, variant=variant, split=split, strict=strict) + list(set_ or [])
    )
    announce_data(cfg.data.root)
    start = time.perf_counter()
    prepared = prepare(cfg, progress=True)
    seconds = time.perf_counter() - start
    cat, fs = prepared.catalog, prepared.features
    part_of = prepared.split.part_of()
    table = Table(title=f"{cat.root} · {len(cat.recordings)} recordings · split {prepared.split.spec}")
    table.add_column("speaker")
    for d in range(10):
        table.add_column(str(d), justify="right")
    table.add_column("total", justify="right")
    table.add_column("part")
    for spk, total in cat.counts_by_speaker().items():
        recs = [r for r in cat.recordings if r.speaker == spk]
        per_digit = [sum(r.digit == d for r in recs) for d in range(10)]
        parts = sorted({part_of.get(cat.rel(r), "-") for r in recs})
        table.add_row(spk, *map(str, per_digit), str(total), ",".join(parts))
    digits = cat.counts_by_digit()
    table.add_row("all", *(str(digits.get(d, 0)) for d in range(10)), str(len(cat.recordings)), "")
    out.print(table)
    sizes = {p: len(prepared.rows[p]) for p in ("train", "val", "test")}
    out.print(f"split: train {sizes['train']}, val {sizes['val']}, test {sizes['test']} recordings")
    out.print(f"features: {fs.x.shape} float16 ({cfg.features.variant}) in {fs.path} · {seconds:.1f} s")
    if fs.skipped:
        console.print(f"warning: {len(fs.skipped)} unreadable recordings skipped (first: {fs.skipped[0]})")


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
