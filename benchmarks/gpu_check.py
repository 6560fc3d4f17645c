"""Epoch times, throughput and GPU memory at AudioMNIST size on one CUDA GPU, through tune-digits' own Trainer.

Run by ``benchmarks/gpu_check.sh`` (which first generates a corpus); no Ray is needed or imported::

    python -m benchmarks.gpu_check --data CORPUS              # CUDA; about 3-4 minutes on an H100
    python -m benchmarks.gpu_check --data CORPUS --dry-run    # the CPU side only, tiny sizes

The corpus (e.g. 60 speakers x 50 clips) is cached as usual; its rows are then repeated in memory
to ``--rows`` (30,000 = AudioMNIST), split 60/20/20 like ``becker:K``, so an epoch covers 18,000
training clips. For LeNet-5 and efficientnet_b0 it measures ``Trainer.train_epoch`` (bf16 autocast,
as the Trainer does on CUDA), then the same with channels_last and with torch.compile; the
validation pass; an augmented epoch (SpecAugment, ``augment.repeats`` copies); the peak GPU memory
per trial; and the per-item DataLoader baseline feeding the same LeNet-5 on the same GPU.
From these it prints how many LeNet-5 trials fit on the GPU by memory, and an estimate of the
final eight (2 models x raw/bilateral x without/with augmentation, 30 epochs each).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_LENET_EPOCH_S = 0.5
TARGET_FINAL_EIGHT_MIN = 10.0
FINAL_EPOCHS = 30
TRAIN_FRACTION, VAL_FRACTION = 0.6, 0.2  # becker:K: 36 / 12 / 12 of 60 speakers


def _stub_rich() -> None:
    """tune_digits.data draws a progress bar with rich; where rich is missing, a silent stand-in."""
    if importlib.util.find_spec("rich") is not None:
        return

    class Progress:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> Progress:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def add_task(self, *args: Any, **kwargs: Any) -> int:
            return 0

        def advance(self, *args: Any, **kwargs: Any) -> None:
            return None

    progress = types.ModuleType("rich.progress")
    for name in ("BarColumn", "MofNCompleteColumn", "TextColumn", "TimeRemainingColumn", "TimeElapsedColumn"):
        setattr(progress, name, lambda *a, **k: None)
    progress.Progress = Progress  # type: ignore[attr-defined]
    rich = types.ModuleType("rich")
    rich.progress = progress  # type: ignore[attr-defined]
    sys.modules.update({"rich": rich, "rich.progress": progress})


@dataclass
class Measure:
    model: str
    mode: str  # eager | channels_last | compile
    epoch_s: float = math.nan  # one training epoch (mean of the timed ones)
    samples_per_s: float = math.nan
    val_s: float = math.nan  # one validation pass
    aug_epoch_s: float = math.nan  # one augmented training epoch
    setup_s: float = math.nan  # Trainer construction + warm-up epoch (includes compilation)
    max_allocated_mb: float = math.nan
    max_reserved_mb: float = math.nan
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _resize_rows(prepared: Any, rows: int) -> dict[str, int]:
    """Repeat each part's rows cyclically so the corpus has ``rows`` clips in all (60/20/20)."""
    import numpy as np

    sizes = {"train": int(rows * TRAIN_FRACTION), "val": int(rows * VAL_FRACTION)}
    sizes["test"] = rows - sizes["train"] - sizes["val"]
    for part, n in sizes.items():
        prepared.rows[part] = np.resize(prepared.rows[part], n)
    return sizes


class _ChannelsLast:
    """Puts the model's weights and every input batch in channels_last memory format."""

    @staticmethod
    def wrap(model: Any) -> Any:
        import torch
        from torch import nn

        class ChannelsLast(nn.Module):
            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.inner = inner.to(memory_format=torch.channels_last)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.inner(x.contiguous(memory_format=torch.channels_last))

        return ChannelsLast(model)


def measure(cfg: Any, prepared: Any, mode: str, epochs: int, with_aug: bool) -> Measure:
    """Time ``Trainer.train_epoch`` and a validation pass for ``cfg`` in ``mode``."""
    import torch

    from tune_digits.config import with_values
    from tune_digits.train import Trainer, evaluate

    m = Measure(cfg.model.name, mode)
    cuda = torch.cuda.is_available() and cfg.train.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = Trainer(cfg, prepared)
    if mode == "channels_last":
        trainer.model = _ChannelsLast.wrap(trainer.model)
    if mode.startswith("compile"):
        trainer.model = torch.compile(trainer.model)
    trainer.train_epoch()  # warm-up (and compilation)
    _sync(trainer.device)
    m.setup_s = time.perf_counter() - start
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        trainer.train_epoch()
        _sync(trainer.device)
        times.append(time.perf_counter() - t)
    m.epoch_s = sum(times) / len(times)
    m.samples_per_s = len(trainer.x_train) * trainer.repeats / m.epoch_s
    mode_norm, norm = cfg.features.normalize, prepared.norm
    evaluate(trainer.model, trainer.x_val, trainer.y_val, mode_norm, norm)  # warm-up (eval shapes)
    _sync(trainer.device)
    t = time.perf_counter()
    evaluate(trainer.model, trainer.x_val, trainer.y_val, mode_norm, norm)
    _sync(trainer.device)
    m.val_s = time.perf_counter() - t
    if with_aug:
        aug_cfg = with_values(cfg, {"augment.enabled": True})
        trainer.cfg = aug_cfg
        trainer.augment = type(trainer.augment)(aug_cfg.augment).to(trainer.device)
        trainer.repeats = aug_cfg.augment.repeats
        trainer.train_epoch()  # warm-up of the augmentation kernels
        _sync(trainer.device)
        t = time.perf_counter()
        trainer.train_epoch()
        _sync(trainer.device)
        m.aug_epoch_s = time.perf_counter() - t
        m.extra["aug_repeats"] = trainer.repeats
    if cuda:
        m.max_allocated_mb = torch.cuda.max_memory_allocated() / 2**20
        m.max_reserved_mb = torch.cuda.max_memory_reserved() / 2**20
    m.extra["train_rows"] = len(trainer.x_train)
    del trainer
    return m


def baseline(cfg: Any, files: list[Path], labels: list[int], batches: int, num_workers: int) -> dict[str, Any]:
    """The per-item DataLoader feeding the same model on the same device: samples/s over ``batches`` batches."""
    import torch
    from torch import nn

    from benchmarks.baseline import PerItemSpectrogramDataset, make_loader, make_optimizer
    from benchmarks.tasks import _build_model
    from tune_digits.device import autocast, pick_device
    from tune_digits.features import spectrogram_shape

    device = pick_device(cfg.train.device)
    ds = PerItemSpectrogramDataset(files, labels, cfg)
    torch.manual_seed(cfg.train.seed)
    model = _build_model(cfg, spectrogram_shape(cfg.audio, cfg.features)).to(device)
    opt = make_optimizer(cfg, model)
    loss_fn = nn.CrossEntropyLoss()
    loader = make_loader(ds, cfg.train.batch_size, num_workers)

    def epochs() -> Any:  # as many epochs as the batches need; each restarts its workers, as in a notebook
        while True:
            yield from loader

    model.train()
    n, start = 0, 0.0
    for b, (xb, yb) in enumerate(epochs()):
        if b == 2:  # two warm-up batches (worker start, kernels)
            _sync(device)
            start, n = time.perf_counter(), 0
        if b >= batches + 2:
            break
        xb, yb = xb.to(device), yb.to(device)
        with autocast(device):
            loss = loss_fn(model(xb).float(), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        n += len(yb)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"num_workers": num_workers, "samples": n, "seconds": round(seconds, 3), "samples_per_s": n / seconds}


def gpu_memory() -> dict[str, float]:
    """Total GPU memory and the memory a process holds beyond PyTorch's allocator (CUDA context), in MB."""
    import torch

    torch.zeros(1, device="cuda")
    free, total = torch.cuda.mem_get_info()
    used_by_others_and_context = (total - free) / 2**20
    context = used_by_others_and_context - torch.cuda.memory_reserved() / 2**20
    return {"total_mb": total / 2**20, "context_mb": context}


def final_eight_minutes(lenet: Measure, other: Measure, epochs: int = FINAL_EPOCHS) -> dict[str, float]:
    """Sequential estimate of the final eight: per model raw/bilateral x without/with augmentation.

    The bilateral variant has the same shape, hence the same epoch time as raw. Every epoch also
    validates. Feature caches, process starts and checkpoints are not included (seconds each).
    """
    out = {}
    for m in (lenet, other):
        per_epoch = 2 * (m.epoch_s + m.val_s) + 2 * (m.aug_epoch_s + m.val_s)
        out[m.model] = epochs * per_epoch / 60.0
    out["total"] = sum(out.values())
    return out


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="corpus folder (AudioMNIST-shaped, e.g. 60 x 50 clips)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks that every step runs")
    ap.add_argument("--rows", type=int, default=30000, help="clips after in-memory repetition (default 30,000)")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement, after one warm-up")
    ap.add_argument("--other", default="efficientnet_b0", help="the timm model beside LeNet-5")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    ap.add_argument("--compile-other", action="store_true", help="also torch.compile the timm model (slow)")
    ap.add_argument("--budget-s", type=float, default=240.0, help="skip optional measurements past this many seconds")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    _stub_rich()

    import torch

    from tune_digits.config import from_flat, with_values
    from tune_digits.train import prepare

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("no CUDA GPU visible; run with --dry-run to check the CPU side", file=sys.stderr)
        return 2
    rows, epochs = (200, 1) if args.dry_run else (args.rows, args.epochs)
    device = "cuda" if cuda else "cpu"
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu (dry run)'}; torch {torch.__version__}")
    base = from_flat(
        {
            "data.root": str(args.data.resolve()),
            "data.split": "becker:0",
            "train.device": device,
            "augment.enabled": False,
        }
    )
    t = time.perf_counter()
    prepared = prepare(base, progress=False)
    cache_s = time.perf_counter() - t
    n_corpus = len(prepared.features.files)
    t = time.perf_counter()
    prepare(with_values(base, {"features.variant": "bilateral"}), progress=False)
    bil_s = time.perf_counter() - t
    print(
        f"feature cache of {n_corpus:,} clips: raw {cache_s:.1f} s, bilateral {bil_s:.1f} s; "
        f"item shape {prepared.features.shape}"
    )
    train_files = [prepared.catalog.root / f for f in prepared.split.train]
    digit = {prepared.catalog.rel(r): r.digit for r in prepared.catalog.recordings}
    train_labels = [digit[f] for f in prepared.split.train]
    sizes = _resize_rows(prepared, rows)
    print(
        f"rows repeated in memory to {rows:,}: train {sizes['train']:,}, val {sizes['val']:,}, test {sizes['test']:,}"
    )

    results: list[Measure] = []
    plan: list[tuple[str, str, bool]] = [("lenet5", "eager", True), (args.other, "eager", True)]
    plan += [("lenet5", "channels_last", False), (args.other, "channels_last", False)]
    if not args.no_compile and cuda:
        plan += [("lenet5", "compile", False)]
        if args.compile_other:
            plan += [(args.other, "compile", False)]
    for model, mode, with_aug in plan:
        if mode != "eager" and time.perf_counter() - started > args.budget_s:
            results.append(Measure(model, mode, note="skipped: past --budget-s"))
            continue
        cfg = with_values(base, {"model.name": model})
        try:
            m = measure(cfg, prepared, mode, epochs, with_aug)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # e.g. no compiler for torch.compile
            m = Measure(model, mode, note=f"failed: {str(exc).splitlines()[0][:120]}")
        results.append(m)
        print(
            f"  {model:>22} {mode:>14}: epoch {_fmt(m.epoch_s)} s, {_fmt(m.samples_per_s, 0)} samples/s, "
            f"val {_fmt(m.val_s)} s, setup {_fmt(m.setup_s, 1)} s, max alloc {_fmt(m.max_allocated_mb, 0)} MB {m.note}",
            flush=True,
        )

    base_lenet = with_values(base, {"model.name": "lenet5"})
    per_item = baseline(base_lenet, train_files, train_labels, batches=10 if args.dry_run else 40, num_workers=2)
    lenet = next(m for m in results if m.model == "lenet5" and m.mode == "eager")
    other = next(m for m in results if m.model == args.other and m.mode == "eager")
    best_lenet = min((m for m in results if m.model == "lenet5" and not math.isnan(m.epoch_s)), key=lambda m: m.epoch_s)
    mem = gpu_memory() if cuda else {"total_mb": math.nan, "context_mb": math.nan}
    per_trial_mb = lenet.max_reserved_mb + mem["context_mb"]
    fit = int(0.9 * mem["total_mb"] // per_trial_mb) if cuda and per_trial_mb > 0 else None
    eight = final_eight_minutes(lenet, other)
    eight_best = final_eight_minutes(best_lenet, other)

    print()
    cols = (("model", 22), ("mode", 14), ("epoch s", 9), ("samples/s", 10), ("val s", 7), ("aug epoch s", 11))
    head = " ".join(f"{name:>{w}}" for name, w in (*cols, ("max alloc MB", 12)))
    print(head)
    print("-" * len(head))
    for m in results:
        print(
            f"{m.model:>22} {m.mode:>14} {_fmt(m.epoch_s):>9} {_fmt(m.samples_per_s, 0):>10} {_fmt(m.val_s):>7} "
            f"{_fmt(m.aug_epoch_s):>11} {_fmt(m.max_allocated_mb, 0):>12} {m.note}"
        )
    ratio = lenet.samples_per_s / per_item["samples_per_s"]
    print(
        f"\nper-item DataLoader (num_workers=2) feeding LeNet-5 on {device}: "
        f"{per_item['samples_per_s']:,.0f} samples/s; ours (eager) {lenet.samples_per_s:,.0f}: {ratio:.1f}x"
    )
    if cuda:
        print(
            f"GPU memory per LeNet-5 trial: {lenet.max_allocated_mb:,.0f} MB allocated at peak, "
            f"{lenet.max_reserved_mb:,.0f} MB reserved, + {mem['context_mb']:,.0f} MB CUDA context "
            f"= {per_trial_mb:,.0f} MB; "
            f"{fit} trials fit in 90 % of {mem['total_mb']:,.0f} MB (by memory; compute is shared)"
        )
    train_rows = lenet.extra.get("train_rows", 0)
    met = "met" if lenet.epoch_s < TARGET_LENET_EPOCH_S else "MISSED"
    print(
        f"target: LeNet-5 epoch over {train_rows:,} clips < {TARGET_LENET_EPOCH_S} s: {lenet.epoch_s:.3f} s eager, "
        f"{best_lenet.epoch_s:.3f} s best ({best_lenet.mode}): {met if not args.dry_run else 'n/a (dry run)'}"
    )
    met8 = "met" if eight_best["total"] < TARGET_FINAL_EIGHT_MIN else "MISSED"
    if args.dry_run:
        print("estimate: final eight: n/a (dry run: tiny sizes on the CPU)")
    else:
        print(
            f"estimate: final eight at AudioMNIST size, {FINAL_EPOCHS} epochs each, run one after another: "
            f"{eight['total']:.1f} min eager (LeNet-5 {eight['lenet5']:.1f} + {args.other} {eight[args.other]:.1f}), "
            f"{eight_best['total']:.1f} min with the best LeNet-5 mode; target < {TARGET_FINAL_EIGHT_MIN:g} min: {met8}"
        )
    print(f"ray imported: {'ray' in sys.modules}; {time.perf_counter() - started:.0f} s in all")
    if args.json:
        out = {
            "device": device,
            "rows": rows,
            "cache_s": {"raw": cache_s, "bilateral": bil_s, "clips": n_corpus},
            "measures": [m.__dict__ for m in results],
            "per_item_baseline": per_item,
            "lenet5_ratio_vs_per_item": ratio,
            "gpu_memory": mem,
            "lenet5_trials_per_gpu_by_memory": fit,
            "final_eight_minutes": eight,
            "final_eight_minutes_best": eight_best,
        }
        args.json.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
