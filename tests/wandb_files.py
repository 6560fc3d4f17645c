"""Reading what W&B wrote offline: a ``run-*.wandb`` file is a LevelDB-style log of protobuf records."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any


def records(run_file: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    block, pos, chunk, raw = 32768, 7, b"", []  # 7-byte file header, then 32 KiB blocks
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:  # block padding
            pos += left - 7
            continue
        chunk += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # full or last piece of a record
            raw.append(chunk)
            chunk = b""
    out = []
    for item in raw:
        rec = pb.Record()
        rec.ParseFromString(item)
        out.append(rec)
    return out


def history(run_file: Path) -> list[dict[str, str]]:
    """Each ``run.log`` call: key -> JSON text of the value."""
    return [
        {(i.key or "/".join(i.nested_key)): i.value_json for i in rec.history.item}
        for rec in records(run_file)
        if rec.WhichOneof("record_type") == "history"
    ]


def summary(run_file: Path) -> dict[str, str]:
    """The run's summary values (key -> JSON text), later updates winning."""
    out: dict[str, str] = {}
    for rec in records(run_file):
        if rec.WhichOneof("record_type") == "summary":
            out.update({(i.key or "/".join(i.nested_key)): i.value_json for i in rec.summary.update})
    return out


def wait_written(run_file: Path, timeout: float = 60.0) -> Path:
    """W&B's service writes the file after ``run.finish()`` returns: wait for its exit record."""
    import time

    deadline = time.monotonic() + timeout
    while not any(r.WhichOneof("record_type") == "exit" for r in records(run_file)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_file} has no exit record after {timeout:.0f} s")
        time.sleep(0.2)
    return run_file
