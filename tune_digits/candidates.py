"""Which run a submission takes: the candidates under the runs root and the pick rule.

Candidates: every run folder under the runs root (:func:`tune_digits.run_folder.read_run`)
whose split file is found (its own ``split.json``, its config's ``data.split`` file, or the
nearest ``split.json`` above it, as for a search's ``trials/<id>/``). Hidden folders
(temporary run folders) and Ray's ``checkpoint_NNNNNN`` folders are skipped without a word.

The pick rule: candidates are grouped by ``split_digest`` and one group competes: the
contest's split once the ledger has a line (``tune_digits.contest``), else the one given
with ``--split-digest``, else the group of the most recently created run. Within it
the pick is the highest validation macro-F1; ties go to the lower validation loss, then
to fewer parameters, then to the older run (``created``), then to the folder name.
Test scores never decide: the pick is scored on the held-out test split only after it
has been chosen, and only when the attempt is really written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_digits.errors import UserError
from tune_digits.run_folder import MODEL, RUN_JSON, NotARun, Run, read_run

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
    source: Run  # the run folder as read

    @property
    def model_path(self) -> Path:
        return self.source.model_path


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
    try:
        run = read_run(folder, root)
    except NotARun as exc:
        return str(exc)
    metrics = run.metrics
    val_f1, loss, n = metrics.get("val_f1"), metrics.get("val_loss"), metrics.get("num_parameters")
    if not isinstance(val_f1, (int, float)) or not math.isfinite(val_f1):
        return "metrics.json has no finite val_f1"
    if not 0.0 <= val_f1 <= 1.0:
        return f"metrics.json val_f1 {val_f1} is outside [0, 1] (damaged)"
    if not run.split_digest:
        return "run.json has no split_digest"
    if run.split_file is None:
        return "no split.json (in the folder, its config's data.split or a folder above)"
    loss = float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf
    n = n if isinstance(n, int) else 1 << 62
    rel = folder.relative_to(root).as_posix()
    rel = folder.resolve().name if rel == "." else rel
    return Candidate(
        folder, rel, metrics, run.meta, float(val_f1), loss, n, run.created, run.split_digest, run.split_file, run
    )


def find_candidates(runs_root: str | Path) -> tuple[list[Candidate], list[str]]:
    """Every run folder under ``runs_root`` (recursively; hidden and temporary folders skipped)."""
    root = Path(runs_root)
    if not root.is_dir():
        raise UserError(f"runs folder {root} does not exist; train a model first or pass --runs DIR")
    found: list[Candidate] = []
    excluded: list[str] = []
    for model in sorted(root.rglob(MODEL)):
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
        latest = max(candidates, key=lambda c: (c.created, (c.folder / RUN_JSON).stat().st_mtime_ns))
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
