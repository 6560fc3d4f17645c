"""Regenerate the bundled demo corpus of spoken digits with espeak-ng.

Every recording is one digit word ("zero" .. "nine") spoken by one espeak-ng voice
variant (one voice = one speaker), with the speed and pitch of each repetition drawn
from a seeded generator, so two runs with the same espeak-ng version give the same
files. Clips are trimmed of leading and trailing silence, resampled to 8 kHz, kept
at most one second long and written as mono 16-bit PCM named
``{digit}_{speaker}_{index}.wav``, like the Free Spoken Digit Dataset.

Usage (needs the ``espeak-ng`` program, e.g. ``apt-get install espeak-ng``)::

    python scripts/make_demo_corpus.py                  # writes tune_digits/demo_data/recordings
    python scripts/make_demo_corpus.py --out /tmp/demo --reps 3 --seed 1
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# speaker name (letters and digits only) -> espeak-ng voice with variant
VOICES: dict[str, str] = {
    "enm1": "en+m1",
    "enm3": "en+m3",
    "enf2": "en+f2",
    "enf4": "en+f4",
    "usm2": "en-us+m2",
    "usf3": "en-us+f3",
    "scm5": "en-gb-scotland+m5",
    "rpf1": "en-gb-x-rp+f1",
}
RATE = 8000
MAX_SAMPLES = RATE  # one second
MAX_BYTES = 3 * 1024 * 1024
SPEED_RANGE = (140, 205)  # espeak-ng -s, words per minute
PITCH_RANGE = (25, 75)  # espeak-ng -p, 0..99
GAIN_RANGE = (0.45, 0.9)  # peak amplitude after normalisation
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tune_digits" / "demo_data" / "recordings"


def synthesize(voice: str, word: str, speed: int, pitch: int, workdir: Path) -> tuple[np.ndarray, int]:
    """Speak ``word`` with espeak-ng and return the float samples and their rate."""
    wav = workdir / "espeak.wav"
    command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), word]
    subprocess.run(command, check=True, capture_output=True)
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Resample to :data:`RATE` with torchaudio when installed, otherwise with sox."""
    if rate == RATE:
        return audio
    try:
        import torch
        import torchaudio.functional as taf
    except ImportError:
        return _resample_with_sox(audio, rate)
    return taf.resample(torch.from_numpy(np.ascontiguousarray(audio)), rate, RATE).numpy()


def _resample_with_sox(audio: np.ndarray, rate: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, audio, rate, subtype="FLOAT")
        subprocess.run(["sox", "-D", str(src), "-r", str(RATE), str(dst)], check=True, capture_output=True)
        out, _ = sf.read(dst, dtype="float32")
    return out


def trim_silence(audio: np.ndarray, threshold_db: float = -35.0, pad_ms: int = 30) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``threshold_db`` below the loudest frame."""
    frame = RATE // 100  # 10 ms
    count = len(audio) // frame
    if count == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: count * frame].reshape(count, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms >= max(rms.max() * 10 ** (threshold_db / 20), 1e-4))
    if loud.size == 0:
        return audio
    pad = RATE * pad_ms // 1000
    start = max(int(loud[0]) * frame - pad, 0)
    stop = min((int(loud[-1]) + 1) * frame + pad, len(audio))
    return audio[start:stop]


def fade_crop(audio: np.ndarray, length: int, fade_ms: int = 20) -> np.ndarray:
    """Crop to ``length`` samples with a short linear fade-out so the cut does not click."""
    if len(audio) <= length:
        return audio
    out = audio[:length].copy()
    fade = RATE * fade_ms // 1000
    out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=out.dtype)
    return out


def make_clip(voice: str, word: str, rng: random.Random, workdir: Path) -> np.ndarray:
    """One repetition: seeded speed and pitch, trimmed, at most one second at 8 kHz, int16."""
    speed = rng.randint(*SPEED_RANGE)
    pitch = rng.randint(*PITCH_RANGE)
    gain = rng.uniform(*GAIN_RANGE)
    for _ in range(4):  # speak faster until the word fits in one second
        audio, rate = synthesize(voice, word, speed, pitch, workdir)
        clip = trim_silence(resample(audio, rate))
        if len(clip) <= MAX_SAMPLES:
            break
        speed = int(speed * 1.25)
    clip = fade_crop(clip, MAX_SAMPLES)
    peak = float(np.abs(clip).max()) or 1.0
    return np.round(clip / peak * gain * 32767).astype(np.int16)


def clear_old(out: Path) -> None:
    """Remove the WAV files of a previous run (and nothing else)."""
    for old in out.glob("*_*_*.wav"):
        old.unlink()


def generate(out: Path, reps: int, seed: int) -> list[Path]:
    """Write ``len(VOICES) * 10 * reps`` recordings into ``out`` and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    clear_old(out)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        for speaker, voice in VOICES.items():
            for digit, word in enumerate(WORDS):
                for index in range(reps):
                    rng = random.Random(f"{seed}:{speaker}:{digit}:{index}")
                    path = out / f"{digit}_{speaker}_{index}.wav"
                    sf.write(path, make_clip(voice, word, rng, Path(tmp)), RATE, subtype="PCM_16")
                    written.append(path)
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the bundled one)")
    parser.add_argument("--reps", type=int, default=4, help="repetitions per speaker and digit (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the speed/pitch/gain draws (default: 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found: install it (e.g. apt-get install espeak-ng) and run again", file=sys.stderr)
        return 2
    files = generate(args.out, args.reps, args.seed)
    total = sum(path.stat().st_size for path in files)
    print(f"wrote {len(files)} recordings, {len(VOICES)} speakers, {total / 2**20:.2f} MiB to {args.out}")
    if total > MAX_BYTES:
        print(f"the corpus is over {MAX_BYTES / 2**20:.0f} MiB: lower --reps and run again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
