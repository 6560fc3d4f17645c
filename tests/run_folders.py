"""Checks shared by the search and final-eight tests: what a run folder keeps on disk."""

from __future__ import annotations

from pathlib import Path


def assert_small(folder: Path, trials: int) -> None:
    """At most 1.2 x (one model.pt per trial + the logs): no optimizer state, no second copy of a model."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    models = sorted(folder.glob("trials/*/model.pt"))
    assert sorted(p for p in files if p.suffix == ".pt") == models and len(models) == trials
    logs = [p for p in files if p.suffix != ".pt" and not any(q.name.startswith("checkpoint_") for q in p.parents)]
    kept = sum(p.stat().st_size for p in [*models, *logs])
    assert sum(p.stat().st_size for p in files) <= 1.2 * kept
    assert not [p for p in folder.rglob("*") if "," in p.name or "=" in p.name]  # no Ray trial-folder names


def assert_quiet(text: str, folder: Path) -> None:
    """The tool's own lines only: none wider than 100 columns, none of Ray's status output.

    Paths are printed whole (to be copied), so ``folder``, the test's temporary output folder, counts as 8 columns.
    """
    lines = [line.replace(str(folder), "<folder>") for line in text.splitlines()]
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    for ray_text in ("Tuner.restore", "TensorBoard", "Current best trial", "View detailed results", "Trial status"):
        assert ray_text not in text, ray_text
