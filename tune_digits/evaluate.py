"""Robustness table: macro-F1 of saved runs per condition, over the test speakers of each run's split.

Every condition is a folder of WAV files written from the test recordings and read back through
the same front end ``predict`` uses (decoding, ``audio.trim``, resampling, features)::

    clean         the recordings as they are
    snr20..snr0   the word centred in (at least) 1 s of real noise at 20 / 10 / 5 / 0 dB SNR
    offset-3s     the word at a random offset in 3 s of real noise at 20 dB SNR
    gain-30       30 dB quieter, 16-bit
    telephone     band-limited to 300-3400 Hz
    48k-stereo    resampled to 48 kHz, two channels (the right one 1 dB quieter), 16-bit
    noise-only    3 s of real noise, no word: only the share with "no digit heard" counts
    DIR           each extra folder of ``{digit}_{speaker}_{index}.wav`` recordings, as it is

The noise is the evaluation part of the noise folder (:func:`tune_digits.noise.load_noise`, ``part="eval"``:
the last 30 % of every file), never the part training mixes in. SNR is speech power over the
recording's samples (FSDD and AudioMNIST clips are trimmed words) against the noise's mean power.
Several runs (the folds of a cross-validation, each with its own split) give one column each and
their mean.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from tune_digits import metrics
from tune_digits.audio import read_audio, resample
from tune_digits.cv import fold_runs
from tune_digits.errors import UserError
from tune_digits.inference import LoadedModel, load_model, predict_files, write_csv
from tune_digits.noise import NoiseBank, band_limit, load_noise, mix_at_snr

SNRS = (20.0, 10.0, 5.0, 0.0)
NOISE_ONLY_CLIPS = 100
NOISE_ONLY_RMS_DB = -30.0


@dataclass
class Score:
    """One condition of one run."""

    condition: str
    clips: int
    f1: float | None  # macro-F1 over the recordings (None for noise-only)
    accuracy: float | None
    no_digit: float  # share of recordings with "no digit heard"
    low_confidence: float  # share of heard recordings under the confidence threshold
    commonest: str = ""  # the digit predicted most often and its share, e.g. "9 (0.83)": does noise become a class?


@dataclass
class Table:
    runs: list[str]
    scores: dict[str, list[Score]] = field(default_factory=dict)  # condition -> one Score per run

    def mean(self, condition: str, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.scores[condition]]
        return None if any(v is None for v in values) else float(np.mean(values))


def _test_recordings(run: Path, data_root: Path | None) -> tuple[list[Path], list[int]]:
    """The test part of ``run``'s split (its own split.json, or one up to two folders above): paths and labels."""
    from tune_digits.corpus import load_split, scan
    from tune_digits.run_folder import read_run

    folder = run if run.is_dir() else run.parent
    found = read_run(folder, root=folder.resolve().parent.parent)
    if data_root is None and found.meta.get("data_root"):
        data_root = Path(str(found.meta["data_root"]))
    if data_root is None or not data_root.is_dir():
        raise UserError(f"data folder of {run} not found; pass --data with the corpus the run was trained on")
    if found.split_file is None:
        raise UserError(f"no split.json for {run}; --model takes a run folder (train's --out)")
    catalog = scan(data_root)
    split = load_split(catalog, found.split_file)
    by_rel = {catalog.rel(r): r for r in catalog.recordings}
    recs = [by_rel[f] for f in split.test]
    return [r.path for r in recs], [r.digit for r in recs]


def _canvas(wave: np.ndarray, length: int, offset: int) -> np.ndarray:
    out = np.zeros(max(length, len(wave)), dtype=np.float32)
    out[offset : offset + len(wave)] = wave
    return out


def _noisy(wave: np.ndarray, bank: NoiseBank, snr: float, total: int, offset: int, gen) -> np.ndarray:
    """``wave`` placed at ``offset`` in ``total`` samples of noise at ``snr`` dB over the word."""
    canvas = torch.from_numpy(_canvas(wave, total, offset))[None]
    noise = bank.segments(1, canvas.shape[1], gen)
    return mix_at_snr(canvas, noise, torch.tensor([snr]))[0].numpy()  # speech power: the word's samples


def conditions(sr: int, bank: NoiseBank, seed: int) -> dict[str, Callable[[np.ndarray], tuple[np.ndarray, int]]]:
    """Condition name -> a function of a clean wave at ``sr`` giving ``(wave, its rate)``."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def centred(snr: float) -> Callable[[np.ndarray], tuple[np.ndarray, int]]:
        def make(w: np.ndarray) -> tuple[np.ndarray, int]:
            total = max(sr, len(w))
            return _noisy(w, bank, snr, total, (total - len(w)) // 2, gen), sr

        return make

    def offset(w: np.ndarray) -> tuple[np.ndarray, int]:
        total = max(3 * sr, len(w))
        return _noisy(w, bank, 20.0, total, int(rng.integers(0, total - len(w) + 1)), gen), sr

    def telephone(w: np.ndarray) -> tuple[np.ndarray, int]:
        return band_limit(torch.from_numpy(w)[None], sr, 300.0, 3400.0)[0].numpy(), sr

    def stereo(w: np.ndarray) -> tuple[np.ndarray, int]:
        up = resample(w, sr, 48000)
        return np.stack([up, up * 10 ** (-1 / 20)], axis=1), 48000

    made = {f"snr{snr:g}": centred(snr) for snr in SNRS}
    made.update({"offset-3s": offset, "gain-30": lambda w: (w * 10 ** (-30 / 20), sr), "telephone": telephone})
    made["48k-stereo"] = stereo
    return made


def _write(folder: Path, name: str, wave: np.ndarray, sr: int) -> Path:
    path = folder / name
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    sf.write(path, wave / peak * 0.99 if peak > 0.99 else wave, sr, subtype="PCM_16")
    return path


def _score(condition: str, loaded: LoadedModel, paths: list[Path], labels: list[int], min_conf: float) -> Score:
    errors: list[str] = []
    preds = predict_files(loaded, paths, errors=errors)
    if errors:
        raise UserError(f"{condition}: {len(errors)} recordings unreadable (first: {errors[0]})")
    no_digit = float(np.mean([not p.heard for p in preds])) if preds else 0.0
    heard = [p for p in preds if p.heard]
    low = float(np.mean([p.probability < min_conf for p in heard])) if heard else 0.0
    counts = np.bincount([p.digit for p in preds], minlength=10)
    commonest = f"{int(counts.argmax())} ({counts.max() / max(len(preds), 1):.2f})"
    if not labels:
        return Score(condition, len(preds), None, None, no_digit, low, commonest)
    summary = metrics.summarize(np.array(labels), np.array([p.digit for p in preds]))
    return Score(condition, len(preds), summary["f1"], summary["accuracy"], no_digit, low, commonest)


def _labelled(folder: Path) -> tuple[list[Path], list[int]]:
    from tune_digits.corpus import scan

    catalog = scan(folder)
    if not catalog.recordings:
        raise UserError(f"{folder}: no {{digit}}_{{speaker}}_{{index}}.wav recordings")
    return [r.path for r in catalog.recordings], [r.digit for r in catalog.recordings]


def evaluate_one(
    loaded: LoadedModel,
    run: Path,
    dirs: list[Path],
    bank: NoiseBank,
    data_root: Path | None,
    seed: int,
    min_conf: float,
) -> list[Score]:
    """Every condition for one run, in table order."""
    paths, labels = _test_recordings(run, data_root)
    sr = loaded.cfg.audio.sample_rate
    clean = [resample(*read_audio(p), sr) for p in paths]
    scores = [_score("clean", loaded, paths, labels, min_conf)]
    with tempfile.TemporaryDirectory(prefix="tune-digits-evaluate-") as tmp:
        for name, make in conditions(sr, bank, seed).items():
            folder = Path(tmp) / name
            folder.mkdir()
            made = [_write(folder, f"{i:05d}.wav", *make(w)) for i, w in enumerate(clean)]
            scores.append(_score(name, loaded, made, labels, min_conf))
        folder = Path(tmp) / "noise-only"
        folder.mkdir()
        gen = torch.Generator().manual_seed(seed + 1)
        level = 10 ** (NOISE_ONLY_RMS_DB / 20)
        noise = [level * bank.segments(1, 3 * sr, gen)[0].numpy() for _ in range(NOISE_ONLY_CLIPS)]
        made = [_write(folder, f"{i:05d}.wav", w, sr) for i, w in enumerate(noise)]
        scores.append(_score("noise-only", loaded, made, [], min_conf))
    for folder in dirs:
        scores.append(_score(folder.name, loaded, *_labelled(folder), min_conf))
    return scores


def evaluate_runs(
    runs: list[Path],
    dirs: list[Path],
    noise_dir: Path,
    *,
    data_root: Path | None = None,
    seed: int = 0,
    min_confidence: float = 0.5,
    trim: bool | None = None,
) -> Table:
    """The robustness table of ``runs`` (each scored on its own split's test speakers; a ``--cv``
    folder stands for all its folds).

    ``trim`` overrides the runs' ``audio.trim`` (None: as each run was trained), to measure what it does.
    """
    for folder in dirs:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder of recordings")
    runs = [fold for run in runs for fold in fold_runs(Path(run))]
    table = Table([str(r) for r in runs])
    for run in runs:
        loaded = load_model(run)
        if trim is not None:
            loaded.cfg = replace(loaded.cfg, audio=replace(loaded.cfg.audio, trim=trim))
        bank = load_noise(noise_dir, loaded.cfg.audio.sample_rate, "eval")
        for score in evaluate_one(loaded, Path(run), dirs, bank, data_root, seed, min_confidence):
            table.scores.setdefault(score.condition, []).append(score)
    return table


def noise_of(run: Path) -> Path | None:
    """The ``augment.noise_dir`` that ``run`` (or a --cv folder's first fold) was trained with, if any."""
    folder = load_model(fold_runs(Path(run))[0]).cfg.augment.noise_dir
    return Path(folder).expanduser() if folder else None


def robustness(
    runs: list[Path], dirs: list[Path], noise_dir: Path | None, out_dir: Path | None = None, **options: Any
) -> tuple[Table, Path]:
    """``tune-digits evaluate``: check the options, score ``runs`` (:func:`evaluate_runs`, ``options`` are its
    keywords) and write ``robustness.csv`` and ``robustness.png`` into ``out_dir`` (default runs/evaluate/TIME).

    ``noise_dir`` None: the noise the first run trained with. Returns the table and the folder written.
    """
    noise_dir = noise_dir or noise_of(runs[0])
    if noise_dir is None:
        raise UserError("no noise folder: pass --noise DIR (e.g. ../shared/data/noise)")
    min_confidence = options.get("min_confidence", 0.5)
    if not 0.0 <= min_confidence <= 1.0:
        raise UserError(f"--min-confidence {min_confidence}: must be in [0, 1]")
    target = out_dir or Path("runs/evaluate") / time.strftime("%Y%m%d-%H%M%S")
    table = evaluate_runs(runs, dirs, noise_dir, **options)
    try:
        target.mkdir(parents=True, exist_ok=True)
        write_table(table, target / "robustness.csv", target / "robustness.png")
    except OSError as exc:
        raise UserError(f"--out {target} cannot be written ({exc.strerror or exc})") from None
    return table, target


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_table(table: Table, csv_path: Path, png_path: Path) -> None:
    """``condition, clips, macro_f1 (mean), accuracy, no_digit_heard, low_confidence, commonest_digit, f1 per run``
    and a bar plot."""
    header = ["condition", "clips", "macro_f1", "accuracy", "no_digit_heard", "low_confidence", "commonest_digit"]
    header += [f"f1 {r}" for r in table.runs]
    rows = []
    for cond, scores in table.scores.items():
        means = [table.mean(cond, a) for a in ("f1", "accuracy", "no_digit", "low_confidence")]
        common = " ".join(s.commonest for s in scores)
        rows.append([cond, sum(s.clips for s in scores), *map(_cell, means), common, *(_cell(s.f1) for s in scores)])
    write_csv(csv_path, header, rows)
    _plot(table, png_path)


def _plot(table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c for c in table.scores if table.mean(c, "f1") is not None]
    values = [table.mean(c, "f1") or 0.0 for c in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names)), 3.5))
    ax.bar(names, values, color="#4477aa")
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro-F1")
    ax.set_title(f"robustness of {len(table.runs)} run(s)")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
