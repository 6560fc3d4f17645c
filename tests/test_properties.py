"""Property tests: the file-name parser on whole folders, the search-space parser and the splits.

tests/test_corpus.py already covers the parser on single names and the speakers, loso, random and
fsdd-official splits; tests/test_space.py covers list-choice encoding. These add what they leave out.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tune_digits.corpus import Catalog, Recording, load_split, make_split, parse_name, save_split, scan
from tune_digits.errors import ConfigError, DataError
from tune_digits.space import parse_dimension, parse_space, to_optuna, to_tune

FAKE_ROOT = Path("/nonexistent/corpus")
SPEAKER_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# An independent statement of the naming rule: ASCII digit(s) 0-9, ASCII letters/digits, ASCII index, .wav any case.
REFERENCE = re.compile(r"(\d+)_([A-Za-z0-9]+)_(\d+)\.[wW][aA][vV]", re.ASCII)


# ---------------------------------------------------------------- file names


@settings(max_examples=300, deadline=None)
@given(
    name=st.one_of(
        st.text(max_size=25),
        st.builds(
            lambda d, s, i, ext: f"{d}_{s}_{i}{ext}",
            st.text("0123456789\u0663\uff13", min_size=1, max_size=3),  # with Arabic-Indic and full-width 3
            st.text(SPEAKER_CHARS + "-_ .\u017f\u212a", min_size=0, max_size=6),  # long s, Kelvin sign
            st.text("0123456789\u0663", min_size=1, max_size=4),
            st.sampled_from([".wav", ".WAV", ".wav\n", ".wave", ".mp3", ""]),
        ),
    )
)
def test_parse_name_accepts_exactly_the_documented_pattern(name: str) -> None:
    match = REFERENCE.fullmatch(name)
    expected = None
    if match is not None and int(match[1]) <= 9:
        expected = (int(match[1]), match[2], int(match[3]))
    assert parse_name(name) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    good=st.lists(
        st.tuples(st.integers(0, 9), st.text("abcxyz0", min_size=1, max_size=3), st.integers(0, 30)),
        min_size=1,
        max_size=12,
        unique_by=lambda t: f"{t[0]}_{t[1]}_{t[2]}",
    ),
    bad=st.lists(
        st.sampled_from(["hello.wav", "10_a_1.wav", "x_a_1.wav", "1_a-b_1.wav", "1_a.wav", "1__1.wav", "a_1_1.WAV"]),
        unique=True,
        max_size=4,
    ),
    other=st.lists(st.sampled_from(["notes.txt", "1_a_1.flac", "README"]), unique=True, max_size=2),
)
def test_scan_catalogs_exactly_the_matching_files(
    tmp_path_factory: pytest.TempPathFactory, good: list[tuple[int, str, int]], bad: list[str], other: list[str]
) -> None:
    root = tmp_path_factory.mktemp("scan")
    names = [f"{d}_{s}_{i}.wav" for d, s, i in good]
    for k, name in enumerate(names + bad + other):
        sub = root / f"part{k % 3}"  # spread over sub-folders: the scan is recursive
        sub.mkdir(exist_ok=True)
        (sub / name).write_bytes(b"")  # scan reads names only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        catalog = scan(root)
    assert sorted(r.id for r in catalog.recordings) == sorted(n.removesuffix(".wav") for n in names)
    assert sorted(Path(p).name for p in catalog.ignored) == sorted(bad)
    counted = [str(w.message) for w in caught if "were ignored" in str(w.message)]
    assert len(counted) == (1 if bad else 0)
    assert all(message.startswith(f"{len(bad)} .wav files under") for message in counted)
    for rec in catalog.recordings:
        assert parse_name(rec.path.name) == (rec.digit, rec.speaker, rec.index)


# ---------------------------------------------------------------- search spaces

# Keys with known legal ranges: (key, kind, low bound, high bound)
FLOAT_KEYS = [
    ("train.lr", 1e-6, 10.0),
    ("model.dropout", 0.0, 0.95),
    ("train.weight_decay", 0.0, 1.0),
    ("augment.time_shift", 0.0, 0.5),
    ("train.label_smoothing", 0.0, 0.9),
]
INT_KEYS = [
    ("train.batch_size", 1, 512),
    ("augment.freq_masks", 0, 5),
    ("augment.time_width", 0, 40),
    ("train.patience", 0, 50),
]
CHOICE_KEYS = {
    "train.optimizer": ["adamw", "sgd"],
    "train.schedule": ["cosine", "onecycle", "constant"],
    "model.activation": ["relu", "tanh", "gelu", "silu"],
    "features.variant": ["raw", "bilateral"],
    "model.kernel_size": [3, 5, 7],
}


@st.composite
def float_dim(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    key, lo, hi = draw(st.sampled_from(FLOAT_KEYS))
    kind = draw(st.sampled_from(["uniform", "loguniform", "quantized"]))
    if kind == "loguniform":
        lo = max(lo, 1e-6)
    if kind == "quantized":  # both ends on the q grid
        q = draw(st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.25]))
        k_low = draw(st.integers(math.ceil(lo / q - 1e-9), math.floor(hi / q + 1e-9)))
        k_high = draw(st.integers(k_low, math.floor(hi / q + 1e-9)))
        return key, {"type": kind, "low": round(k_low * q, 10), "high": round(k_high * q, 10), "q": q}
    a = draw(st.floats(lo, hi, allow_nan=False))
    b = draw(st.floats(a, hi, allow_nan=False))
    return key, {"type": kind, "low": a, "high": b}


@st.composite
def int_dim(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    key, lo, hi = draw(st.sampled_from(INT_KEYS))
    a = draw(st.integers(lo, hi))
    b = draw(st.integers(a, hi))
    return key, {"type": "int", "low": a, "high": b}


@st.composite
def choice_dim(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    key = draw(st.sampled_from(sorted(CHOICE_KEYS)))
    values = draw(st.lists(st.sampled_from(CHOICE_KEYS[key]), min_size=1, unique=True))
    return key, {"type": "choice", "values": values}


@settings(max_examples=150, deadline=None)
@given(
    dims=st.lists(st.one_of(float_dim(), int_dim(), choice_dim()), min_size=1, max_size=6, unique_by=lambda d: d[0]),
    samples=st.integers(1, 64),
    epochs=st.integers(1, 100),
)
def test_random_valid_spaces_parse(dims: list[tuple[str, dict[str, Any]]], samples: int, epochs: int) -> None:
    data = {
        "fixed": {"model.name": "lenet5"},
        "space": dict(dims),
        "search": {"num_samples": samples, "max_epochs": epochs},
    }
    space = parse_space(data)
    assert [d.key for d in space.dims] == [k for k, _ in dims]
    assert space.search.num_samples == samples and space.search.max_epochs == epochs
    assert set(to_tune(space)) == set(to_optuna(space)) == {k for k, _ in dims}
    for dim, (_, spec) in zip(space.dims, dims, strict=True):
        assert dim.kind == spec["type"]
        if dim.kind == "choice":
            assert list(dim.values) == spec["values"]
        else:
            assert dim.low == spec["low"] and dim.high == spec["high"] and dim.low <= dim.high


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["uniform", "loguniform", "quantized", "int"]),
    data=st.data(),
)
def test_low_above_high_is_always_rejected(kind: str, data: st.DataObject) -> None:
    if kind == "int":
        high = data.draw(st.integers(-(10**6), 10**6))
        low = data.draw(st.integers(high + 1, high + 10**6))
    else:
        high = data.draw(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
        low = data.draw(st.floats(high, 1e7, allow_nan=False, allow_infinity=False, exclude_min=True))
        assume(low > high)
    spec: dict[str, Any] = {"type": kind, "low": low, "high": high}
    if kind == "quantized":
        spec["q"] = 0.1
    with pytest.raises(ConfigError) as info:
        parse_dimension("train.lr", spec)
    message = str(info.value)
    assert "\n" not in message and "space.train.lr" in message
    assert "above high" in message or "log scale" in message  # loguniform with low <= 0 is refused first


@settings(max_examples=200, deadline=None)
@given(
    low=st.floats(0.0, 0.9, allow_nan=False),
    width=st.floats(0.0, 0.09, allow_nan=False),
    q=st.floats(1e-3, 0.5, allow_nan=False),
)
def test_a_quantized_space_that_parses_can_be_sampled(low: float, width: float, q: float) -> None:
    spec = {"type": "quantized", "low": low, "high": low + width, "q": q}
    try:
        space = parse_space({"space": {"model.dropout": spec}})
    except ConfigError as exc:
        assert "must be a multiple of q" in str(exc) and "\n" not in str(exc)
        return
    to_tune(space)  # Ray Tune accepts every space the parser accepts


@settings(max_examples=100, deadline=None)
@given(
    low=st.one_of(st.text(max_size=5), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)),
    kind=st.sampled_from(["uniform", "loguniform", "quantized", "int"]),
)
def test_non_numeric_bounds_are_always_rejected(low: object, kind: str) -> None:
    spec = {"type": kind, "low": low, "high": 1}
    with pytest.raises(ConfigError, match=r"space\.train\.batch_size\.low: expected"):
        parse_dimension("train.batch_size", spec)


@settings(max_examples=100, deadline=None)
@given(key=st.text("abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=20))
def test_unknown_keys_are_always_rejected(key: str) -> None:
    from tune_digits.config import all_keys

    assume(key not in set(all_keys()))
    with pytest.raises(ConfigError, match="unknown config key"):
        parse_space({"space": {key: {"type": "uniform", "low": 0.0, "high": 0.1}}})


# ---------------------------------------------------------------- splits


def fake_catalog(recs: list[tuple[str, int, int]]) -> Catalog:
    return Catalog(FAKE_ROOT, [Recording(FAKE_ROOT / s / f"{d}_{s}_{i}.wav", d, s, i) for s, d, i in recs])


def assert_partition(catalog: Catalog, split: Any) -> None:
    every = [*split.train, *split.val, *split.test]
    assert len(every) == len(set(every)) == len(catalog.recordings)  # every file in exactly one part
    assert set(every) == {catalog.rel(r) for r in catalog.recordings}
    part_of = split.part_of()
    assert all(part_of[f] == "train" for f in split.train)
    assert all(part_of[f] == "val" for f in split.val) and all(part_of[f] == "test" for f in split.test)


def speakers(catalog: Catalog, files: tuple[str, ...]) -> set[str]:
    return {f.split("/")[0] for f in files}


@settings(max_examples=60, deadline=None)
@given(
    chosen=st.sets(st.integers(1, 60), min_size=1, max_size=60),
    per=st.integers(1, 3),
    fold=st.integers(0, 4),
)
def test_becker_folds_on_any_subset_of_speakers(chosen: set[int], per: int, fold: int) -> None:
    catalog = fake_catalog([(f"{s:02d}", i % 10, i) for s in sorted(chosen) for i in range(per)])
    try:
        split = make_split(catalog, f"becker:{fold}")
    except DataError as exc:  # only when a part would be empty
        assert "leaves no" in str(exc)
        return
    assert_partition(catalog, split)
    train, val, test = (speakers(catalog, getattr(split, p)) for p in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert make_split(catalog, f"becker:{fold}") == split  # deterministic


spec_strategy = st.one_of(
    st.just("speakers"),
    st.just("random"),
    st.just("fsdd-official"),
    st.builds(lambda k: f"loso:s{k}", st.integers(0, 2)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_speakers=st.integers(3, 8),
    per=st.integers(12, 20),
    spec=spec_strategy,
    seed=st.integers(0, 2**31 - 1),
    val=st.floats(0.05, 0.4),
    test=st.floats(0.05, 0.4),
)
def test_every_split_round_trips_through_split_json(
    tmp_path_factory: pytest.TempPathFactory, n_speakers: int, per: int, spec: str, seed: int, val: float, test: float
) -> None:
    catalog = fake_catalog([(f"s{s}", i % 10, i) for s in range(n_speakers) for i in range(per)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random" warns about leaking speakers
        split = make_split(catalog, spec, val, test, seed)
        again = make_split(catalog, spec, val, test, seed)
    assert again == split  # the same seed gives the same split
    assert_partition(catalog, split)
    if spec != "random" and spec != "fsdd-official":
        parts = [speakers(catalog, getattr(split, p)) for p in ("train", "val", "test")]
        assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1 :])  # speaker-disjoint
    path = tmp_path_factory.mktemp("split") / "split.json"
    save_split(split, path)
    loaded = load_split(catalog, path)
    assert (loaded.train, loaded.val, loaded.test) == (split.train, split.val, split.test)
    assert make_split(catalog, str(path)) == loaded


@settings(max_examples=40, deadline=None)
@given(n=st.integers(10, 200), seed=st.integers(0, 10**6), val=st.floats(0.0, 0.45), test=st.floats(0.05, 0.45))
def test_random_split_sizes_follow_the_fractions(n: int, seed: int, val: float, test: float) -> None:
    catalog = fake_catalog([(f"s{i % 4}", i % 10, i) for i in range(n)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            split = make_split(catalog, "random", val, test, seed)
        except DataError:
            assert round(val * n) == 0 or round(test * n) == 0 or round(val * n) + round(test * n) >= n
            return
    assert len(split.test) == round(test * n) and len(split.val) == round(val * n)
    assert len(split.train) == n - len(split.test) - len(split.val)
