"""On-disk feature cache: one ``.npy`` file per clip, keyed by every setting that changes it.

Layout: ``<root>/<corpus>/<settings-hash>/`` holds ``settings.json`` (the key in clear),
``features/<xx>/<clip-hash>.npy`` entries, ``bad/<clip-hash>.json`` markers for clips whose
audio was found unusable (so that later runs report them without reading them again), and
``stats/<hash>.npz`` normalisation statistics of a training split. Every file is written to a
temporary file in the same folder and moved into place with ``os.replace``, so an interrupted
run never leaves a truncated entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import numpy as np

#: Bumped when the cache layout or the feature code changes in a way the key does not capture.
CACHE_VERSION = 1
ENV_VAR = "MTS_LIGHTNING_CACHE"


def default_cache_dir() -> Path:
    """``$MTS_LIGHTNING_CACHE`` when set, else ``~/.cache/mts-lightning``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mts-lightning"


def stable_hash(*parts: object) -> str:
    """SHA-1 hex digest of the JSON encoding of ``parts`` (stable across runs and machines)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary sibling, then ``os.replace`` it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeatureCache:
    """Cached features of one corpus under one feature configuration (``settings``)."""

    def __init__(self, root: str | Path | None, corpus: str, settings: dict) -> None:
        self.settings = {**settings, "cache_version": CACHE_VERSION}
        base = Path(root).expanduser() if root is not None else default_cache_dir()
        self.dir = base / corpus / stable_hash(self.settings)[:16]

    def key(self, identity: str) -> str:
        """Entry key of a clip, from its identity string (path/size/mtime or synthetic id)."""
        return stable_hash(identity)

    def feature_path(self, key: str) -> Path:
        return self.dir / "features" / key[:2] / f"{key}.npy"

    def bad_path(self, key: str) -> Path:
        return self.dir / "bad" / f"{key}.json"

    def has(self, key: str) -> bool:
        """Whether the clip's features are cached."""
        return self.feature_path(key).is_file()

    def bad_reason(self, key: str) -> str | None:
        """Why the clip was found unusable in an earlier run, or None."""
        path = self.bad_path(key)
        return json.loads(path.read_text())["reason"] if path.is_file() else None

    def _write_settings(self) -> None:
        path = self.dir / "settings.json"
        if not path.is_file():
            text = json.dumps(self.settings, indent=2, sort_keys=True).encode()
            atomic_write(path, lambda f: f.write(text))

    def save(self, key: str, feature: np.ndarray) -> None:
        """Store a ``(time, freq)`` float32 feature atomically."""
        self._write_settings()
        atomic_write(self.feature_path(key), lambda f: np.save(f, feature.astype(np.float32)))

    def mark_bad(self, key: str, path: str, reason: str) -> None:
        """Remember that a clip's audio is unusable."""
        text = json.dumps({"path": path, "reason": reason}).encode()
        atomic_write(self.bad_path(key), lambda f: f.write(text))

    def stats_path(self, keys: Iterable[str]) -> Path:
        """Where the statistics of the training split made of ``keys`` are stored."""
        return self.dir / "stats" / f"{stable_hash(sorted(keys))[:24]}.npz"

    def load_stats(self, keys: Iterable[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Cached ``(mean, std)`` of a training split, or None."""
        path = self.stats_path(keys)
        if not path.is_file():
            return None
        with np.load(path) as data:
            return data["mean"], data["std"]

    def save_stats(self, keys: Iterable[str], mean: np.ndarray, std: np.ndarray) -> None:
        atomic_write(self.stats_path(keys), lambda f: np.savez(f, mean=mean, std=std))
