"""A contest is one corpus and one test split: later attempts compete only runs on the split of attempt 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from tune_digits import candidates as cand
from tune_digits import ledger as led
from tune_digits.cli import app
from tune_digits.cli.render import attempt_cells
from tune_digits.corpus import Split
from tune_digits.run import split_digest

runner = CliRunner()


def _submit(runs: Path, subs: Path, *args: str):
    argv = ["submit", "--runs", str(runs), "--submissions", str(subs), "--wandb", "disabled", *args]
    return runner.invoke(app, argv)


def _on_another_split(src: Path, dst: Path) -> Path:
    """A copy of run ``src`` whose split moves one test file to validation: another split, newer, same corpus."""
    shutil.copytree(src, dst)
    split = json.loads((dst / "split.json").read_text())
    split["val"].append(split["test"].pop())
    split["spec"] = "hand-made"
    (dst / "split.json").write_text(json.dumps(split))
    digest = split_digest(Split(split["spec"], *(tuple(split[k]) for k in ("train", "val", "test"))))
    run = json.loads((dst / "run.json").read_text())
    run.update(split_digest=digest, split_spec="hand-made", created="2999-01-01T00:00:00Z")
    (dst / "run.json").write_text(json.dumps(run))
    return dst


def test_later_attempts_compete_only_runs_on_the_contest_split(
    contest_runs: Path, tmp_path: Path, tmp_cache: Path
) -> None:
    runs, subs = tmp_path / "runs", tmp_path / "subs"
    shutil.copytree(contest_runs / "b", runs / "b")
    assert _submit(runs, subs, "--attempt", "1").exit_code == 0
    first = led.read_ledger(subs)[0]
    assert first["split_spec"] and first["data_root"] == str(Path(first["data_root"]).resolve())
    other = _on_another_split(contest_runs / "b", runs / "newer-other-split")
    alone = _submit(other, subs, "--attempt", "2")
    assert alone.exit_code == 2
    assert "no run was evaluated on this contest's split" in alone.output
    assert f"({first['split_digest'][:8]})" in alone.output and "is on split hand-made" in alone.output
    shutil.rmtree(runs / "b")
    shutil.copytree(contest_runs / "a", runs / "a")
    mixed = _submit(runs, subs, "--attempt", "2")
    assert mixed.exit_code == 0, mixed.output
    assert "excluded newer-other-split: split" in mixed.output
    assert led.read_ledger(subs)[1]["source_run"] == str((runs / "a").resolve())
    digest = json.loads((other / "run.json").read_text())["split_digest"]
    wrong = _submit(runs, subs, "--attempt", "3", "--split-digest", digest[:8], "--dry-run")
    assert wrong.exit_code == 2 and f"--split-digest {digest[:8]} is not this contest's split" in wrong.output


def test_a_new_contest_needs_yes_and_archives_the_old_one(contest_runs: Path, tmp_path: Path, tmp_cache: Path) -> None:
    runs, subs = tmp_path / "runs", tmp_path / "subs"
    shutil.copytree(contest_runs / "b", runs / "b")
    assert _submit(runs, subs, "--attempt", "1").exit_code == 0
    shutil.rmtree(runs / "b")
    _on_another_split(contest_runs / "a", runs / "other")
    before = sorted(p.name for p in subs.iterdir())
    refused = _submit(runs, subs, "--attempt", "1", "--new-contest")
    assert refused.exit_code == 2 and "add --yes to do it" in refused.output
    dry = _submit(runs, subs, "--attempt", "1", "--new-contest", "--yes", "--dry-run")
    assert dry.exit_code == 0 and "(dry run: not done)" in dry.output
    assert sorted(p.name for p in subs.iterdir()) == before
    done = _submit(runs, subs, "--attempt", "1", "--new-contest", "--yes")
    assert done.exit_code == 0, done.output
    archived = list(subs.glob("contest-*"))
    assert len(archived) == 1 and (archived[0] / "attempt-1" / "model.pt").is_file()
    assert led.read_ledger(subs)[0]["split_spec"] == "hand-made"
    listed = runner.invoke(app, ["submissions", "--submissions", str(subs)])
    assert listed.exit_code == 0, listed.output
    assert f"earlier contests (archived): {archived[0].name}" in listed.output


def test_ray_checkpoint_folders_are_not_listed_as_excluded(contest_runs: Path, tmp_path: Path) -> None:
    trial = tmp_path / "runs" / "search-1" / "trials" / "t1"
    shutil.copytree(contest_runs / "b", trial)
    ray = tmp_path / "runs" / "search-1" / "trainable_t1_0_lr=0.01" / "checkpoint_000003"
    ray.mkdir(parents=True)
    shutil.copy(contest_runs / "b" / "model.pt", ray / "model.pt")
    found, excluded = cand.find_candidates(tmp_path / "runs")
    assert [c.name for c in found] == ["search-1/trials/t1"] and excluded == []


def test_deltas_only_between_attempts_on_one_split() -> None:
    entries = [
        {"attempt": 1, "split_digest": "aaaa", "val_f1": 0.5, "test_f1": 0.4, "data_root": "/d/fsdd"},
        {"attempt": 2, "split_digest": "bbbb", "val_f1": 0.9, "test_f1": 0.9, "split_spec": "demo"},
        {"attempt": 3, "split_digest": "aaaa", "val_f1": 0.6, "test_f1": 0.45, "message": "wider"},
    ]
    rows = [attempt_cells(e, entries) for e in entries]
    assert rows[0][2] == "fsdd" and rows[0][1] == "-" and rows[1][3] == "demo bbbb" and rows[2][5] == "wider"
    assert rows[1][-1] == "-"  # attempt 2 is on another split: no delta against attempt 1
    assert rows[2][-1] == "+0.100/+0.050"  # against attempt 1, the previous one on its split


def test_an_archive_killed_half_way_is_finished_by_the_next_run(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    for n in (1, 2):
        (subs / f"attempt-{n}").mkdir(parents=True)
        (subs / f"attempt-{n}" / "model.pt").write_text(f"model {n}")
    lines = [json.dumps({"attempt": n, "split_digest": "abcd1234ffff"}) for n in (1, 2)]
    (subs / led.LEDGER).write_text("\n".join(lines) + "\n")
    tmp = subs / ".contest-20260101T000000Z-abcd1234.tmp"
    tmp.mkdir()
    (subs / "attempt-1").rename(tmp / "attempt-1")  # killed after moving the first attempt
    done = led.recover(subs)
    name = "contest-20260101T000000Z-abcd1234"
    assert done == [f"recovered: archived the earlier contest (2 attempts) to {name}; a new contest starts"]
    archive = subs / "contest-20260101T000000Z-abcd1234"
    assert sorted(p.name for p in archive.iterdir()) == ["attempt-1", "attempt-2", led.LEDGER]
    assert (archive / "attempt-2" / "model.pt").read_text() == "model 2"
    assert led.read_ledger(subs) == [] and not list(subs.glob("attempt-*"))
