"""Contest submissions: three numbered attempts, each a folder that predicts on its own.

Candidates: every run folder under the runs root, i.e. any folder holding ``model.pt``,
``metrics.json``, ``run.json`` and ``config.yaml`` whose split file is found (its own
``split.json``, its config's ``data.split`` file, or the nearest ``split.json`` above it, as
for a search's ``trials/<id>/``). Hidden folders (temporary run folders) are skipped.

The pick rule: candidates are grouped by ``split_digest`` and one group competes, the one
given with ``--split-digest``, else the group of the most recently created run. Within it
the pick is the highest validation macro-F1; ties go to the lower validation loss, then
to fewer parameters, then to the older run (``created``), then to the folder name.
Test scores never decide: the pick is scored on the held-out test split only after it
has been chosen, and only when the attempt is really written.

SUBMISSIONS/
    ledger.jsonl    one JSON line per attempt, append-only
    .lock           held (flock) while an attempt is decided and written
    attempt-N/      model.pt, config.yaml, metrics.json, predictions.csv, manifest.json,
                    submission.csv (--test-dir), model.onnx (--onnx)

An attempt is written under a temporary name inside SUBMISSIONS and renamed; the ledger
is replaced by a copy with one more line right after. A failure leaves neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_digits.checkpoint import sha256_file
from tune_digits.errors import UserError
from tune_digits.inference import write_predictions, write_submission

MAX_ATTEMPTS = 3
RUN_FILES = ("model.pt", "metrics.json", "run.json", "config.yaml")
LEDGER = "ledger.jsonl"

Say = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


@dataclass
class Candidate:
    folder: Path
    name: str  # the folder relative to the runs root
    metrics: dict[str, Any]
    run: dict[str, Any]
    val_f1: float
    val_loss: float  # inf when missing
    num_parameters: int
    created: str
    split_digest: str
    split_file: Path


@dataclass
class Selection:
    pick: Candidate
    ranked: list[Candidate]  # the competing group, best first
    excluded: list[str]  # "FOLDER: reason", one per run left out
    digest: str


def rank_key(c: Candidate) -> tuple[float, float, int, str, str]:
    """Best first: val F1 (high), val loss (low), parameters (few), created (old), folder name."""
    return (-c.val_f1, c.val_loss, c.num_parameters, c.created, c.name)


def _read_candidate(folder: Path, root: Path) -> Candidate | str:
    """The run in ``folder``, or why it is not a candidate."""
    missing = [f for f in RUN_FILES if not (folder / f).is_file()]
    if missing:
        return f"no {', '.join(missing)}"
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable metrics.json or run.json ({exc})"
    metrics, run = metrics if isinstance(metrics, dict) else {}, run if isinstance(run, dict) else {}
    val_f1, loss, n = metrics.get("val_f1"), metrics.get("val_loss"), metrics.get("num_parameters")
    if not isinstance(val_f1, (int, float)) or not math.isfinite(val_f1):
        return "metrics.json has no finite val_f1"
    if not run.get("split_digest"):
        return "run.json has no split_digest"
    split_file = find_split_file(folder, root)
    if split_file is None:
        return "no split.json (in the folder, its config's data.split or a folder above)"
    loss = float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf
    n = n if isinstance(n, int) else 1 << 62
    rel = folder.relative_to(root).as_posix()
    rel = folder.resolve().name if rel == "." else rel
    created, digest = str(run.get("created", "")), str(run["split_digest"])
    return Candidate(folder, rel, metrics, run, float(val_f1), loss, n, created, digest, split_file)


def find_split_file(folder: Path, root: Path) -> Path | None:
    """The run's split: ``folder/split.json``, else its config's ``data.split`` file, else the nearest
    ``split.json`` above it up to ``root`` (a search keeps one for all its trials)."""
    from tune_digits.config import read_yaml

    if (folder / "split.json").is_file():
        return folder / "split.json"
    try:
        spec = str(((read_yaml(folder / "config.yaml") or {}).get("data") or {}).get("split", ""))
    except (UserError, AttributeError):
        spec = ""
    if spec.endswith(".json"):
        for path in (Path(spec).expanduser(), folder / spec):
            if path.is_file():
                return path
    for parent in folder.resolve().parents:
        if (parent / "split.json").is_file():
            return parent / "split.json"
        if parent == root.resolve():
            break
    return None


def find_candidates(runs_root: str | Path) -> tuple[list[Candidate], list[str]]:
    """Every run folder under ``runs_root`` (recursively; hidden and temporary folders skipped)."""
    root = Path(runs_root)
    if not root.is_dir():
        raise UserError(f"runs folder {root} does not exist; train a model first or pass --runs DIR")
    found: list[Candidate] = []
    excluded: list[str] = []
    for model in sorted(root.rglob("model.pt")):
        folder = model.parent
        rel = folder.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        got = _read_candidate(folder, root)
        if isinstance(got, Candidate):
            found.append(got)
        else:
            excluded.append(f"{rel.as_posix() or '.'}: {got}")
    return found, excluded


def choose(candidates: list[Candidate], split_digest: str | None = None) -> Selection:
    """Apply the pick rule (module docstring) to ``candidates``."""
    if not candidates:
        raise UserError("no run folders found; train a model first (tune-digits train) or pass --runs DIR")
    if split_digest is None:
        latest = max(candidates, key=lambda c: (c.created, (c.folder / "run.json").stat().st_mtime_ns))
        split_digest = latest.split_digest
    group = sorted((c for c in candidates if c.split_digest.startswith(split_digest)), key=rank_key)
    digests = {c.split_digest for c in group}
    if not group:
        known = ", ".join(sorted({c.split_digest for c in candidates}))
        raise UserError(f"no run was evaluated on split {split_digest}; the runs use {known}")
    if len(digests) > 1:
        raise UserError(f"--split-digest {split_digest} matches several splits ({', '.join(sorted(digests))})")
    digest = digests.pop()
    excluded = [f"{c.name}: split {c.split_digest}, not {digest}" for c in candidates if c.split_digest != digest]
    return Selection(group[0], group, excluded, digest)


def read_ledger(submissions: Path) -> list[dict[str, Any]]:
    """The ledger's entries in order; a damaged line is a UserError."""
    path = submissions / LEDGER
    if not path.is_file():
        return []
    entries = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise UserError(f"{path} line {i} is not JSON; restore the ledger from a backup") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("attempt"), int):
            raise UserError(f"{path} line {i} is not an attempt record; restore the ledger from a backup")
        entries.append(entry)
    return entries


def attempts_left(entries: list[dict[str, Any]]) -> list[int]:
    used = {e["attempt"] for e in entries}
    return [n for n in range(1, MAX_ATTEMPTS + 1) if n not in used]


def check_attempt_number(attempt: int) -> None:
    if not 1 <= attempt <= MAX_ATTEMPTS:
        raise UserError(f"--attempt {attempt}: the contest allows attempts 1 to {MAX_ATTEMPTS}")


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


@dataclass
class Plan:
    attempt: int
    selection: Selection
    checkpoint_sha256: str
    previous: dict[str, Any] | None  # the latest earlier attempt
    left: list[int]  # attempt numbers still free before this one
    notes: list[str] = field(default_factory=list)


def make_plan(opts: SubmitOptions, say: Say = _quiet) -> Plan:
    """Check the rules and choose the run; writes nothing."""
    check_attempt_number(opts.attempt)
    entries = read_ledger(opts.submissions)
    used = {e["attempt"]: e for e in entries}
    if opts.attempt in used or (opts.submissions / f"attempt-{opts.attempt}").exists():
        when = used.get(opts.attempt, {}).get("created", "earlier")
        left = ", ".join(map(str, attempts_left(entries))) or "none"
        raise UserError(f"attempt {opts.attempt} was already used ({when}); attempts left: {left}")
    candidates, unusable = find_candidates(opts.runs)
    sel = choose(candidates, opts.split_digest)
    sel.excluded = unusable + sel.excluded
    say(f"candidates: {len(sel.ranked)} runs under {opts.runs} on split {sel.digest}; {len(sel.excluded)} excluded")
    for line in sel.excluded[:10]:
        say(f"  excluded {line}")
    if len(sel.excluded) > 10:
        say(f"  ... and {len(sel.excluded) - 10} more")
    pick = sel.pick
    say(f"pick: {pick.name} (val F1 {pick.val_f1:.4f}, val loss {pick.val_loss:.4f}, {pick.num_parameters:,} params)")
    plan = Plan(opts.attempt, sel, sha256_file(pick.folder / "model.pt"), entries[-1] if entries else None, [])
    plan.left = attempts_left(entries)
    plan.notes = _rule_notes(plan, entries, opts.allow_same)
    for note in plan.notes:
        say(note)
    return plan


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


@contextlib.contextmanager
def submissions_lock(submissions: Path) -> Iterator[None]:
    """Hold an exclusive flock on SUBMISSIONS/.lock; a second holder is refused at once."""
    submissions.mkdir(parents=True, exist_ok=True)
    with (submissions / ".lock").open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another submit is running (lock {submissions / '.lock'}); try again when it ends"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@dataclass
class SubmitResult:
    plan: Plan
    folder: Path | None = None  # None for a dry run
    entry: dict[str, Any] = field(default_factory=dict)  # the ledger line


def submit(opts: SubmitOptions, say: Say = _quiet) -> SubmitResult:
    """Decide, score on test and write attempt ``opts.attempt`` (see the module docstring)."""
    from tune_digits.inference import check_onnx_available, evaluate_split, load_model, predict_folder
    from tune_digits.tracking import resolve_mode

    check_attempt_number(opts.attempt)
    mode = resolve_mode(opts.wandb)
    if opts.onnx:
        check_onnx_available()
    if opts.dry_run:
        return SubmitResult(make_plan(opts, say))
    with submissions_lock(opts.submissions):
        plan = make_plan(opts, say)
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
        folder, entry = write_attempt(opts, plan, loaded, evaluation, rows)
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
        "data_root": str(ev.data_root),
        "checkpoint_sha256": plan.checkpoint_sha256,
        "files": {name: sha256_file(tmp / name) for name in others},
        "versions": versions(),
        "git_commit": git_commit(),
    }


def write_attempt(
    opts: SubmitOptions, plan: Plan, loaded: Any, ev: Any, rows: list[tuple[str, int]] | None
) -> tuple[Path, dict[str, Any]]:
    """Write the attempt folder and its ledger line atomically; returns (folder, ledger entry)."""
    from tune_digits.config import save_config
    from tune_digits.inference import export_onnx

    sub, n, pick = opts.submissions, plan.attempt, plan.selection.pick
    tmp = Path(tempfile.mkdtemp(prefix=f".attempt-{n}.tmp-", dir=sub))
    ledger_tmp = None
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private
        shutil.copyfile(pick.folder / "model.pt", tmp / "model.pt")
        if sha256_file(tmp / "model.pt") != plan.checkpoint_sha256:
            raise UserError(f"{pick.name}/model.pt changed while submitting; try again")
        save_config(loaded.cfg, tmp / "config.yaml")
        write_json(tmp / "metrics.json", attempt_metrics(plan, ev))
        write_predictions(tmp / "predictions.csv", ev)
        if rows is not None:
            write_submission(tmp / "submission.csv", rows)
        if opts.onnx:
            export_onnx(loaded, tmp / "model.onnx", ev.samples)
        manifest = _manifest(tmp, opts, plan, loaded.cfg.model.name, ev)
        write_json(tmp / "manifest.json", manifest)
        keep = ("attempt", "created", "message", "model", "checkpoint_sha256", "split_digest")
        entry = {k: manifest[k] for k in keep} | {
            "source_run": manifest["source"]["run"],
            "trial": manifest["source"]["trial"],
            "manifest_sha256": sha256_file(tmp / "manifest.json"),
            "val_f1": ev.val["f1"],
            "val_loss": ev.val["loss"],
            "test_f1": ev.test["f1"],
            "test_accuracy": ev.test["accuracy"],
            "num_parameters": pick.metrics.get("num_parameters"),
        }
        ledger_tmp = stage_ledger(sub, entry)
        commit_attempt(tmp, sub / f"attempt-{n}", ledger_tmp)
    except BaseException as exc:
        discard(tmp, ledger_tmp)
        if isinstance(exc, OSError):
            raise UserError(f"attempt {n} not submitted, nothing was written: {exc.strerror or exc}") from None
        raise
    return sub / f"attempt-{n}", entry


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def stage_ledger(submissions: Path, entry: dict[str, Any]) -> Path:
    """A copy of the ledger with ``entry`` appended, beside it; os.replace it to commit."""
    path = submissions / LEDGER
    old = path.read_bytes() if path.is_file() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{LEDGER}-", dir=submissions)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private
        with os.fdopen(fd, "wb") as fh:
            fh.write(old + (json.dumps(entry, sort_keys=True) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit_attempt(tmp: Path, final: Path, ledger_tmp: Path) -> None:
    """Rename the finished folder into place, then the ledger; undo the first if the second fails."""
    os.rename(tmp, final)
    try:
        os.replace(ledger_tmp, final.parent / LEDGER)
    except BaseException:
        os.rename(final, tmp)
        raise


def discard(*paths: Path | None) -> None:
    for p in paths:
        if p is not None and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p is not None:
            p.unlink(missing_ok=True)


def check_attempt(folder: Path, entry: dict[str, Any]) -> list[str]:
    """What no longer matches the attempt's manifest (and the ledger's record of it); [] when intact."""
    if not folder.is_dir():
        return [f"MISSING: folder {folder.name}"]
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return ["TAMPERED: file manifest.json missing"]
    problems = []
    if entry.get("manifest_sha256") not in (None, sha256_file(manifest_path)):
        problems.append("TAMPERED: file manifest.json changed")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = {"model.pt": manifest["checkpoint_sha256"], **manifest["files"]}
    except (ValueError, KeyError, TypeError):
        return [*problems, "TAMPERED: file manifest.json unreadable"]
    for name, sha in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"TAMPERED: file {name} missing")
        elif sha256_file(path) != sha:
            problems.append(f"TAMPERED: file {name} changed")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in expected and p.name != "manifest.json")
    problems.extend(f"TAMPERED: file {name} added" for name in extra)
    return problems


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
