"""Commands run as real processes: started in their own process group, killed with SIGKILL, waited on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def cli_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "tune_digits.cli", *map(str, args)]


def start(argv: list[str], env: dict[str, str], cwd: Path, out: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """A command in its own process group, so that a SIGKILL takes its Ray processes down with it."""
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=out, start_new_session=True)


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # let orphaned Ray workers notice that their raylet is gone


def wait_for(condition: Any, proc: subprocess.Popen[bytes], what: str, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"the command ended (code {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)
