"""The file catalog and speaker-aware splits.

Any folder tree of ``{digit}_{speaker}_{index}.wav`` is a corpus: AudioMNIST
(``data/NN/d_NN_i.wav`` with ``audioMNIST_meta.txt``) and the Free Spoken Digit
Dataset (``recordings/d_name_i.wav``) both follow it.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_digits.errors import DataError

# ASCII only: without re.ASCII, \d would also take other scripts' digits ("٣_a_0.wav" as digit 3).
NAME_RE = re.compile(r"^(?P<digit>\d+)_(?P<speaker>[A-Za-z0-9]+)_(?P<index>\d+)\.wav$", re.IGNORECASE | re.ASCII)

# Becker et al.'s five speaker groups; fold k validates on GROUPS[k] and tests on GROUPS[k + 1].
BECKER_GROUPS: tuple[tuple[int, ...], ...] = (
    (4, 11, 12, 15, 21, 27, 31, 41, 44, 47, 50, 59),
    (5, 13, 18, 22, 26, 32, 33, 42, 45, 51, 52, 60),
    (1, 6, 7, 16, 19, 23, 28, 34, 35, 46, 53, 56),
    (2, 8, 9, 17, 24, 29, 36, 37, 39, 48, 54, 57),
    (3, 10, 14, 20, 25, 30, 38, 40, 43, 49, 55, 58),
)


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int

    @property
    def id(self) -> str:
        return f"{self.digit}_{self.speaker}_{self.index}"


@dataclass
class Catalog:
    root: Path
    recordings: list[Recording]
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # names that do not match the pattern

    def rel(self, rec: Recording) -> str:
        return rec.path.relative_to(self.root).as_posix()

    def speakers(self) -> list[str]:
        return sorted({r.speaker for r in self.recordings}, key=_speaker_key)

    def counts_by_digit(self) -> dict[int, int]:
        return dict(sorted(Counter(r.digit for r in self.recordings).items()))

    def counts_by_speaker(self) -> dict[str, int]:
        counts = Counter(r.speaker for r in self.recordings)
        return {s: counts[s] for s in self.speakers()}


def _speaker_key(speaker: str) -> tuple[int, str]:
    return (int(speaker), "") if speaker.isdigit() else (1 << 30, speaker)


def parse_name(name: str) -> tuple[int, str, int] | None:
    """``"7_jackson_32.wav"`` -> ``(7, "jackson", 32)``; None when the name does not match or digit > 9."""
    match = NAME_RE.fullmatch(name)  # fullmatch: "$" alone would accept a trailing newline
    if match is None or int(match["digit"]) > 9:
        return None
    return int(match["digit"]), match["speaker"], int(match["index"])


def scan(root: str | Path) -> Catalog:
    """Catalog every ``{digit}_{speaker}_{index}.wav`` under ``root`` (recursively)."""
    root = Path(root).expanduser().resolve()  # absolute: Ray workers run in other folders
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; pass --data with a folder of {{digit}}_{{speaker}}_{{index}}.wav files"
        )
    recordings: list[Recording] = []
    ignored: list[str] = []
    seen: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() != ".wav" or not path.is_file():
            continue
        parsed = parse_name(path.name)
        if parsed is None:
            ignored.append(path.relative_to(root).as_posix())
            continue
        rec = Recording(path, *parsed)
        if rec.id in seen:
            raise DataError(f"duplicate recording id {rec.id}: {seen[rec.id]} and {path}; remove one of them")
        seen[rec.id] = path
        recordings.append(rec)
    if not recordings:
        other = f" ({len(ignored)} .wav files with other names, e.g. {ignored[0]})" if ignored else ""
        raise DataError(f"no {{digit}}_{{speaker}}_{{index}}.wav files under {root}{other}; check --data")
    if ignored:
        warnings.warn(
            f"{len(ignored)} .wav files under {root} do not match digit_speaker_index.wav and were ignored "
            f"(first: {ignored[0]}; the digit must be 0-9, the speaker letters and digits)",
            stacklevel=2,
        )
    return Catalog(root, recordings, read_metadata(root), ignored)


def read_metadata(root: Path) -> dict[str, dict[str, Any]]:
    """AudioMNIST's speaker metadata (``audioMNIST_meta.txt``, JSON) when the corpus has it."""
    for path in (root / "audioMNIST_meta.txt", root / "data" / "audioMNIST_meta.txt"):
        if path.is_file():
            try:
                return dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, UnicodeDecodeError) as exc:
                raise DataError(
                    f"{path}: not valid JSON ({exc}); restore the file from the AudioMNIST archive"
                ) from None
    return {}


@dataclass(frozen=True)
class Split:
    spec: str
    train: tuple[str, ...]  # recording paths relative to the corpus root
    val: tuple[str, ...]
    test: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "train": list(self.train), "val": list(self.val), "test": list(self.test)}

    def part_of(self) -> dict[str, str]:
        out = {p: "train" for p in self.train}
        out.update({p: "val" for p in self.val})
        out.update({p: "test" for p in self.test})
        return out


def make_split(
    catalog: Catalog,
    spec: str,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    val_clips: float = 0.0,
) -> Split:
    """Resolve a split spec into file lists. Speaker-disjoint unless the spec says otherwise.

    ``val_clips`` > 0 changes the speaker splits (becker, speakers, loso): their validation speakers
    train too, and ``val_clips`` of every training speaker's clips validate instead. The test
    speakers stay unheard; training sees one more voice (on FSDD's five, four instead of three).
    """
    if spec.endswith(".json"):
        return load_split(catalog, Path(spec))
    name, _, arg = spec.partition(":")
    recs = catalog.recordings
    if name == "becker":
        parts = _becker(catalog, arg)
    elif name == "speakers":
        parts = _by_speakers(catalog, val_fraction, test_fraction, seed)
    elif name == "loso":
        parts = _loso(catalog, arg, seed)
    elif name == "fsdd-official":
        parts = [("test" if r.index <= 4 else "val" if r.index <= 9 else "train") for r in recs]
    elif name == "random":
        warnings.warn(
            "split 'random' puts the same speakers in train and test: scores will be optimistic", stacklevel=2
        )
        parts = _random(len(recs), val_fraction, test_fraction, seed)
    else:
        raise DataError(
            f"unknown split {spec!r}; use becker:0..4, speakers, loso:SPEAKER, fsdd-official, random or a split.json"
        )
    if val_clips > 0 and name in ("becker", "speakers", "loso"):
        parts = _validate_on_clips(catalog, parts, val_clips, seed)
    split = Split(
        spec,
        tuple(catalog.rel(r) for r, p in zip(recs, parts, strict=True) if p == "train"),
        tuple(catalog.rel(r) for r, p in zip(recs, parts, strict=True) if p == "val"),
        tuple(catalog.rel(r) for r, p in zip(recs, parts, strict=True) if p == "test"),
    )
    for part in ("train", "val", "test"):
        if not getattr(split, part):
            raise DataError(f"split {spec!r} leaves no {part} recordings in {catalog.root}; choose another --split")
    return split


MIN_TRAIN_CLIPS = 5  # fewer training clips of a digit than this and a model scores F1 ~0 on it


def thin_digits(catalog: Catalog, split: Split, minimum: int = MIN_TRAIN_CLIPS) -> dict[int, int]:
    """The digits with fewer than ``minimum`` clips in the training split, with their counts (0: missing)."""
    train = set(split.train)
    counts = Counter(r.digit for r in catalog.recordings if catalog.rel(r) in train)
    return {d: counts[d] for d in range(10) if counts[d] < minimum}


def warn_thin_digits(catalog: Catalog, split: Split) -> None:
    """One warning line naming the digits the training split has (almost) no clips of."""
    thin = thin_digits(catalog, split)
    if thin:
        listed = ", ".join(f"{d} ({n} clip{'s' * (n != 1)})" for d, n in thin.items())
        warnings.warn(
            f"the training split of {catalog.root} has fewer than {MIN_TRAIN_CLIPS} clips of "
            f"digit{'s' * (len(thin) > 1)} {listed}: a model cannot learn {'them' if len(thin) > 1 else 'it'} "
            "(F1 near 0); add recordings or choose another --split",
            stacklevel=1,  # one place, one message: Python shows it once however often prepare() runs
        )


def _becker(catalog: Catalog, arg: str) -> list[str]:
    if arg not in {"0", "1", "2", "3", "4"}:
        raise DataError(f"split becker:{arg} is unknown; Becker et al. define folds becker:0 to becker:4")
    fold = int(arg)
    val, test = set(BECKER_GROUPS[fold]), set(BECKER_GROUPS[(fold + 1) % 5])
    if not all(s.isdigit() for s in catalog.speakers()):
        raise DataError("split becker:K needs AudioMNIST speaker numbers (01-60); use --split speakers for this corpus")
    return [
        "val" if int(r.speaker) in val else "test" if int(r.speaker) in test else "train" for r in catalog.recordings
    ]


def _by_speakers(catalog: Catalog, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    speakers = catalog.speakers()
    if len(speakers) < 3:
        raise DataError(
            f"split 'speakers' needs at least 3 speakers, {catalog.root} has {len(speakers)}; use --split random"
        )
    order = speakers[:]
    random.Random(seed).shuffle(order)
    n_test = max(1, round(test_fraction * len(order)))
    n_val = max(1, round(val_fraction * len(order)))
    if n_test + n_val >= len(order):
        n_test, n_val = 1, 1
    role = {s: "test" for s in order[:n_test]}
    role.update({s: "val" for s in order[n_test : n_test + n_val]})
    return [role.get(r.speaker, "train") for r in catalog.recordings]


def _loso(catalog: Catalog, speaker: str, seed: int) -> list[str]:
    """Leave one speaker out: ``speaker`` is the test set, one other (seeded) validates."""
    speakers = catalog.speakers()
    if speaker not in speakers:
        raise DataError(f"split loso:{speaker}: no such speaker; speakers are {', '.join(speakers)}")
    others = [s for s in speakers if s != speaker]
    if len(others) < 2:
        raise DataError(f"split loso:{speaker} needs at least 3 speakers in {catalog.root}")
    val = random.Random(seed).choice(others)
    return ["test" if r.speaker == speaker else "val" if r.speaker == val else "train" for r in catalog.recordings]


def _validate_on_clips(catalog: Catalog, parts: list[str], share: float, seed: int) -> list[str]:
    """Move the validation speakers into training, then ``share`` of each training speaker's clips
    (at least one, seeded) into validation."""
    parts = ["train" if p == "val" else p for p in parts]
    by_speaker: dict[str, list[int]] = {}
    for i, (rec, part) in enumerate(zip(catalog.recordings, parts, strict=True)):
        if part == "train":
            by_speaker.setdefault(rec.speaker, []).append(i)
    rng = random.Random(seed)
    for speaker in sorted(by_speaker):
        rows = by_speaker[speaker]
        rng.shuffle(rows)
        for i in rows[: max(1, round(share * len(rows)))]:
            parts[i] = "val"
    return parts


def _random(n: int, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test, n_val = round(test_fraction * n), round(val_fraction * n)
    role = ["train"] * n
    for i in order[:n_test]:
        role[i] = "test"
    for i in order[n_test : n_test + n_val]:
        role[i] = "val"
    return role


def load_split(catalog: Catalog, path: Path) -> Split:
    """Reuse a saved ``split.json``; every file it names must be in the catalog."""
    if not path.is_file():
        raise DataError(f"split file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        split = Split(str(data.get("spec", path)), *(tuple(data[k]) for k in ("train", "val", "test")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a split file ({exc}); it needs train, val and test lists") from None
    known = {catalog.rel(r) for r in catalog.recordings}
    named = (*split.train, *split.val, *split.test)
    missing = [p for p in named if p not in known]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} files are not in {catalog.root} (first: {missing[0]}); is --data the same corpus?"
        )
    repeated = [p for p, n in Counter(named).items() if n > 1]
    if repeated:
        raise DataError(
            f"{path}: {len(repeated)} files are listed more than once (first: {repeated[0]}); "
            "train, val and test must not share files"
        )
    for part in ("train", "val", "test"):
        if not getattr(split, part):
            raise DataError(f"{path}: the {part} list is empty; every part needs recordings")
    return split


def save_split(split: Split, path: Path) -> None:
    path.write_text(json.dumps(split.to_json(), indent=1), encoding="utf-8")
