"""``--resume`` unpickles nothing that tune-digits did not write: planted, changed or unsigned pickles are refused.

The end-to-end case (a planted tuner.pkl in a real search folder) is in tests/test_search.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tune_digits.errors import UserError
from tune_digits.storage_guard import MANIFEST, carries_pickle, check_storage, guarded_filesystem


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
