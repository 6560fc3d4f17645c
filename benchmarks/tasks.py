"""One measurement per process: ``python -m benchmarks.tasks NAME 'JSON kwargs'``.

``benchmarks.run`` starts each task in a fresh interpreter (so every number includes no
state left by another, and the memory of the task's whole process tree can be sampled from
outside) and reads the last stdout line, ``BENCH_RESULT {json}``. Heavy modules are imported
inside the tasks, so ``cached_start`` can time the imports too.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

T_ENTER = time.time()  # when this interpreter reached our code (before torch is imported)
RESULT_PREFIX = "BENCH_RESULT "


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process, its threads and its children that have exited.

    Worker processes (a spawned pool, DataLoader workers) count once they are joined. Under load
    from other work, wall time stretches while CPU time stays close to the work done.
    """
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _config(data: str, values: dict[str, Any] | None = None):
    """The settings both sides use: tune-digits' defaults, a speaker split, and no SpecAugment.

    SpecAugment (on by default in tune-digits) is switched off because the notebook baseline has
    none: with it, both sides would not do the same work per sample. So is ``audio.trim`` (the
    baseline centres every clip); :func:`trim_cost` measures what it adds.
    """
    from tune_digits.config import from_flat

    values = {"audio.trim": False, **(values or {})}  # the baseline centres every clip; trim_cost times the trim
    return from_flat({"data.root": data, "data.split": "speakers", "augment.enabled": False, **values})


def _build_model(cfg, input_shape: tuple[int, int, int]):
    """The model tune-digits' Trainer builds for ``cfg``, built the same way for the baseline."""
    from tune_digits.models import model_from_config

    return model_from_config(cfg.model, input_shape)


def _train_files(cfg, limit: int | None) -> tuple[list[Path], list[int]]:
    """The training recordings of ``cfg``'s split (the first ``limit``), as paths and labels."""
    from tune_digits.corpus import make_split, scan

    catalog = scan(cfg.data.root)
    d = cfg.data
    split = make_split(catalog, d.split, d.val_fraction, d.test_fraction, d.split_seed, d.val_clips)
    digit = {catalog.rel(r): r.digit for r in catalog.recordings}
    files = list(split.train[:limit] if limit else split.train)
    return [catalog.root / f for f in files], [digit[f] for f in files]


# --------------------------------------------------------------------------- 1. feature build


def cache_build(data: str, variants: list[str], workers: int | None = None) -> dict[str, Any]:
    """Build the feature cache of each of ``variants`` in turn under $TUNE_DIGITS_CACHE; seconds and clips/s.

    ``bilateral`` on a cache that already holds the raw entry only runs the filter (the raw entry is
    reused, as tune-digits does), so ``["raw", "bilateral"]`` times both variants separately.
    ``workers`` is passed to ``build_features`` (None: its own choice; 1: in this thread, a what-if).
    """
    import tune_digits.features  # noqa: F401  (torch, torchaudio and cv2 load before the clock, as for the baseline)
    from tune_digits.corpus import scan
    from tune_digits.data import build_features, cache_key, cache_root

    start = time.perf_counter()
    catalog = scan(data)
    scan_s = time.perf_counter() - start
    n = len(catalog.recordings)
    raw = _config(data)
    raw_cached = (cache_root() / cache_key(catalog, raw.audio, raw.features, raw.bilateral) / "index.json").is_file()
    out: dict[str, Any] = {"clips": n, "scan_seconds": round(scan_s, 3), "raw_was_cached": raw_cached}
    out.update(workers=workers, seconds={}, clips_per_s={}, cpu_seconds={})
    for variant in variants:
        cfg = _config(data, {"features.variant": variant})
        start, cpu = time.perf_counter(), _cpu_s()
        fs = build_features(catalog, cfg.audio, cfg.features, cfg.bilateral, workers=workers, progress=False)
        seconds = time.perf_counter() - start + (scan_s if variant == variants[0] else 0.0)
        out["seconds"][variant] = round(seconds, 3)
        out["clips_per_s"][variant] = round(n / seconds, 1)
        out["cpu_seconds"][variant] = round(_cpu_s() - cpu, 3)
        out.update(shape=list(fs.x.shape), cache_mb=round(fs.x.nbytes / 2**20, 1))
    return out


def baseline_features(data: str, variants: list[str], num_workers: int, limit: int | None = None) -> dict[str, Any]:
    """One pass of the per-item pipeline (a DataLoader over the per-item dataset) per variant; clips/s."""
    import torch

    from benchmarks.baseline import PerItemSpectrogramDataset, make_loader
    from tune_digits.corpus import scan

    cfg = _config(data)
    catalog = scan(data)
    recs = catalog.recordings
    if limit and limit < len(recs):
        recs = recs[:: max(1, len(recs) // limit)][:limit]  # spread over speakers and digits
    out: dict[str, Any] = {"num_workers": num_workers, "clips": len(recs), "torch_threads": torch.get_num_threads()}
    out.update(seconds={}, clips_per_s={}, cpu_seconds={})
    for variant in variants:
        files, labels = [r.path for r in recs], [r.digit for r in recs]
        ds = PerItemSpectrogramDataset(files, labels, cfg, variant == "bilateral")
        loader = make_loader(ds, cfg.train.batch_size, num_workers, shuffle=False)
        start, cpu = time.perf_counter(), _cpu_s()
        n = sum(len(xb) for xb, _ in loader)
        seconds = time.perf_counter() - start
        del loader  # joins the workers, so their CPU time is counted
        out["seconds"][variant] = round(seconds, 3)
        out["clips_per_s"][variant] = round(n / seconds, 1)
        out["cpu_seconds"][variant] = round(_cpu_s() - cpu, 3)
    return out


# --------------------------------------------------------------------------- 2. training throughput


def _throughput(model: str, samples: int, seconds: float, cpu: float, batch_size: int) -> dict[str, Any]:
    """The figures both training measurements report, rounded alike."""
    import torch

    return {
        "model": model,
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 1),
        "cpu_seconds": round(cpu, 3),
        "samples_per_cpu_s": round(samples / cpu, 1),
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
    }


def train_ours(data: str, model: str, epochs: int = 2, limit: int | None = None) -> dict[str, Any]:
    """Samples per second of tune-digits' ``Trainer.train_epoch`` (after one warm-up epoch)."""

    from tune_digits.train import Trainer, prepare

    cfg = _config(data, {"model.name": model})
    prepared = prepare(cfg)
    if limit:
        prepared.rows["train"] = prepared.rows["train"][:limit]
    trainer = Trainer(cfg, prepared)
    trainer.train_epoch()  # warm-up: allocator, kernels, first-touch of the pages
    start, cpu = time.perf_counter(), _cpu_s()
    for _ in range(epochs):
        trainer.train_epoch()
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    samples = epochs * trainer.repeats * len(trainer.x_train)
    return {
        **_throughput(model, samples, seconds, cpu, cfg.train.batch_size),
        "device": trainer.device.type,
    }


def train_baseline(
    data: str, model: str, num_workers: int, epochs: int = 1, limit: int | None = None
) -> dict[str, Any]:
    """Samples per second of the notebook loop over a DataLoader of the per-item dataset (same model and batch)."""
    import torch
    from torch import nn

    from benchmarks.baseline import PerItemSpectrogramDataset, make_loader, make_optimizer, train_one_epoch
    from tune_digits.features import spectrogram_shape

    cfg = _config(data, {"model.name": model})
    files, labels = _train_files(cfg, limit)
    ds = PerItemSpectrogramDataset(files, labels, cfg)
    torch.manual_seed(cfg.train.seed)
    net = _build_model(cfg, spectrogram_shape(cfg.audio, cfg.features))
    opt = make_optimizer(cfg, net)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    device = torch.device("cpu")
    bs = cfg.train.batch_size
    train_one_epoch(net, make_loader(ds, bs, num_workers, seed=1), opt, loss_fn, device, max_batches=2)  # warm-up
    samples, seconds, cpu = 0, 0.0, _cpu_s()
    for epoch in range(epochs):
        _, n, sec = train_one_epoch(net, make_loader(ds, bs, num_workers, seed=2 + epoch), opt, loss_fn, device)
        samples, seconds = samples + n, seconds + sec
    cpu = _cpu_s() - cpu  # the epoch's loader (and its workers) ended with train_one_epoch
    return {
        **_throughput(model, samples, seconds, cpu, bs),
        "num_workers": num_workers,
    }


# --------------------------------------------------------------------------- 3. cached second run


class _DeferredModule(types.ModuleType):
    """Stands in for a module in ``sys.modules`` and imports the real one on first attribute use."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attr)


def _lazy_timm() -> None:
    """Defer ``import timm`` to its first use, as a lazy import in ``tune_digits.models`` would.

    LeNet-5 never uses timm. The module attributes that tools read while walking ``sys.modules``
    (``inspect.getmodule`` reads ``__file__``) are set, so only real use imports timm.
    """
    spec = importlib.util.find_spec("timm")
    if spec is None or "timm" in sys.modules:
        return
    module = _DeferredModule("timm")
    module.__spec__, module.__loader__, module.__package__ = spec, spec.loader, "timm"
    module.__file__ = spec.origin
    module.__path__ = list(spec.submodule_search_locations or [])
    sys.modules["timm"] = module


def cached_start(data: str, launched_at: float, lazy_timm: bool = False) -> dict[str, Any]:
    """Seconds from the command's launch to the end of the first training step, with a warm cache.

    ``launched_at`` is the ``time.time()`` of the parent just before it started this process.
    The phases: interpreter start, imports, ``prepare()`` (scan, split, open the cache),
    ``Trainer`` construction (tensors, model, optimiser) and one training step, exactly as
    ``Trainer.train_epoch`` does it.
    """
    t_enter = T_ENTER
    import torch

    t_torch = time.time()
    if lazy_timm:  # after torch: its import walks sys.modules and would load a lazy module half-way
        _lazy_timm()
    from tune_digits.device import autocast
    from tune_digits.features import normalize_batch
    from tune_digits.train import Trainer, prepare

    t_import = time.time()
    cfg = _config(data)
    prepared = prepare(cfg)
    t_prepare = time.time()
    dynamo_before = "torch._dynamo" in sys.modules
    trainer = Trainer(cfg, prepared)  # its optimiser imports torch._dynamo (torch.optim's _disable_dynamo)
    t_trainer = time.time()
    trainer.model.train()
    idx = torch.randperm(len(trainer.x_train), generator=trainer.gen)[: cfg.train.batch_size]
    xb = trainer.augment(normalize_batch(trainer.x_train[idx], cfg.features.normalize, *prepared.norm))
    with autocast(trainer.device):
        loss = trainer.loss_fn(trainer.model(xb).float(), trainer.y_train[idx])
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    trainer.opt.step()
    trainer.sched.step()
    loss.item()
    t_step = time.time()
    return {
        "from_launch_s": round(t_step - launched_at, 3),
        "interpreter_s": round(t_enter - launched_at, 3),
        "imports_s": round(t_import - t_enter, 3),
        "torch_import_s": round(t_torch - t_enter, 3),
        "dynamo_imported_by_trainer": not dynamo_before and "torch._dynamo" in sys.modules,
        "prepare_s": round(t_prepare - t_import, 3),
        "trainer_s": round(t_trainer - t_prepare, 3),
        "first_step_s": round(t_step - t_trainer, 3),
        "after_imports_s": round(t_step - t_import, 3),
        "lazy_timm": lazy_timm,
        "timm_imported": "timm" in sys.modules and not isinstance(sys.modules["timm"], _DeferredModule),
    }


# --------------------------------------------------------------------------- 4. Ray Tune


def _time_phases(module: Any, names: dict[str, str], seconds: dict[str, float] | None = None) -> dict[str, float]:
    """Wrap ``module``'s functions (attribute -> phase name) so their seconds add up in ``seconds`` (returned)."""
    import functools

    seconds = {} if seconds is None else seconds

    def wrap(fn: Any, phase: str) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start

        return timed

    for attr, phase in names.items():
        setattr(module, attr, wrap(getattr(module, attr), phase))
    return seconds


def search(data: str, concurrent: int, storage: str, trials: int = 2, epochs: int = 2) -> dict[str, Any]:
    """A tiny LeNet-5 search (``trials`` x ``epochs``) with ``concurrent`` trials at once; per-trial overhead."""
    import pandas as pd

    import tune_digits.search as search_module
    import tune_digits.train as train_module
    from tune_digits.search import SearchOptions
    from tune_digits.space import parse_space

    space = parse_space(
        {
            "fixed": {"model.name": "lenet5", "data.root": data, "data.split": "speakers"},
            "space": {"train.lr": {"type": "choice", "values": [1.0e-3, 3.0e-3]}},
            "search": {
                "num_samples": trials,
                "max_epochs": epochs,
                "grace_period": epochs,
                "reduction_factor": 2,
                "seed": 0,
                "max_concurrent": concurrent,
            },
        },
        "benchmark space",
    )
    opts = SearchOptions(
        name=f"concurrent-{concurrent}", storage=Path(storage), wandb="disabled", progress=False, cpus_per_trial=1
    )
    phases = _time_phases(search_module, {"init_ray": "ray_start", "_fit": "trials", "finish_search": "results"})
    _time_phases(train_module, {"prepare": "prepare"}, phases)
    start = time.perf_counter()
    path = search_module.run_search(space, opts)
    wall = time.perf_counter() - start
    table = pd.read_csv(path / "results.csv")
    total = table["time_total_s"].astype(float)
    train = table["train_seconds"].astype(float)
    return {
        "concurrent": concurrent,
        "trials": len(table),
        "epochs": epochs,
        "wall_s": round(wall, 3),
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "time_total_s": [round(v, 3) for v in total],
        "train_seconds": [round(v, 3) for v in train],
        "status": list(table["status"]),
        "in_trial_overhead_s": round(float((total - train).mean()), 3),
        "in_trial_overhead_ratio": round(float((total - train).mean() / max(train.mean(), 1e-9)), 3),
        "search_overhead_per_trial_s": round((wall - float(train.sum()) / concurrent) / len(table), 3),
    }


def trim_cost(data: str, limit: int = 300, long_s: float = 3.0) -> dict[str, Any]:
    """Milliseconds per clip of the front end (decode, resample, window) with ``audio.trim`` off and on.

    On the corpus's first ``limit`` clips as they are, and on the same clips placed at a random offset
    in ``long_s`` seconds of low noise, written as 48 kHz stereo (the word must be found to be kept).
    """
    import tempfile

    import numpy as np
    import soundfile as sf

    from tune_digits.audio import load_audio_batch, read_audio, resample
    from tune_digits.corpus import scan

    paths = [r.path for r in scan(data).recordings[:limit]]
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"clips": len(paths), "long_seconds": long_s}
    with tempfile.TemporaryDirectory() as tmp:
        long_paths = []
        for i, path in enumerate(paths):
            wave, sr = read_audio(path)
            wave = resample(wave, sr, 48000)[: int(48000 * long_s) - 1]
            clip = (rng.standard_normal(int(48000 * long_s)) * 1e-3).astype(np.float32)
            start = int(rng.integers(0, len(clip) - len(wave)))
            clip[start : start + len(wave)] += wave
            long_paths.append(Path(tmp) / f"{i}.wav")
            sf.write(long_paths[-1], np.stack([clip, clip], axis=1), 48000, subtype="PCM_16")
        for name, files in (("corpus", paths), ("long_48k_stereo", long_paths)):
            for trim in (False, True):
                start = time.perf_counter()
                load_audio_batch(files, 8000, 8000, trim)
                out[f"{name}_ms_per_clip_trim_{'on' if trim else 'off'}"] = round(
                    1000 * (time.perf_counter() - start) / max(len(files), 1), 3
                )
    return out


TASKS = {
    "trim_cost": trim_cost,
    "cache_build": cache_build,
    "baseline_features": baseline_features,
    "train_ours": train_ours,
    "train_baseline": train_baseline,
    "cached_start": cached_start,
    "search": search,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in TASKS:
        print(f"usage: python -m benchmarks.tasks {{{','.join(TASKS)}}} 'JSON kwargs'", file=sys.stderr)
        return 2
    result = TASKS[argv[0]](**json.loads(argv[1]))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
