"""Compare word finders: tune_digits.vad, torchaudio.functional.vad, a plain energy threshold.

FSDD clips are placed at a random offset in 3 s of real noise (the evaluation part of the noise
folder) at several SNRs; a finder succeeds when the 1 s window centred on what it found holds the
whole word. Also prints what each finder finds in a folder of own-voice recordings.

    python scripts/vad_check.py --fsdd ../shared/data/fsdd/recordings --noise ../shared/data/noise \
        --voices ../shared/data/voices/recordings
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio

from tune_digits import vad
from tune_digits.audio import read_audio, resample
from tune_digits.noise import load_noise, mix_at_snr

SR = 8000


def torchaudio_vad(wave: np.ndarray, sr: int) -> tuple[float, float] | None:
    x = torch.from_numpy(wave)[None]
    front = torchaudio.functional.vad(x, sr)
    if front.shape[-1] == 0:
        return None
    both = torchaudio.functional.vad(front.flip(-1), sr).flip(-1)
    start = (x.shape[-1] - front.shape[-1]) / sr
    return start, start + both.shape[-1] / sr


def plain_energy(wave: np.ndarray, sr: int, below_peak_db: float = 20.0) -> tuple[float, float] | None:
    hop = sr // 100
    frames = wave[: len(wave) // hop * hop].reshape(-1, hop)
    level = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    on = np.flatnonzero(level > level.max() - below_peak_db)
    return (on[0] * hop / sr, (on[-1] + 1) * hop / sr) if len(on) else None


def ours(wave: np.ndarray, sr: int) -> tuple[float, float] | None:
    word = vad.locate(wave, sr)
    return (word.start_s, word.stop_s) if word else None


FINDERS = {"tune_digits.vad": ours, "torchaudio vad": torchaudio_vad, "energy > peak-20dB": plain_energy}


def covered(found: tuple[float, float] | None, truth: tuple[float, float], total: float) -> bool:
    if found is None:
        return False
    centre = min(max(0.5 * (found[0] + found[1]), 0.5), total - 0.5)  # the window stays inside the clip
    return centre - 0.5 <= truth[0] + 0.02 and truth[1] - 0.02 <= centre + 0.5


def fsdd_check(fsdd: Path, noise: Path, count: int, snrs: list[float]) -> None:
    rng = np.random.default_rng(0)
    files = sorted(fsdd.glob("*.wav"))
    picks = [files[i] for i in rng.choice(len(files), count, replace=False)]
    bank = load_noise(noise, SR, "eval")
    gen = torch.Generator().manual_seed(0)
    print(f"{'SNR dB':>6} " + " ".join(f"{name:>20}" for name in FINDERS) + "   (share of words inside the crop)")
    for snr in snrs:
        hits = dict.fromkeys(FINDERS, 0)
        seconds = dict.fromkeys(FINDERS, 0.0)
        for path in picks:
            wave, sr = read_audio(path)
            wave = resample(wave, sr, SR)[: 3 * SR - 1]
            offset = int(rng.integers(0, 3 * SR - len(wave)))
            clip = np.zeros(3 * SR, dtype=np.float32)
            clip[offset : offset + len(wave)] = wave
            noisy = mix_at_snr(torch.from_numpy(clip)[None], bank.segments(1, 3 * SR, gen), torch.tensor([snr]))
            noisy = noisy[0].numpy() if snr < 99 else clip
            truth = (offset / SR, (offset + len(wave)) / SR)
            for name, fn in FINDERS.items():
                t0 = time.perf_counter()
                found = fn(noisy, SR)
                seconds[name] += time.perf_counter() - t0
                hits[name] += covered(found, truth, 3.0)
        label = "clean" if snr >= 99 else f"{snr:g}"
        print(f"{label:>6} " + " ".join(f"{hits[n] / count:>20.3f}" for n in FINDERS))
    print("ms per 3 s clip: " + ", ".join(f"{n} {1000 * seconds[n] / count / len(snrs):.2f}" for n in FINDERS))


def voices_check(folder: Path) -> None:
    print(f"{'file':<22} {'s':>5} " + " ".join(f"{name:>20}" for name in FINDERS))
    for path in sorted(folder.glob("*.wav")):
        wave, sr = read_audio(path)
        cells = []
        for fn in FINDERS.values():
            found = fn(wave, sr)
            cells.append("none" if found is None else f"{found[0]:.2f}-{found[1]:.2f}")
        print(f"{path.name:<22} {len(wave) / sr:>5.2f} " + " ".join(f"{c:>20}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, required=True)
    parser.add_argument("--noise", type=Path, required=True)
    parser.add_argument("--voices", type=Path)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    fsdd_check(args.fsdd, args.noise, args.count, [100.0, 20.0, 10.0, 5.0, 0.0])
    if args.voices:
        voices_check(args.voices)


if __name__ == "__main__":
    main()
