"""``tune-digits search``: a YAML space -> Ray Tune with Optuna (TPE) and ASHA -> results you can open.

runs/search/NAME/
    .ray/                      Ray's experiment state and trial folders (checkpoints only while a trial
                               may resume; each trial's stdout/stderr), kept out of the way
    ray.log                    Ray's own log lines (the terminal shows the live view instead)
    wandb/                     every W&B run of the search (offline: `wandb sync NAME/wandb/offline-run-*`)
    split.json                 the split every trial used
    trials/<trial_id>/         history.jsonl, model.pt, metrics.json, config.yaml, run.json (a run folder)
    results.csv                one row per trial: parameters, best val_f1, epochs run, status, checkpoint,
                               error (ERROR trials: one line, the exception and its message), failures
    best.yaml                  the best trial's resolved config (train --config best.yaml, final-eight)
    importance.json, *.png, report.html
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tune_digits.config import from_flat, save_config, to_flat
from tune_digits.corpus import save_split
from tune_digits.errors import UserError
from tune_digits.raydir import RAY_FOLDER, experiment_dir, prune_checkpoints, short_dirname
from tune_digits.run_folder import read_history
from tune_digits.space import SearchSpace, encode, list_keys, to_optuna, to_tune
from tune_digits.tuning import (
    TrialContext,
    check_name,
    fit_or_interrupt,
    init_ray,
    make_trainable,
    plan_resources,
    restore_or_new,
    run_config,
    shutdown_ray,
)


@dataclass(frozen=True)
class SearchOptions:
    name: str
    storage: Path = Path("runs/search")
    overrides: tuple[str, ...] = ()  # dotted key=value applied over the space's fixed settings
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    address: str | None = None
    resume: bool = False
    wandb: str = "auto"
    progress: bool = True


def search_dir(opts: SearchOptions) -> Path:
    return (opts.storage / opts.name).resolve()


def default_name(space: Path, stamp: str | None = None) -> str:
    """``SPACE-TIME``: the space file's stem and the start time."""
    return f"{space.stem}-{stamp or time.strftime('%Y%m%d-%H%M%S')}"


def settings_overrides(**settings: Any) -> list[str]:
    """``num_samples=4`` style flags as ``search.num_samples=4`` overrides; unset (None) ones are skipped."""
    return [f"search.{key}={value}" for key, value in settings.items() if value is not None]


def resume_line(space: Path, opts: SearchOptions) -> str | None:
    """What to print when the search is interrupted: how to resume it; None when it left nothing to resume."""
    if not search_dir(opts).is_dir():
        return None
    again = f"tune-digits search --space {space} --storage {opts.storage} --name {opts.name} --resume"
    return f"search {opts.name} interrupted, not finished (no best.yaml); resume with: {again}"


def check_target(opts: SearchOptions) -> Path:
    """Refuse to overwrite a search; refuse to resume one that does not exist. Creates nothing."""
    check_name(opts.name)
    path = search_dir(opts)
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"--storage {opts.storage}: {blocking} is a file, not a folder; choose another --storage")
    if opts.resume and not path.is_dir():
        raise UserError(f"no search named {opts.name!r} under {opts.storage}; check --name and --storage")
    if opts.resume:
        from tune_digits.storage_guard import check_storage

        check_storage(experiment_dir(path))  # before Ray starts or reads a pickle there
    if not opts.resume and path.exists():
        raise UserError(f"search {path} already exists; use --resume to continue it or choose another --name")
    return path


def run_search(space: SearchSpace, opts: SearchOptions) -> Path:
    """Run (or resume) the search and write its results; returns the search folder."""
    from tune_digits.config import parse_overrides
    from tune_digits.tracking import resolve_mode
    from tune_digits.train import prepare

    path = check_target(opts)
    wandb_mode = resolve_mode(opts.wandb)
    space, base = space.with_overrides(parse_overrides(list(opts.overrides)))  # --set search.* included
    if opts.resume:
        base = from_flat(json.loads((path / "base_config.json").read_text(encoding="utf-8")))
    data = prepare(base, progress=opts.progress)  # builds the shared feature cache once, before any trial
    s = space.search
    cluster = init_ray(opts.address)
    try:
        res = plan_resources(
            cluster, _model_names(space, base), opts.cpus_per_trial, opts.gpus_per_trial, s.max_concurrent
        )
        if not opts.resume:
            try:
                path.mkdir(parents=True)
            except OSError as exc:
                raise UserError(f"cannot create {path} ({exc.strerror or exc}); choose another --storage") from None
            save_split(data.split, path / "split.json")
            flat = to_flat(base)
            flat.update({"data.root": str(data.catalog.root), "data.split": str(path / "split.json")})
            flat.update({"train.epochs": s.max_epochs, "train.threads": max(1, int(res.cpus))})
            (path / "base_config.json").write_text(json.dumps(flat, indent=1), encoding="utf-8")
            (path / "space.json").write_text(json.dumps({"source": space.source, "search": vars(s)}), encoding="utf-8")
        flat = json.loads((path / "base_config.json").read_text(encoding="utf-8"))
        ctx = TrialContext(str(path), opts.name, {"": flat}, wandb=wandb_mode, list_keys=list_keys(space))
        results = _fit(space, opts, path, ctx, res)
    finally:
        shutdown_ray()
    return finish_search(path, space, results, data.catalog.root)


def _model_names(space: SearchSpace, base: Any) -> list[str]:
    for d in space.dims:
        if d.key == "model.name":
            return [str(v) for v in d.values]
    return [base.model.name]


def _fit(space: SearchSpace, opts: SearchOptions, path: Path, ctx: TrialContext, res: Any) -> Any:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from tune_digits.live import Board, ray_log_to, shown

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = space.search
    trainable_fn = make_trainable(ctx, res)
    param_space = to_tune(space)

    def new_tuner() -> Any:
        # start: points are Optuna's first trials (enqueued), then TPE samples; they count in num_samples
        points = [{k: encode(v) for k, v in point.items()} for point in space.start] or None
        optuna = OptunaSearch(metric=s.metric, mode=s.mode, seed=s.seed, points_to_evaluate=points)
        searcher = ConcurrencyLimiter(optuna, res.max_concurrent)
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=s.max_epochs,
            grace_period=min(s.grace_period, s.max_epochs),
            reduction_factor=s.reduction_factor,
        )
        tune_config = tune.TuneConfig(
            metric=s.metric,
            mode=s.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=s.num_samples,  # concurrency is the ConcurrencyLimiter's
            time_budget_s=s.time_budget or None,
            trial_dirname_creator=short_dirname,
            reuse_actors=True,  # a trial starts in the worker of a finished one: torch is imported once per worker
        )
        return tune.Tuner(
            trainable_fn,
            param_space=param_space,
            tune_config=tune_config,
            run_config=run_config(RAY_FOLDER, path, s.max_failures, s.metric, s.mode, ctx),
        )

    tuner = restore_or_new(experiment_dir(path), opts.resume, trainable_fn, param_space, new_tuner)
    board = Board(
        f"search {opts.name}: {s.num_samples} trials, up to {res.max_concurrent} at once",
        s.num_samples,
        keys=tuple(d.key for d in space.dims),
        max_epochs=s.max_epochs,
    )
    with shown(board, ray_log_to(path / "ray.log")):
        return fit_or_interrupt(tuner)  # Ctrl-C: KeyboardInterrupt, so no best.yaml from an unfinished search


def _trial_row(result: Any, path: Path, space: SearchSpace, max_epochs: int) -> dict[str, Any]:
    """One results.csv row; also completes the trial's run folder from its best checkpoint."""

    metrics = result.metrics or {}
    trial_id = str(metrics.get("trial_id") or Path(result.path).name)
    trial_dir = path / "trials" / trial_id
    history = read_history(trial_dir)
    epochs = len(history)
    error = error_reason(result.error)
    status = "ERROR" if error else ("TERMINATED" if epochs >= max_epochs else "STOPPED")
    row: dict[str, Any] = {"trial_id": trial_id, "status": status, "epochs_run": epochs}
    best = max(history, key=lambda r: (r["val_f1"], -r["val_loss"]), default=None)
    row.update(
        val_f1=best["val_f1"] if best else np.nan,
        val_loss=best["val_loss"] if best else np.nan,
        best_epoch=best["epoch"] if best else 0,
        train_seconds=history[-1]["seconds"] if history else 0.0,
        time_total_s=round(float(metrics.get("time_total_s", 0.0)), 3),
        trial_index=_trial_index(metrics, result.path, trial_id),  # the report plots trials in this order
        error=error,
        failures=count_failures(Path(result.path)) if result.path else 0,
        checkpoint="",
    )
    row.update({d.key: (result.config or {}).get(d.key) for d in space.dims})
    ckpt = result.get_best_checkpoint("val_f1", "max") if result.best_checkpoints else None
    if ckpt is not None and Path(ckpt.path).is_dir():  # gone once the trial finished and was copied
        with ckpt.as_directory() as folder:
            _write_trial_run(trial_dir, Path(folder) / "model.pt", history, path, trial_id)
        row["checkpoint"] = f"trials/{trial_id}/model.pt"
    elif (trial_dir / "model.pt").is_file():  # a --resume after the finish: the copy is all that is kept
        _write_trial_run(trial_dir, trial_dir / "model.pt", history, path, trial_id)
        row["checkpoint"] = f"trials/{trial_id}/model.pt"
    return row


def _trial_index(metrics: dict[str, Any], ray_path: str | None, trial_id: str) -> float:
    """The trial's number in the order Ray created (and started) the trials, from 1: the counter that leads
    Ray's experiment tag (``3_train.lr=0.001,...``), also in its trial folder's name; NaN when neither has it."""
    tag = str(metrics.get("experiment_tag") or "")
    folder = Path(ray_path or "").name
    found = re.match(r"(\d+)(?:_|$)", tag) or re.search(rf"_{re.escape(trial_id)}_(\d+)(?:_|$)", folder)
    return float(found.group(1)) if found else float("nan")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<name>[A-Za-z_]\w*): (?P<message>.+)$")


def error_reason(error: BaseException | str | None) -> str:
    """A failed trial's reason on one line: ``ConfigError: unknown model 'x'; ...``.

    Ray wraps a trial's exception in a RayTaskError whose text starts with the worker's name and pid
    and goes on with the traceback; the reason is the original exception (``cause``), or else the
    traceback's last ``Name: message`` line.
    """
    if error is None or (isinstance(error, str) and not error.strip()):
        return ""
    cause = getattr(error, "cause", None)
    if cause is None and isinstance(error, BaseException) and not type(error).__module__.startswith("ray"):
        cause = error  # a plain exception, not wrapped by Ray
    if isinstance(cause, BaseException):
        text = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    else:
        lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
        found = [m for m in map(_EXCEPTION_LINE.match, lines) if m is not None]
        if found:
            text = f"{found[-1]['name']}: {found[-1]['message']}"
        else:
            body = [line for line in lines if not line.startswith("ray::")]
            name = type(error).__name__ if isinstance(error, BaseException) else "Error"
            text = f"{name}: {body[0]}" if body else name
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= 300 else text[:297] + "..."


def count_failures(trial_path: Path) -> int:
    """How many times a trial failed (Ray appends a ``Failure # N`` block to its error.txt each time)."""
    path = trial_path / "error.txt"
    if not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8", errors="replace")
    return sum(1 for line in text.splitlines() if line.startswith("Failure # "))


def _write_trial_run(trial_dir: Path, model: Path, history: list[dict[str, Any]], path: Path, trial: str) -> None:
    """Complete a trial's folder into a run folder from its best checkpoint (the search's split.json is its split)."""
    from tune_digits.checkpoint import load_checkpoint
    from tune_digits.inference import build_model
    from tune_digits.models import count_parameters
    from tune_digits.run_folder import read_split_file, write_run

    payload = load_checkpoint(model)
    cfg = from_flat(payload["config"])
    n_params = count_parameters(build_model(cfg, tuple(payload["metrics"]["input_shape"])))
    metrics = {**payload["metrics"], "num_parameters": n_params, "epochs_run": len(history)}
    split = read_split_file(path / "split.json")
    write_run(
        trial_dir,
        cfg,
        metrics,
        kind="search-trial",
        split=split,
        model=model,
        data_root=cfg.data.root,
        history=history,
        own_split=False,
        search=path.name,
        trial_id=trial,
    )


def finish_search(path: Path, space: SearchSpace, results: Any, data_root: Path) -> Path:
    """Write results.csv, best.yaml, importance.json and the plots from a ResultGrid."""
    import pandas as pd

    rows = [_trial_row(r, path, space, space.search.max_epochs) for r in results]
    if not rows:
        raise UserError(f"the search {path.name} ran no trial; check the resources and the time budget")
    table = pd.DataFrame(rows).sort_values("val_f1", ascending=False, na_position="last")
    table.to_csv(path / "results.csv", index=False)
    finished = table[(table["status"] != "ERROR") & (table["checkpoint"] != "")]  # errored trials may resume
    prune_checkpoints(path, set(finished["trial_id"]))
    done = table[table["checkpoint"] != ""]
    if len(done):
        best_id = done.iloc[0]["trial_id"]
        from tune_digits.checkpoint import load_checkpoint

        cfg = from_flat(load_checkpoint(path / "trials" / best_id / "model.pt")["config"])
        save_config(replace(cfg, data=replace(cfg.data, root=str(data_root))), path / "best.yaml")
    _importance(path, space, done)
    try:
        from tune_digits.report import write_report

        write_report(path)
    except (ImportError, ValueError, KeyError) as exc:
        (path / "report_error.txt").write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")
    return path


def _importance(path: Path, space: SearchSpace, done: Any) -> None:
    """Parameter importance (Optuna's PED-ANOVA) over the finished trials, when there are enough."""
    import optuna

    from tune_digits.report_search import MIN_TRIALS_FOR_IMPORTANCE

    if len(done) < MIN_TRIALS_FOR_IMPORTANCE or not space.dims:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = to_optuna(space)
    study = optuna.create_study(direction="maximize")
    for _, row in done.iterrows():
        params = {d.key: _encoded(row[d.key]) for d in space.dims}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(row["val_f1"])))
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return
    (path / "importance.json").write_text(json.dumps({k: float(v) for k, v in scores.items()}, indent=1), "utf-8")


def _encoded(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value
