"""The benchmark's baseline computes what the feature cache holds; the corpus generator and the tools work.

No timings are asserted: speed is measured by ``python -m benchmarks.run``, not tested.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks import gpu_check, run
from benchmarks.baseline import PerItemSpectrogramDataset, make_loader, make_optimizer, train_one_epoch
from benchmarks.memory import TreeSampler, tree_pids
from tune_digits.config import from_flat
from tune_digits.corpus import parse_name, scan
from tune_digits.data import build_features
from tune_digits.features import normalize_batch
from tune_digits.models import create_model

REPO = Path(__file__).resolve().parents[1]
META_KEYS = {"accent", "age", "gender", "native speaker", "origin", "recordingdate", "recordingroom"}


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _few_recordings(shared_data: Path, dest: Path) -> Path:
    """Twelve FSDD clips (8 kHz, every speaker) and the six AudioMNIST clips (48 kHz: the resampling path)."""
    fsdd = sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[::211][:12]
    am = sorted((shared_data / "audiomnist_sample" / "data").rglob("*.wav"))
    assert fsdd and am
    for path in [*fsdd, *am]:
        shutil.copy2(path, dest / path.name)
    return dest


@pytest.mark.real_data
@pytest.mark.parametrize("variant", ["raw", "bilateral"])
def test_per_item_baseline_computes_the_cached_spectrograms(shared_data, tmp_cache, tmp_path, variant) -> None:
    root = _few_recordings(shared_data, tmp_path)
    catalog = scan(root)
    cfg = from_flat({"data.root": str(root), "features.variant": variant})
    fs = build_features(catalog, cfg.audio, cfg.features, cfg.bilateral, progress=False)
    files = [r.path for r in catalog.recordings]
    ds = PerItemSpectrogramDataset(files, [r.digit for r in catalog.recordings], cfg, bilateral=variant == "bilateral")
    rows = fs.rows([catalog.rel(r) for r in catalog.recordings])
    rates = {sf.info(f).samplerate for f in files}
    assert rates == {8000, 48000}
    # float16 cache: dB values up to ~64 are stored to 1/32 dB; the bilateral entry also filters float16 input.
    tol = 0.05 if variant == "raw" else 0.1
    for i, row in enumerate(rows):
        ours = fs.x[row, 0].astype(np.float32)
        theirs = ds.spectrogram(i).numpy()
        assert theirs.shape == ours.shape == (cfg.features.n_mels, 1 + cfg.audio.num_samples // cfg.features.hop_length)
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=tol, err_msg=files[i].name)
        item, label = ds[i]
        normalised = normalize_batch(torch.from_numpy(np.array(fs.x[row : row + 1])), cfg.features.normalize)[0]
        np.testing.assert_allclose(item.numpy(), normalised.numpy(), rtol=0, atol=0.01)
        assert label == int(fs.labels[row])


@pytest.mark.real_data
def test_baseline_loader_trains_the_same_model(shared_data, tmp_path) -> None:
    root = _few_recordings(shared_data, tmp_path)
    catalog = scan(root)
    cfg = from_flat({"data.root": str(root), "train.batch_size": 8})
    ds = PerItemSpectrogramDataset([r.path for r in catalog.recordings], [r.digit for r in catalog.recordings], cfg)
    xb, yb = next(iter(make_loader(ds, 8, num_workers=0)))
    assert xb.shape == (8, 1, 40, 63) and xb.dtype == torch.float32 and yb.shape == (8,)
    model = create_model("lenet5", (1, 40, 63))
    opt = make_optimizer(cfg, model)
    loss, samples, seconds = train_one_epoch(
        model, make_loader(ds, 8, 0), opt, torch.nn.CrossEntropyLoss(), torch.device("cpu"), max_batches=2
    )
    assert samples == 16 and np.isfinite(loss) and seconds > 0


@pytest.mark.real_data
def test_fullsize_generator_writes_an_audiomnist_tree(shared_data, tmp_path) -> None:
    gen = _load_script("make_fullsize_corpus")
    source = shared_data / "fsdd" / "recordings"
    out = tmp_path / "am"
    script = [sys.executable, str(REPO / "scripts" / "make_fullsize_corpus.py"), "--source", str(source)]
    args = ["--out", str(out), "--speakers", "3", "--per-speaker", "20", "--processes", "2"]
    done = subprocess.run([*script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote 60 clips" in done.stdout
    catalog = scan(out)
    assert len(catalog.recordings) == 60
    assert catalog.speakers() == ["01", "02", "03"]
    assert catalog.counts_by_digit() == {d: 6 for d in range(10)}
    for rec in catalog.recordings:
        assert catalog.rel(rec) == f"data/{rec.speaker}/{rec.digit}_{rec.speaker}_{rec.index}.wav"
        assert rec.index in (0, 1)
    info = sf.info(catalog.recordings[0].path)
    assert (info.samplerate, info.channels, info.subtype) == (48000, 1, "PCM_16")
    assert {sf.info(r.path).samplerate for r in catalog.recordings} == {48000}
    assert set(catalog.metadata) == {"01", "02", "03"}
    real = json.loads((shared_data / "audiomnist_sample" / "data" / "audioMNIST_meta.txt").read_text())
    assert set(next(iter(real.values()))) == META_KEYS
    assert all(set(v) == META_KEYS for v in catalog.metadata.values())
    # the same files from one process as from two: every draw is seeded per clip
    again = tmp_path / "again"
    gen.build(source, again, speakers=3, per_speaker=20, seed=0, processes=1)
    for rec in catalog.recordings:
        assert (again / catalog.rel(rec)).read_bytes() == rec.path.read_bytes()
    refused = subprocess.run([*script, *args], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--force" in refused.stderr  # never overwrites silently


def test_generator_plan_and_names() -> None:
    gen = _load_script("make_fullsize_corpus")
    plan = gen.clip_plan(60, 500)
    assert len(plan) == 30000 and len(set(plan)) == 30000
    assert {idx for _, _, idx in plan} == set(range(50))
    assert gen.parse_name("7_jackson_32.wav") == parse_name("7_jackson_32.wav") == (7, "jackson", 32)
    assert gen.parse_name("audioMNIST_meta.txt") is None and gen.parse_name("12_a_1.wav") is None
    assert gen.speaker_params(0, 5) == gen.speaker_params(0, 5) != gen.speaker_params(0, 6)


def test_tree_sampler_sees_a_child_process_memory() -> None:
    code = "import time; b = bytearray(80 * 2**20); time.sleep(1.0)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    with TreeSampler(proc.pid, interval=0.05) as sampler:
        time.sleep(0.1)
        assert proc.pid in tree_pids(proc.pid)
        proc.wait()
    assert sampler.peak.rss >= 80 * 2**20
    assert sampler.peak.samples >= 2 and sampler.peak.processes >= 1


def test_targets_and_table() -> None:
    summary = {
        "train_throughput_ratio_lenet5": 12.5,
        "cached_start_s": 2.4,
        "concurrency_memory_ratio": 1.2,
        "full_cache_seconds": {"both": 50.0},
        "full_cache_peak_rss_mb": {"raw": 1500.0, "bilateral": 900.0},
    }
    targets = run._targets(summary)
    assert {k: v["met"] for k, v in targets.items()} == {
        "full_cache_seconds": True,
        "full_cache_peak_rss_mb": True,
        "train_throughput_ratio_lenet5": True,
        "cached_start_s": False,
        "concurrency_memory_ratio": True,
    }
    table = run.format_table([("a", "1", "2", "0.5x", "10", "20")])
    assert table.splitlines()[0].startswith("measurement") and "0.5x" in table


def test_run_and_tasks_reject_bad_arguments(capsys) -> None:
    from benchmarks import tasks

    with pytest.raises(SystemExit):
        run.main(["--sections", "nonsense"])
    assert tasks.main(["no-such-task", "{}"]) == 2
    assert "usage" in capsys.readouterr().err


def test_gpu_check_estimates() -> None:
    lenet = gpu_check.Measure("lenet5", "eager", epoch_s=0.4, val_s=0.1, aug_epoch_s=0.8)
    other = gpu_check.Measure("efficientnet_b0", "eager", epoch_s=4.0, val_s=0.5, aug_epoch_s=8.0)
    est = gpu_check.final_eight_minutes(lenet, other, epochs=30)
    assert est["lenet5"] == pytest.approx(30 * (2 * 0.5 + 2 * 0.9) / 60)
    assert est["total"] == pytest.approx(est["lenet5"] + est["efficientnet_b0"])

    class Rows:
        rows = {"train": np.arange(6), "val": np.arange(6, 8), "test": np.arange(8, 10)}

    sizes = gpu_check._resize_rows(Rows, 100)
    assert sizes == {"train": 60, "val": 20, "test": 20}
    assert len(Rows.rows["train"]) == 60 and set(Rows.rows["train"]) == set(range(6))


def test_gpu_check_imports_without_ray() -> None:
    """The GPU machine has no Ray: the check and tune_digits.train must not import it."""
    code = "import sys; sys.modules['ray'] = None; import benchmarks.gpu_check, tune_digits.train; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
