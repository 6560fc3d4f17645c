"""Contest submissions: three numbered attempts, each a folder that predicts on its own.

``submit`` checks the rules against the ledger, picks the run (``tune_digits.candidates``),
scores it on the held-out test split and writes ``SUBMISSIONS/attempt-N`` with its ledger
line in one atomic step (``tune_digits.ledger``, which also describes the folder's layout);
the attempt is then logged to W&B when that is enabled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_digits.advice import VAL_PREDICTIONS, Advice, advise, read_val_predictions
from tune_digits.atomic import make_public
from tune_digits.candidates import Candidate, Selection, choose, find_candidates
from tune_digits.checkpoint import sha256_file
from tune_digits.contest import check_new_contest, competing_digest, contest_of
from tune_digits.errors import UserError
from tune_digits.inference import write_submission
from tune_digits.ledger import (
    archive_contest,
    attempts_left,
    check_attempt_number,
    commit_ledger,
    discard,
    read_ledger,
    recover,
    stage_ledger,
    submissions_lock,
)
from tune_digits.run_folder import write_predictions

Say = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


@dataclass
class SubmitOptions:
    attempt: int
    runs: Path = Path("runs")
    submissions: Path = Path("submissions")
    data: Path | None = None  # default: the pick's data_root from run.json
    test_dir: Path | None = None
    message: str = ""
    dry_run: bool = False
    allow_same: bool = False
    onnx: bool = False
    split_digest: str | None = None
    wandb: str = "disabled"
    new_contest: bool = False  # archive the contest in SUBMISSIONS and start a new one (needs yes)
    yes: bool = False


@dataclass
class Plan:
    attempt: int
    selection: Selection
    checkpoint_sha256: str
    previous: dict[str, Any] | None  # the latest earlier attempt
    left: list[int]  # attempt numbers still free before this one
    notes: list[str] = field(default_factory=list)
    advice: Advice | None = None  # expected test F1 and the chance to beat ``previous`` (from validation)


def make_plan(opts: SubmitOptions, say: Say = _quiet) -> Plan:
    """Check the rules and choose the run; writes nothing."""
    check_attempt_number(opts.attempt)
    entries = read_ledger(opts.submissions)
    if opts.new_contest:
        line = check_new_contest(entries, opts.yes, opts.dry_run)
        if line:
            say(line)
        entries = []
    used = {e["attempt"]: e for e in entries}
    if opts.attempt in used:
        left = ", ".join(map(str, attempts_left(entries))) or "none"
        raise UserError(
            f"attempt {opts.attempt} was already used ({used[opts.attempt].get('created')}); attempts left: {left}"
        )
    stray = opts.submissions / f"attempt-{opts.attempt}"
    if opts.new_contest:
        pass
    elif stray.exists() and not (opts.dry_run and stray.is_dir()):
        raise UserError(f"{stray} exists but has no ledger line; move it away and submit again")
    elif stray.exists():
        say(f"note: {stray.name} has no ledger line; submit moves it aside before writing attempt {opts.attempt}")
    candidates, unusable = find_candidates(opts.runs)
    digest = competing_digest(contest_of(entries), candidates, opts.split_digest)
    sel = skip_unloadable(choose(candidates, digest), say)
    sel.excluded = unusable + sel.excluded
    say(f"candidates: {len(sel.ranked)} runs under {opts.runs} on split {sel.digest}; {len(sel.excluded)} excluded")
    for line in sel.excluded[:10]:
        say(f"  excluded {line}")
    if len(sel.excluded) > 10:
        say(f"  ... and {len(sel.excluded) - 10} more")
    pick = sel.pick
    say(f"pick: {pick.name} (val F1 {pick.val_f1:.4f}, val loss {pick.val_loss:.4f}, {pick.num_parameters:,} params)")
    plan = Plan(opts.attempt, sel, sha256_file(pick.model_path), entries[-1] if entries else None, [])
    plan.left = attempts_left(entries)
    plan.notes = _rule_notes(plan, entries, opts.allow_same)
    for note in plan.notes:
        say(note)
    saved = read_val_predictions(pick.folder) is not None
    if not saved and not opts.dry_run:
        return plan  # a real submit scores validation anyway and advises from that (write_attempt)
    scored = None if saved else _scored_on_val(pick, opts.data, say)
    plan.advice = advise(pick.folder, plan.previous, opts.submissions, scored)
    for line in plan.advice.lines:
        say(line)
    return plan


def _scored_on_val(pick: Any, data: Path | None, say: Say) -> dict[str, tuple[int, int]] | None:
    """``file -> (label, predicted)`` of the pick on validation, for a folder that keeps none (a search trial)."""
    from tune_digits.inference import load_model
    from tune_digits.scoring import evaluate_val

    root = data or pick.run.get("data_root")
    if root is None:
        return None
    try:
        preds = evaluate_val(load_model(pick.folder), root, pick.split_file, pick.split_digest)
    except UserError as exc:
        say(f"note: {pick.name} could not be scored on validation for the advice: {exc}")
        return None
    return {f: (int(y), int(p)) for f, y, p in zip(preds.files, preds.labels, preds.predicted, strict=True)}


def skip_unloadable(sel: Selection, say: Say = _quiet) -> Selection:
    """The selection with runs whose model.pt cannot be loaded left out, each said in one warning line."""
    from tune_digits.inference import load_model

    for i, c in enumerate(sel.ranked):
        try:
            load_model(c.folder)
        except UserError as exc:
            say(f"warning: skipped {c.name} (#{i + 1} by val F1 {c.val_f1:.4f}): {exc}")
            sel.excluded.append(f"{c.name}: {exc}")
            continue
        sel.ranked = sel.ranked[i:]
        sel.pick = c
        return sel
    raise UserError(f"none of the {len(sel.ranked)} runs on split {sel.digest} has a model.pt that loads; see above")


def _rule_notes(plan: Plan, entries: list[dict[str, Any]], allow_same: bool) -> list[str]:
    """Refuse an earlier attempt's checkpoint (unless allowed); note a pick no better than the last attempt."""
    pick, sha, notes = plan.selection.pick, plan.checkpoint_sha256, []
    same = [e["attempt"] for e in entries if e.get("checkpoint_sha256") == sha]
    if same and not allow_same:
        raise UserError(
            f"{pick.name} is the same checkpoint as attempt {same[0]} (sha256 {sha[:12]}); "
            "pass --allow-same to submit it again"
        )
    if same:
        notes.append(f"note: same checkpoint as attempt {same[0]} (--allow-same)")
    prev = plan.previous
    if prev is not None and pick.val_f1 <= float(prev.get("val_f1", -1.0)):
        notes.append(
            f"note: NOT better than attempt {prev['attempt']} on validation: "
            f"val F1 {pick.val_f1:.4f} vs {float(prev['val_f1']):.4f}"
        )
    return notes


@dataclass
class SubmitResult:
    plan: Plan
    folder: Path | None = None  # None for a dry run
    entry: dict[str, Any] = field(default_factory=dict)  # the ledger line


def submit(opts: SubmitOptions, say: Say = _quiet) -> SubmitResult:
    """Decide, score on test and write attempt ``opts.attempt`` (layout: ``tune_digits.ledger``)."""
    from tune_digits.inference import check_onnx_available, load_model, predict_folder
    from tune_digits.scoring import evaluate_split
    from tune_digits.tracking import resolve_mode

    check_attempt_number(opts.attempt)
    mode = resolve_mode(opts.wandb)
    if not opts.runs.is_dir():  # checked before the lock creates the submissions folder
        raise UserError(f"runs folder {opts.runs} does not exist; train a model first or pass --runs DIR")
    if opts.test_dir is not None and not opts.test_dir.is_dir():
        raise UserError(f"--test-dir {opts.test_dir}: no such folder; pass the folder of unlabelled *.wav files")
    if opts.data is not None and not opts.data.is_dir():
        raise UserError(f"--data {opts.data}: no such folder; pass the corpus the run was trained on")
    if opts.onnx:
        check_onnx_available()
    if opts.dry_run:
        return SubmitResult(make_plan(opts, say))
    with submissions_lock(opts.submissions):
        for line in recover(opts.submissions):
            say(line)
        entries = read_ledger(opts.submissions)
        plan = make_plan(opts, say)
        if opts.new_contest and entries:
            say(archive_contest(opts.submissions, entries))
        pick = plan.selection.pick
        loaded = load_model(pick.folder, scoring_device(pick))
        if opts.data is None and not pick.run.get("data_root"):
            raise UserError(f"run.json of {pick.name} names no data folder; pass --data")
        root = opts.data or Path(str(pick.run["data_root"]))
        evaluation = evaluate_split(loaded, root, pick.split_file, pick.split_digest)
        if abs(evaluation.val["f1"] - pick.val_f1) > 1e-6:
            now, then, device = evaluation.val["f1"], pick.val_f1, pick.metrics.get("device")
            say(f"warning: val F1 is {now:.4f} now, {then:.4f} in the run (trained on {device}); has the data changed?")
        rows = None
        if opts.test_dir is not None:
            rows, notes = predict_folder(loaded, opts.test_dir)
            for note in notes:
                say(note)
        folder, entry = write_attempt(opts, plan, loaded, evaluation, rows, say)
    if mode != "disabled":
        log_to_wandb(folder, entry, mode, say)
    return SubmitResult(plan, folder, entry)


def scoring_device(pick: Candidate) -> str:
    """The run's own device type when this machine has it (the scores then match the run's), else cpu."""
    import torch

    return "cuda" if pick.metrics.get("device") == "cuda" and torch.cuda.is_available() else "cpu"


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _scores(part: dict[str, Any]) -> dict[str, Any]:
    keys = ("f1", "accuracy", "loss", "per_class_f1", "confusion_matrix")
    return {k: part[k] for k in keys}


def attempt_metrics(plan: Plan, ev: Any) -> dict[str, Any]:
    pick = plan.selection.pick
    return {
        "attempt": plan.attempt,
        "val_f1": ev.val["f1"],
        "val_accuracy": ev.val["accuracy"],
        "test_f1": ev.test["f1"],
        "test_accuracy": ev.test["accuracy"],
        "num_parameters": pick.metrics.get("num_parameters"),
        "device": ev.device,
        "val": _scores(ev.val),
        "test": _scores(ev.test),
    }


def versions() -> dict[str, str | None]:
    """Installed versions of torch, timm and tune-digits (None when one is not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("torch", "timm", "tune-digits"):
        try:
            out[name.replace("-", "_")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name.replace("-", "_")] = None
    return out


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the project this package runs from; None outside a git checkout."""
    where = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


def _manifest(tmp: Path, opts: SubmitOptions, plan: Plan, model: str, ev: Any) -> dict[str, Any]:
    pick = plan.selection.pick
    others = sorted(p.name for p in tmp.iterdir() if p.is_file() and p.name != "model.pt")
    return {
        "attempt": plan.attempt,
        "created": utc_now(),
        "message": opts.message,
        "source": {"run": str(pick.folder.resolve()), "name": pick.name, "trial": pick.run.get("trial_id", pick.name)},
        "model": model,
        "split_digest": plan.selection.digest,
        "split_spec": pick.run.get("split_spec"),
        "data_root": str(Path(ev.data_root).resolve()),
        "checkpoint_sha256": plan.checkpoint_sha256,
        "files": {name: sha256_file(tmp / name) for name in others},
        "versions": versions(),
        "git_commit": git_commit(),
    }


LEDGER_KEYS = ("attempt", "created", "message", "model", "checkpoint_sha256", "split_digest", "split_spec", "data_root")


def ledger_entry(tmp: Path, manifest: dict[str, Any], plan: Plan, ev: Any) -> dict[str, Any]:
    """The ledger line of the attempt staged in ``tmp`` (``prev_sha256`` is added when it is staged)."""
    return {k: manifest[k] for k in LEDGER_KEYS} | {
        "source_run": manifest["source"]["run"],
        "trial": manifest["source"]["trial"],
        "manifest_sha256": sha256_file(tmp / "manifest.json"),
        "metrics_sha256": sha256_file(tmp / "metrics.json"),
        "val_f1": ev.val["f1"],
        "val_loss": ev.val["loss"],
        "test_f1": ev.test["f1"],
        "test_accuracy": ev.test["accuracy"],
        "num_parameters": plan.selection.pick.metrics.get("num_parameters"),
        **(plan.advice.record if plan.advice else {}),
    }


def write_attempt(
    opts: SubmitOptions, plan: Plan, loaded: Any, ev: Any, rows: list[tuple[str, int]] | None, say: Say = _quiet
) -> tuple[Path, dict[str, Any]]:
    """Write the attempt folder and its ledger line atomically; returns (folder, ledger entry)."""
    from tune_digits.config import save_config
    from tune_digits.inference import export_onnx

    sub, n, pick = opts.submissions, plan.attempt, plan.selection.pick
    tmp = Path(tempfile.mkdtemp(prefix=f".attempt-{n}.tmp-", dir=sub))
    ledger_tmp = None
    try:
        make_public(tmp)  # mkdtemp makes it private
        shutil.copyfile(pick.model_path, tmp / "model.pt")
        if sha256_file(tmp / "model.pt") != plan.checkpoint_sha256:
            raise UserError(f"{pick.name}/model.pt changed while submitting; try again")
        save_config(loaded.cfg, tmp / "config.yaml")
        write_json(tmp / "metrics.json", attempt_metrics(plan, ev))
        write_predictions(tmp / "predictions.csv", ev.predictions())
        write_predictions(tmp / VAL_PREDICTIONS, ev.predictions("val"))
        if plan.advice is None or not plan.advice.record:  # a run saved before val predictions were: use ours
            plan.advice = advise(tmp, plan.previous, sub)
            for line in plan.advice.lines:
                say(line)
        if rows is not None:
            write_submission(tmp / "submission.csv", rows)
        if opts.onnx:
            export_onnx(loaded, tmp / "model.onnx", ev.samples)
        manifest = _manifest(tmp, opts, plan, loaded.cfg.model.name, ev)
        write_json(tmp / "manifest.json", manifest)
        entry = ledger_entry(tmp, manifest, plan, ev)
        ledger_tmp = stage_ledger(sub, entry)
        commit_ledger(sub, ledger_tmp)  # the commit point: from here on the attempt counts
    except BaseException as exc:
        discard(tmp, ledger_tmp)
        if isinstance(exc, OSError):
            raise UserError(f"attempt {n} not submitted, nothing was written: {exc.strerror or exc}") from None
        raise
    place_attempt(tmp, sub / f"attempt-{n}", say)
    return sub / f"attempt-{n}", entry


def place_attempt(tmp: Path, final: Path, say: Say = _quiet) -> None:
    """Rename the staged folder of a recorded attempt into place; if that fails the next run finishes it."""
    try:
        os.rename(tmp, final)
    except OSError as exc:
        say(
            f"warning: {final.name} is recorded but its folder stays staged as {tmp.name} "
            f"({exc.strerror or exc}); the next submit or submissions moves it into place"
        )


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def log_to_wandb(folder: Path, entry: dict[str, Any], mode: str, say: Say = _quiet) -> None:
    """A W&B run (job_type "submit") with the attempt's model as an artifact aliased ``attempt-N``."""
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    from tune_digits.tracking import PROJECT

    name = f"attempt-{entry['attempt']}"
    try:
        run = wandb.init(project=PROJECT, name=name, job_type="submit", config=entry, dir=str(folder.parent), mode=mode)
        artifact = wandb.Artifact("tune-digits-model", type="model", metadata=entry)
        for f in ("model.pt", "config.yaml", "metrics.json", "manifest.json"):
            artifact.add_file(str(folder / f))
        run.log_artifact(artifact, aliases=[name])
        run.summary.update({k: entry[k] for k in ("val_f1", "test_f1", "test_accuracy")})
        run.finish()
    except Exception as exc:  # the attempt is already saved; W&B trouble must not undo it
        say(f"warning: W&B logging failed ({type(exc).__name__}: {exc}); the attempt is saved in {folder}")
