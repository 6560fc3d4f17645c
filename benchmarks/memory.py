"""Peak resident memory of a whole process tree (a command, its worker pools, Ray's processes).

A background thread walks the tree under one process every ``interval`` seconds and sums the
resident set size (RSS) of every process in it. RSS counts shared pages (the torch libraries,
a memory-mapped feature file) once per process, so it overstates what several processes cost
together; the proportional set size (PSS, shared pages split between their users) is sampled
too, less often because it is dearer to read. Linux ``/proc`` is read directly; elsewhere
psutil is used when it is installed (PSS is then not available).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # psutil is optional: /proc is read directly on Linux
    psutil = None

_PROC = Path("/proc")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1024 * 1024


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process visible in /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            stat = (_PROC / entry.name / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def tree_pids(root: int) -> list[int]:
    """``root`` and every process below it."""
    if not _PROC.is_dir():
        return _psutil_tree(root)
    children = _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _psutil_tree(root: int) -> list[int]:
    if psutil is None:
        return [root]
    try:
        return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
    except psutil.Error:
        return []


def rss_bytes(pid: int) -> int:
    """Resident set size of one process; 0 when it has gone."""
    if _PROC.is_dir():
        try:
            return int((_PROC / str(pid) / "statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            return 0
    if psutil is None:
        return 0
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (Linux only); 0 when unknown."""
    try:
        for line in (_PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        return 0
    return 0


@dataclass
class Peak:
    rss: int = 0  # bytes, the largest sum over the tree seen in one sample
    pss: int = 0
    processes: int = 0  # the most processes seen in the tree at once
    samples: int = 0
    names: set[str] = field(default_factory=set)

    @property
    def rss_mb(self) -> float:
        return round(self.rss / MB, 1)

    @property
    def pss_mb(self) -> float:
        return round(self.pss / MB, 1)


def _name(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


class TreeSampler:
    """Samples the memory of the tree under ``pid`` until stopped; use as a context manager."""

    def __init__(self, pid: int, interval: float = 0.2, pss_every: int = 5) -> None:
        self.pid, self.interval, self.pss_every = pid, interval, pss_every
        self.peak = Peak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        pids = tree_pids(self.pid)
        rss = sum(rss_bytes(p) for p in pids)
        pk = self.peak
        if pk.samples % self.pss_every == 0:
            pk.pss = max(pk.pss, sum(pss_bytes(p) for p in pids))
        pk.rss = max(pk.rss, rss)
        if len(pids) > pk.processes:
            pk.processes = len(pids)
            pk.names.update(_name(p) for p in pids)
        pk.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def self_peak_rss_mb() -> float:
    """This process's own high-water RSS (``ru_maxrss``) in MB."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1)
