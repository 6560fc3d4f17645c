"""``fit(cfg, on_epoch=...)``: the training loop. It imports neither Ray nor W&B.

The whole split lives in one tensor per part (float16 on the CPU, or on the GPU
when there is one); batches are gathered by index, normalised and, for training
only, augmented on the same device. No DataLoader, no per-item decoding.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tune_digits import calibration, metrics
from tune_digits.augment import SpecAugment
from tune_digits.config import Config
from tune_digits.data import to_device
from tune_digits.device import TrainingDiverged, autocast, channels_last, out_of_memory, pick_device
from tune_digits.errors import ConfigError
from tune_digits.features import normalize_batch
from tune_digits.models import count_parameters, model_from_config
from tune_digits.noise import noisy_features
from tune_digits.prepare import Prepared, prepare

EpochCallback = Callable[[dict[str, Any], Callable[[], dict[str, Any]]], None]


@dataclass
class FitResult:
    best_epoch: int
    history: list[dict[str, Any]]
    val: dict[str, Any]
    test: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    num_parameters: int
    train_seconds: float
    input_shape: tuple[int, int, int]
    norm: tuple[float, float]
    device: str
    augmented_batches: int = 0  # training batches that went through SpecAugment
    temperature: float = 1.0  # fitted on validation (tune_digits/calibration.py); predict divides logits by it

    def metrics(self) -> dict[str, Any]:
        """The metrics.json content."""
        return {
            "val_f1": self.val["f1"],
            "val_accuracy": self.val["accuracy"],
            "val_loss": self.val["loss"],
            "test_f1": self.test["f1"],
            "test_accuracy": self.test["accuracy"],
            "test_loss": self.test["loss"],
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "per_class_f1": self.test["per_class_f1"],
            "confusion_matrix": self.test["confusion_matrix"],
            "val_per_class_f1": self.val["per_class_f1"],
            "num_parameters": self.num_parameters,
            "train_seconds": round(self.train_seconds, 3),
            "input_shape": list(self.input_shape),
            "norm": list(self.norm),
            "device": self.device,
            "augmented_batches": self.augmented_batches,
            "temperature": round(self.temperature, 6),
            "val_ece": self.val.get("ece"),
            "test_ece": self.test.get("ece"),
            "test_ece_uncalibrated": self.test.get("ece_uncalibrated"),
        }


def _paths(data: Prepared, rows: np.ndarray) -> list[Path]:
    """The recordings of ``rows`` in the order :func:`to_device` puts them."""
    return [data.catalog.root / data.features.files[r] for r in np.sort(rows)]


def _make_optimizer(cfg: Config, model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    t = cfg.train
    if t.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True
        )
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=max(steps, 1))
    else:
        # A closed form of the step: a resumed run follows the schedule of the config it is given,
        # e.g. more epochs stretch the cosine instead of restarting it past its old end.
        total = max(steps, 1)

        def factor(step: int) -> float:
            if t.schedule == "constant":
                return 1.0
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, sched


def _cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor detached and on the CPU (nested dicts, lists and tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


@torch.no_grad()
def predict_log_proba(
    model: nn.Module, x: torch.Tensor, mode: str, norm: tuple[float, float], batch_size: int = 512
) -> torch.Tensor:
    """Log class probabilities (N, 10) for spectrograms ``x`` (N, 1, F, T) on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        xb = normalize_batch(x[i : i + batch_size].to(device), mode, *norm)
        with autocast(device):
            out.append(model(xb).float().log_softmax(dim=1))
    return torch.cat(out) if out else torch.zeros((0, 10))


def predict_proba(
    model: nn.Module, x: torch.Tensor, mode: str, norm: tuple[float, float], batch_size: int = 512
) -> torch.Tensor:
    """Class probabilities (N, 10) for spectrograms ``x`` (N, 1, F, T) on the model's device."""
    return predict_log_proba(model, x, mode, norm, batch_size).exp()


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str, norm: tuple[float, float], temperature: float = 1.0
) -> dict[str, Any]:
    """loss, accuracy, macro f1, per_class_f1, confusion_matrix, ece, and the predictions.

    Probabilities, loss and ``ece`` are at ``temperature`` (:mod:`tune_digits.calibration`);
    ``ece_uncalibrated`` at 1.
    """
    log_proba = predict_log_proba(model, x, mode, norm).cpu()
    proba = torch.softmax(log_proba / temperature, dim=1)
    y_cpu = y.cpu().numpy()
    pred = proba.argmax(dim=1).numpy()
    loss = calibration.nll(log_proba, y.cpu(), temperature)
    out = metrics.summarize(y_cpu, pred)
    out.update(loss=loss, predictions=pred.tolist(), probabilities=proba.max(dim=1).values.tolist())
    out.update(ece=calibration.ece(proba, y.cpu()), ece_uncalibrated=calibration.ece(log_proba.exp(), y.cpu()))
    return out


class Trainer:
    """One training run; its state can be saved after any epoch and resumed."""

    def __init__(self, cfg: Config, data: Prepared) -> None:
        self.cfg, self.data = cfg, data
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        self.device = pick_device(t.device)
        self.x_train, self.y_train = to_device(data.features, data.rows["train"], self.device)
        self.x_val, self.y_val = to_device(data.features, data.rows["val"], self.device)
        m = cfg.model
        self.model = model_from_config(m, data.features.shape).to(self.device)
        if channels_last(m.name, m.channels, self.device):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.augment = SpecAugment(cfg.augment, cfg.features).to(self.device)
        self.noisy = noisy_features(cfg, _paths(data, data.rows["train"]), self.device)  # augment.noise_dir
        self.repeats = cfg.augment.repeats if cfg.augment.enabled else 1
        self.steps_per_epoch = self.repeats * math.ceil(len(self.x_train) / t.batch_size)
        self.opt, self.sched = _make_optimizer(cfg, self.model, t.epochs * self.steps_per_epoch)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
        self.gen = torch.Generator(device=self.device).manual_seed(t.seed)
        self.epoch, self.best_f1, self.best_loss, self.best_epoch, self.stale = 0, -1.0, math.inf, 0, 0
        self.best_state: dict[str, torch.Tensor] = {}
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0
        self.augmented_batches = 0

    def train_epoch(self) -> float:
        self.model.train()
        self.augment.train()
        total, count, bs = 0.0, 0, self.cfg.train.batch_size
        for _ in range(self.repeats):
            perm = torch.randperm(len(self.x_train), generator=self.gen, device=self.device)
            for i in range(0, len(perm), bs):
                idx = perm[i : i + bs]
                xb = self.x_train[idx] if self.noisy is None else self.noisy(self.x_train[idx], idx, self.gen)
                loss = self._batch_loss(xb, self.y_train[idx])
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"training loss became {loss.item()} at epoch {self.epoch + 1}; lower train.lr "
                        f"(now {self.cfg.train.lr:g}) or check the features for NaN"
                    )
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.sched.step()
                total += loss.item() * len(idx)
                count += len(idx)
        return total / max(count, 1)

    def _batch_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Augment (dB stage, normalise, masks) one (B, 1, F, T) training batch and return its loss."""
        xs = self.augment.signal(x, generator=self.gen)  # dB: voices and rooms; ``x`` itself when off
        xb = normalize_batch(xs, self.cfg.features.normalize, *self.data.norm)  # (B, 1, F, T) float32
        xa = self.augment(xb, generator=self.gen)
        self.augmented_batches += int(xa is not xb or xs is not x)  # each stage returns its input when off
        with autocast(self.device):
            logits = self.model(xa).float()
        return self.loss_fn(logits, y)

    def step(self) -> dict[str, Any]:
        """Train one epoch, validate, and return the epoch's record."""
        start = time.perf_counter()
        train_loss = self.train_epoch()
        val = evaluate(self.model, self.x_val, self.y_val, self.cfg.features.normalize, self.data.norm)
        self.seconds += time.perf_counter() - start
        self.epoch += 1
        improved = val["f1"] > self.best_f1 or (val["f1"] == self.best_f1 and val["loss"] < self.best_loss)
        if improved:
            self.best_f1, self.best_loss, self.best_epoch, self.stale = val["f1"], val["loss"], self.epoch, 0
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        else:
            self.stale += 1
        record = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_f1": val["f1"],
            "best_val_f1": self.best_f1,
            "lr": self.opt.param_groups[0]["lr"],
            "seconds": round(self.seconds, 3),
            "improved": improved,
        }
        self.history.append(record)
        return record

    def done(self) -> bool:
        patience = self.cfg.train.patience
        return self.epoch >= self.cfg.train.epochs or (patience > 0 and self.stale >= patience)

    def state(self) -> dict[str, Any]:
        """Everything needed to resume, as tensors and plain types (``weights_only`` loadable).

        A snapshot: CPU copies that later training does not change, so it can be kept in memory.
        """
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "generator": self.gen.get_state(),
            "rng": torch.get_rng_state(),  # dropout draws from the global generator
            "best_state": self.best_state,
            "history": self.history,
            "counters": [self.epoch, self.best_f1, self.best_loss, self.best_epoch, self.stale, self.seconds],
            "augmented_batches": self.augmented_batches,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return _cpu_copy(state)

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from ``state()``; the config given now decides lr, weight decay, momentum and epochs."""
        onecycle = isinstance(self.sched, torch.optim.lr_scheduler.OneCycleLR)
        if ("total_steps" in state["scheduler"]) != onecycle:
            raise ConfigError(
                f"train.schedule={self.cfg.train.schedule} cannot resume a run saved with "
                f"{'another schedule' if onecycle else 'onecycle'}; keep the schedule of the saved run"
            )
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        if "rng" in state:
            torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.best_state = _cpu_copy(state["best_state"])
        self.history = _cpu_copy(list(state["history"]))
        self.epoch, self.best_f1, self.best_loss, self.best_epoch, self.stale, self.seconds = state["counters"]
        self.augmented_batches = int(state.get("augmented_batches", 0))
        self._apply_config()

    def _apply_config(self) -> None:
        """Put this config's optimiser settings over the loaded ones (a resumed trial may change them)."""
        t = self.cfg.train
        for group in self.opt.param_groups:
            group["weight_decay"] = t.weight_decay
            if t.optimizer == "sgd":
                group["momentum"] = t.momentum
        if isinstance(self.sched, torch.optim.lr_scheduler.OneCycleLR):
            total = max(t.epochs * self.steps_per_epoch, 1)
            if self.sched.total_steps != total:
                raise ConfigError(
                    "train.schedule=onecycle cannot resume with other train.epochs or batches "
                    f"({self.sched.total_steps} steps saved, {total} now); use cosine or constant"
                )
            return
        step = self.sched.last_epoch
        self.sched.base_lrs = [t.lr for _ in self.opt.param_groups]
        for group, fn in zip(self.opt.param_groups, self.sched.lr_lambdas, strict=True):
            group["lr"] = t.lr * fn(step)
        self.sched._last_lr = [group["lr"] for group in self.opt.param_groups]

    def finish(self) -> FitResult:
        """Evaluate the best-validation weights on validation and test."""
        self.model.load_state_dict(self.best_state)
        mode, norm = self.cfg.features.normalize, self.data.norm
        val_log_proba = predict_log_proba(self.model, self.x_val, mode, norm)
        temperature = calibration.fit_temperature(val_log_proba, self.y_val, calibration.TRAIN_FLOOR)
        val = evaluate(self.model, self.x_val, self.y_val, mode, norm, temperature)
        x_test, y_test = to_device(self.data.features, self.data.rows["test"], self.device)
        test = evaluate(self.model, x_test, y_test, mode, norm, temperature)
        return FitResult(
            self.best_epoch,
            self.history,
            val,
            test,
            self.best_state,
            count_parameters(self.model),
            self.seconds,
            self.data.features.shape,
            self.data.norm,
            self.device.type,
            augmented_batches=self.augmented_batches,
            temperature=temperature,
        )


def fit(
    cfg: Config,
    on_epoch: EpochCallback | None = None,
    *,
    data: Prepared | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``cfg`` and return the best-validation model evaluated on test.

    ``on_epoch(record, state)`` is called after every epoch with the epoch's
    metrics; ``state()`` returns the resumable trainer state for checkpoints.
    """
    data = data or prepare(cfg)
    try:
        trainer = Trainer(cfg, data)
        if resume is not None:
            trainer.load_state(resume)
        while not trainer.done():
            record = trainer.step()
            if on_epoch is not None:
                on_epoch(record, trainer.state)
        return trainer.finish()
    except (RuntimeError, MemoryError) as exc:
        oom = out_of_memory(exc, cfg)
        if oom is None:
            raise
        raise oom from exc
