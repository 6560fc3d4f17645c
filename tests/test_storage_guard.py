"""``--resume`` unpickles nothing that tune-digits did not write: planted, changed or unsigned pickles are refused."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tune_digits.errors import UserError
from tune_digits.storage_guard import MANIFEST, carries_pickle, check_storage, guarded_filesystem

TINY = {"model.name": "lenet5", "data.split": "speakers", "model.channels": [4, 8], "model.fc": [32, 16]}


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _write(folder: Path, rel: str, data: bytes) -> None:
    fs = guarded_filesystem(folder)
    with fs.open_output_stream(str(folder / rel)) as f:
        f.write(data)


def test_which_files_carry_pickles() -> None:
    for name in ("tuner.pkl", "searcher-state-2026.pkl", "params.pkl", "error.pkl", "experiment_state-x.json"):
        assert carries_pickle(name), name
    for name in ("basic-variant-state-x.json", "search_gen_state-x.json"):
        assert carries_pickle(name), name
    for name in ("params.json", "result.json", "base_config.json", "model.pt", "progress.csv"):
        assert not carries_pickle(name), name


def test_signed_files_pass_and_leave_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    _write(folder, "tuner.pkl", pickle.dumps({"a": 1}))
    _write(folder, "trial_0/params.pkl", pickle.dumps({"b": 2}))
    _write(folder, "result.json", b"{}")  # not a pickle: written as is, not listed
    check_storage(folder)
    names = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert names == [MANIFEST, "params.pkl", "result.json", "tuner.pkl"]
    _write(folder, "tuner.pkl", pickle.dumps({"a": 2}))  # Ray rewrites its state: still trusted
    check_storage(folder)


@pytest.mark.parametrize(
    "damage", ["changed", "appeared", "behind a symlink", "manifest edited", "manifest gone", "other key"]
)
def test_untrusted_pickles_are_refused_in_one_line(damage: str, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    _write(folder, "tuner.pkl", pickle.dumps({"a": 1}))
    if damage == "changed":
        (folder / "tuner.pkl").write_bytes(pickle.dumps({"a": 666}))
    elif damage == "appeared":
        (folder / "trial_0").mkdir()
        (folder / "trial_0" / "error.pkl").write_bytes(pickle.dumps("x"))
    elif damage == "behind a symlink":  # a trial folder swapped for a link to the attacker's folder
        (tmp_path / "evil").mkdir()
        (tmp_path / "evil" / "error.pkl").write_bytes(pickle.dumps("x"))
        (folder / "trial_0").symlink_to(tmp_path / "evil", target_is_directory=True)
    elif damage == "manifest edited":  # the attacker lists his own file's digest
        text = (folder / MANIFEST).read_text()
        (folder / MANIFEST).write_text(text.replace('"tuner.pkl": ["', '"tuner.pkl": ["00'))
    elif damage == "manifest gone":
        (folder / MANIFEST).unlink()
    else:
        monkeypatch.setenv("TUNE_DIGITS_KEY_FILE", str(tmp_path / "another.key"))
        guarded_filesystem(tmp_path / "elsewhere")  # makes the other key
    with pytest.raises(UserError) as info:
        check_storage(folder)
    message = str(info.value)
    assert "\n" not in message and "--name" in message, message


def test_a_folder_without_pickles_needs_no_manifest(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "split.json").write_text("{}")
    check_storage(tmp_path / "s")


@pytest.mark.slow
def test_resume_refuses_a_planted_tuner_pkl_and_runs_nothing(tmp_path: Path, feature_cache: Path) -> None:
    space = tmp_path / "space.yaml"
    dims = {"model.dropout": {"type": "quantized", "low": 0.0, "high": 0.2, "q": 0.1}}
    search = {"num_samples": 1, "max_epochs": 1, "grace_period": 1, "seed": 0}
    space.write_text(yaml.safe_dump({"fixed": TINY, "space": dims, "search": search}), encoding="utf-8")
    env = {**os.environ, "TUNE_DIGITS_CACHE": str(feature_cache), "WANDB_MODE": "disabled", "COLUMNS": "300"}
    argv = [sys.executable, "-m", "tune_digits.cli", "search", "--space", str(space)]
    argv += ["--storage", str(tmp_path / "runs"), "--name", "s", "--wandb", "disabled"]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "runs" / "s" / ".ray"  # Ray's experiment, inside the search folder
    assert (folder / MANIFEST).is_file() and (folder / "tuner.pkl").is_file()
    check_storage(folder)  # every pickle Ray wrote is signed (a killed search resuming: test_reliability)

    marker = tmp_path / "code-ran"
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    refused = subprocess.run([*argv, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    lines = [line for line in refused.stderr.splitlines() if line.strip() and not line.startswith("data: ")]
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr[-3000:]  # Ray did not even start
    assert "tuner.pkl: changed" in lines[0], lines[0]
    assert not marker.exists(), "the planted pickle ran"
