"""A contest is one corpus and one test split: those of the first line of the ledger.

Later attempts compete only runs evaluated on that split (the same ``split_digest``, the
digest of the split's file lists); anything else is refused in one line naming both
splits. ``submit --new-contest --yes`` archives the finished contest (its ledger and attempt
folders) into ``SUBMISSIONS/contest-TIME-DIGEST/`` and starts a new one (``ledger.archive_contest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_digits.candidates import Candidate
from tune_digits.errors import UserError

NEW_CONTEST = "start a new contest with --new-contest --yes"


@dataclass(frozen=True)
class Contest:
    data_root: str | None
    split_spec: str | None
    split_digest: str

    def describe(self) -> str:
        return describe_split(self.split_spec, self.split_digest, self.data_root)


def describe_split(spec: Any, digest: Any, data_root: Any) -> str:
    """``split becker:0 (3f2a91c0) of data fsdd``; unknown parts are ``?``."""
    path = Path(str(data_root or "?"))
    data = path.parent.name if path.name == "recordings" else path.name  # fsdd/recordings reads as fsdd
    return f"split {spec or '?'} ({str(digest or '?')[:8]}) of data {data}"


def describe_run(c: Candidate) -> str:
    return describe_split(c.run.get("split_spec"), c.split_digest, c.run.get("data_root"))


def contest_of(entries: list[dict[str, Any]]) -> Contest | None:
    """The contest the ledger's first line opened; None for an empty ledger."""
    if not entries or not entries[0].get("split_digest"):
        return None
    first = entries[0]
    return Contest(first.get("data_root"), first.get("split_spec"), str(first["split_digest"]))


def competing_digest(contest: Contest | None, candidates: list[Candidate], requested: str | None) -> str | None:
    """The split digest whose runs compete: the contest's (``requested`` must agree), else ``requested``."""
    if contest is None or not candidates:
        return requested
    if requested and not contest.split_digest.startswith(requested):
        raise UserError(
            f"--split-digest {requested} is not this contest's {contest.describe()}; "
            f"drop --split-digest or {NEW_CONTEST}"
        )
    if not any(c.split_digest == contest.split_digest for c in candidates):
        newest = max(candidates, key=lambda c: (c.created, c.name))
        raise UserError(
            f"no run was evaluated on this contest's {contest.describe()}; the newest run {newest.name} is on "
            f"{describe_run(newest)}; train on the contest's split or {NEW_CONTEST}"
        )
    return contest.split_digest


def check_new_contest(entries: list[dict[str, Any]], yes: bool, dry_run: bool) -> str | None:
    """What ``--new-contest`` will do (a line), or a UserError when it lacks ``--yes``; None: nothing to end."""
    contest = contest_of(entries)
    if not entries:
        return None
    used = ", ".join(str(e["attempt"]) for e in entries)
    what = (
        f"--new-contest archives the contest on {contest.describe() if contest else 'an unknown split'} "
        f"(attempts {used}) into contest-TIME-DIGEST/ and starts a new one with attempts 1 to 3"
    )
    if not yes and not dry_run:
        raise UserError(f"{what}; add --yes to do it")
    return f"note: {what}" + (" (dry run: not done)" if dry_run else "")
