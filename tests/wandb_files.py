"""Reading what W&B wrote offline: a ``run-*.wandb`` file is a LevelDB-style log of W&B's protobuf records.

wandb 0.31 ships no Python reader for this file (the old ``wandb.sdk.internal.datastore`` went into its Go
core) and writes no ``wandb-summary.json`` offline, so the framing is read here and each record is parsed
with W&B's own schema (``wandb.proto.wandb_internal_pb2``). Every check W&B's writer makes possible is
made: the file header, each piece's CRC-32 and the piece order; a format change fails loudly instead of
reading garbage. Only an unfinished last piece (the service still writing) is left for the next read.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version 0
PIECE = struct.Struct("<IHB")  # CRC-32 of (type byte + data), data length, type
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _pieces(data: bytes) -> list[bytes]:
    """The complete records' bytes, in order."""
    ident, magic, version = HEADER.unpack(data[: HEADER.size])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"not a W&B log this reader knows: {data[:7]!r}"
    pos, chunk, raw = HEADER.size, b"", []
    while pos + PIECE.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < PIECE.size:  # a block's tail too short for a piece header is zero padding
            pos += left
            continue
        crc, length, kind = PIECE.unpack(data[pos : pos + PIECE.size])
        if kind == 0 and length == 0:  # padding up to the next block
            pos += left
            continue
        if pos + PIECE.size + length > len(data):
            break  # the last piece is still being written
        body = data[pos + PIECE.size : pos + PIECE.size + length]
        assert zlib.crc32(body, zlib.crc32(bytes([kind]))) == crc, f"bad CRC at byte {pos}"
        assert kind in (FULL, FIRST, MIDDLE, LAST), f"unknown piece type {kind} at byte {pos}"
        assert (kind in (FULL, FIRST)) == (chunk == b""), f"piece type {kind} out of order at byte {pos}"
        pos += PIECE.size + length
        chunk += body
        if kind in (FULL, LAST):
            raw.append(chunk)
            chunk = b""
    return raw


def records(run_file: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for item in _pieces(run_file.read_bytes()):
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
