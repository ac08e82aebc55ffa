"""Read back what an offline W&B run recorded, from its LevelDB-style ``.wandb`` log."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

_BLOCK = 32768
_HEADER = 7  # checksum (4), length (2), kind (1)


def read_wandb_records(run_file: str | Path, timeout: float = 30.0) -> list:
    """Every record of an offline run's ``.wandb`` log, as ``wandb_internal_pb2.Record``.

    The W&B service may still be writing after ``finish()`` returns: read again until the
    run's ``exit`` record is there (or ``timeout`` seconds have passed).
    """
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + timeout
    while True:
        data = Path(run_file).read_bytes()
        assert data[:4] == b":W&B"
        pos, chunk, records = 7, b"", []
        while pos + _HEADER <= len(data):
            left = _BLOCK - pos % _BLOCK
            _, length, kind = (
                struct.unpack("<IHB", data[pos : pos + _HEADER]) if left >= _HEADER else (0, 0, 0)
            )
            if left < _HEADER or (kind == 0 and length == 0):
                pos += left  # block trailer / padding
                continue
            chunk += data[pos + _HEADER : pos + _HEADER + length]
            pos += _HEADER + length
            if kind in (1, 4):  # FULL or LAST fragment: a whole record
                record = wandb_internal_pb2.Record()
                record.ParseFromString(chunk)
                records.append(record)
                chunk = b""
        finished = any(r.WhichOneof("record_type") == "exit" for r in records)
        if finished or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _items(items) -> dict:
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def read_wandb_history(run_file: str | Path, timeout: float = 30.0) -> list[dict]:
    """The history rows (logged metrics, one dict per ``log`` call) of an offline run."""
    return [
        _items(r.history.item)
        for r in read_wandb_records(run_file, timeout)
        if r.WhichOneof("record_type") == "history"
    ]


def read_wandb_config(run_file: str | Path, timeout: float = 30.0) -> dict:
    """The config of an offline run, from its ``run`` and ``config`` records (offline runs
    write no ``files/config.yaml``)."""
    config: dict = {}
    for record in read_wandb_records(run_file, timeout):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update(_items(record.run.config.update))
        elif kind == "config":
            config.update(_items(record.config.update))
    return config
