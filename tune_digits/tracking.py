"""Experiment tracking: local JSONL history always, W&B when enabled (offline without an API key).

wandb is imported only when a run is tracked; it never prompts for a login.
"""

from __future__ import annotations

import json
import netrc
import os
from pathlib import Path
from typing import Any

from tune_digits.errors import ConfigError

MODES = ("auto", "online", "offline", "disabled")
PROJECT = os.environ.get("WANDB_PROJECT", "tune-digits")


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """``auto`` -> online with an API key, offline without; the others as given."""
    if mode not in MODES:
        raise ConfigError(f"--wandb {mode!r}: use online, offline or disabled")
    if mode == "auto":
        return "online" if has_api_key() else "offline"
    if mode == "online" and not has_api_key():
        raise ConfigError("--wandb online needs an API key (wandb login or WANDB_API_KEY); use --wandb offline")
    return mode


class Tracker:
    """Per-epoch records to ``history.jsonl`` in ``out_dir`` and, unless disabled, to a W&B run."""

    def __init__(
        self,
        out_dir: Path,
        *,
        mode: str = "auto",
        name: str | None = None,
        group: str | None = None,
        job_type: str = "train",
        config: dict[str, Any] | None = None,
        local: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.local = local
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.history_path = self.out_dir / "history.jsonl"
        self.mode = resolve_mode(mode)
        self.run = None
        if self.mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            self.run = wandb.init(
                project=PROJECT,
                name=name,
                group=group,
                job_type=job_type,
                config=config or {},
                dir=str(self.out_dir),
                mode=self.mode,
                reinit="create_new",
            )

    def log(self, record: dict[str, Any]) -> None:
        if self.local:
            with self.history_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        if self.run is not None:
            self.run.log(
                {k: v for k, v in record.items() if isinstance(v, (int, float))}, step=int(record.get("epoch", 0))
            )

    def summary(self, values: dict[str, Any], confusion: list[list[int]] | None = None) -> None:
        if self.run is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float, str)):
                self.run.summary[key] = value
        if confusion is not None:
            import wandb

            rows = [[str(t), str(p), n] for t, row in enumerate(confusion) for p, n in enumerate(row)]
            self.run.log({"confusion_matrix": wandb.Table(columns=["true", "predicted", "count"], data=rows)})

    def table(self, key: str, frame: Any) -> None:
        """Log a pandas DataFrame as one W&B table (sortable and plottable in the W&B UI)."""
        if self.run is None:
            return
        import wandb

        self.run.log({key: wandb.Table(dataframe=frame.reset_index(drop=True))})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def wandb_note(folder: Path) -> list[str]:
    """Where a command's W&B runs are and, when offline, the one command that uploads them all."""
    runs = Path(folder) / "wandb"
    offline = sorted(runs.glob("offline-run-*"))
    online = sorted(runs.glob("run-*"))
    if offline:
        return [
            f"W&B: {len(offline)} runs logged offline in {runs}",
            f"  upload them: wandb sync {runs}{os.sep}offline-run-*",
        ]
    if online:
        return [f"W&B: {len(online)} runs logged online to project {PROJECT}, group {Path(folder).name}"]
    return []
