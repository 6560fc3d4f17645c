"""Corpus: file names, scanning, metadata and the splits (Becker folds, speakers, LOSO, FSDD, random, saved)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from tune_digits.config import from_flat
from tune_digits.corpus import BECKER_GROUPS, Catalog, Recording, make_split, parse_name, save_split, scan
from tune_digits.errors import ConfigError, DataError

FAKE_ROOT = Path("/nonexistent/corpus")


def write_wav(path: Path, seconds: float = 0.1, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate, subtype="PCM_16")
    return path


def fake_catalog(speakers: list[str], per_speaker: int = 3) -> Catalog:
    """A catalog built directly (no files): ``per_speaker`` recordings of each speaker."""
    recs = [
        Recording(FAKE_ROOT / s / f"{i % 10}_{s}_{i}.wav", i % 10, s, i) for s in speakers for i in range(per_speaker)
    ]
    return Catalog(FAKE_ROOT, recs)


def parts(split) -> dict[str, set[str]]:
    return {"train": set(split.train), "val": set(split.val), "test": set(split.test)}


def speakers_of(files: set[str]) -> set[str]:
    return {Path(f).name.split("_")[1] for f in files}


def assert_partition(catalog: Catalog, split) -> None:
    """Every catalog file is in exactly one part."""
    every = [*split.train, *split.val, *split.test]
    assert len(every) == len(set(every)) == len(catalog.recordings)
    assert set(every) == {catalog.rel(r) for r in catalog.recordings}


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("7_jackson_32.wav", (7, "jackson", 32)),
        ("0_01_0.wav", (0, "01", 0)),
        ("9_56_49.WAV", (9, "56", 49)),
        ("3_Theo_7.Wav", (3, "Theo", 7)),
        ("10_01_0.wav", None),
        ("12_jackson_1.wav", None),
        ("7_jackson.wav", None),
        ("7_jackson_32.mp3", None),
        ("a_jackson_32.wav", None),
        ("7_jack-son_32.wav", None),
        ("7__32.wav", None),
        ("7_jackson_32_extra.wav", None),
        ("x7_jackson_32.wav", None),
    ],
)
def test_parse_name(name: str, expected: tuple[int, str, int] | None) -> None:
    assert parse_name(name) == expected


@given(
    digit=st.integers(0, 9),
    speaker=st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12),
    index=st.integers(0, 10**6),
    ext=st.sampled_from([".wav", ".WAV", ".Wav"]),
)
def test_parse_name_round_trip(digit: int, speaker: str, index: int, ext: str) -> None:
    assert parse_name(f"{digit}_{speaker}_{index}{ext}") == (digit, speaker, index)


@given(digit=st.integers(10, 10**4), speaker=st.text("abc01", min_size=1, max_size=5), index=st.integers(0, 99))
def test_parse_name_rejects_digits_above_nine(digit: int, speaker: str, index: int) -> None:
    assert parse_name(f"{digit}_{speaker}_{index}.wav") is None


@given(name=st.text(max_size=30))
def test_parse_name_never_raises(name: str) -> None:
    parsed = parse_name(name)
    assert parsed is None or (0 <= parsed[0] <= 9 and parsed[2] >= 0)


# ---------------------------------------------------------------- scan


def test_scan_tree(tmp_path: Path) -> None:
    for name in ("a/0_a_0.wav", "a/1_a_1.wav", "b/deep/2_b_0.WAV", "3_c_4.wav"):
        write_wav(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not audio")
    cat = scan(tmp_path)
    assert sorted(r.id for r in cat.recordings) == ["0_a_0", "1_a_1", "2_b_0", "3_c_4"]
    assert cat.speakers() == ["a", "b", "c"]
    assert cat.counts_by_digit() == {0: 1, 1: 1, 2: 1, 3: 1}
    assert cat.counts_by_speaker() == {"a": 2, "b": 1, "c": 1}
    assert cat.rel(next(r for r in cat.recordings if r.speaker == "b")) == "b/deep/2_b_0.WAV"
    assert cat.ignored == [] and cat.metadata == {}


def test_scan_warns_about_ignored_names(tmp_path: Path) -> None:
    write_wav(tmp_path / "0_a_0.wav")
    write_wav(tmp_path / "hello.wav")
    write_wav(tmp_path / "sub" / "10_a_1.wav")
    with pytest.warns(UserWarning, match="2 .wav files .* ignored"):
        cat = scan(tmp_path)
    assert [r.id for r in cat.recordings] == ["0_a_0"]
    assert sorted(cat.ignored) == ["hello.wav", "sub/10_a_1.wav"]


def test_scan_duplicate_ids(tmp_path: Path) -> None:
    write_wav(tmp_path / "x" / "1_a_1.wav")
    write_wav(tmp_path / "y" / "1_a_1.wav")
    with pytest.raises(DataError, match="duplicate recording id 1_a_1"):
        scan(tmp_path)


def test_scan_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "missing")


def test_scan_folder_without_matching_files(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no .* files under"):
        scan(tmp_path)
    write_wav(tmp_path / "take1.wav")
    with pytest.raises(DataError, match=r"no .* files under .*1 \.wav files with other names, e\.g\. take1\.wav"):
        scan(tmp_path)


def test_scan_bad_metadata(tmp_path: Path) -> None:
    write_wav(tmp_path / "01" / "0_01_0.wav")
    (tmp_path / "audioMNIST_meta.txt").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        scan(tmp_path)


# ---------------------------------------------------------------- real AudioMNIST sample


@pytest.mark.real_data
def test_real_audiomnist_sample(shared_data: Path) -> None:
    root = shared_data / "audiomnist_sample" / "data"
    cat = scan(root)
    assert len(cat.recordings) == 6
    assert cat.speakers() == ["01", "02", "08", "42", "51", "56"]
    assert {r.id for r in cat.recordings} == {"0_01_0", "5_02_10", "2_08_8", "9_42_10", "3_51_37", "6_56_49"}
    for rec in cat.recordings:
        assert cat.rel(rec) == f"{rec.speaker}/{rec.path.name}"
        info = sf.info(rec.path)
        assert info.samplerate == 48000 and info.channels == 1
    assert len(cat.metadata) == 60
    assert {"accent", "age", "gender"} <= set(cat.metadata["01"])
    assert cat.metadata["01"]["gender"] == "male"
    # the corpus's parent folder finds the metadata in data/ too
    assert len(scan(root.parent).metadata) == 60


@pytest.mark.real_data
def test_real_audiomnist_sample_becker_fold(shared_data: Path) -> None:
    cat = scan(shared_data / "audiomnist_sample" / "data")
    split = make_split(cat, "becker:1")  # val group 1 holds 42 and 51, test group 2 holds 01 and 56
    assert speakers_of(set(split.val)) == {"42", "51"}
    assert speakers_of(set(split.test)) == {"01", "56"}
    assert speakers_of(set(split.train)) == {"02", "08"}
    with pytest.raises(DataError, match="leaves no val recordings"):
        make_split(cat, "becker:0")  # none of the six speakers is in group 0


# ---------------------------------------------------------------- Becker folds


def sixty() -> Catalog:
    return fake_catalog([f"{i:02d}" for i in range(1, 61)], per_speaker=2)


def test_becker_fold0_exact() -> None:
    split = make_split(sixty(), "becker:0")
    assert {int(s) for s in speakers_of(set(split.val))} == {4, 11, 12, 15, 21, 27, 31, 41, 44, 47, 50, 59}
    assert {int(s) for s in speakers_of(set(split.test))} == {5, 13, 18, 22, 26, 32, 33, 42, 45, 51, 52, 60}


def test_becker_groups_partition_the_sixty_speakers() -> None:
    every = [s for group in BECKER_GROUPS for s in group]
    assert sorted(every) == list(range(1, 61))


@pytest.mark.parametrize("fold", range(5))
def test_becker_folds(fold: int) -> None:
    cat = sixty()
    split = make_split(cat, f"becker:{fold}")
    nxt = make_split(cat, f"becker:{(fold + 1) % 5}")
    assert_partition(cat, split)
    train, val, test = (speakers_of(p) for p in parts(split).values())
    assert len(train) == 36 and len(val) == 12 and len(test) == 12
    assert not (train & val) and not (train & test) and not (val & test)
    assert speakers_of(set(split.test)) == speakers_of(set(nxt.val))  # fold k test == fold k+1 val


def test_becker_fold4_test_is_fold0_val() -> None:
    cat = sixty()
    assert set(make_split(cat, "becker:4").test) == set(make_split(cat, "becker:0").val)


@pytest.mark.parametrize("spec", ["becker:5", "becker", "becker:-1"])
def test_becker_unknown_fold(spec: str) -> None:
    with pytest.raises(DataError, match="becker:0 to becker:4"):
        make_split(sixty(), spec)


def test_becker_needs_numeric_speakers() -> None:
    with pytest.raises(DataError, match="AudioMNIST speaker numbers"):
        make_split(fake_catalog(["jackson", "theo", "01"]), "becker:0")


# ---------------------------------------------------------------- speakers, loso, random


speaker_lists = st.lists(st.text("abcdefghij0123", min_size=1, max_size=4), min_size=3, max_size=15, unique=True)


@settings(max_examples=60, deadline=None)
@given(
    speakers=speaker_lists,
    per=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    val=st.floats(0.0, 0.45),
    test=st.floats(0.0, 0.45),
)
def test_speakers_split_properties(speakers: list[str], per: int, seed: int, val: float, test: float) -> None:
    cat = fake_catalog(speakers, per)
    split = make_split(cat, "speakers", val, test, seed)
    assert_partition(cat, split)
    train, v, t = (speakers_of(p) for p in parts(split).values())
    assert not (train & v) and not (train & t) and not (v & t)
    assert train | v | t == set(speakers)
    assert v and t and train
    assert make_split(cat, "speakers", val, test, seed) == split  # deterministic under the seed


def test_speakers_split_seed_changes_the_split() -> None:
    cat = fake_catalog([f"s{i}" for i in range(20)])
    splits = {make_split(cat, "speakers", seed=s).test for s in range(5)}
    assert len(splits) > 1


def test_speakers_split_needs_three_speakers() -> None:
    with pytest.raises(DataError, match="at least 3 speakers"):
        make_split(fake_catalog(["a", "b"]), "speakers")


@settings(max_examples=40, deadline=None)
@given(speakers=speaker_lists, seed=st.integers(0, 1000), data=st.data())
def test_loso_properties(speakers: list[str], seed: int, data: st.DataObject) -> None:
    cat = fake_catalog(speakers, 2)
    held = data.draw(st.sampled_from(speakers))
    split = make_split(cat, f"loso:{held}", seed=seed)
    assert_partition(cat, split)
    assert speakers_of(set(split.test)) == {held}
    val = speakers_of(set(split.val))
    assert len(val) == 1 and held not in val
    assert held not in speakers_of(set(split.train)) and not (val & speakers_of(set(split.train)))
    assert make_split(cat, f"loso:{held}", seed=seed) == split


@settings(max_examples=40, deadline=None)
@given(
    speakers=speaker_lists,
    per=st.integers(2, 20),
    share=st.floats(0.05, 0.5),
    seed=st.integers(0, 1000),
    data=st.data(),
)
def test_val_clips_trains_on_every_speaker_but_the_test_ones(
    speakers: list[str], per: int, share: float, seed: int, data: st.DataObject
) -> None:
    cat = fake_catalog(speakers, per)
    held = data.draw(st.sampled_from(speakers))
    split = make_split(cat, f"loso:{held}", seed=seed, val_clips=share)
    assert_partition(cat, split)
    assert speakers_of(set(split.test)) == {held}
    others = set(speakers) - {held}
    assert speakers_of(set(split.train)) == others == speakers_of(set(split.val))  # one more voice trains
    for speaker in others:  # each training speaker lends its share of clips to validation
        n_val = sum(speakers_of({f}) == {speaker} for f in split.val)
        assert n_val == max(1, round(share * per))
    assert make_split(cat, f"loso:{held}", seed=seed, val_clips=share) == split


def test_val_clips_applies_to_speaker_splits_only() -> None:
    cat = fake_catalog(["a", "b", "c", "d", "e"], 10)
    for spec in ("speakers", "loso:c"):
        split = make_split(cat, spec, val_clips=0.2)
        assert speakers_of(set(split.val)) == speakers_of(set(split.train))
        assert not speakers_of(set(split.test)) & speakers_of(set(split.train))
    official = fake_catalog(["a", "b", "c"], 12)  # clip indices 0-4 test, 5-9 val, 10-11 train
    assert make_split(official, "fsdd-official", val_clips=0.2) == make_split(official, "fsdd-official")
    with pytest.raises(ConfigError, match="data.val_clips"):
        from_flat({"data.val_clips": 1.0})


def test_loso_unknown_speaker() -> None:
    with pytest.raises(DataError, match="no such speaker"):
        make_split(fake_catalog(["a", "b", "c"]), "loso:zz")


@settings(max_examples=40, deadline=None)
@given(n_speakers=st.integers(1, 6), per=st.integers(5, 30), seed=st.integers(0, 1000))
def test_random_split_properties(n_speakers: int, per: int, seed: int) -> None:
    cat = fake_catalog([f"s{i}" for i in range(n_speakers)], per)
    with pytest.warns(UserWarning, match="optimistic"):
        split = make_split(cat, "random", 0.2, 0.2, seed)
    assert_partition(cat, split)
    n = len(cat.recordings)
    assert len(split.test) == round(0.2 * n) and len(split.val) == round(0.2 * n)
    with pytest.warns(UserWarning):
        assert make_split(cat, "random", 0.2, 0.2, seed) == split


def test_random_split_too_small() -> None:
    cat = fake_catalog(["a"], 2)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="leaves no"):
        make_split(cat, "random")


def test_unknown_split_spec() -> None:
    with pytest.raises(DataError, match="unknown split 'folds'"):
        make_split(fake_catalog(["a", "b", "c"]), "folds")


@settings(max_examples=30, deadline=None)
@given(speakers=speaker_lists, per=st.integers(11, 20))
def test_fsdd_official_by_index(speakers: list[str], per: int) -> None:
    cat = fake_catalog(speakers, per)
    split = make_split(cat, "fsdd-official")
    assert_partition(cat, split)
    index = {cat.rel(r): r.index for r in cat.recordings}
    assert all(index[f] <= 4 for f in split.test)
    assert all(5 <= index[f] <= 9 for f in split.val)
    assert all(index[f] >= 10 for f in split.train)


@pytest.mark.real_data
def test_fsdd_official_on_real_fsdd(shared_data: Path) -> None:
    cat = scan(shared_data / "fsdd" / "recordings")
    assert len(cat.recordings) == 2500
    assert cat.speakers() == ["george", "jackson", "nicolas", "theo", "yweweler"]
    split = make_split(cat, "fsdd-official")
    assert len(split.test) == 250 and len(split.val) == 250 and len(split.train) == 2000
    assert all(0 <= parse_name(f)[2] <= 4 for f in split.test)
    assert all(5 <= parse_name(f)[2] <= 9 for f in split.val)
    assert_partition(cat, split)


# ---------------------------------------------------------------- saved splits


def test_saved_split_reloads(tmp_path: Path) -> None:
    cat = fake_catalog([f"s{i}" for i in range(6)], 4)
    split = make_split(cat, "speakers", seed=3)
    path = tmp_path / "split.json"
    save_split(split, path)
    again = make_split(cat, str(path))
    assert (again.train, again.val, again.test) == (split.train, split.val, split.test)
    assert again.spec == "speakers"


def test_saved_split_naming_missing_files(tmp_path: Path) -> None:
    cat = fake_catalog(["a", "b", "c"], 3)
    save_split(make_split(cat, "speakers"), tmp_path / "split.json")
    smaller = fake_catalog(["a", "b"], 3)
    with pytest.raises(DataError, match=r"files are not in .*first: c/"):
        make_split(smaller, str(tmp_path / "split.json"))


def test_saved_split_must_not_share_files(tmp_path: Path) -> None:
    cat = fake_catalog(["a", "b", "c"], 3)
    files = [cat.rel(r) for r in cat.recordings]
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": files[:6], "val": files[5:7], "test": files[7:]}))
    with pytest.raises(DataError, match="more than once"):
        make_split(cat, str(path))


def test_saved_split_needs_every_part(tmp_path: Path) -> None:
    cat = fake_catalog(["a", "b", "c"], 3)
    files = [cat.rel(r) for r in cat.recordings]
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": files[:6], "val": [], "test": files[6:]}))
    with pytest.raises(DataError, match="val list is empty"):
        make_split(cat, str(path))


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"train": []}'])
def test_saved_split_not_a_split(tmp_path: Path, text: str) -> None:
    path = tmp_path / "split.json"
    path.write_text(text)
    with pytest.raises(DataError, match="not a split file"):
        make_split(fake_catalog(["a", "b", "c"]), str(path))


def test_saved_split_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        make_split(fake_catalog(["a", "b", "c"]), str(tmp_path / "nope.json"))
