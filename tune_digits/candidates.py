"""Which run a submission takes: the candidates under the runs root and the pick rule.

Candidates: every run folder under the runs root, i.e. any folder holding ``model.pt``,
``metrics.json``, ``run.json`` and ``config.yaml`` whose split file is found (its own
``split.json``, its config's ``data.split`` file, or the nearest ``split.json`` above it, as
for a search's ``trials/<id>/``). Hidden folders (temporary run folders) and Ray's
``checkpoint_NNNNNN`` folders are skipped without a word.

The pick rule: candidates are grouped by ``split_digest`` and one group competes: the
contest's split once the ledger has a line (``tune_digits.contest``), else the one given
with ``--split-digest``, else the group of the most recently created run. Within it
the pick is the highest validation macro-F1; ties go to the lower validation loss, then
to fewer parameters, then to the older run (``created``), then to the folder name.
Test scores never decide: the pick is scored on the held-out test split only after it
has been chosen, and only when the attempt is really written.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_digits.errors import UserError

RUN_FILES = ("model.pt", "metrics.json", "run.json", "config.yaml")
RAY_CHECKPOINT = re.compile(r"checkpoint_\d+")


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
    if not 0.0 <= val_f1 <= 1.0:
        return f"metrics.json val_f1 {val_f1} is outside [0, 1] (damaged)"
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
        if any(part.startswith(".") or RAY_CHECKPOINT.fullmatch(part) for part in rel.parts):
            continue  # temporary run folders, and Ray's own checkpoint_NNNNNN copies inside a search
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
