"""``tune-digits final-eight``: the eight required trainings as data, run as one Ray Tune grid.

Model A (LeNet-5) and Model B (a timm backbone), each with its best params, on raw
and bilateral spectrograms, without and with augmentation, times K seeds. Only
the variant, the augmentation switch and the seed change between a model's runs.

runs/final-eight/NAME/
    split.json, bases.json          the shared split and each model's resolved config
    .ray/, ray.log                  Ray's experiment (checkpoints only while a training may resume) and log
    wandb/                          every W&B run of this comparison (group NAME, runs A-bilateral-aug-s0, ...)
    trials/<trial_id>/              a full run folder per training (metrics, predictions, model.pt)
    summary.csv, summary.md, *.png, report.html
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_digits.config import Config, load_config, to_flat, with_values
from tune_digits.corpus import save_split
from tune_digits.errors import UserError
from tune_digits.raydir import RAY_FOLDER, experiment_dir, prune_checkpoints, short_dirname
from tune_digits.tuning import (
    ARM,
    TrialContext,
    check_name,
    fit_or_interrupt,
    init_ray,
    make_trainable,
    plan_resources,
    restore_or_new,
    run_config,
)

VARIANTS = ("raw", "bilateral")
AUGMENT = (False, True)
SUMMARY_COLUMNS = [
    "model",
    "model_name",
    "variant",
    "augment",
    "seed",
    "val_f1",
    "test_f1",
    "test_accuracy",
    "best_epoch",
    "train_seconds",
    "num_parameters",
    "run_dir",
]


@dataclass(frozen=True)
class EightOptions:
    name: str
    storage: Path = Path("runs/final-eight")
    searches: Path = Path("runs/search")
    model_a: Path | None = None
    model_b: Path | None = None
    overrides: tuple[str, ...] = ()
    seeds: int = 1
    epochs: int | None = None
    wandb: str = "auto"
    address: str | None = None
    resume: bool = False
    progress: bool = True


def default_name() -> str:
    return f"final-eight-{time.strftime('%Y%m%d-%H%M%S')}"


def resume_line(opts: EightOptions) -> str | None:
    """What to print when Ctrl-C ended the comparison: how to resume it (nothing when no folder was made)."""
    if not (opts.storage / opts.name).is_dir():
        return None
    again = f"tune-digits final-eight --storage {opts.storage} --name {opts.name} --resume"
    return f"final-eight {opts.name} interrupted, not finished (no summary); resume with: {again}"


def latest_best(searches: Path, want_lenet: bool) -> Path | None:
    """The best.yaml of the most recent search whose best model is (or is not) LeNet-5."""
    from tune_digits.models import model_spec

    found = []
    for best in searches.glob("*/best.yaml"):
        try:
            spec = model_spec(load_config(best).model.name)
        except UserError:
            continue
        if spec.is_lenet == want_lenet:
            found.append(best)
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def resolve_params(opts: EightOptions) -> dict[str, Path]:
    """Model A's and Model B's config files, from the options or the latest searches."""
    out = {}
    for arm, given, lenet, space in (("A", opts.model_a, True, "lenet"), ("B", opts.model_b, False, "timm")):
        path = given or latest_best(opts.searches, lenet)
        if path is None:
            raise UserError(
                f"no params for Model {arm}: run `tune-digits search --space search_spaces/{space}.yaml` first "
                f"or pass --model-{arm.lower()} FILE"
            )
        if not Path(path).is_file():
            raise UserError(f"--model-{arm.lower()} {path}: file not found")
        out[arm] = Path(path)
    return out


def arm_configs(opts: EightOptions) -> dict[str, Config]:
    from tune_digits.config import parse_overrides

    extra = parse_overrides(list(opts.overrides))
    if opts.epochs is not None:
        extra["train.epochs"] = opts.epochs
    return {arm: with_values(load_config(path), extra) for arm, path in resolve_params(opts).items()}


def _prepare_shared(folder: Path, cfgs: dict[str, Config], progress: bool) -> dict[str, dict[str, Any]]:
    """Resolve one split for both models and build every feature cache the grid will read."""
    from tune_digits.train import prepare

    first = prepare(cfgs["A"], progress=progress)
    save_split(first.split, folder / "split.json")
    bases = {}
    for arm, cfg in cfgs.items():
        flat = to_flat(cfg)
        flat.update({"data.root": str(first.catalog.root), "data.split": str(folder / "split.json")})
        for variant in VARIANTS:
            prepare(with_values(cfg, {**flat, "features.variant": variant}), progress=progress)
        bases[arm] = flat
    return bases


def write_sources(folder: Path, params: dict[str, Path], bases: dict[str, dict[str, Any]]) -> None:
    """sources.json: per model, its params file, the search that wrote it (when it is a search's best.yaml)
    and the data and split it trains on; the report shows it."""
    spec = json.loads((folder / "split.json").read_text(encoding="utf-8"))["spec"]
    sources = {
        arm: {
            "model_name": bases[arm]["model.name"],
            "params": str(Path(path).resolve()),
            "search": Path(path).parent.name if (Path(path).parent / "results.csv").is_file() else "",
            "data": bases[arm]["data.root"],
            "split": spec,
        }
        for arm, path in params.items()
    }
    (folder / "sources.json").write_text(json.dumps(sources, indent=1), encoding="utf-8")


def run_final_eight(opts: EightOptions) -> Path:
    from tune_digits.tracking import resolve_mode
    from tune_digits.tuning import shutdown_ray

    check_name(opts.name)
    folder = (opts.storage / opts.name).resolve()
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"--storage {opts.storage}: {blocking} is a file, not a folder; choose another --storage")
    if opts.resume and not folder.is_dir():
        raise UserError(f"no final-eight named {opts.name!r} under {opts.storage}; check --name")
    if opts.resume:
        from tune_digits.storage_guard import check_storage

        check_storage(experiment_dir(folder))  # before Ray starts or reads a pickle there
    if not opts.resume and folder.exists():
        raise UserError(f"{folder} already exists; use --resume to continue it or choose another --name")
    if opts.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {opts.seeds}")
    mode = resolve_mode(opts.wandb)
    cfgs = None if opts.resume else arm_configs(opts)
    cluster = init_ray(opts.address)
    try:
        if cfgs is not None:
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise UserError(f"cannot create {folder} ({exc.strerror or exc}); choose another --storage") from None
            bases = _prepare_shared(folder, cfgs, opts.progress)
            (folder / "bases.json").write_text(json.dumps(bases, indent=1), encoding="utf-8")
            write_sources(folder, resolve_params(opts), bases)
        bases = json.loads((folder / "bases.json").read_text(encoding="utf-8"))
        res = {arm: plan_resources(cluster, [b["model.name"]], None, None, 0) for arm, b in bases.items()}
        ctx = TrialContext(str(folder), opts.name, bases, wandb=mode)
        _fit_grid(folder, opts, ctx, res, bases)
    finally:
        shutdown_ray()
    write_summary(folder)
    log_summary_run(folder, mode)
    prune_checkpoints(folder, {p.parent.name for p in folder.glob("trials/*/labels.json")})
    return folder


def _fit_grid(folder: Path, opts: EightOptions, ctx: TrialContext, res: Any, bases: dict) -> None:
    from ray import tune

    from tune_digits.live import Board, ray_log_to, shown

    seeds = sorted({int(b["train.seed"]) for b in bases.values()})[:1] or [0]
    param_space = {
        ARM: tune.grid_search(sorted(bases)),
        "features.variant": tune.grid_search(list(VARIANTS)),
        "augment.enabled": tune.grid_search(list(AUGMENT)),
        "train.seed": tune.grid_search([seeds[0] + k for k in range(opts.seeds)]),
    }
    trainable_fn = make_trainable(ctx, res)
    concurrent = max(r.max_concurrent for r in res.values())

    def new_tuner() -> Any:
        tune_config = tune.TuneConfig(
            metric="val_f1",
            mode="max",
            max_concurrent_trials=concurrent,
            trial_dirname_creator=short_dirname,
            reuse_actors=True,  # a training starts in the worker of a finished one
        )
        return tune.Tuner(
            trainable_fn,
            param_space=param_space,
            tune_config=tune_config,
            run_config=run_config(RAY_FOLDER, folder, max_failures=1, ctx=ctx),
        )

    tuner = restore_or_new(experiment_dir(folder), opts.resume, trainable_fn, param_space, new_tuner)
    total = len(bases) * len(VARIANTS) * len(AUGMENT) * opts.seeds
    board = Board(f"final-eight {opts.name}: {total} trainings, up to {concurrent} at once", total, eight=True)
    with shown(board, ray_log_to(folder / "ray.log")):
        fit_or_interrupt(tuner)  # Ctrl-C: KeyboardInterrupt, so no summary from unfinished runs


def log_summary_run(folder: Path, mode: str, out_dir: Path | None = None) -> None:
    """One more W&B run in the ``final-eight`` group (job type ``summary``): summary.csv as a table, and
    each model's bilateral and augmentation effects as summary values. Nothing when W&B is disabled."""
    import pandas as pd

    from tune_digits.report import best_configuration, effects
    from tune_digits.tracking import Tracker

    if mode == "disabled":
        return
    table = pd.read_csv(folder / "summary.csv")
    tracker = Tracker(
        out_dir or folder,
        mode=mode,
        name=f"{folder.name}-summary",
        group=folder.name,
        job_type="summary",
        config={"final_eight": folder.name, "runs": len(table)},
        local=False,
    )
    try:
        tracker.table("final_eight", table)
        values = {f"{model}/{name}_effect": v for model, eff in effects(table).items() for name, v in eff.items()}
        best = best_configuration(table)  # picked by validation F1; its test F1 is reported, never used
        if best:
            values.update(best_config=best["label"], best_val_f1=best["val_f1"], best_config_test_f1=best["test_f1"])
        tracker.summary(values)
    finally:
        tracker.finish()


def write_summary(folder: Path) -> Path:
    """summary.csv from the finished trials (one row per configuration and seed), then the report."""
    import pandas as pd

    from tune_digits.run_folder import LABELS, read_run

    rows = {}
    for labels_path in sorted(folder.glob(f"trials/*/{LABELS}")):
        run = read_run(labels_path.parent)
        metrics, cfg = run.metrics, run.load_config()
        key = (run.labels[ARM], cfg.features.variant, cfg.augment.enabled, cfg.train.seed)
        rows[key] = {
            "model": key[0],
            "model_name": cfg.model.name,
            "variant": key[1],
            "augment": key[2],
            "seed": key[3],
            "val_f1": metrics["val_f1"],
            "test_f1": metrics["test_f1"],
            "test_accuracy": metrics["test_accuracy"],
            "best_epoch": metrics["best_epoch"],
            "train_seconds": metrics["train_seconds"],
            "num_parameters": metrics["num_parameters"],
            "run_dir": run.path.relative_to(folder).as_posix(),
        }
    if not rows:
        raise UserError(f"{folder}: no finished training; resume it with --resume --name {folder.name}")
    table = pd.DataFrame(
        sorted(rows.values(), key=lambda r: (r["model"], r["variant"] != "raw", r["augment"], r["seed"]))
    )
    table[SUMMARY_COLUMNS].to_csv(folder / "summary.csv", index=False)
    from tune_digits.report import write_report

    write_report(folder)
    return folder
