"""Every byte of a cache entry is checked when it is opened; non-finite features never enter it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import tune_digits.features as features_mod
from tune_digits.config import load_config
from tune_digits.corpus import scan
from tune_digits.data import FeatureSet, build_features
from tune_digits.errors import DataError


def make_corpus(root: Path, speakers: str = "abcdefgh") -> Path:
    """One 0.6 s noisy tone per (speaker, digit) at 8 kHz: 80 rows."""
    rng = np.random.default_rng(0)
    t = np.arange(4800) / 8000
    for s_i, speaker in enumerate(speakers):
        for digit in range(10):
            wave = 0.4 * np.sin(2 * np.pi * (300 + 250 * digit + 15 * s_i) * t) + 0.01 * rng.standard_normal(len(t))
            path = root / speaker / f"{digit}_{speaker}_0.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave.astype(np.float32), 8000, subtype="PCM_16")
    return root


def build(root: Path, **kwargs) -> FeatureSet:
    """Large rows (64 x 2001, 256 KB): the 80-row entry of 20 MB has gaps that 64 sampled 64 KiB blocks miss."""
    cfg = load_config(None, ["audio.duration=4", "features.n_mels=64", "features.hop_length=16"])
    return build_features(scan(root), cfg.audio, cfg.features, cfg.bilateral, progress=False, **kwargs)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


def _damage(corpus: Path, write) -> None:
    fs = build(corpus)
    before = np.array(fs.x)
    path = fs.path / "features.npy"
    del fs
    with path.open("r+b") as fh:
        write(fh, path.stat().st_size)
    with pytest.warns(UserWarning, match="damaged; rebuilding"):
        again = build(corpus)
    np.testing.assert_array_equal(np.asarray(again.x), before)


def _gap(size: int, i: int) -> int:
    """An offset between the 64 KiB blocks a sampled check reads at ``size * i // 64``."""
    return size * i // 64 + (1 << 16) + 2000


def test_20_kb_of_inf_in_the_middle_is_found(corpus: Path, tmp_cache: Path) -> None:
    def write(fh, size: int) -> None:
        fh.seek(_gap(size, 32))
        fh.write(np.full(10240, np.inf, dtype=np.float16).tobytes())

    _damage(corpus, write)


def test_finite_garbage_in_five_rows_is_found(corpus: Path, tmp_cache: Path) -> None:
    def write(fh, size: int) -> None:
        for i in (5, 20, 33, 47, 60):  # 320 KB apart: five different 256 KB rows
            fh.seek(_gap(size, i))
            fh.write(np.full(50, 12.5, dtype=np.float16).tobytes())

    _damage(corpus, write)


def test_non_finite_features_are_an_error_naming_the_file(
    corpus: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = features_mod.features_from_waves

    def one_nan_row(waves, *args):
        out = real(waves, *args)
        out[min(5, len(out) - 1), 0, 0] = np.nan
        return out

    monkeypatch.setattr(features_mod, "features_from_waves", one_nan_row)
    with pytest.raises(DataError, match=r"a/5_a_0\.wav: its features are NaN or infinite") as info:
        build(corpus, workers=1)
    assert "\n" not in str(info.value)
    assert not list(tmp_cache.iterdir())  # nothing half-written
