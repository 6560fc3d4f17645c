"""Bad input on every command: a one-line error (exit 2) or a counted warning and a skip, never a traceback.

Also the safety rules: checkpoints and YAML never run code, and CSV file names are relative and one line each.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tune_digits.checkpoint import load_checkpoint
from tune_digits.cli import app
from tune_digits.config import load_config
from tune_digits.demo import demo_root
from tune_digits.errors import UserError
from tune_digits.run import train_run

torch.set_num_threads(2)
runner = CliRunner()
RATE = 8000
TINY = ["model.channels=[4,8]", "model.fc=[32,16]", "train.threads=2", "train.device=cpu"]


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result: Any) -> str:
    """Exit 2 and exactly one ``error:`` line, the last thing printed; no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0], result.stderr  # nothing wrapped onto a 2nd line
    return errors[0]


def usage_error(result: Any) -> None:
    """typer's own usage errors: exit 2, its error box (most with a usage line), no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "─ Error ─" in result.output


def tone(seconds: float, rate: int, digit: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * digit) * t) * np.hanning(len(t))
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch LeNet-5 run on the demo corpus (its own feature cache)."""
    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNE_DIGITS_CACHE", str(root / "cache"))
        cfg = load_config(None, ["train.epochs=1", *TINY])
        train_run(cfg, root / "runs" / "tiny", wandb="disabled", progress=False)
    return root / "runs" / "tiny"


# ---------------------------------------------------------------- every command: arguments and paths


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--epochs", "abc"],
        ["train", "--bogus"],
        ["search"],
        ["search", "--space", "x.yaml", "--num-samples", "many"],
        ["final-eight", "--resume"],
        ["final-eight", "--seeds", "two"],
        ["submit"],
        ["submit", "--attempt", "one"],
        ["submissions", "--bogus"],
        ["predict", "--model", "m.pt"],
        ["predict", "clip.wav"],
        ["report"],
        ["data", "prepare", "--variant"],
        ["data", "download"],
        ["data", "nonsense"],
        ["nonsense"],
    ],
)
def test_usage_errors_exit_2_without_a_traceback(args: list[str], tmp_path: Path, tmp_cache: Path) -> None:
    usage_error(invoke(*args))
    assert list(tmp_path.iterdir()) == [tmp_cache]


def _missing_path_cases(tmp: Path) -> list[tuple[list[str | Path], str]]:
    nope = tmp / "nope"
    a_file = tmp / "a-file.txt"
    subs = tmp / "submissions"
    return [
        (["train", "--data", nope], "does not exist"),
        (["train", "--config", nope / "c.yaml"], "file not found"),
        (["train", "--split", nope / "split.json"], "split file"),
        (["train", "--out", a_file / "run", "--epochs", "1"], "is a file"),
        (["train", "--set", "train.lr"], "expected key=value"),
        (["search", "--space", nope / "s.yaml"], "not found"),
        (["search", "--space", a_file], "expected a mapping"),
        (["final-eight", "--model-a", nope / "a.yaml", "--model-b", nope / "b.yaml"], "file not found"),
        (["final-eight", "--searches", nope, "--storage", tmp / "runs"], "no params for Model A"),
        (["final-eight", "--resume", "--name", "ghost", "--storage", tmp / "runs"], "no final-eight named"),
        (["final-eight", "--name", "../escape", "--model-a", a_file], "plain folder name"),
        (["submit", "--attempt", "4", "--runs", nope, "--submissions", subs], "attempts 1 to 3"),
        (["submit", "--attempt", "1", "--runs", nope, "--submissions", subs], "does not exist"),
        (["submit", "--attempt", "1", "--runs", tmp, "--test-dir", nope, "--submissions", subs], "--test-dir"),
        (["submit", "--attempt", "1", "--runs", tmp, "--data", nope, "--submissions", subs], "--data"),
        (["submit", "--attempt", "1", "--runs", tmp, "--submissions", a_file], "is a file"),
        (["submissions", "--submissions", nope], "no submissions folder"),
        (["submissions", "--submissions", a_file], "is a file"),
        (["predict", "--model", nope / "model.pt", a_file], "not found"),
        (["predict", "--model", a_file, a_file], "cannot be loaded"),
        (["report", nope], "no such folder"),
        (["report", tmp], "is not a train run"),
        (["data", "prepare", "--data", nope], "does not exist"),
        (["data", "prepare", "--data", a_file], "does not exist"),
        (["data", "prepare", "--variant", "blurry"], "features.variant"),
        (["data", "download", "nosuchcorpus", "--to", tmp / "d"], "unknown dataset"),
        (["data", "download", "fsdd", "--to", a_file], "cannot create"),
    ]


@pytest.mark.parametrize("case", range(len(_missing_path_cases(Path("/x")))))
def test_missing_and_malformed_paths_are_one_line_errors(case: int, tmp_path: Path, tmp_cache: Path) -> None:
    (tmp_path / "a-file.txt").write_text("not what you think")
    args, needle = _missing_path_cases(tmp_path)[case]

    def listing() -> list[Path]:
        return sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_cache))

    before = listing()
    line = one_line_error(invoke(*args, "--wandb", "disabled") if args[0] in ("train", "search") else invoke(*args))
    assert needle in line
    assert listing() == before  # nothing was created


def test_search_storage_that_is_a_file_is_refused(tmp_path: Path, tmp_cache: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"space": {"train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}}))
    storage = tmp_path / "storage"
    storage.write_text("a file")
    line = one_line_error(invoke("search", "--space", space, "--storage", storage, "--wandb", "disabled"))
    assert "is a file" in line
    for name in ("../up", "a/b", ".hidden"):
        args = ["search", "--space", space, "--storage", tmp_path / "runs", "--name", name, "--wandb", "disabled"]
        assert "plain folder name" in one_line_error(invoke(*args))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "up").exists()


# ---------------------------------------------------------------- search spaces through the CLI


BAD_SPACES = [
    ("space:\n  train.lrr: {type: uniform, low: 0.1, high: 0.2}\n", "unknown config key"),
    ("space:\n  train.lr: {type: uniform, low: a, high: 0.2}\n", "expected a number"),
    ("space:\n  train.lr: {type: uniform, low: 0.3, high: 0.2}\n", "above high"),
    ("space:\n  train.batch_size: {type: choice, values: []}\n", "non-empty list"),
    ("space:\n  train.lr: {type: gaussian, low: 0.1, high: 0.2}\n", "unknown distribution"),
    ("space:\n  train.lr: {type: uniform, low: 0.1\n  model.dropout: [\n", "line "),
    ("space:\n  train.lr: 0.1\n", "expected a mapping with a type"),
    ("- a list\n- not a space\n", "expected a mapping"),
    ("", "expected a mapping"),
    ("fixed:\n  model.name: lenet5\n", "space section is empty"),
    ("space:\n  train.lr: {type: uniform, low: 0.1, high: 0.2}\nsearch:\n  num_samples: many\n", "expected int"),
    ("space:\n  train.lr: {type: uniform, low: 0.1, high: 0.2}\ntune: {}\n", "unknown section"),
    ("space:\n  train.lr: !!python/object/apply:os.system [touch MARK]\n", "line "),
]


@pytest.mark.parametrize(("text", "needle"), BAD_SPACES)
def test_bad_search_space_through_the_cli(text: str, needle: str, tmp_path: Path, tmp_cache: Path) -> None:
    marker = tmp_path / "MARK"
    space = tmp_path / "bad.yaml"
    space.write_text(text.replace("MARK", str(marker)))
    storage = tmp_path / "runs"
    line = one_line_error(invoke("search", "--space", space, "--storage", storage, "--wandb", "disabled"))
    assert needle in line
    assert str(space) in line or "space." in line or "search." in line
    assert not storage.exists() and not marker.exists()


# ---------------------------------------------------------------- recordings through `data prepare`


def make_odd_corpus(root: Path) -> dict[str, list[str]]:
    """Four speakers x four digits of plain 8 kHz tones, plus odd but readable, unreadable and misnamed files."""
    for speaker in "abcd":
        for digit in range(4):
            path = root / speaker / f"{digit}_{speaker}_0.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(0.5, RATE, digit), RATE, subtype="PCM_16")
    odd = {
        "a/4_a_1.wav": (tone(0.5, 16000, 4), 16000, "PCM_24"),  # 24-bit, 16 kHz
        "b/4_b_1.wav": (tone(0.5, 44100, 4), 44100, "FLOAT"),  # float, 44.1 kHz
        "c/4_c_1.wav": (tone(0.5, 48000, 4, channels=2), 48000, "PCM_16"),  # stereo, 48 kHz
        "d/4_d_1.wav": (tone(30.0, RATE, 4), RATE, "PCM_16"),  # a 30-second clip
    }
    for rel, (wave, rate, subtype) in odd.items():
        sf.write(root / rel, wave, rate, subtype=subtype)
    good = (root / "a" / "0_a_0.wav").read_bytes()
    (root / "a" / "5_a_1.wav").write_bytes(b"")  # zero-length
    (root / "b" / "5_b_1.wav").write_bytes(good[:30])  # truncated header
    (root / "c" / "5_c_1.wav").write_text("hello, I am not audio")  # a text file named .wav
    misnamed = ["hello.wav", "a/12_a_0.wav", "b/x_b_0.wav", "c/3_c-c_0.wav", "d/3_d.wav"]
    for rel in misnamed:
        sf.write(root / rel, tone(0.5, RATE, 1), RATE)
    return {
        "odd": sorted(odd),
        "unreadable": ["a/5_a_1.wav", "b/5_b_1.wav", "c/5_c_1.wav"],
        "misnamed": misnamed,
    }


def cli(*args: str | Path, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """The real command line (warnings go to stderr as the user sees them)."""
    env = {**os.environ, "TUNE_DIGITS_CACHE": str(cache), "WANDB_MODE": "disabled", "COLUMNS": "200"}
    argv = [sys.executable, "-m", "tune_digits.cli", *map(str, args)]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_data_prepare_uses_odd_recordings_and_counts_the_rest(tmp_path: Path, tmp_cache: Path) -> None:
    corpus = tmp_path / "corpus"
    files = make_odd_corpus(corpus)
    done = cli("data", "prepare", "--data", corpus, cwd=tmp_path, cache=tmp_cache)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "warning: 5 .wav files under" in done.stderr and "were ignored" in done.stderr
    assert "warning: 3 unreadable recordings skipped" in done.stderr
    assert done.stderr.count("skipped unreadable recording ") == 3
    assert "23 recordings" in done.stdout  # 16 plain + 4 odd + 3 unreadable; the misnamed are not recordings
    sizes = done.stdout.split("split: ")[1].split(" recordings")[0]
    assert sum(int(part.split()[1]) for part in sizes.split(", ")) == 20  # the unreadable ones are left out

    from tune_digits.train import prepare

    prepared = prepare(load_config(None, [f"data.root={corpus}"]))
    fs = prepared.features
    assert sorted(fs.skipped) == files["unreadable"]
    for rel in files["odd"]:  # resampled, mixed down, cropped: real log-mel images
        row = np.asarray(fs.x[fs.files.index(rel)], dtype=np.float32)
        assert np.isfinite(row).all() and float(np.ptp(row)) > 10, rel
    assert not set(files["misnamed"]) & set(fs.files)

    strict = cli("data", "prepare", "--data", corpus, "--strict", cwd=tmp_path, cache=tmp_cache)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    errors = [line for line in strict.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "5_a_1.wav" in errors[0] and "strict" in errors[0]


def test_duplicate_recording_ids_are_one_line_error(tmp_path: Path, tmp_cache: Path) -> None:
    corpus = tmp_path / "corpus"
    for folder in ("x", "y"):
        (corpus / folder).mkdir(parents=True)
        sf.write(corpus / folder / "1_a_1.wav", tone(0.3, RATE, 1), RATE)
    line = one_line_error(invoke("data", "prepare", "--data", corpus))
    assert "duplicate recording id 1_a_1" in line and "remove one of them" in line
    assert list(tmp_cache.iterdir()) == []


def test_only_unreadable_recordings_is_one_line_error(tmp_path: Path, tmp_cache: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("0_a_0.wav", "1_b_0.wav", "2_c_0.wav"):
        (corpus / name).write_text("junk")
    with pytest.warns(UserWarning, match="skipped unreadable recording"):
        result = invoke("data", "prepare", "--data", corpus)
    assert "none of the 3 recordings" in one_line_error(result)


# ---------------------------------------------------------------- predict and submit on mixed folders


WEIRD = 'we,ird "take"\nnoté.wav'  # a comma, quotes, a newline and a non-ASCII letter: a valid Linux file name


def mixed_folder(root: Path) -> Path:
    folder = root / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(demo_root() / "3_enf2_0.wav", folder / "3_enf2_0.wav")
    shutil.copy(demo_root() / "4_enf2_1.wav", folder / "sub" / WEIRD)
    wave, rate = sf.read(demo_root() / "5_enf2_2.wav", dtype="float32")
    sf.write(folder / "stereo24.wav", np.stack([wave, wave], axis=1), rate, subtype="PCM_24")
    (folder / "text.wav").write_text("not audio")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("not audio either")
    return folder


def csv_rows(path: Path) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(text.splitlines()) == len(rows)  # one line per row: no name breaks a line
    return rows


def assert_safe_name(name: str) -> None:
    assert not Path(name).is_absolute() and not name.startswith("/")
    assert ".." not in Path(name).parts
    assert name.isprintable()


def test_predict_on_a_mixed_folder(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = mixed_folder(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the inputs are outside the working folder: names must still be relative
    out = elsewhere / "pred.csv"
    result = invoke("predict", "--model", tiny_run, folder.resolve(), "--out", out)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "warning: 1 non-audio files skipped" in result.stderr
    assert "warning: 2 unreadable recordings skipped" in result.stderr
    rows = csv_rows(out)
    assert rows[0] == ["file", "digit", "probability", "note"]
    names = [r[0] for r in rows[1:]]
    assert sorted(names) == sorted(
        ["mixed/3_enf2_0.wav", "mixed/stereo24.wav", "mixed/sub/" + WEIRD.replace("\n", "\\n")]
    )
    for name in names:
        assert_safe_name(name)
    assert all(0 <= int(r[1]) <= 9 and 0 < float(r[2]) <= 1 for r in rows[1:])
    assert sorted(p.name for p in elsewhere.iterdir()) == ["pred.csv"]

    table = invoke("predict", "--model", tiny_run, folder / "text.wav", folder / "empty.wav")
    assert "no readable recordings" in one_line_error(table)
    for bad_out, needle in ((tmp_path / "no" / "dir" / "p.csv", "no folder"), (elsewhere, "is a folder")):
        assert needle in one_line_error(invoke("predict", "--model", tiny_run, folder, "--out", bad_out))
    assert not (tmp_path / "no").exists()


def test_submit_test_dir_with_files_that_are_not_audio(tiny_run: Path, tmp_path: Path, tmp_cache: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "tiny")
    subs = tmp_path / "submissions"
    only_junk = tmp_path / "junk"
    only_junk.mkdir()
    (only_junk / "a.wav").write_text("text")
    (only_junk / "b.txt").write_text("text")
    args = ["submit", "--attempt", "1", "--runs", runs, "--submissions", subs, "--wandb", "disabled"]
    line = one_line_error(invoke(*args, "--test-dir", only_junk))
    assert "no readable *.wav recordings" in line
    assert sorted(p.name for p in subs.iterdir()) == [".lock"]  # nothing submitted, attempt 1 still free

    folder = mixed_folder(tmp_path / "test")
    result = invoke(*args, "--test-dir", folder)
    assert result.exit_code == 0, result.output
    assert "warning: 1 non-audio files" in result.stderr and "warning: 2 unreadable recordings" in result.stderr
    rows = csv_rows(subs / "attempt-1" / "submission.csv")
    assert rows[0] == ["id", "label"]
    ids = sorted(r[0] for r in rows[1:])
    assert ids == sorted(["3_enf2_0.wav", "stereo24.wav", "sub/" + WEIRD.replace("\n", "\\n")])
    for name in ids:
        assert_safe_name(name)
    for row in csv_rows(subs / "attempt-1" / "predictions.csv")[1:]:
        assert_safe_name(row[0])


def test_run_predictions_name_files_safely(tmp_path: Path, tmp_cache: Path) -> None:
    """A corpus below a folder whose name holds a comma and a newline: predictions.csv stays one row a line."""
    corpus = tmp_path / "corpus"
    for speaker in "abcd":
        folder = corpus / f"sp,{speaker}\nx"
        folder.mkdir(parents=True)
        for digit in range(3):
            sf.write(folder / f"{digit}_{speaker}_0.wav", tone(0.4, RATE, digit), RATE)
    out = tmp_path / "run"
    args = ["train", "--data", corpus, "--epochs", "1", "--out", out, "--wandb", "disabled"]
    result = invoke(*args, *[x for item in TINY for x in ("--set", item)])
    assert result.exit_code == 0, result.output
    rows = csv_rows(out / "predictions.csv")
    assert len(rows) > 1
    for row in rows[1:]:
        assert_safe_name(row[0])
        assert row[0].startswith("sp,") and "\\n" in row[0]


# ---------------------------------------------------------------- safety: no code from user files


class _Bomb:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_bomb_checkpoint_is_refused_without_running(tmp_path: Path, tiny_run: Path) -> None:
    marker = tmp_path / "BOOM"
    bomb = tmp_path / "model.pt"
    payload = load_checkpoint(tiny_run / "model.pt")
    payload["metrics"] = {**payload["metrics"], "surprise": _Bomb(marker)}
    torch.save(payload, bomb)

    with pytest.raises(UserError, match="cannot be loaded"):
        load_checkpoint(bomb)
    assert not marker.exists()
    line = one_line_error(invoke("predict", "--model", bomb, demo_root() / "3_enf2_0.wav"))
    assert "cannot be loaded" in line and "UnpicklingError" in line
    line = one_line_error(invoke("predict", "--model", tmp_path, demo_root() / "3_enf2_0.wav"))  # the folder form
    assert "cannot be loaded" in line
    assert not marker.exists()

    torch.load(bomb, weights_only=False)  # the bomb is real: an unsafe load runs it
    assert marker.exists()


def test_yaml_tags_cannot_run_code(tmp_path: Path, tmp_cache: Path) -> None:
    marker = tmp_path / "BOOM"
    config = tmp_path / "best.yaml"
    config.write_text(f"train:\n  lr: !!python/object/apply:os.system ['touch {marker}']\n")
    line = one_line_error(invoke("train", "--config", config, "--out", tmp_path / "run", "--wandb", "disabled"))
    assert str(config) in line and "line 2" in line
    assert "line" in one_line_error(invoke("final-eight", "--model-a", config, "--model-b", config))
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_library_reads_no_pickles_from_user_paths() -> None:
    """torch.load only with weights_only=True, YAML only with safe_load, numpy without allow_pickle."""
    package = Path(__file__).resolve().parents[1] / "tune_digits"
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            code = line.split("#")[0]
            if "torch.load(" in code:
                assert "weights_only=True" in code, f"{path}: {line.strip()}"
            assert "allow_pickle=True" not in code, f"{path}: {line.strip()}"
            assert "yaml.load(" not in code and "yaml.unsafe_load" not in code, f"{path}: {line.strip()}"
            assert "import pickle" not in code and "pickle.load" not in code, f"{path}: {line.strip()}"


def test_commands_write_only_where_they_are_told(
    tiny_run: Path, tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train, submit, submissions and predict from an empty working folder: it stays empty."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    test_dir = tmp_path / "hidden-test"
    test_dir.mkdir()
    shutil.copy(demo_root() / "7_usm2_0.wav", test_dir / "7_usm2_0.wav")
    run = tmp_path / "runs" / "again"
    set_args = [x for item in TINY for x in ("--set", item)]
    steps = [
        ["train", "--epochs", "1", "--out", run, "--wandb", "disabled", *set_args],
        ["submit", "--attempt", "1", "--runs", tmp_path / "runs", "--submissions", tmp_path / "subs"]
        + ["--test-dir", test_dir, "--wandb", "disabled"],
        ["submissions", "--submissions", tmp_path / "subs"],
        ["predict", "--model", tmp_path / "subs" / "attempt-1", test_dir, "--out", tmp_path / "p.csv"],
    ]
    for args in steps:
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["work", "hidden-test", "runs", "subs", "p.csv", tmp_cache.name]
    )
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["again"]
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == [".lock", "attempt-1", "ledger.jsonl"]
    manifest = json.loads((tmp_path / "subs" / "attempt-1" / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "config.yaml",
        "metrics.json",
        "predictions.csv",
        "val_predictions.csv",
        "submission.csv",
    }
