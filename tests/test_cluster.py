"""A real two-node Ray cluster on this machine, set up as the README tells it, running a small search.

Both nodes (``ray start --head`` and ``ray start --address``, one CPU each) run with token
authentication and their own ports; they are stopped through the process groups started here,
never with ``ray stop`` (which would stop every Ray of this user).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tune_digits.cluster_auth import auth_error, is_auth_failure

TINY = {"model.name": "lenet5", "data.split": "speakers", "model.channels": [4, 8], "model.fc": [32, 16]}


def _ray_cli() -> str:
    here = Path(sys.executable).with_name("ray")
    found = str(here) if here.is_file() else shutil.which("ray")
    if not found:
        pytest.skip("the `ray` command is not installed: the cluster test needs it")
    return found


def _free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _node(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # --block keeps `ray start` in front: its group holds every process it starts
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_started(proc: subprocess.Popen[bytes], log: Path, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while "Ray runtime started" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the Ray node did not start"
        time.sleep(0.5)


def _stop(procs: list[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """SIGTERM every node's group at once, give them ``grace`` seconds together, then SIGKILL what is left."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of this group is still there
        proc.wait()


@pytest.fixture
def cluster(tmp_path: Path, feature_cache: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``(address, env)`` of a running two-node cluster; env holds RAY_AUTH_MODE=token and its token."""
    ray = _ray_cli()
    temp = Path(tempfile.mkdtemp(prefix="tdray-"))  # short: Ray's socket paths must fit in 107 characters
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    env["TUNE_DIGITS_CACHE"] = str(feature_cache)
    port, *ports = _free_ports(9)
    agent = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port"]
    agent.append("--runtime-env-agent-port")
    head_ports = [a for pair in zip(agent, map(str, ports[:4]), strict=True) for a in pair]
    worker_ports = [a for pair in zip(agent, map(str, ports[4:8]), strict=True) for a in pair]
    common = [ray, "start", "--block", "--num-cpus", "1", "--disable-usage-stats"]
    started: list[subprocess.Popen[bytes]] = []
    try:
        head_argv = [*common, "--head", "--port", str(port), "--temp-dir", str(temp), "--include-dashboard", "false"]
        started.append(_node([*head_argv, *head_ports], env, tmp_path / "head.log"))
        _wait_started(started[0], tmp_path / "head.log")
        started.append(_node([*common, "--address", f"127.0.0.1:{port}", *worker_ports], env, tmp_path / "node.log"))
        _wait_started(started[1], tmp_path / "node.log")
        yield f"127.0.0.1:{port}", env
    finally:
        _stop(started)
        shutil.rmtree(temp, ignore_errors=True)


def test_the_token_error_says_which_setting_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    unset = str(auth_error("h:1"))
    assert "requires an authentication token (RAY_AUTH_MODE is unset here)" in unset and "\n" not in unset
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "refused this token" in str(auth_error("h:1"))
    assert is_auth_failure(RuntimeError("RPC error: InvalidAuthToken: missing")) and not is_auth_failure(OSError("x"))


@pytest.mark.slow
def test_a_two_node_cluster_runs_a_search_and_a_missing_token_is_named(cluster, tmp_path: Path) -> None:
    address, env = cluster
    space = tmp_path / "space.yaml"
    dims = {"model.dropout": {"type": "choice", "values": [0.0, 0.1]}}
    search = {"num_samples": 2, "max_epochs": 1, "grace_period": 1, "seed": 0}
    space.write_text(yaml.safe_dump({"fixed": TINY, "space": dims, "search": search}), encoding="utf-8")
    argv = [sys.executable, "-m", "tune_digits.cli", "search", "--space", str(space), "--address", address]
    argv += ["--storage", str(tmp_path / "runs"), "--wandb", "disabled"]

    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    no_token.update(HOME=str(tmp_path / "home"), COLUMNS="300")  # no ~/.ray/auth_token either
    refused = subprocess.run([*argv, "--name", "n"], env=no_token, capture_output=True, text=True, timeout=300)
    last = refused.stderr.strip().splitlines()[-1] if refused.stderr.strip() else ""
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert last.startswith("error: ") and "requires an authentication token" in last, refused.stderr[-3000:]
    assert "RAY_AUTH_MODE=token" in last and "cannot reach" not in last

    done = subprocess.run([*argv, "--name", "c"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "runs" / "c" / "results.csv")
    assert len(table) == 2 and set(table["epochs_run"]) == {1}, table.to_string()
    assert all(table["checkpoint"].str.endswith("model.pt")), table.to_string()
    assert all((tmp_path / "runs" / "c" / p).is_file() for p in table["checkpoint"])
