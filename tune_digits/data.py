"""The feature cache: a (corpus, feature config) is computed once and memory-mapped after.

Layout of one cache entry, ``<cache>/<key>/``:
    features.npy  (N, 1, F, T) float16 log-mel in dB (bilateral-filtered for that variant)
    index.json    files (relative paths, row order), labels, speakers, skipped files,
                  the settings that made it, the byte size and the blake2b of all of features.npy
                  (checked each time the entry is opened; a mismatch rebuilds it)

The raw entry is built from the audio in parallel; the bilateral entry is derived
from the raw one, so decoding happens once for both variants. Entries are
written under a temporary name and renamed, so a crash leaves no half entry.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tune_digits.config import AudioConfig, BilateralConfig, FeatureConfig
from tune_digits.corpus import Catalog
from tune_digits.errors import DataError

CACHE_VERSION = 2
# Recordings per work item: small chunks stay in the CPU caches and bound the peak memory; larger ones
# were slower and bigger (docs/accuracy.md, "Measurements behind code defaults").
CHUNK = 64


def cache_root() -> Path:
    env = os.environ.get("TUNE_DIGITS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tune-digits"


@dataclass
class FeatureSet:
    """Features of one corpus; ``x`` is a read-only memory map of all rows."""

    x: np.ndarray  # (N, 1, F, T) float16
    files: list[str]  # relative path of each row
    labels: np.ndarray  # (N,) int64
    speakers: list[str]
    skipped: list[str]  # files that could not be read (their rows hold zeros)
    key: str
    path: Path

    def rows(self, files: tuple[str, ...] | list[str]) -> np.ndarray:
        """Row numbers of ``files``, silently leaving out skipped ones."""
        where = {f: i for i, f in enumerate(self.files)}
        skipped = set(self.skipped)
        return np.array([where[f] for f in files if f not in skipped], dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]


def to_device(fs: FeatureSet, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``fs`` in sorted order on ``device``: x (N, 1, F, T) float16 and labels y (N,) int64."""
    order = np.sort(rows)
    x = torch.from_numpy(np.ascontiguousarray(fs.x[order]))  # (N, 1, F, T) float16
    y = torch.from_numpy(fs.labels[order])
    return x.to(device), y.to(device)


def _file_list(catalog: Catalog) -> list[tuple[str, int, int]]:
    out = []
    for rec in catalog.recordings:
        st = rec.path.stat()
        out.append((catalog.rel(rec), st.st_size, st.st_mtime_ns))
    return out


def cache_key(catalog: Catalog, audio: AudioConfig, feat: FeatureConfig, bil: BilateralConfig) -> str:
    """Hash of the file list (names, sizes, times) and every setting that changes the features."""
    mel = {k: v for k, v in asdict(feat).items() if k not in ("variant", "normalize")}
    spec = {"version": CACHE_VERSION, "files": _file_list(catalog), "audio": asdict(audio), "mel": mel}
    if feat.variant == "bilateral":
        spec["bilateral"] = asdict(bil)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def _digest(path: Path) -> str:
    """blake2b of every byte of ``path``: any damage, wherever it is, changes it."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=32)).hexdigest()


def _open_entry(entry: Path) -> FeatureSet | None:
    """The entry when it is complete and intact; None (after a warning) when damaged."""
    index_path, feat_path = entry / "index.json", entry / "features.npy"
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        ok = feat_path.stat().st_size == index["bytes"] and _digest(feat_path) == index["blake2b"]
        x = np.load(feat_path, mmap_mode="r") if ok else None
        fs = None
        if x is not None:
            labels = np.asarray(index["labels"], dtype=np.int64)
            fs = FeatureSet(x, index["files"], labels, index["speakers"], index["skipped"], entry.name, entry)
            ok = len(fs.files) == len(labels) == len(fs.speakers) == x.shape[0]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        ok, fs = False, None
        warnings.warn(f"feature cache {entry} unreadable ({exc})", stacklevel=2)
    if not ok or fs is None:
        warnings.warn(f"feature cache {entry} is damaged; rebuilding it", stacklevel=2)
        shutil.rmtree(entry, ignore_errors=True)
        return None
    return fs


def _load_chunk(paths: list[str], audio: AudioConfig, feat: FeatureConfig, bil: BilateralConfig, strict: bool):
    """Decode and featurise one chunk (in a worker thread). Returns (features, bad)."""
    from tune_digits.audio import load_audio_batch
    from tune_digits.features import features_from_waves

    waves, errors = load_audio_batch(paths, audio.sample_rate, audio.num_samples, audio.trim)
    if errors and strict:
        raise DataError(f"unreadable recording {errors[0][1]} (data.strict is on; drop --strict to skip it)")
    bad = [(i, str(exc)) for i, exc in errors]
    return features_from_waves(waves, audio.sample_rate, feat, bil)[:, None], bad  # (N, 1, F, T)


def _bilateral_chunk(raw_path: str, start: int, stop: int, bil: BilateralConfig) -> np.ndarray:
    from tune_digits.features import bilateral

    x = np.load(raw_path, mmap_mode="r")[start:stop]
    return bilateral(x[:, 0].astype(np.float32), bil)[:, None].astype(np.float16)


def _run_chunks(fn, jobs: list[tuple], workers: int) -> Iterator[tuple[int, object]]:
    """Yield (job number, result) as jobs finish: in a thread pool, or in this thread when one worker.

    Threads, not processes: decoding (libsndfile through cffi), the torch ops on whole chunks and
    ``cv2.bilateralFilter`` release the GIL, and threads share the imported libraries instead of
    starting interpreters (faster than both one thread and spawned processes: docs/accuracy.md). Each
    thread runs torch single-threaded; torch's thread count is restored afterwards.
    """
    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            yield i, fn(*job)
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="features")
    try:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        for fut in cf.as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure, the queued chunks do not run
        torch.set_num_threads(threads)


def _progress(label: str, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=not enabled, transient=True)


def build_features(
    catalog: Catalog,
    audio: AudioConfig,
    feat: FeatureConfig,
    bil: BilateralConfig,
    *,
    strict: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Return the cached features of ``catalog``, computing them first when needed."""
    key = cache_key(catalog, audio, feat, bil)
    entry = cache_root() / key
    found = _open_entry(entry)
    if found is not None:
        _check_skipped(found, strict, warn=True)
        return found
    n = len(catalog.recordings)
    workers = workers or min(os.cpu_count() or 1, 8)
    if feat.variant == "bilateral":
        raw = build_features(catalog, audio, _raw(feat), bil, strict=strict, workers=workers, progress=progress)
        raw_path = str(raw.path / "features.npy")
        jobs = [(raw_path, i, i + CHUNK, bil) for i in range(0, n, CHUNK)]
        return _write_entry(
            entry,
            raw.files,
            raw.labels,
            raw.speakers,
            raw.skipped,
            raw.shape,
            _bilateral_chunk,
            jobs,
            workers,
            progress,
            "bilateral",
        )
    files = [catalog.rel(r) for r in catalog.recordings]
    paths = [str(r.path) for r in catalog.recordings]
    jobs = [(paths[i : i + CHUNK], audio, feat, bil, strict) for i in range(0, n, CHUNK)]
    from tune_digits.features import spectrogram_shape

    labels = np.array([r.digit for r in catalog.recordings], dtype=np.int64)
    speakers = [r.speaker for r in catalog.recordings]
    return _write_entry(
        entry,
        files,
        labels,
        speakers,
        None,
        spectrogram_shape(audio, feat),
        _load_chunk,
        jobs,
        workers,
        progress,
        "log-mel",
    )


def _check_skipped(fs: FeatureSet, strict: bool, warn: bool) -> None:
    """Unreadable recordings of a cache entry: an error when strict or when none is left, else a warning."""
    if not fs.skipped:
        return
    if len(fs.skipped) == len(fs.files):
        raise DataError(f"none of the {len(fs.files)} recordings under the data folder could be read")
    if strict:
        raise DataError(
            f"{len(fs.skipped)} recordings cannot be read (first: {fs.skipped[0]}; data.strict is on); "
            "fix or remove them, or drop --strict to skip them"
        )
    if warn:
        warnings.warn(
            f"skipped {len(fs.skipped)} unreadable recordings (first: {fs.skipped[0]}); their rows are left out",
            stacklevel=3,
        )


def _raw(feat: FeatureConfig) -> FeatureConfig:
    from dataclasses import replace

    return replace(feat, variant="raw")


def _write_entry(entry, files, labels, speakers, skipped, shape, fn, jobs, workers, progress, label) -> FeatureSet:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        out = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float16, shape=(len(files), *shape))
        bad: list[str] = list(skipped or [])
        with _progress(f"{label} features", progress) as bar:
            task = bar.add_task(label, total=len(files))
            for i, result in _run_chunks(fn, jobs, workers):
                x, errs = result if isinstance(result, tuple) else (result, [])
                _check_finite(x, files[i * CHUNK : i * CHUNK + len(x)])
                out[i * CHUNK : i * CHUNK + len(x)] = x
                bad.extend(files[i * CHUNK + j] for j, _ in errs)
                for _, msg in errs:
                    warnings.warn(f"skipped unreadable recording {msg}", stacklevel=2)
                bar.advance(task, len(x))
        out.flush()
        del out
        index = {"files": files, "labels": labels.tolist(), "speakers": speakers, "skipped": sorted(bad)}
        index.update(bytes=(tmp / "features.npy").stat().st_size, blake2b=_digest(tmp / "features.npy"))
        (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
        _publish(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fs = _open_entry(entry)
    if fs is None:
        raise DataError(f"feature cache {entry} could not be written; check free disk space")
    _check_skipped(fs, False, warn=False)  # each unreadable file was warned about above
    return fs


def _check_finite(x: np.ndarray, files: list[str]) -> None:
    """A DataError naming the first recording whose features hold NaN or infinite values."""
    finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if not finite.all():
        first = files[int(np.argmin(finite))]
        raise DataError(f"{first}: its features are NaN or infinite; re-export the recording or remove it")


def _publish(tmp: Path, entry: Path) -> None:
    """Rename the finished ``tmp`` to ``entry``.

    Another process (a parallel trial) may have published the same entry meanwhile: an intact
    one is kept and ``tmp`` dropped; a damaged one is removed (by ``_open_entry``) and replaced.
    """
    for _ in range(3):
        try:
            os.replace(tmp, entry)
            return
        except OSError:
            if not entry.exists():
                raise
        if _open_entry(entry) is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            return
    raise DataError(f"feature cache {entry} keeps being replaced by another process; try again")


def corpus_stats(x: np.ndarray, rows: np.ndarray, chunk: int = 4096) -> tuple[float, float]:
    """Mean and std of the given rows, read in chunks (for ``features.normalize=corpus``)."""
    total, sq, count = 0.0, 0.0, 0
    for i in range(0, len(rows), chunk):
        part = np.asarray(x[np.sort(rows[i : i + chunk])], dtype=np.float64)
        total += part.sum()
        sq += np.square(part).sum()
        count += part.size
    mean = total / max(count, 1)
    return float(mean), float(np.sqrt(max(sq / max(count, 1) - mean**2, 1e-12)))
