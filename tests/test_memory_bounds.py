"""Memory is bounded whatever the clip lengths: a 10-minute file costs no more than a short one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tune_digits.audio import fit_length, load_audio, load_audio_batch, read_audio, resample

REPO = Path(__file__).resolve().parents[1]
RATE = 48000

_BUILD = """
import json, resource, sys
from tune_digits.config import Config
from tune_digits.corpus import scan
from tune_digits.data import build_features
cfg = Config()
peaks = []
for root in sys.argv[1:]:
    build_features(scan(root), cfg.audio, cfg.features, cfg.bilateral, workers=2, progress=False)
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(peaks))
"""


def _corpus(root: Path, long_minutes: float) -> Path:
    clip = (0.2 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)
    for i in range(40):
        path = root / f"{i % 10}_s{i // 10}_{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, clip, RATE, subtype="PCM_16")
    if long_minutes:
        sf.write(root / "0_long_0.wav", np.tile(clip, int(long_minutes * 60)), RATE, subtype="PCM_16")
    return root


def test_a_ten_minute_clip_among_short_ones_keeps_the_peak(tmp_path: Path) -> None:
    short, long = _corpus(tmp_path / "short", 0), _corpus(tmp_path / "long", 10)
    env = {**os.environ, "TUNE_DIGITS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(short), str(long)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert after - before < 150, f"peak RSS grew from {before:.0f} MB to {after:.0f} MB"


def test_predicting_a_long_clip_decodes_only_its_window(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(10 * 60 * RATE, dtype=np.int16), RATE, subtype="PCM_16")
    tracemalloc.start()
    try:
        wave = load_audio(path, 8000, 8000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert wave.shape == (8000,)
    assert peak < 10 * 2**20, f"{peak / 2**20:.0f} MiB traced for one window of 8000 samples"


@pytest.mark.parametrize("sr", [48000, 44100, 22050, 8000])
@pytest.mark.parametrize("seconds", [1.01, 1.37, 7.1])
def test_decoding_the_window_equals_resampling_the_whole_clip(tmp_path: Path, sr: int, seconds: float) -> None:
    data = (0.3 * np.random.default_rng(sr).standard_normal(round(sr * seconds))).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, data, sr, subtype="FLOAT")
    whole = fit_length(resample(read_audio(path)[0], sr, 8000), 8000)
    np.testing.assert_allclose(load_audio(path, 8000, 8000), whole, atol=1e-6)
    np.testing.assert_allclose(load_audio_batch([path, path], 8000, 8000)[0][1], whole, atol=1e-6)
