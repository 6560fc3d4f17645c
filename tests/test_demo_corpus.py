"""The bundled demo corpus: present, small, complete and in the documented format."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
import soundfile as sf

from tune_digits.demo import demo_root

NAME = re.compile(r"(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<index>[0-9]+)\.wav")
MAX_BYTES = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def wavs() -> list[Path]:
    files = sorted(demo_root().glob("*.wav"))
    assert files, f"no recordings in {demo_root()}"
    return files


def test_demo_root_is_the_bundled_folder() -> None:
    root = demo_root()
    assert root.is_dir()
    assert root.name == "recordings" and root.parent.name == "demo_data"
    assert (root.parent / "README.md").is_file()


def test_demo_corpus_is_at_most_3_mb(wavs: list[Path]) -> None:
    allocated = sum(-(-path.stat().st_size // 4096) * 4096 for path in wavs)  # as du counts 4 KiB blocks
    assert allocated <= MAX_BYTES


def test_every_name_parses(wavs: list[Path]) -> None:
    bad = [path.name for path in wavs if NAME.fullmatch(path.name) is None]
    assert bad == []
    assert [path for path in demo_root().iterdir() if path.suffix != ".wav"] == []


def test_every_speaker_says_every_digit(wavs: list[Path]) -> None:
    digits: dict[str, set[int]] = defaultdict(set)
    indices: dict[tuple[str, int], set[int]] = defaultdict(set)
    for path in wavs:
        match = NAME.fullmatch(path.name)
        assert match is not None
        speaker, digit = match["speaker"], int(match["digit"])
        digits[speaker].add(digit)
        indices[speaker, digit].add(int(match["index"]))
    assert len(digits) >= 8
    assert all(found == set(range(10)) for found in digits.values()), dict(digits)
    assert all(found == set(range(len(found))) for found in indices.values())  # indices 0..N-1


def test_recordings_are_mono_8khz_pcm16_and_short(wavs: list[Path]) -> None:
    for path in wavs:
        info = sf.info(path)
        assert (info.channels, info.samplerate, info.subtype) == (1, 8000, "PCM_16"), path.name
        assert 0.1 <= info.duration <= 1.0, path.name
