"""tune-digits against the per-item DataLoader baseline, measured side by side in one run.

    python -m benchmarks.run --quick                      # ../shared/data/fsdd, ~3 min on 2 idle cores
    python -m benchmarks.run --data DIR [--json FILE]     # larger samples of the same measurements
    python -m benchmarks.run --full DIR [--what-if]       # only the feature cache, both variants

Every measurement runs in a fresh interpreter (``benchmarks.tasks``) while this process samples
the memory of that interpreter's whole process tree (worker pools, Ray's processes) every 0.2 s.
Ours and the baseline run on the same corpus, the same machine and in the same run; the table
gives the ratios. Other work on the machine slows both sides, not always equally (a 2-thread
torch op suffers most when another process holds a core): the load average is printed with the
results, training takes the best of its rounds, and CPU seconds of all processes are reported
beside wall time.

Measurements
    1. feature build: clips/s of the feature cache (raw; bilateral from scratch) against one pass of
       the per-item pipeline (soundfile, resample, MelSpectrogram, AmplitudeToDB, bilateral filter).
    2. training: samples/s of ``Trainer.train_epoch`` against the notebook loop over a DataLoader of the
       per-item dataset; LeNet-5 and mobilenetv3_small_100, same model, optimiser and batch size.
    3. cached start: seconds from launching a fresh process to the end of its first training step, the
       cache being warm (imports, ``prepare()``, ``Trainer``, one step); plus ``tune-digits train`` runs.
    4. Ray Tune: a 2-trial, 2-epoch search with 1 and with 2 concurrent trials; per-trial overhead
       (Ray's ``time_total_s`` minus ``train_seconds``) and the peak memory of the whole search.
    5. peak memory of each of the above (RSS summed over the process tree; PSS beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.memory import Peak, TreeSampler
from benchmarks.tasks import RESULT_PREFIX

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"

TARGETS = {
    "full_cache_seconds": 60.0,  # both variants of the 30,000-clip 48 kHz corpus
    "full_cache_peak_rss_mb": 2048.0,
    "train_throughput_ratio_lenet5": 10.0,
    "cached_start_s": 2.0,
    "concurrency_memory_ratio": 1.5,  # two concurrent trials against one
}


class BenchmarkError(RuntimeError):
    """A measurement failed; the message holds the end of its log."""


@dataclass
class Measured:
    task: str
    label: str
    side: str  # ours | baseline | what-if
    result: dict[str, Any]
    peak: Peak
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "label": self.label,
            "side": self.side,
            "wall_s": round(self.wall_s, 3),
            "peak_rss_mb": self.peak.rss_mb,
            "peak_pss_mb": self.peak.pss_mb,
            "max_processes": self.peak.processes,
            "result": self.result,
        }


@dataclass
class Bench:
    """One benchmark run: its scratch folder, environment, log and everything measured."""

    data: Path
    quick: bool
    work: Path
    verbose: bool = True
    measured: list[Measured] = field(default_factory=list)
    warm: set[str] = field(default_factory=set)  # caches that hold the raw entry of the corpus
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)

    def env(self, cache: str = "cache") -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TUNE_DIGITS_CACHE=str(self.work / cache),
            WANDB_MODE="disabled",
            WANDB_SILENT="true",
            RAY_USAGE_STATS_ENABLED="0",
            MPLBACKEND="Agg",
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        )
        return env

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    def run(self, task: str, label: str, side: str, cache: str = "cache", **kwargs: Any) -> Measured:
        """Run ``benchmarks.tasks TASK`` in a fresh process and sample its tree's memory."""
        log = self.work / "logs" / f"{len(self.measured):02d}-{task}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.say(f"  {label} ...")
        kwargs.setdefault("data", str(self.data))
        if task == "cached_start":
            kwargs["launched_at"] = time.time()
        cmd = [sys.executable, "-m", "benchmarks.tasks", task, json.dumps(kwargs)]
        start = time.perf_counter()
        with log.open("w") as err:
            proc = subprocess.Popen(cmd, cwd=REPO, env=self.env(cache), stdout=subprocess.PIPE, stderr=err, text=True)
            with TreeSampler(proc.pid) as sampler:
                out, _ = proc.communicate()
        wall = time.perf_counter() - start
        lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
        if proc.returncode != 0 or not lines:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise BenchmarkError(f"{label}: {task} exited with {proc.returncode}\n{tail}")
        m = Measured(task, label, side, json.loads(lines[-1][len(RESULT_PREFIX) :]), sampler.peak, wall)
        self.measured.append(m)
        if task == "cache_build":
            self.warm.add(cache)
        return m

    def warm_cache(self) -> None:
        """Build the raw entry of the shared cache unless an earlier measurement did."""
        if "cache" not in self.warm:
            self.run("cache_build", "cache raw (warm-up)", "ours", variants=["raw"])

    def run_command(self, argv: list[str], label: str, side: str, cache: str = "cache") -> Measured:
        """Time a whole command (e.g. ``tune-digits train``) from launch to exit, sampling its memory."""
        log = self.work / "logs" / f"{len(self.measured):02d}-command.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.say(f"  {label} ...")
        start = time.perf_counter()
        with log.open("w") as err:
            proc = subprocess.Popen(argv, cwd=self.work, env=self.env(cache), stdout=err, stderr=subprocess.STDOUT)
            with TreeSampler(proc.pid) as sampler:
                proc.wait()
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise BenchmarkError(f"{label}: exited with {proc.returncode}\n{tail}")
        m = Measured("command", label, side, {"seconds": round(wall, 3), "argv": argv}, sampler.peak, wall)
        self.measured.append(m)
        return m

    def row(self, what: str, ours: str, base: str, ratio: str, ours_mb: str, base_mb: str) -> None:
        self.rows.append((what, ours, base, ratio, ours_mb, base_mb))


# --------------------------------------------------------------------------- formatting


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _mb(*ms: Measured) -> str:
    return " + ".join(_n(m.peak.rss_mb) for m in ms)


def _ratio(ours: float, base: float) -> float:
    return round(ours / base, 2) if base > 0 else float("inf")


def _best_rate(ms: list[Measured], key: str) -> float:
    """The best of the rounds: other work on the machine only ever slows a round down."""
    return float(max(m.result[key] for m in ms))


def _nw(m: Measured) -> str:
    return f"(nw={m.result['num_workers']})"


def _count_clips(data: Path) -> int:
    return sum(1 for p in data.rglob("*.wav"))


# --------------------------------------------------------------------------- 1. feature build


WHAT_IF_BUILDS: tuple[tuple[str, str, dict[str, Any]], ...] = (("inprocess", "in-process (workers=1)", {"workers": 1}),)


def what_if_builds(b: Bench, keys: tuple[str, ...]) -> dict[str, tuple[str, Measured]]:
    """Both variants from scratch in a fresh cache, built another way than tune-digits does now."""
    both = ["raw", "bilateral"]
    return {
        key: (
            label,
            b.run("cache_build", f"cache raw + bilateral, {label}", "what-if", f"cache-{key}", variants=both, **kw),
        )
        for key, label, kw in WHAT_IF_BUILDS
        if key in keys
    }


def bench_features(b: Bench) -> None:
    b.say("1. feature build")
    raw = b.run("cache_build", "cache raw (fresh cache)", "ours", variants=["raw"])
    bil = b.run("cache_build", "cache bilateral (from the raw entry)", "ours", variants=["bilateral"])
    what_ifs = what_if_builds(b, ("inprocess",))
    limits = {0: 300, 2: 600} if b.quick else {0: None, 2: None}
    base = [
        b.run(
            "baseline_features",
            f"per-item raw + bilateral, DataLoader num_workers={nw}",
            "baseline",
            variants=["raw", "bilateral"],
            num_workers=nw,
            limit=limits[nw],
        )
        for nw in (0, 2)
    ]
    n = raw.result["clips"]
    raw_s, bil_s = raw.result["seconds"]["raw"], bil.result["seconds"]["bilateral"]
    ours_raw, ours_bil = n / raw_s, n / (raw_s + bil_s)
    best_raw = max(base, key=lambda m: m.result["clips_per_s"]["raw"])
    best_bil = max(base, key=lambda m: m.result["clips_per_s"]["bilateral"])
    base_raw, base_bil = best_raw.result["clips_per_s"]["raw"], best_bil.result["clips_per_s"]["bilateral"]
    s = b.summary
    s["feature_build_ratio_raw"] = _ratio(ours_raw, base_raw)
    s["feature_build_ratio"] = _ratio(ours_bil, base_bil)  # the bilateral pipeline, both from scratch
    s["feature_build_clips_per_s"] = {"raw": round(ours_raw, 1), "bilateral_from_scratch": round(ours_bil, 1)}
    s["feature_build_seconds"] = {"raw": raw_s, "bilateral_after_raw": bil_s}
    s["feature_build_baseline_clips_per_s"] = {
        f"{v}_nw{m.result['num_workers']}": m.result["clips_per_s"][v] for m in base for v in ("raw", "bilateral")
    }
    b.row(
        "feature build raw, clips/s",
        _n(ours_raw),
        f"{_n(base_raw)} {_nw(best_raw)}",
        f"{s['feature_build_ratio_raw']}x",
        _mb(raw),
        _mb(best_raw),
    )
    b.row(
        "feature build bilateral (from scratch), clips/s",
        _n(ours_bil),
        f"{_n(base_bil)} {_nw(best_bil)}",
        f"{s['feature_build_ratio']}x",
        _mb(raw, bil),
        _mb(best_bil),
    )
    for key, (label, m) in what_ifs.items():
        sec = m.result["seconds"]
        w_raw, w_bil = n / sec["raw"], n / (sec["raw"] + sec["bilateral"])
        s[f"feature_build_ratio_{key}"] = _ratio(w_bil, base_bil)
        s[f"feature_build_seconds_{key}"] = {"raw": sec["raw"], "bilateral_after_raw": sec["bilateral"]}
        b.row(
            f"  what-if {label}: raw / bilateral",
            f"{_n(w_raw)} / {_n(w_bil)}",
            "",
            f"{_ratio(w_raw, base_raw)}x / {s[f'feature_build_ratio_{key}']}x",
            _mb(m),
            "",
        )
    for m in base:
        rate = m.result["clips_per_s"]
        what = f"  baseline num_workers={m.result['num_workers']}: raw / bilateral"
        b.row(what, "", f"{_n(rate['raw'])} / {_n(rate['bilateral'])}", "", "", _mb(m))
    trim = b.run("trim_cost", "front end with audio.trim off / on", "ours", limit=100 if b.quick else 300)
    s["trim_ms_per_clip"] = {k: v for k, v in trim.result.items() if k.endswith(("_on", "_off"))}
    for name in ("corpus", "long_48k_stereo"):
        off, on = (trim.result[f"{name}_ms_per_clip_trim_{x}"] for x in ("off", "on"))
        b.row(f"  front end ms/clip, trim off / on ({name})", f"{off:.2f} / {on:.2f}", "", "", _mb(trim), "")
    # per CPU-second of all processes: what the work costs, whatever else runs on the machine
    cpu_raw = raw.result["cpu_seconds"]["raw"]
    ours_cpu = (n / cpu_raw, n / (cpu_raw + bil.result["cpu_seconds"]["bilateral"]))
    per_cpu = [(m.result["clips"] / m.result["cpu_seconds"][v] for v in ("raw", "bilateral")) for m in base]
    base_cpu = tuple(max(col) for col in zip(*per_cpu, strict=True))
    s["feature_build_cpu_ratio"] = _ratio(ours_cpu[1], base_cpu[1])
    s["feature_build_clips_per_cpu_s"] = {
        "ours": {"raw": round(ours_cpu[0], 1), "bilateral_from_scratch": round(ours_cpu[1], 1)},
        "baseline_best": {"raw": round(base_cpu[0], 1), "bilateral": round(base_cpu[1], 1)},
    }
    b.row(
        "  per CPU-second (all processes): raw / bilateral",
        f"{_n(ours_cpu[0])} / {_n(ours_cpu[1])}",
        f"{_n(base_cpu[0])} / {_n(base_cpu[1])}",
        f"{_ratio(ours_cpu[0], base_cpu[0])}x / {s['feature_build_cpu_ratio']}x",
        "",
        "",
    )


# --------------------------------------------------------------------------- 2. training throughput


def bench_training(b: Bench) -> None:
    b.say("2. training throughput")
    data = str(b.data)
    rounds = 1 if b.quick else 2
    plans: list[tuple[str, dict[str, Any], dict[int, dict[str, Any]]]] = [
        ("lenet5", {"epochs": 1 if b.quick else 3}, {0: {"limit": 640 if b.quick else None}, 2: {}}),
        (
            "mobilenetv3_small_100",
            {"epochs": 1, "limit": 128 if b.quick else 512},
            {2: {"limit": 128}} if b.quick else {0: {"limit": 512}, 2: {"limit": 512}},
        ),
    ]
    for model, ours_kw, base_plan in plans:
        ours: list[Measured] = []
        base: dict[int, list[Measured]] = {nw: [] for nw in base_plan}
        for r in range(rounds):  # alternate the sides so a burst of other load hits both
            ours.append(b.run("train_ours", f"{model} ours, round {r + 1}", "ours", data=data, model=model, **ours_kw))
            for nw, kw in base_plan.items():
                label = f"{model} per-item DataLoader num_workers={nw}, round {r + 1}"
                base[nw].append(
                    b.run("train_baseline", label, "baseline", data=data, model=model, num_workers=nw, **kw)
                )
        ours_rate = _best_rate(ours, "samples_per_s")
        rates = {nw: _best_rate(ms, "samples_per_s") for nw, ms in base.items()}
        best_nw = max(rates, key=lambda k: rates[k])
        ratio = _ratio(ours_rate, rates[best_nw])
        b.summary[f"train_throughput_ratio_{model}"] = ratio
        b.summary[f"train_samples_per_s_{model}"] = {
            "ours": ours_rate,
            **{f"baseline_nw{nw}": v for nw, v in rates.items()},
        }
        b.row(
            f"training {model}, samples/s",
            _n(ours_rate),
            f"{_n(rates[best_nw])} (nw={best_nw})",
            f"{ratio}x",
            _mb(max(ours, key=lambda m: m.peak.rss)),
            _mb(max(base[best_nw], key=lambda m: m.peak.rss)),
        )
        for nw, v in rates.items():
            if nw != best_nw:
                worst = max(base[nw], key=lambda m: m.peak.rss)
                b.row(f"  baseline num_workers={nw}", "", _n(v), f"{_ratio(ours_rate, v)}x", "", _mb(worst))
        ours_cpu = _best_rate(ours, "samples_per_cpu_s")
        cpu_rates = {nw: _best_rate(ms, "samples_per_cpu_s") for nw, ms in base.items()}
        cpu_nw = max(cpu_rates, key=lambda k: cpu_rates[k])
        b.summary[f"train_cpu_ratio_{model}"] = _ratio(ours_cpu, cpu_rates[cpu_nw])
        b.summary[f"train_samples_per_cpu_s_{model}"] = {
            "ours": ours_cpu,
            **{f"baseline_nw{nw}": v for nw, v in cpu_rates.items()},
        }
        b.row(
            "  per CPU-second (all processes)",
            _n(ours_cpu),
            f"{_n(cpu_rates[cpu_nw])} (nw={cpu_nw})",
            f"{b.summary[f'train_cpu_ratio_{model}']}x",
            "",
            "",
        )


# --------------------------------------------------------------------------- 3. cached start


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("tune-digits")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tune_digits.cli"]


def bench_start(b: Bench) -> None:
    b.say("3. cached second run")
    b.warm_cache()
    tries = 1 if b.quick else 2  # the best of `tries`: noise from other work only ever adds time
    runs = [b.run("cached_start", f"first step, warm cache, try {i + 1}", "ours") for i in range(tries)]
    best = min(runs, key=lambda m: m.result["from_launch_s"])
    # the what-if only means something while tune-digits itself imports timm for LeNet-5
    eager_timm = any(m.result["timm_imported"] for m in runs)
    lazies = [
        b.run("cached_start", f"first step, warm cache, timm imported lazily, try {i + 1}", "what-if", lazy_timm=True)
        for i in range(tries if eager_timm else 0)
    ]
    lazy = min(lazies, key=lambda m: m.result["from_launch_s"]) if lazies else None
    s = b.summary
    s["cached_start_s"] = best.result["from_launch_s"]
    s["cached_start_phases_s"] = {k: v for k, v in best.result.items() if k.endswith("_s")}
    s["cached_start_timm_imported"] = eager_timm
    if lazy is not None:
        s["cached_start_s_lazy_timm"] = lazy.result["from_launch_s"]
    r = best.result
    b.row(
        "cached run: launch to first training step, s",
        f"{r['from_launch_s']:.2f}",
        "",
        "",
        _mb(best),
        "",
    )
    b.row(
        "  = interpreter + imports + prepare + Trainer + step",
        f"{r['interpreter_s']:.2f}+{r['imports_s']:.2f}+{r['prepare_s']:.2f}+{r['trainer_s']:.2f}"
        f"+{r['first_step_s']:.2f}",
        "",
        "",
        "",
        "",
    )
    if lazy is not None:
        b.row("  what-if: timm imported lazily", f"{lazy.result['from_launch_s']:.2f}", "", "", _mb(lazy), "")
    if b.quick:  # the whole command twice (~30 s) is left to the standard run
        return
    argv = [*_cli(), "train", "--data", str(b.data), "--epochs", "1", "--no-augment", "--wandb", "disabled"]
    plan = [("cache-cli", "builds the cache"), ("cache-cli", "warm cache")]  # a fresh cache, then the same one
    cli_runs = [
        b.run_command(
            [*argv, "--out", str(b.work / f"cli-run-{i}")], f"tune-digits train --epochs 1 ({what})", "ours", cache
        )
        for i, (cache, what) in enumerate(plan)
    ]
    s["cli_train_1_epoch_s"] = {"fresh_cache": cli_runs[0].wall_s, "warm_cache": cli_runs[1].wall_s}
    b.row(
        "tune-digits train --epochs 1 --no-augment (whole command), s",
        f"{cli_runs[0].wall_s:.2f} -> {cli_runs[1].wall_s:.2f}",
        "",
        "fresh -> warm cache",
        f"{_mb(cli_runs[0])} / {_mb(cli_runs[1])}",
        "",
    )


# --------------------------------------------------------------------------- 4. Ray Tune


def bench_ray(b: Bench) -> None:
    b.say("4. Ray Tune")
    b.warm_cache()
    storage = str(b.work / "searches")
    runs = {
        c: b.run("search", f"search, 2 trials x 2 epochs, {c} concurrent", "ours", concurrent=c, storage=storage)
        for c in (1, 2)
    }
    s = b.summary
    one, two = runs[1], runs[2]
    s["trial_overhead_s"] = one.result["in_trial_overhead_s"]
    s["trial_overhead_ratio"] = one.result["in_trial_overhead_ratio"]
    s["search_overhead_per_trial_s"] = one.result["search_overhead_per_trial_s"]
    s["search_peak_rss_mb"] = {"1": one.peak.rss_mb, "2": two.peak.rss_mb}
    s["search_peak_pss_mb"] = {"1": one.peak.pss_mb, "2": two.peak.pss_mb}
    s["concurrency_memory_ratio"] = _ratio(two.peak.rss, one.peak.rss)
    s["concurrency_memory_ratio_pss"] = _ratio(two.peak.pss, one.peak.pss)
    s["search_phases_s"] = {"1": one.result["phases_s"], "2": two.result["phases_s"]}
    for c, m in runs.items():
        r = m.result
        b.row(
            f"Ray search, {c} concurrent: trial total / train, s",
            f"{statistics.mean(r['time_total_s']):.2f} / {statistics.mean(r['train_seconds']):.2f}",
            "",
            f"overhead {r['in_trial_overhead_s']:.2f} s",
            f"{_mb(m)} (PSS {_n(m.peak.pss_mb)})",
            "",
        )
        ph = r["phases_s"]
        b.row(
            "  search wall = ray start + trials + results, s",
            f"{r['wall_s']:.1f} = {ph.get('ray_start', 0):.1f}+{ph.get('trials', 0):.1f}+{ph.get('results', 0):.1f}",
            "",
            f"{r['search_overhead_per_trial_s']:.1f} s/trial",
            f"{m.peak.processes} processes",
            "",
        )
    b.row(
        "memory, 2 concurrent trials / 1",
        f"{s['concurrency_memory_ratio']}x RSS",
        "",
        f"{s['concurrency_memory_ratio_pss']}x PSS",
        "",
        "",
    )


# --------------------------------------------------------------------------- full-size cache


def bench_full(b: Bench, what_if: bool) -> None:
    b.say(f"full-size feature cache of {b.data}")
    raw = b.run("cache_build", "cache raw (fresh cache)", "ours", variants=["raw"])
    bil = b.run("cache_build", "cache bilateral (from the raw entry)", "ours", variants=["bilateral"])
    n = raw.result["clips"]
    raw_s, bil_s = raw.result["seconds"]["raw"], bil.result["seconds"]["bilateral"]
    both = raw_s + bil_s
    peak = max(raw.peak.rss_mb, bil.peak.rss_mb)
    s = b.summary
    s.update(
        full_clips=n,
        full_cache_seconds={"raw": raw_s, "bilateral_after_raw": bil_s, "both": round(both, 3)},
        full_cache_clips_per_s=round(n / both, 1),
        full_cache_peak_rss_mb={"raw": raw.peak.rss_mb, "bilateral": bil.peak.rss_mb},
        full_cache_peak_pss_mb={"raw": raw.peak.pss_mb, "bilateral": bil.peak.pss_mb},
        full_cache_mb=raw.result["cache_mb"],
    )
    cpu = raw.result["cpu_seconds"]["raw"] + bil.result["cpu_seconds"]["bilateral"]
    s["full_cache_cpu_seconds"] = {
        "raw": raw.result["cpu_seconds"]["raw"],
        "bilateral": bil.result["cpu_seconds"]["bilateral"],
    }
    b.row(
        "cache raw, s (clips/s; CPU s)",
        f"{raw_s:.1f} ({_n(n / raw_s)}; {raw.result['cpu_seconds']['raw']:.0f})",
        "",
        "",
        f"{_mb(raw)} (PSS {_n(raw.peak.pss_mb)})",
        "",
    )
    b.row(
        "cache bilateral from raw, s (CPU s)",
        f"{bil_s:.1f} ({bil.result['cpu_seconds']['bilateral']:.0f})",
        "",
        "",
        f"{_mb(bil)} (PSS {_n(bil.peak.pss_mb)})",
        "",
    )
    b.row(
        "both variants, s (clips/s; CPU s)", f"{both:.1f} ({_n(n / both)}; {cpu:.0f})", "", "", f"peak {_n(peak)}", ""
    )
    if what_if:
        for key, (label, m) in what_if_builds(b, ("inprocess",)).items():
            sec = m.result["seconds"]
            s[f"full_cache_seconds_{key}"] = {"raw": sec["raw"], "bilateral_after_raw": sec["bilateral"]}
            s[f"full_cache_peak_rss_mb_{key}"] = m.peak.rss_mb
            cpu_s = m.result["cpu_seconds"]
            s[f"full_cache_cpu_seconds_{key}"] = cpu_s
            b.row(
                f"  what-if {label}: raw / bilateral, s (CPU s)",
                f"{sec['raw']:.1f} / {sec['bilateral']:.1f} ({cpu_s['raw'] + cpu_s['bilateral']:.0f})",
                "",
                "",
                f"{_mb(m)} (PSS {_n(m.peak.pss_mb)})",
                "",
            )


# --------------------------------------------------------------------------- targets, table, JSON


def _targets(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float | None, limit: float, at_least: bool = False) -> None:
        if value is None:
            return
        met = value >= limit if at_least else value < limit
        out[name] = {"value": value, "target": f"{'>=' if at_least else '<'} {limit:g}", "met": bool(met)}

    if "full_cache_seconds" in s:
        check("full_cache_seconds", s["full_cache_seconds"]["both"], TARGETS["full_cache_seconds"])
        check("full_cache_peak_rss_mb", max(s["full_cache_peak_rss_mb"].values()), TARGETS["full_cache_peak_rss_mb"])
    check(
        "train_throughput_ratio_lenet5",
        s.get("train_throughput_ratio_lenet5"),
        TARGETS["train_throughput_ratio_lenet5"],
        True,
    )
    check("cached_start_s", s.get("cached_start_s"), TARGETS["cached_start_s"])
    check("concurrency_memory_ratio", s.get("concurrency_memory_ratio"), TARGETS["concurrency_memory_ratio"])
    return out


def format_table(rows: list[tuple[str, ...]]) -> str:
    head = ("measurement", "ours", "per-item baseline", "ratio", "peak RSS MB ours", "peak RSS MB baseline")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r: tuple[str, ...]) -> str:
        cells = (str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        return "  ".join(cells)

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def _machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


SECTIONS: dict[str, Callable[[Bench], None]] = {
    "features": bench_features,
    "training": bench_training,
    "start": bench_start,
    "ray": bench_ray,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller samples of every measurement (FSDD: < 3 min)")
    ap.add_argument("--data", type=Path, help=f"corpus folder (default: {FSDD})")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--full", type=Path, metavar="DIR", help="only the feature cache, both variants, of corpus DIR")
    ap.add_argument("--what-if", action="store_true", help="with --full: also build in one thread")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (caches, logs, searches)")
    args = ap.parse_args(argv)

    data = (args.full or args.data or FSDD).expanduser().resolve()
    if not data.is_dir():
        ap.error(f"corpus folder {data} not found; pass --data DIR (FSDD lives at {FSDD})")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    work = Path(tempfile.mkdtemp(prefix="tune-digits-bench-"))
    b = Bench(data, args.quick, work)
    started, load_before = time.perf_counter(), os.getloadavg()
    b.say(f"corpus {data} ({_count_clips(data):,} clips); scratch {work}")
    try:
        if args.full:
            bench_full(b, args.what_if)
        else:
            for name in sections:
                SECTIONS[name](b)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        print(f"logs kept in {work / 'logs'}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    s = b.summary
    ours = [m for m in b.measured if m.side == "ours"]
    s["peak_rss_mb"] = max((m.peak.rss_mb for m in ours), default=0.0)
    s["peak_rss_mb_by_measurement"] = {m.label: m.peak.rss_mb for m in b.measured}
    result = {
        "mode": "full" if args.full else ("quick" if args.quick else "standard"),
        "data": str(data),
        "clips": _count_clips(data),
        "seconds": round(elapsed, 1),
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
        "machine": _machine(),
        **s,
        "targets": _targets(s),
        "measurements": [m.to_json() for m in b.measured],
    }
    print(format_table(b.rows))
    print()
    for name, t in result["targets"].items():
        print(f"target {name}: {t['value']} (want {t['target']}): {'met' if t['met'] else 'MISSED'}")
    la = result["load_average"]
    print(f"{elapsed:.0f} s; load average {la['before'][0]} before, {la['after'][0]} after, on {os.cpu_count()} CPUs")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    if args.keep:
        print(f"scratch kept in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
