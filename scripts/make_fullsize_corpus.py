"""Build an AudioMNIST-shaped corpus (60 speakers x 500 clips at 48 kHz) from any spoken-digit recordings.

Full-size behaviour (a 30,000-clip feature cache, epochs over 18,000 training clips) can then be
measured on a machine that does not hold the real AudioMNIST, e.g. from the five-speaker FSDD::

    python scripts/make_fullsize_corpus.py --source ../shared/data/fsdd/recordings --out /tmp/audiomnist-full
    python scripts/make_fullsize_corpus.py --out /tmp/am-small --speakers 60 --per-speaker 50

The tree has the real corpus's layout::

    OUT/data/NN/{digit}_{NN}_{index}.wav   NN = 01..60, index 0..49; mono 16-bit PCM at 48 kHz
    OUT/data/audioMNIST_meta.txt           JSON, speaker -> accent, age, gender, native speaker,
                                           origin, recordingdate, recordingroom (the real file's keys)

Every clip is a source recording of the same digit (any ``{digit}_{speaker}_{index}.wav`` tree,
any sample rate), changed a little: a time stretch that keeps the pitch (phase vocoder; speed
x0.90-1.10), a pitch shift by resampling (+-1.5 semitones per speaker, +-0.3 per clip), a gain
(peak 0.3-0.95) and a faint noise floor. Speaker NN draws from source speaker NN mod (number of
sources), so each source voice becomes several nearby voices. Every random draw is seeded with
(seed, speaker, digit, index): the same command writes the same files, whatever --processes.
Every clip has the length of the real recording of the same name (from the AudioMNIST checksum
list shipped in tune_digits/corpora: samples = (bytes - 44) / 2), so the corpus is the real size;
clips beyond the real names draw a real length. Speech shorter than its length is placed at a
random offset in the noise floor; longer speech is sped up to fit (then centre-cropped beyond x1.5).
The work is spread over --processes worker processes, with a progress bar.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

OUT_RATE = 48000
N_FFT, HOP = 512, 128  # phase-vocoder STFT at the source rate
PITCH_SPEAKER, PITCH_CLIP = 1.5, 0.3  # semitones
SPEED_SPEAKER, SPEED_CLIP = 0.06, 0.04  # relative
GAIN = (0.3, 0.95)  # peak amplitude
NOISE = 3e-4  # noise floor (about -70 dB)
META_KEYS = ("accent", "age", "gender", "native speaker", "origin", "recordingdate", "recordingroom")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
WAV_HEADER = 44  # bytes before the samples of every real recording
MAX_SQUEEZE = 1.5  # at most this much faster to fit a clip's length; crop the rest


def real_lengths() -> dict[str, int]:
    """``NN/d_NN_i.wav`` -> samples of the real AudioMNIST recording (16-bit mono at 48 kHz)."""
    try:
        from tune_digits.verify import load_manifest
    except ImportError:
        sys.path.insert(0, str(REPO))
        from tune_digits.verify import load_manifest
    return {name: (entry.size - WAV_HEADER) // 2 for name, entry in load_manifest().items()}


def clip_length(lengths: dict[str, int], pool: list[int], seed: int, speaker: int, digit: int, index: int) -> int:
    """Samples of clip (speaker, digit, index): the real one's, or a real length drawn for names beyond the corpus."""
    real = lengths.get(f"{speaker:02d}/{digit}_{speaker:02d}_{index}.wav")
    if real is not None:
        return real
    return int(pool[np.random.default_rng([seed, speaker, digit, index, 2]).integers(len(pool))])


def parse_name(name: str) -> tuple[int, str, int] | None:
    """``"7_jackson_32.wav"`` -> ``(7, "jackson", 32)``; None for other names (the corpus pattern)."""
    stem, dot, ext = name.rpartition(".")
    parts = stem.split("_")
    if not dot or ext.lower() != "wav" or len(parts) != 3:
        return None
    digit, speaker, index = parts
    if not (digit.isdigit() and index.isdigit() and speaker.isalnum()) or int(digit) > 9:
        return None
    return int(digit), speaker, int(index)


def find_sources(root: Path) -> dict[str, dict[int, list[Path]]]:
    """Source speaker -> digit -> recordings (sorted by index)."""
    found: dict[str, dict[int, list[tuple[int, Path]]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("*")):
        parsed = parse_name(path.name) if path.is_file() else None
        if parsed:
            digit, speaker, index = parsed
            found[speaker][digit].append((index, path))
    return {s: {d: [p for _, p in sorted(v)] for d, v in digits.items()} for s, digits in sorted(found.items())}


def speaker_params(seed: int, speaker: int) -> tuple[float, float]:
    """(pitch shift in semitones, speed factor) of output speaker ``speaker`` (1-based)."""
    rng = np.random.default_rng([seed, speaker])
    return float(rng.uniform(-PITCH_SPEAKER, PITCH_SPEAKER)), float(1.0 + rng.uniform(-SPEED_SPEAKER, SPEED_SPEAKER))


def clip_plan(speakers: int, per_speaker: int) -> list[tuple[int, int, int]]:
    """(speaker, digit, index) of every clip: clip j of a speaker is digit j % 10, repetition j // 10."""
    return [(s, j % 10, j // 10) for s in range(1, speakers + 1) for j in range(per_speaker)]


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return data.mean(axis=1, dtype=np.float32), int(rate)


def vary(
    wave: np.ndarray, rate: int, pitch_semitones: float, speed: float, gain: float, rng, length: int
) -> np.ndarray:
    """``wave`` at ``rate`` -> a 48 kHz clip of ``length`` samples, pitch and tempo moved as asked."""
    import torch
    import torchaudio.functional as taf

    x = torch.from_numpy(np.ascontiguousarray(wave))
    p = 2.0 ** (pitch_semitones / 12.0)
    target = int(round(OUT_RATE / p / 100.0)) * 100  # played at 48 kHz, the pitch rises by p
    stretch = speed / p  # resampling by p also speeds up by p; the phase vocoder makes up the rest
    natural = len(x) / stretch * target / rate
    if natural > length:
        stretch *= min(natural / length, MAX_SQUEEZE)
    if abs(stretch - 1.0) > 1e-3 and len(x) > N_FFT:
        window = torch.hann_window(N_FFT)
        spec = torch.stft(x, N_FFT, HOP, window=window, return_complex=True)
        advance = torch.linspace(0, math.pi * HOP, N_FFT // 2 + 1)[:, None]
        spec = taf.phase_vocoder(spec, stretch, advance)
        x = torch.istft(spec, N_FFT, HOP, window=window, length=int(round(len(x) / stretch)))
    y = taf.resample(x, rate, target).numpy()
    peak = float(np.abs(y).max()) or 1.0
    y = _fit(y * (gain / peak), length, rng)
    y = y + rng.normal(0.0, NOISE, size=y.shape).astype(np.float32)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def _fit(y: np.ndarray, length: int, rng) -> np.ndarray:
    """``y`` centre-cropped to ``length`` samples, or placed at a random offset in zeros of that length."""
    if len(y) >= length:
        start = (len(y) - length) // 2
        return y[start : start + length]
    out = np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, length - len(y) + 1))
    out[start : start + len(y)] = y
    return out


def _job(args: tuple) -> int:
    """Write the clips of one (speaker, digit); returns how many. Runs in a worker process."""
    import torch

    torch.set_num_threads(1)
    out_dir, speaker, digit, indices, pool, seed, lengths = args
    pitch_s, speed_s = speaker_params(seed, speaker)
    folder = Path(out_dir) / f"{speaker:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    loaded: dict[str, tuple[np.ndarray, int]] = {}
    for index, length in zip(indices, lengths, strict=True):
        rng = np.random.default_rng([seed, speaker, digit, index])
        source = pool[index % len(pool)]
        if source not in loaded:
            loaded[source] = _read_mono(Path(source))
        wave, rate = loaded[source]
        pitch = pitch_s + rng.uniform(-PITCH_CLIP, PITCH_CLIP)
        speed = speed_s * (1.0 + rng.uniform(-SPEED_CLIP, SPEED_CLIP))
        gain = rng.uniform(*GAIN)
        clip = vary(wave, rate, pitch, speed, gain, rng, length)
        sf.write(folder / f"{digit}_{speaker:02d}_{index}.wav", clip, OUT_RATE, subtype="PCM_16")
    return len(indices)


def metadata(seed: int, speakers: int, source_of: dict[int, str]) -> dict[str, dict[str, object]]:
    """audioMNIST_meta.txt content: the real file's keys for every speaker, with made-up values."""
    out: dict[str, dict[str, object]] = {}
    for s in range(1, speakers + 1):
        rng = np.random.default_rng([seed, s, 1])
        pitch, _ = speaker_params(seed, s)
        month, day, hour = int(rng.integers(1, 13)), int(rng.integers(1, 29)), int(rng.integers(9, 19))
        out[f"{s:02d}"] = {
            "accent": f"as source speaker {source_of[s]}",
            "age": int(rng.integers(20, 62)),
            "gender": "female" if rng.random() < 0.2 else "male",  # AudioMNIST: 12 of 60
            "native speaker": "no",
            "origin": f"synthetic: source speaker {source_of[s]}, pitch {pitch:+.2f} semitones",
            "recordingdate": f"17-{month:02d}-{day:02d}-{hour:02d}-00-00",
            "recordingroom": "synthetic",
        }
    return out


class _Bar:
    """A rich progress bar when rich is installed, otherwise a line every 10 %."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.done, self.label, self.next_pct = total, 0, label, 10
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        except ImportError:
            self.progress = None
        else:
            cols = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            self.progress = Progress(*cols, transient=True)

    def __enter__(self) -> _Bar:
        if self.progress is not None:
            self.progress.__enter__()
            self.task = self.progress.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress.advance(self.task, n)
        elif self.done * 100 >= self.next_pct * self.total:
            print(f"{self.label}: {self.done}/{self.total}", file=sys.stderr, flush=True)
            self.next_pct += 10

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)


def build(source: Path, out: Path, speakers: int, per_speaker: int, seed: int = 0, processes: int = 2) -> int:
    """Write the corpus under ``out``; returns the number of clips."""
    sources = find_sources(source)
    if not sources:
        raise SystemExit(f"no {{digit}}_{{speaker}}_{{index}}.wav recordings under {source}")
    names = list(sources)
    source_of = {s: names[(s - 1) % len(names)] for s in range(1, speakers + 1)}
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    lengths = real_lengths()
    length_pool = sorted(lengths.values())
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for s, digit, index in clip_plan(speakers, per_speaker):
        groups[(s, digit)].append(index)
    jobs = []
    for (s, digit), indices in groups.items():
        pool = sources[source_of[s]].get(digit) or [p for d in sources.values() for p in d.get(digit, [])]
        if not pool:
            raise SystemExit(f"no recording of digit {digit} under {source}")
        sizes = [clip_length(lengths, length_pool, seed, s, digit, i) for i in indices]
        jobs.append((str(data), s, digit, indices, [str(p) for p in pool], seed, sizes))
    total = sum(len(j[3]) for j in jobs)
    with _Bar(total, f"{speakers} speakers x {per_speaker} clips") as bar:
        if processes <= 1:
            for job in jobs:
                bar.advance(_job(job))
        else:
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                for n in pool.imap_unordered(_job, jobs):
                    bar.advance(n)
    meta = metadata(seed, speakers, source_of)
    (data / "audioMNIST_meta.txt").write_text(json.dumps(meta, indent=4), encoding="utf-8")
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help=f"source recordings (default {DEFAULT_SOURCE})")
    ap.add_argument("--out", type=Path, required=True, help="corpus folder to create (keep it outside the repository)")
    ap.add_argument("--speakers", type=int, default=60, help="speakers (default 60, as AudioMNIST)")
    ap.add_argument("--per-speaker", type=int, default=500, help="clips per speaker (default 500 = 10 digits x 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--force", action="store_true", help="replace OUT/data when it exists")
    args = ap.parse_args(argv)
    if not 1 <= args.speakers <= 99:
        ap.error("--speakers must be in [1, 99] (two-digit speaker folders)")
    if args.per_speaker < 1:
        ap.error("--per-speaker must be >= 1")
    if not args.source.is_dir():
        ap.error(f"--source {args.source} is not a folder")
    data = args.out / "data"
    if data.exists() and any(data.iterdir()):
        if not args.force:
            ap.error(f"{data} exists; pass --force to replace it")
        shutil.rmtree(data)
    start = time.perf_counter()
    n = build(args.source, args.out, args.speakers, args.per_speaker, args.seed, args.processes)
    size = sum(p.stat().st_size for p in data.rglob("*.wav"))
    print(f"wrote {n:,} clips ({size / 2**20:,.0f} MB) to {data} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
