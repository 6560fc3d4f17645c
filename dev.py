#!/usr/bin/env python3
"""Set up and run tune-digits with nothing but Python 3.11+.

    python3 dev.py demo   # create .venv if needed, install, run the main job on the bundled demo corpus
    python3 dev.py test   # the same environment, then the test suite

Extra arguments are passed on: ``python3 dev.py test -k cache``. Tests run in one process per core (up to
four; ``python3 dev.py test -n 0`` runs them in this one).
The environment is reinstalled only when pyproject.toml or requirements.lock change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".tune-digits-installed"
DEMO = ["search", "--space", "search_spaces/demo.yaml"]


def _digest() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "requirements.lock"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036  (dev.py may be started by an older python3)
        sys.exit(f"tune-digits needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if STAMP.is_file() and STAMP.read_text() == _digest():
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    print("installing dependencies (torch is large: the first time takes a few minutes) ...", flush=True)
    subprocess.run([*pip, "-c", str(ROOT / "requirements.lock"), "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(_digest())


def _workers() -> list[str]:
    """Test processes: one per core, up to four (pytest-xdist); a file's tests run in one of them (shared fixtures)."""
    n = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return ["-n", str(n), "--dist", "loadfile"] if n > 1 else []


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__.strip())
        return 2
    ensure_env()
    if argv[0] == "demo":
        cmd = [str(BIN / "tune-digits"), *DEMO, *argv[1:]]
    else:
        cmd = [str(BIN / "python"), "-m", "pytest", "-q", *_workers(), *argv[1:]]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
