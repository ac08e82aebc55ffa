"""Files written whole or not at all, JSON files, and stable hashes: the ground floor that every
room (``nn`` included) may use; it imports nothing from the package.

A writer that fails or is interrupted leaves the previous file (or none) in place and no
temporary file behind: the content goes to a hidden sibling (``.NAME.XXXX.tmp``, on the same
file system) that ``os.replace`` moves over ``path`` once it is complete.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_json(Path(folder, "run", "result.json"), {"UA": 0.5})
    ...     read_json(Path(folder, "run", "result.json"))
    {'UA': 0.5}
    >>> stable_hash("features", {"n_mels": 64})  # the same on every machine and run
    '538bef45e287c015fd0d0f13cbb4481f32c7ba00'
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` for a writer that takes a file name (a compiler, an
    exporter): moved over ``path`` when the block ends without an error, removed otherwise,
    and with it whatever the writer put beside it under its name (``TMP.data``: the ONNX
    exporter's external-data file). The folder of ``path`` must exist."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        # mkstemp made the name unique, so every file that starts with it is the writer's.
        for leftover in (tmp, *tmp.parent.glob(f"{glob.escape(tmp.name)}.*")):
            leftover.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(file)`` (a binary file open on a temporary sibling), then
    move it over ``path``; the folder of ``path`` is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts with the same keys, in order) as CSV to ``path``, atomically:
    floats with 6 decimals, None as an empty cell; nothing but a header-less empty file when
    there is no row."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: ("" if v is None else f"{v:.6f}" if isinstance(v, float) else v)
                    for k, v in row.items()
                }
            )
    data = buffer.getvalue().encode()
    atomic_write(path, lambda f: f.write(data))


def write_json(path: str | Path, content: object, *, sort_keys: bool = False) -> None:
    """Write ``content`` as JSON indented by 2 to ``path``, atomically (:func:`atomic_write`)."""
    text = json.dumps(content, indent=2, sort_keys=sort_keys).encode()
    atomic_write(path, lambda f: f.write(text))


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path`` (UTF-8, UTF-16 or UTF-32); a ``ValueError`` (a
    ``json.JSONDecodeError`` or ``UnicodeDecodeError``) when its bytes are not JSON."""
    return json.loads(Path(path).read_bytes())


def stable_hash(*parts: object) -> str:
    """SHA-1 hex digest of the JSON encoding of ``parts`` (keys sorted, other objects by
    ``str``): the same for the same parts on every machine and in every run."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
