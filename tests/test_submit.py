"""Tests for tune_digits.submit, .ledger and .candidates and the submit / submissions commands on demo runs."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tune_digits import candidates as cand
from tune_digits import ledger as led
from tune_digits import submit as sub
from tune_digits.checkpoint import sha256_file
from tune_digits.cli import app
from tune_digits.config import load_config
from tune_digits.errors import UserError

torch.set_num_threads(2)
runner = CliRunner()


@pytest.fixture
def runs(contest_runs: Path) -> Path:
    return contest_runs


def _submit(runs: Path, submissions: Path, *args: str):
    argv = ["submit", "--runs", str(runs), "--submissions", str(submissions), "--wandb", "disabled", *args]
    return runner.invoke(app, argv)


def _state(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_submit_picks_best_val_f1_and_writes_a_complete_attempt(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    subs = tmp_path / "submissions"
    result = _submit(runs, subs, "--attempt", "1", "--message", "first try")
    assert result.exit_code == 0, result.output
    folder = subs / "attempt-1"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"]["run"] == str((runs / "b").resolve())
    assert manifest["message"] == "first try" and manifest["attempt"] == 1
    assert manifest["checkpoint_sha256"] == sha256_file(runs / "b" / "model.pt") == sha256_file(folder / "model.pt")
    assert set(manifest["files"]) == {"config.yaml", "metrics.json", "predictions.csv", "val_predictions.csv"}
    assert all(sha256_file(folder / n) == h for n, h in manifest["files"].items())
    assert set(manifest["versions"]) == {"torch", "timm", "tune_digits"}
    metrics = json.loads((folder / "metrics.json").read_text())
    run_metrics = json.loads((runs / "b" / "metrics.json").read_text())
    assert metrics["val_f1"] == pytest.approx(run_metrics["val_f1"], abs=1e-9)
    assert metrics["test_f1"] == pytest.approx(run_metrics["test_f1"], abs=1e-9)
    assert len(metrics["test"]["per_class_f1"]) == 10 and len(metrics["test"]["confusion_matrix"]) == 10
    lines = (folder / "predictions.csv").read_text().splitlines()
    assert lines[0] == "file,label,predicted,probability"
    assert len(lines) - 1 == sum(map(sum, metrics["test"]["confusion_matrix"]))
    assert not Path(lines[1].split(",")[0]).is_absolute()
    ledger = (subs / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 1 and json.loads(ledger[0])["attempt"] == 1
    assert load_config(folder / "config.yaml").train.epochs == 4
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert (subs / "ledger.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask


def test_repeated_attempt_is_refused_and_changes_nothing(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    subs = tmp_path / "submissions"
    assert _submit(runs, subs, "--attempt", "1").exit_code == 0
    before = _state(subs)
    result = _submit(runs, subs, "--attempt", "1", "--allow-same")
    assert result.exit_code == 2
    assert "attempt 1 was already used" in result.output
    assert _state(subs) == before


@pytest.mark.parametrize("attempt", ["0", "4"])
def test_attempt_outside_1_to_3_is_refused(runs: Path, tmp_path: Path, attempt: str) -> None:
    result = _submit(runs, tmp_path / "submissions", "--attempt", attempt)
    assert result.exit_code == 2
    assert "attempts 1 to 3" in result.output
    assert not (tmp_path / "submissions").exists()


def test_dry_run_writes_nothing(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    result = _submit(runs, tmp_path / "submissions", "--attempt", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would submit b as attempt 2" in result.output
    assert not (tmp_path / "submissions").exists()
    assert not any(tmp_cache.iterdir())  # the test split was not even scored


def test_same_checkpoint_needs_allow_same(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    subs = tmp_path / "submissions"
    assert _submit(runs, subs, "--attempt", "1").exit_code == 0
    before = _state(subs)
    refused = _submit(runs, subs, "--attempt", "2")
    assert refused.exit_code == 2
    assert "same checkpoint as attempt 1" in refused.output
    assert _state(subs) == before
    allowed = _submit(runs, subs, "--attempt", "2", "--allow-same")
    assert allowed.exit_code == 0, allowed.output
    assert "NOT better than attempt 1" in allowed.output
    assert (subs / "attempt-2" / "model.pt").is_file()


def test_worse_attempt_is_announced_but_allowed(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    subs = tmp_path / "submissions"
    assert "NOT better" not in _submit(runs, subs, "--attempt", "1").output
    result = _submit(runs / "a", subs, "--attempt", "3")
    assert result.exit_code == 0, result.output
    assert "NOT better than attempt 1 on validation" in result.output
    entries = led.read_ledger(subs)
    assert [e["attempt"] for e in entries] == [1, 3]
    assert entries[1]["source_run"] == str((runs / "a").resolve())


def test_submissions_lists_attempts_and_flags_tampered_files(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    subs = tmp_path / "submissions"
    assert _submit(runs, subs, "--attempt", "1").exit_code == 0
    clean = runner.invoke(app, ["submissions", "--submissions", str(subs)])
    assert clean.exit_code == 0, clean.output
    assert "attempts left: 2 (2, 3)" in clean.output and "TAMPERED" not in clean.output
    with (subs / "attempt-1" / "predictions.csv").open("a") as fh:
        fh.write("x.wav,1,1,1.0\n")
    tampered = runner.invoke(app, ["submissions", "--submissions", str(subs)])
    assert tampered.exit_code == 1
    assert "attempt 1: TAMPERED: file predictions.csv changed" in tampered.output
    (subs / "attempt-3").mkdir()
    (subs / "attempt-3" / "notes.txt").write_text("mine")
    stray = runner.invoke(app, ["submissions", "--submissions", str(subs)])
    assert "recovered: attempt-3 has no ledger line" in stray.output and "attempt 3 is free" in stray.output
    assert not (subs / "attempt-3").exists()
    assert [p.read_text() for p in subs.glob("unrecorded-attempt-3-*/notes.txt")] == ["mine"]


def test_failure_half_way_leaves_no_attempt_and_no_ledger_line(
    runs: Path, tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = tmp_path / "submissions"
    assert _submit(runs / "a", subs, "--attempt", "1").exit_code == 0
    before = _state(subs)

    def full_disk(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sub, "write_predictions", full_disk)
    result = _submit(runs, subs, "--attempt", "2")
    assert result.exit_code == 2
    assert "No space left on device" in result.output
    assert _state(subs) == before
    assert sorted(p.name for p in subs.iterdir()) == [".lock", "attempt-1", "ledger.jsonl"]


def test_failed_ledger_update_undoes_the_attempt_folder(
    runs: Path, tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = tmp_path / "submissions"
    real_replace = led.os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == led.LEDGER:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(led.os, "replace", replace)
    result = _submit(runs, subs, "--attempt", "1")
    assert result.exit_code == 2
    assert sorted(p.name for p in subs.iterdir()) == [".lock"]


def test_second_concurrent_submit_is_refused(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    subs = tmp_path / "submissions"
    subs.mkdir()
    with (subs / ".lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = _submit(runs, subs, "--attempt", "1")
    assert result.exit_code == 2
    assert "another submit is running" in result.output
    assert sorted(p.name for p in subs.iterdir()) == [".lock"]


def test_test_dir_gives_submission_csv_and_skips_non_audio(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    from tune_digits.demo import demo_root

    test_dir = tmp_path / "hidden-test"
    (test_dir / "part").mkdir(parents=True)
    wavs = sorted(demo_root().glob("7_*_0.wav"))[:3]
    for w in wavs:
        shutil.copy(w, test_dir / "part" / w.name)
    (test_dir / "README.txt").write_text("not audio")
    subs = tmp_path / "submissions"
    result = _submit(runs, subs, "--attempt", "1", "--test-dir", str(test_dir))
    assert result.exit_code == 0, result.output
    assert "warning: 1 non-audio files" in result.output and "README.txt" in result.output
    lines = (subs / "attempt-1" / "submission.csv").read_text().splitlines()
    assert lines[0] == "id,label"
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids == [f"part/{w.name}" for w in wavs]
    assert all(0 <= int(line.split(",")[1]) <= 9 for line in lines[1:])
    manifest = json.loads((subs / "attempt-1" / "manifest.json").read_text())
    assert "submission.csv" in manifest["files"]


def test_search_trial_uses_the_searchs_split_file(runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    trial = tmp_path / "runs" / "search-1" / "trials" / "t07"
    shutil.copytree(runs / "b", trial)
    (trial / "split.json").rename(tmp_path / "runs" / "search-1" / "split.json")
    meta = json.loads((trial / "run.json").read_text())
    (trial / "run.json").write_text(json.dumps({**meta, "kind": "search-trial", "trial_id": "t07"}))
    subs = tmp_path / "submissions"
    result = _submit(tmp_path / "runs", subs, "--attempt", "1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((subs / "attempt-1" / "manifest.json").read_text())
    assert manifest["source"]["trial"] == "t07" and manifest["source"]["name"] == "search-1/trials/t07"
    (tmp_path / "runs" / "search-1" / "split.json").unlink()
    found, unusable = cand.find_candidates(tmp_path / "runs")
    assert found == [] and unusable[0].startswith("search-1/trials/t07: no split.json")


def _fake_run(root: Path, name: str, val_f1: float, **extra: object) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for f in ("model.pt", "config.yaml", "split.json"):
        (folder / f).write_text(name)
    metrics = {"val_f1": val_f1, "val_loss": extra.pop("val_loss", 1.0), "test_f1": extra.pop("test_f1", 0.5)}
    metrics["num_parameters"] = extra.pop("num_parameters", 1000)
    run = {"created": extra.pop("created", "2025-01-01T00:00:00Z"), "split_digest": extra.pop("digest", "d1")}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "run.json").write_text(json.dumps(run))
    return folder


def test_pick_rule_uses_validation_only_and_breaks_ties(tmp_path: Path) -> None:
    _fake_run(tmp_path, "high-test", 0.80, test_f1=0.99)
    _fake_run(tmp_path, "more-loss", 0.90, val_loss=0.5)
    _fake_run(tmp_path, "bigger", 0.90, val_loss=0.4, num_parameters=2000)
    _fake_run(tmp_path, "newer", 0.90, val_loss=0.4, created="2025-02-01T00:00:00Z")
    _fake_run(tmp_path, "winner", 0.90, val_loss=0.4)
    found, excluded = cand.find_candidates(tmp_path)
    assert excluded == []
    selection = cand.choose(found)
    assert [c.name for c in selection.ranked] == ["winner", "newer", "bigger", "more-loss", "high-test"]


def test_candidates_grouped_by_split_digest(tmp_path: Path) -> None:
    _fake_run(tmp_path, "old-split", 0.95, digest="aaaa1111", created="2025-01-01T00:00:00Z")
    _fake_run(tmp_path, "new-split", 0.50, digest="bbbb2222", created="2025-03-01T00:00:00Z")
    _fake_run(tmp_path, "incomplete", 0.99)
    (tmp_path / "incomplete" / "run.json").unlink()
    _fake_run(tmp_path / ".trial.partial-x", "hidden", 0.99)
    found, unusable = cand.find_candidates(tmp_path)
    assert unusable == ["incomplete: no run.json"]
    latest = cand.choose(found)
    assert latest.pick.name == "new-split" and latest.excluded == ["old-split: split aaaa1111, not bbbb2222"]
    assert cand.choose(found, "aaaa").pick.name == "old-split"
    with pytest.raises(UserError, match="no run was evaluated on split cccc"):
        cand.choose(found, "cccc")


def test_wandb_gets_a_submit_run_with_the_model_artifact(
    runs: Path, tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, object] = {}

    class Artifact:
        def __init__(self, name: str, type: str, metadata: dict) -> None:
            calls["artifact"] = (name, type)
            self.files: list[str] = []

        def add_file(self, path: str) -> None:
            self.files.append(Path(path).name)

    class Run:
        summary: dict = {}

        def log_artifact(self, artifact: Artifact, aliases: list[str]) -> None:
            calls["logged"] = (sorted(artifact.files), aliases)

        def finish(self) -> None:
            calls["finished"] = True

    def init(**kwargs: object) -> Run:
        calls["init"] = kwargs
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init, Artifact=Artifact))
    opts = sub.SubmitOptions(attempt=2, runs=runs, submissions=tmp_path / "subs", wandb="offline")
    sub.submit(opts)
    assert calls["init"]["job_type"] == "submit" and calls["init"]["mode"] == "offline"
    assert calls["artifact"][1] == "model"
    assert calls["logged"] == (["config.yaml", "manifest.json", "metrics.json", "model.pt"], ["attempt-2"])
    assert calls["finished"] is True
