"""The Ray Tune glue: the trainable, resources and the Tuner. The one place that calls ``tune.report``.

``search`` (Optuna + ASHA) and ``final-eight`` (a grid) both run their trials here.
A trial trains with ``train.fit``; after each epoch it reports the validation
metrics and, when val_f1 improved, a checkpoint holding ``model.pt`` (the best
weights, loadable on their own) and ``state.pt`` (everything needed to resume).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray.tune import Callback

from tune_digits.checkpoint import save_checkpoint
from tune_digits.config import Config, from_flat, to_flat
from tune_digits.data import cache_root
from tune_digits.errors import UserError
from tune_digits.space import decode

REPORTED = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_f1", "best_val_f1", "seconds")
ARM = "arm"  # final-eight's grid key: a trial label naming the base it trains (A or B), never a config key


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its sampled params (sent once through the object store).

    ``bases``: the flat resolved configs a trial starts from, by arm; a search has one, under ``""``.
    A final-eight (more than one arm, or any arm named) writes a full run folder per trial.
    """

    out_dir: str  # trials write to out_dir/trials/<trial_id>/
    group: str  # W&B group: the search's or the comparison's name
    bases: dict[str, dict[str, Any]]
    wandb: str = "disabled"
    list_keys: tuple[str, ...] = ()  # params that travel as JSON strings (space.list_keys)

    @property
    def eight(self) -> bool:
        return "" not in self.bases


def trial_settings(ctx: TrialContext, params: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    """A trial's params as its config and its labels: the one way trial settings are decoded.

    ``arm`` picks the base and is a label only; every other key is a dotted config key
    (lists decoded by ``space.decode``). Labels (final-eight): the arm and the grid values.
    """
    values = decode({k: v for k, v in params.items() if k != ARM}, ctx.list_keys)
    cfg = from_flat({**ctx.bases[params.get(ARM, "")], **values})
    labels = {k: v for k, v in params.items() if not isinstance(v, (dict, list))} if ctx.eight else {}
    return cfg, labels


def _load_resume(checkpoint: Any) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / "state.pt", map_location="cpu", weights_only=True)


def _reset_history(path: Path, resume: dict[str, Any] | None) -> None:
    """A restarted trial keeps only the epochs its checkpoint covers."""
    records = resume["history"] if resume else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _reporter(cfg: Config, data: Any, tracker: Any) -> Any:
    """``on_epoch`` for ``fit``: log locally, report the metrics, and a checkpoint when val_f1 improved."""
    from ray import tune

    shape, norm = list(data.features.shape), list(data.norm)

    def on_epoch(record: dict[str, Any], state: Any) -> None:
        tracker.log(record)
        metrics = {k: record[k] for k in REPORTED}
        if not record["improved"]:
            tune.report(metrics)
            return
        st = state()
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(st, Path(tmp) / "state.pt")
            best = {k: record[k] for k in ("val_f1", "val_loss", "val_accuracy")}
            best.update(best_epoch=record["epoch"], input_shape=shape, norm=norm)
            save_checkpoint(Path(tmp) / "model.pt", st["best_state"], to_flat(cfg), best)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    return on_epoch


def trainable(params: dict[str, Any], ctx: TrialContext) -> None:
    """One Ray Tune trial: glue between ``fit`` and ``tune.report``."""
    from ray import tune

    from tune_digits.run_folder import finished_epoch, write_fit_run
    from tune_digits.tracking import Tracker
    from tune_digits.train import fit, prepare

    # One "Checkpoint successfully created at ..." line per improving epoch would bury the progress table.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    cfg, labels = trial_settings(ctx, params)
    torch.set_num_threads(max(1, cfg.train.threads))  # 0 (all cores) would oversubscribe the trials' CPUs
    trial_dir = Path(ctx.out_dir) / "trials" / tune.get_context().get_trial_id()
    if ctx.eight and (last := finished_epoch(trial_dir)) is not None:
        tune.report({k: last[k] for k in REPORTED})  # finished before a kill Ray had not yet recorded: not again
        return
    resume = _load_resume(tune.get_checkpoint())
    _reset_history(trial_dir / "history.jsonl", resume)
    data = prepare(cfg, warn_digits=False)  # the driver warned once, before the trials
    tracker = Tracker(trial_dir, mode="disabled")  # local history; W&B is logged by WandbTrials in the driver
    try:
        result = fit(cfg, _reporter(cfg, data, tracker), data=data, resume=resume)
    finally:
        tracker.finish()
    if ctx.eight:
        write_fit_run(trial_dir, cfg, data, result, kind="final-eight", labels=labels)


class WandbTrials(Callback):
    """One W&B run per trial, logged from the driver.

    A trial that ASHA stops may have its worker process killed before a W&B run
    inside it flushes; the driver sees every reported result and outlives the trials.
    """

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx
        self.trackers: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment state; live runs are not
        return {"ctx": self.ctx, "trackers": {}}

    def _tracker(self, trial: Any) -> Any:
        from tune_digits.tracking import Tracker

        if trial.trial_id not in self.trackers:
            arm = trial.config.get(ARM)
            self.trackers[trial.trial_id] = Tracker(
                Path(self.ctx.out_dir),  # every run of one command under <folder>/wandb/, for one `wandb sync`
                mode=self.ctx.wandb,
                name=run_name(self.ctx, trial),
                group=self.ctx.group,
                job_type=f"model-{arm}" if arm else "search",
                config=to_flat(trial_settings(self.ctx, trial.config)[0]),
                local=False,
            )
        return self.trackers[trial.trial_id]

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._tracker(trial).log({k: result[k] for k in REPORTED if k in result})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tracker = self._tracker(trial)
        metrics_path = Path(self.ctx.out_dir) / "trials" / trial.trial_id / "metrics.json"
        if metrics_path.is_file():  # a full run folder (final-eight): summary and confusion matrix
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            tracker.summary(metrics, metrics.get("confusion_matrix"))
        tracker.finish()
        self.trackers.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tracker = self.trackers.pop(trial.trial_id, None)
        if tracker is not None:
            tracker.finish()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for tracker in self.trackers.values():
            tracker.finish()
        self.trackers.clear()


def run_name(ctx: TrialContext, trial: Any) -> str:
    """A W&B run name that says what the run is: ``A-bilateral-aug-s0``, or the search's name and trial number."""
    from tune_digits.live import eight_label, trial_number

    if ctx.eight:
        return eight_label(trial.config)
    return f"{ctx.group}-{trial_number(trial)}"


def check_name(name: str, flag: str = "--name") -> str:
    """A search or comparison name is one folder name: no path separators, no ``..``, no control characters."""
    if (
        not name
        or name in (".", "..")
        or any(sep in name for sep in ("/", "\\"))
        or not name.isprintable()
        or name.startswith(".")
    ):
        raise UserError(f"{flag} {name!r}: use a plain folder name (letters, digits, - _ .), not a path")
    return name


def init_ray(address: str | None, num_cpus: int | None = None) -> dict[str, float]:
    """Start a local Ray (or join ``address``) and return the cluster's resources."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new engine prints its banner even at verbose=0
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # experiment state at most 1 s old (Ray: 10 s or more)
    import ray

    from tune_digits.live import capture_ray_logs, release_ray_logs

    if ray.is_initialized():
        return ray.cluster_resources()
    from tune_digits.cluster_auth import auth_error, check_auth, is_auth_failure

    if address and address != "auto":
        _probe(address)
        check_auth(address)  # reachable, but is the token what is missing?
    env_vars = {"TUNE_DIGITS_CACHE": str(cache_root()), "WANDB_SILENT": "true"}
    if address is None:  # a local Ray's workers inherit this environment and can be its prestarted workers
        os.environ.update(env_vars)
    capture_ray_logs()  # Ray's lines go to the run folder's ray.log, the terminal shows the live view
    try:
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            runtime_env=None if address is None else {"env_vars": env_vars},
            configure_logging=False,
            log_to_driver=False,  # trial output: the trial folders' stdout/stderr files (log_to_file)
        )
        capture_ray_logs()
    except Exception as exc:
        release_ray_logs()
        if is_auth_failure(exc):
            raise auth_error(str(address)) from None
        if not isinstance(exc, (ConnectionError, RuntimeError, ValueError)):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"cannot reach a Ray cluster at {address!r} ({reason}); start one with `ray start --head` or drop --address"
        ) from None
    return ray.cluster_resources()


def _probe(address: str, timeout: float = 3.0) -> None:
    """Fail fast on an address nobody listens on (Ray itself retries for minutes)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UserError(
            f"cannot reach a Ray cluster at {address!r} ({reason}); start one with `ray start --head` or drop --address"
        ) from None


def shutdown_ray() -> None:
    import ray

    from tune_digits.live import release_ray_logs

    if ray.is_initialized():
        ray.shutdown()
    release_ray_logs()


@dataclass(frozen=True)
class Resources:
    cpus: float
    gpus: float
    max_concurrent: int


def plan_resources(
    cluster: dict[str, float], model_names: list[str], cpus: float | None, gpus: float | None, max_concurrent: int
) -> Resources:
    """Small models share a GPU (``ModelSpec.gpu_share``: LeNet-5 0.25), larger ones take a whole GPU;
    no GPU -> CPU trials."""
    from tune_digits.models import MODELS  # a name not registered (timm, or a typo the trial reports): 1 GPU

    n_gpu, n_cpu = cluster.get("GPU", 0.0), cluster.get("CPU", 1.0)
    if gpus is None:
        gpus = max(MODELS[n].gpu_share if n in MODELS else 1.0 for n in model_names) if n_gpu else 0.0
    if gpus > 0 and n_gpu == 0:
        raise UserError(f"--gpus-per-trial {gpus} asked for, but the Ray cluster has no GPU; use --gpus-per-trial 0")
    cpus = cpus if cpus is not None else (max(1.0, min(4.0, n_cpu // max(n_gpu / gpus, 1))) if gpus else 1.0)
    if cpus > n_cpu:
        raise UserError(f"--cpus-per-trial {cpus:g} is more than the {n_cpu:g} CPUs Ray sees")
    slots = int(n_gpu / gpus) if gpus else int(n_cpu // cpus)
    return Resources(cpus, gpus, max_concurrent or max(1, slots))


def run_config(
    name: str,
    storage: Path,
    max_failures: int,
    metric: str = "val_f1",
    mode: str = "max",
    ctx: TrialContext | None = None,
):
    from ray import tune

    from tune_digits.live import LiveTrials
    from tune_digits.storage_guard import guarded_filesystem

    callbacks = [LiveTrials()]
    if ctx is not None and ctx.wandb != "disabled":
        callbacks.append(WandbTrials(ctx))

    return tune.RunConfig(
        name=name,
        storage_path=str(storage.resolve()),
        storage_filesystem=guarded_filesystem(storage / name),  # signs Ray's pickles as they are written
        # Two kept: Ray's experiment state (saved every TUNE_GLOBAL_CHECKPOINT_S) may still name the one before
        # the newest when the process is killed, and --resume restores a trial from the one it names.
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode
        ),
        failure_config=tune.FailureConfig(max_failures=max_failures),
        callbacks=callbacks,
        verbose=0,  # the live view (tune_digits.live) shows the trials
        log_to_file=True,
    )


def make_trainable(ctx: TrialContext, res: Resources | dict[str, Resources]):
    """The trainable with its resources; a dict gives each arm (``params[ARM]``) its own."""
    from ray import tune

    fn = tune.with_parameters(trainable, ctx=ctx)
    if isinstance(res, Resources):
        return tune.with_resources(fn, {"cpu": res.cpus, "gpu": res.gpus})
    return tune.with_resources(fn, lambda config: {"cpu": res[config[ARM]].cpus, "gpu": res[config[ARM]].gpus})


def restore_or_new(path: Path, resume: bool, trainable_fn: Any, param_space: dict, make_new: Any):
    """``Tuner.restore`` when resuming (finished trials are not rerun), otherwise a fresh Tuner.

    Before Ray reads anything there, every pickle in ``path`` must be one this tool signed.
    """
    from ray import tune

    from tune_digits.storage_guard import check_storage, guarded_filesystem

    if resume:
        check_storage(path)
        fs = guarded_filesystem(path)
        if not tune.Tuner.can_restore(str(path), storage_filesystem=fs):
            raise UserError(f"nothing to resume at {path}: no Ray experiment state there; run without --resume")
        return tune.Tuner.restore(
            str(path),
            trainable=trainable_fn,
            resume_unfinished=True,
            resume_errored=True,
            param_space=param_space,
            storage_filesystem=fs,
        )
    return make_new()


def fit_or_interrupt(tuner: Any) -> Any:
    """``tuner.fit()``, raising KeyboardInterrupt when Ctrl-C (SIGINT) ended it.

    On Ctrl-C Ray stops the trials, saves its state, puts back the SIGINT handler it found and
    returns as if done. That handler is a sentinel set here, so finding it back means an interrupt.
    Ray's ``Tuner.restore(...)`` hint is silenced: the CLI prints its own ``--resume`` line.
    """
    import signal
    import threading

    hint = logging.getLogger("ray.tune.tune")
    level = hint.level
    watch = (
        threading.current_thread() is threading.main_thread()
        and os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "0"
    )

    def sentinel(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, sentinel) if watch else None
    hint.setLevel(logging.ERROR)
    try:
        results = tuner.fit()
    finally:
        hint.setLevel(level)
        interrupted = watch and signal.getsignal(signal.SIGINT) is sentinel
        if watch:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if interrupted:
        raise KeyboardInterrupt
    return results
