"""Read the records of an offline W&B run file (run-<id>.wandb) without network or the W&B service.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of records,
each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last); the payloads are
serialized `wandb_internal_pb2.Record` protobufs. wandb 0.31 ships no Python reader for it any more.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7


def records(path: str | Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B", f"{path}: not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, rtype = struct.unpack("<IHB", data[pos:pos + HEADER])
        if length == 0 and rtype == 0:
            pos += left  # zero padding at the end of a block
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        pending = chunk if rtype in (1, 2) else pending + chunk
        if rtype in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            yield rec
            pending = b""


def history(path: str | Path) -> list[dict]:
    """Every logged history row as {key: value}."""
    rows = []
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            rows.append({(i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
    return rows


def run_info(path: str | Path) -> dict:
    for r in records(path):
        if r.WhichOneof("record_type") == "run":
            return {"id": r.run.run_id, "group": r.run.run_group, "name": r.run.display_name,
                    "project": r.run.project}
    return {}
