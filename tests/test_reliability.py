"""Crashes and failures: what survives a killed process, a failing trial or damaged files, and what is lost.

The Ray test runs a real search on the bundled demo corpus with tiny LeNet-5 settings and kills it; it is
marked slow. The others simulate what a SIGKILL leaves behind. A killed final-eight: tests/test_final_eight.py;
failing trials: tests/test_failing_trials.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from processes import cli_argv, kill, start, wait_for  # tests/processes.py
from spaces import write_space  # tests/spaces.py
from typer.testing import CliRunner

from tune_digits.cli import app
from tune_digits.config import Config, load_config

runner = CliRunner()


def read_history(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- killed search: trials in flight


@pytest.mark.slow
def test_killed_search_keeps_finished_trials_and_resumes_the_one_in_flight(tmp_path: Path, feature_cache: Path) -> None:
    """SIGKILL while the second of two trials trains: the finished one is not run again, the one in flight
    goes on from its last checkpoint, and the resumed search ends with both rows and no resumable state."""
    env = {**os.environ, "TUNE_DIGITS_CACHE": str(feature_cache), "WANDB_MODE": "disabled"}
    # An epoch takes ~0.2 s on a quiet core and the worker may go on for ~2 s after the kill is decided
    # (poll, sleep, orphaned worker): 20 epochs keep the second trial in flight whatever the machine.
    epochs = 20
    space = write_space(
        tmp_path / "space.yaml",
        {"model.dropout": {"type": "quantized", "low": 0.0, "high": 0.2, "q": 0.1}},
        # lr 1e-7: validation F1 stays where epoch 1 put it, so each trial checkpoints once (epoch 1) and Ray's
        # experiment state, saved every second, always names a checkpoint that exists. With 0.2 s epochs that
        # each improve, a kill can land after Ray deleted the checkpoint its last saved state names.
        {"train.lr": 1e-7},
        num_samples=2,
        max_epochs=epochs,
        grace_period=epochs,
        seed=0,
    )
    base = cli_argv("search", "--space", space, "--storage", tmp_path / "runs", "--name", "r", "--wandb", "disabled")
    base += ["--max-concurrent", "1"]  # one trial after the other: the first has finished when the second runs
    folder = tmp_path / "runs" / "r"

    def histories() -> dict[str, list[dict[str, Any]]]:
        return {p.parent.name: read_history(p) for p in sorted(folder.glob("trials/*/history.jsonl"))}

    def finished_and_in_flight() -> bool:
        lengths = sorted(len(h) for h in histories().values())
        return len(lengths) == 2 and 2 <= lengths[0] <= 4 and lengths[1] == epochs

    proc = start(base, env, tmp_path)
    wait_for(finished_and_in_flight, proc, "one finished trial and two epochs of the next")
    time.sleep(0.5)  # the checkpoint reaches the experiment state right after the epoch
    kill(proc)
    before = histories()
    done = [t for t, h in before.items() if len(h) == epochs]
    (flying,) = [t for t, h in before.items() if len(h) < epochs]
    assert len(done) == 1 and 2 <= len(before[flying]) < epochs, {t: len(h) for t, h in before.items()}
    finished_bytes = (folder / "trials" / done[0] / "history.jsonl").read_bytes()
    assert not (folder / "results.csv").exists()

    resumed = subprocess.run([*base, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (folder / "trials" / done[0] / "history.jsonl").read_bytes() == finished_bytes  # not run again
    after = histories()[flying]
    table = pd.read_csv(folder / "results.csv")
    why = f"{table.to_string()}\n{resumed.stderr[-2000:]}"
    assert [r["epoch"] for r in after] == list(range(1, epochs + 1)), why  # every epoch once: no repeats, no gaps
    kept = 0  # how many leading epochs are the very records logged before the kill
    while kept < len(before[flying]) and before[flying][kept] == after[kept]:
        kept += 1
    # The first `kept` epochs are the checkpoint's, untouched (their timings included); training went on from there.
    assert kept >= 1, "the trial restarted from epoch 1 instead of its checkpoint"
    assert before[flying][kept - 1]["improved"], "it resumed from an epoch that saved no checkpoint"
    assert len(table) == 2 and table["trial_id"].is_unique and set(table["trial_id"]) == {done[0], flying}
    assert (table["epochs_run"] == epochs).all() and (table["status"] == "TERMINATED").all()
    assert not list(folder.glob(".ray/*/checkpoint_*"))  # finished: no trial can resume, no optimizer state


# ---------------------------------------------------------------- what a SIGKILL leaves behind


def tones(root: Path) -> Path:
    import soundfile as sf

    t = np.arange(3200) / 8000
    for speaker in "abcd":
        (root / speaker).mkdir(parents=True, exist_ok=True)
        for digit in range(5):
            wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * digit) * t) * np.hanning(len(t))
            sf.write(root / speaker / f"{digit}_{speaker}_0.wav", wave, 8000, subtype="PCM_16")
    return root


def build(corpus: Path) -> Any:
    from tune_digits.corpus import scan
    from tune_digits.data import build_features

    cfg = Config()
    return build_features(scan(corpus), cfg.audio, cfg.features, cfg.bilateral, progress=False)


@pytest.mark.parametrize("damage", ["flipped bytes", "header", "missing features", "short index", "stale temp folder"])
def test_feature_cache_damage_is_rebuilt_to_the_same_features(damage: str, tmp_path: Path, tmp_cache: Path) -> None:
    """Beyond tests/test_data.py (truncation, broken index.json): same-size damage, lost files, crash leftovers."""
    corpus = tones(tmp_path / "corpus")
    first = build(corpus)
    want, key, entry = np.array(first.x), first.key, first.path
    del first
    features = entry / "features.npy"
    if damage == "flipped bytes":
        with features.open("r+b") as fh:
            fh.seek(features.stat().st_size // 2)
            fh.write(b"\xff" * 64)
    elif damage == "header":
        with features.open("r+b") as fh:
            fh.write(b"\x00" * 16)
    elif damage == "missing features":
        features.unlink()
    elif damage == "short index":
        index = json.loads((entry / "index.json").read_text())
        (entry / "index.json").write_text(json.dumps({**index, "labels": index["labels"][:-1]}))
    else:  # a build killed half-way leaves its temporary folder beside the entry; the entry itself is gone
        shutil.move(entry, tmp_cache / f".{key}-killed")
        (tmp_cache / f".{key}-killed" / "index.json").unlink()
    with pytest.warns(UserWarning, match="feature cache") if damage != "stale temp folder" else nullcontext():
        again = build(corpus)
    assert again.key == key
    np.testing.assert_array_equal(np.asarray(again.x), want)


def test_partial_run_folder_is_never_a_candidate(tmp_path: Path) -> None:
    """A killed `train` leaves a hidden `.NAME.partial-*` folder: submit never picks it."""
    from tune_digits.candidates import find_candidates

    partial = tmp_path / "runs" / ".best.partial-abc"
    partial.mkdir(parents=True)
    for name in ("model.pt", "config.yaml", "split.json"):
        (partial / name).write_text("x")
    (partial / "metrics.json").write_text(json.dumps({"val_f1": 1.0, "val_loss": 0.0, "num_parameters": 1}))
    (partial / "run.json").write_text(json.dumps({"created": "2030-01-01T00:00:00Z", "split_digest": "d"}))
    found, excluded = find_candidates(tmp_path / "runs")
    assert found == [] and excluded == []


def test_submit_after_a_killed_submit(tmp_path: Path, tmp_cache: Path) -> None:
    """A killed submit leaves `.attempt-N.tmp-*` and `.ledger.jsonl-*`: the attempt is still free and counts once."""
    from tune_digits.run import train_run

    corpus = tones(tmp_path / "corpus")
    cfg = load_config(None, [f"data.root={corpus}", "train.epochs=1", "model.channels=[4,8]", "model.fc=[32,16]"])
    train_run(cfg, tmp_path / "runs" / "one", wandb="disabled", progress=False)
    subs = tmp_path / "submissions"
    (subs / ".attempt-1.tmp-killed").mkdir(parents=True)
    (subs / ".attempt-1.tmp-killed" / "model.pt").write_text("half")
    (subs / ".ledger.jsonl-killed").write_text('{"attempt": 1}\n')
    args = ["submit", "--attempt", "1", "--runs", str(tmp_path / "runs"), "--submissions", str(subs)]
    result = runner.invoke(app, [*args, "--wandb", "disabled"])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["submissions", "--submissions", str(subs)])
    assert listed.exit_code == 0, listed.output
    assert "attempts left: 2 (2, 3)" in listed.output
    ledger = (subs / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 1 and json.loads(ledger[0])["attempt"] == 1
