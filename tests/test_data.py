"""The feature cache: shapes, reuse, keys, the bilateral entry, damage, unreadable files, clean failure."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import tune_digits.data as data_mod
from tune_digits.config import Config, load_config
from tune_digits.corpus import scan
from tune_digits.data import build_features, cache_key, cache_root, corpus_stats
from tune_digits.errors import DataError
from tune_digits.features import bilateral

RATE = 8000


def make_corpus(root: Path, speakers: tuple[str, ...] = ("a", "b", "c", "d"), digits: range = range(5)) -> Path:
    """One 0.6 s tone per (speaker, digit); the pitch depends on the digit (and a little on the speaker)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.6 * RATE)) / RATE
    for s_i, speaker in enumerate(speakers):
        for digit in digits:
            wave = 0.4 * np.sin(2 * np.pi * (300 + 250 * digit + 15 * s_i) * t) * np.hanning(len(t))
            wave += 0.01 * rng.standard_normal(len(t))
            path = root / speaker / f"{digit}_{speaker}_0.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave.astype(np.float32), RATE, subtype="PCM_16")
    return root


def build(root: Path, cfg: Config | None = None, **kwargs):
    cfg = cfg or Config()
    return build_features(scan(root), cfg.audio, cfg.features, cfg.bilateral, progress=False, **kwargs)


def cache_dirs(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir())


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


def test_cache_root_follows_the_environment(tmp_cache: Path) -> None:
    assert cache_root() == tmp_cache


def test_build_shape_labels_and_order(corpus: Path, tmp_cache: Path) -> None:
    cat = scan(corpus)
    fs = build(corpus)
    assert fs.x.shape == (20, 1, 40, 63) and fs.x.dtype == np.float16
    assert fs.shape == (1, 40, 63)
    assert fs.files == [cat.rel(r) for r in cat.recordings]
    assert fs.labels.tolist() == [r.digit for r in cat.recordings]
    assert fs.speakers == [r.speaker for r in cat.recordings]
    assert fs.skipped == []
    assert np.isfinite(fs.x).all() and float(np.ptp(fs.x[0])) > 10  # dB levels, not a constant
    assert fs.path.parent == tmp_cache and (fs.path / "index.json").is_file()
    # the tone of digit d peaks in a higher mel band than that of digit d - 1
    peaks = [int(np.asarray(fs.x[i, 0], dtype=np.float32).mean(axis=1).argmax()) for i in range(5)]
    assert peaks == sorted(peaks) and len(set(peaks)) == 5


def test_second_build_memory_maps_without_recomputing(
    corpus: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(corpus)
    before = np.array(first.x)

    def boom(*_args, **_kwargs):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(data_mod, "_load_chunk", boom)
    second = build(corpus)
    assert isinstance(second.x, np.memmap) and not second.x.flags.writeable
    assert second.key == first.key and second.path == first.path
    np.testing.assert_array_equal(np.asarray(second.x), before)
    assert cache_dirs(tmp_cache) == [first.key]


def test_key_changes_with_feature_settings_and_files(corpus: Path, tmp_cache: Path) -> None:
    cat = scan(corpus)
    cfg = Config()

    def key(c: Config, catalog=cat) -> str:
        return cache_key(catalog, c.audio, c.features, c.bilateral)

    base = key(cfg)
    assert key(cfg) == base  # stable
    for item in ("features.n_mels=32", "features.hop_length=64", "features.f_max=3000", "audio.duration=0.5"):
        assert key(load_config(overrides=[item])) != base, item
    assert key(load_config(overrides=["features.normalize=none"])) == base  # applied per batch, not cached
    assert key(load_config(overrides=["train.lr=0.1", "augment.enabled=true"])) == base
    bil = load_config(overrides=["features.variant=bilateral"])
    assert key(bil) != base
    assert key(load_config(overrides=["features.variant=bilateral", "bilateral.d=3"])) != key(bil)
    assert key(load_config(overrides=["bilateral.d=3"])) == base  # the raw entry ignores bilateral settings

    make_corpus(corpus, speakers=("e",), digits=range(1))
    assert key(cfg, scan(corpus)) != base  # a file was added


def test_key_changes_when_a_file_changes(corpus: Path, tmp_cache: Path) -> None:
    cfg = Config()
    before = cache_key(scan(corpus), cfg.audio, cfg.features, cfg.bilateral)
    path = corpus / "a" / "0_a_0.wav"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache_key(scan(corpus), cfg.audio, cfg.features, cfg.bilateral) != before


def test_bilateral_entry_derives_from_raw(corpus: Path, tmp_cache: Path) -> None:
    cfg = load_config(overrides=["features.variant=bilateral"])
    bil = build(corpus, cfg)
    raw_key = cache_key(scan(corpus), cfg.audio, dataclasses.replace(cfg.features, variant="raw"), cfg.bilateral)
    assert sorted(cache_dirs(tmp_cache)) == sorted([raw_key, bil.key])
    raw = build(corpus)  # served from the cache
    assert raw.key == raw_key
    assert bil.x.shape == raw.x.shape and bil.files == raw.files
    assert not np.array_equal(np.asarray(bil.x), np.asarray(raw.x))
    expected = bilateral(np.asarray(raw.x[:, 0], dtype=np.float32), cfg.bilateral).astype(np.float16)
    np.testing.assert_allclose(np.asarray(bil.x[:, 0], dtype=np.float32), expected.astype(np.float32), atol=0.1)
    # smoothing lowers the local variation: mean absolute difference between neighbouring frames
    assert (
        np.abs(np.diff(np.asarray(bil.x, np.float32), axis=-1)).mean()
        < np.abs(np.diff(np.asarray(raw.x, np.float32), axis=-1)).mean()
    )


def test_truncated_features_are_detected_and_rebuilt(corpus: Path, tmp_cache: Path) -> None:
    fs = build(corpus)
    before = np.array(fs.x)
    path = fs.path / "features.npy"
    del fs
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size - 1000)
    with pytest.warns(UserWarning, match="damaged; rebuilding"):
        again = build(corpus)
    assert (again.path / "features.npy").stat().st_size == size
    np.testing.assert_array_equal(np.asarray(again.x), before)


def test_corrupted_index_is_rebuilt(corpus: Path, tmp_cache: Path) -> None:
    fs = build(corpus)
    (fs.path / "index.json").write_text("{")
    with pytest.warns(UserWarning) as record:
        again = build(corpus)
    assert any("damaged; rebuilding" in str(w.message) for w in record)
    assert again.x.shape == (20, 1, 40, 63)


def write_bad_files(corpus: Path) -> list[str]:
    (corpus / "a" / "7_a_0.wav").write_text("this is not audio")
    (corpus / "a" / "8_a_0.wav").write_bytes(b"")
    sf.write(corpus / "a" / "9_a_0.wav", np.zeros(0, dtype=np.float32), RATE)  # a valid header, no samples
    return ["a/7_a_0.wav", "a/8_a_0.wav", "a/9_a_0.wav"]


def test_unreadable_recordings_are_counted_skips(corpus: Path, tmp_cache: Path) -> None:
    bad = write_bad_files(corpus)
    with pytest.warns(UserWarning, match="skipped unreadable recording") as record:
        fs = build(corpus)
    assert sorted(fs.skipped) == bad
    assert sum("skipped unreadable recording" in str(w.message) for w in record) == 3
    assert fs.x.shape[0] == 23
    rows = fs.rows(fs.files)
    assert len(rows) == 20 and not {fs.files[i] for i in rows} & set(bad)
    with pytest.warns(UserWarning, match="skipped 3 unreadable recordings"):
        again = build(corpus)  # the cached entry reminds of its skips
    assert sorted(again.skipped) == bad


def test_unreadable_recording_is_an_error_when_strict(corpus: Path, tmp_cache: Path) -> None:
    write_bad_files(corpus)
    with pytest.raises(DataError, match="7_a_0.wav") as info:
        build(corpus, strict=True)
    assert cache_dirs(tmp_cache) == []
    # the error crosses process boundaries (a Ray trial's error travels to the driver): it must unpickle
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, DataError) and str(again) == str(info.value)


def test_strict_is_honoured_by_a_cached_entry(corpus: Path, tmp_cache: Path) -> None:
    write_bad_files(corpus)
    with pytest.warns(UserWarning):
        build(corpus)  # lenient: an entry with three skips
    with pytest.raises(DataError, match="3 recordings cannot be read.*strict"):
        build(corpus, strict=True)
    with pytest.raises(DataError, match="cannot be read"):
        build(corpus, load_config(overrides=["features.variant=bilateral"]), strict=True)


def test_no_readable_recording_is_an_error_every_time(tmp_path: Path, tmp_cache: Path) -> None:
    corpus = tmp_path / "bad"
    corpus.mkdir()
    for name in ("0_a_0.wav", "1_a_0.wav"):
        (corpus / name).write_text("junk")
    with pytest.warns(UserWarning, match="skipped unreadable"), pytest.raises(DataError, match="none of the 2"):
        build(corpus)
    with pytest.raises(DataError, match="none of the 2 recordings"):
        build(corpus)  # the cached entry fails the same way


def test_failure_in_a_chunk_leaves_no_temporary_folder(
    corpus: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("worker died")

    monkeypatch.setattr(data_mod, "_load_chunk", failing)
    with pytest.raises(RuntimeError, match="worker died"):
        build(corpus)
    assert calls and cache_dirs(tmp_cache) == []
    monkeypatch.undo()
    monkeypatch.setenv("TUNE_DIGITS_CACHE", str(tmp_cache))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_mod, "_bilateral_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(corpus, load_config(overrides=["features.variant=bilateral"]))
    assert len(cache_dirs(tmp_cache)) == 1  # the raw entry only: no half bilateral entry, no temp folder


@pytest.mark.slow
def test_worker_threads_match_one_thread(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    bad = write_bad_files(corpus)
    monkeypatch.setattr(data_mod, "CHUNK", 6)  # 23 files -> 4 jobs over 2 worker threads, finishing in any order
    threads = torch.get_num_threads()
    monkeypatch.setenv("TUNE_DIGITS_CACHE", str(tmp_path / "serial"))
    with pytest.warns(UserWarning):
        serial = build(corpus, workers=1)
    monkeypatch.setenv("TUNE_DIGITS_CACHE", str(tmp_path / "parallel"))
    with pytest.warns(UserWarning):
        parallel = build(corpus, workers=2)
    assert torch.get_num_threads() == threads  # the pool's single-threaded torch is undone
    assert parallel.key == serial.key and parallel.files == serial.files
    assert sorted(parallel.skipped) == sorted(serial.skipped) == bad
    np.testing.assert_array_equal(np.asarray(parallel.x), np.asarray(serial.x))


def test_publish_keeps_an_entry_another_process_wrote(corpus: Path, tmp_cache: Path) -> None:
    fs = build(corpus)
    before = np.array(fs.x)
    tmp = tmp_cache / f".{fs.key}-other"
    tmp.mkdir()
    (tmp / "features.npy").write_bytes(b"late copy")
    data_mod._publish(tmp, fs.path)  # the entry already exists, intact: ours is dropped
    assert not tmp.exists()
    np.testing.assert_array_equal(np.asarray(build(corpus).x), before)


def test_corpus_stats_match_numpy(corpus: Path, tmp_cache: Path) -> None:
    fs = build(corpus)
    rows = np.array([3, 1, 7, 12])
    mean, std = corpus_stats(fs.x, rows, chunk=3)
    values = np.asarray(fs.x[np.sort(rows)], dtype=np.float64)
    assert mean == pytest.approx(values.mean(), rel=1e-6) and std == pytest.approx(values.std(), rel=1e-6)
