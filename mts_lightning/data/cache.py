"""On-disk feature cache: one ``.npy`` file per clip, keyed by every setting that changes it;
filling it (:func:`fill_cache`) and the training statistics kept in it
(:func:`training_statistics`).

Layout: ``<root>/<corpus>/<settings-hash>/`` holds ``settings.json`` (the key in clear),
``features/<xx>/<clip-hash>.npy`` entries, ``bad/<clip-hash>.json`` markers for clips whose
audio was found unusable (so that later runs report them without reading them again), and
``stats/<hash>.npz`` normalisation statistics of a training split. Every file is written to a
temporary file in the same folder and moved into place with ``os.replace``, so an interrupted
run never leaves a truncated entry behind; an entry damaged otherwise (a full disk, a partial
copy between machines) fails :meth:`FeatureCache.problem` and is recomputed by the caller.
Nothing is ever read with ``allow_pickle``.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mts_lightning.io import atomic_write, stable_hash, write_json

from .audio import BadAudioError
from .corpora import Clip, Corpus
from .features import Featurizer

#: Bumped when the cache layout or the feature code changes in a way the key does not capture.
CACHE_VERSION = 1
ENV_VAR = "MTS_LIGHTNING_CACHE"


def default_cache_dir() -> Path:
    """``$MTS_LIGHTNING_CACHE`` when set, else ``~/.cache/mts-lightning``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mts-lightning"


def read_feature(path: str | Path, num_bins: int) -> np.ndarray:
    """A cached ``(time, num_bins)`` float32 feature with finite values.

    Raises ``ValueError`` saying what is wrong with the file otherwise (unreadable, truncated,
    another shape or dtype, NaN or infinite values).
    """
    try:
        feature = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"unreadable ({err})") from err
    if not isinstance(feature, np.ndarray):
        raise ValueError(f"holds a {type(feature).__name__}, not one array")
    if feature.dtype != np.float32 or feature.ndim != 2 or feature.shape[1] != num_bins:
        raise ValueError(
            f"holds a {feature.dtype} array of shape {feature.shape}, expected float32 "
            f"(frames, {num_bins})"
        )
    if feature.shape[0] == 0 or not np.isfinite(feature).all():
        raise ValueError("holds no frames or non-finite values")
    return feature


class FeatureCache:
    """Cached features of one corpus, stored under the ``settings`` that computed them (e.g.
    :meth:`~mts_lightning.data.features.Featurizer.settings`), whose frames have ``num_bins``
    frequency bins. It stores what it is given; :func:`fill_cache` computes it."""

    def __init__(
        self,
        root: str | Path | None,
        corpus: str,
        settings: dict,
        num_bins: int,
    ) -> None:
        self.num_bins = num_bins
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

    def problem(self, key: str) -> str | None:
        """What is wrong with the clip's cached entry, or None when it is sound."""
        try:
            read_feature(self.feature_path(key), self.num_bins)
        except ValueError as err:
            return str(err)
        return None

    def discard(self, key: str) -> None:
        """Delete the clip's entry (so that it is computed again)."""
        self.feature_path(key).unlink(missing_ok=True)

    def bad_reason(self, key: str) -> str | None:
        """Why the clip was found unusable in an earlier run, or None."""
        path = self.bad_path(key)
        return json.loads(path.read_text())["reason"] if path.is_file() else None

    def _write_settings(self) -> None:
        path = self.dir / "settings.json"
        if not path.is_file():
            write_json(path, self.settings, sort_keys=True)

    def save(self, key: str, feature: np.ndarray) -> None:
        """Store a ``(time, freq)`` float32 feature atomically."""
        self._write_settings()
        atomic_write(self.feature_path(key), lambda f: np.save(f, feature.astype(np.float32)))

    def mark_bad(self, key: str, path: str, reason: str) -> None:
        """Remember that a clip's audio is unusable."""
        write_json(self.bad_path(key), {"path": path, "reason": reason})

    def stats_path(self, keys: Iterable[str]) -> Path:
        """Where the statistics of the training split made of ``keys`` are stored."""
        return self.dir / "stats" / f"{stable_hash(sorted(keys))[:24]}.npz"

    def load_stats(self, keys: Iterable[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Cached ``(mean, std)`` of a training split, or None (also for a damaged file, which
        is deleted: the caller computes the statistics again)."""
        path = self.stats_path(keys)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                stats = data["mean"], data["std"]
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile):
            stats = None
        if stats is None or not all(_sound_stats(s, self.num_bins) for s in stats):
            path.unlink(missing_ok=True)
            return None
        return stats

    def save_stats(self, keys: Iterable[str], mean: np.ndarray, std: np.ndarray) -> None:
        """Store statistics; refuses values that are not ``num_bins`` finite numbers."""
        if not (_sound_stats(mean, self.num_bins) and _sound_stats(std, self.num_bins)):
            raise ValueError("normalisation statistics must be finite, one value per bin")
        atomic_write(self.stats_path(keys), lambda f: np.savez(f, mean=mean, std=std))


def _sound_stats(values: np.ndarray, num_bins: int) -> bool:
    return values.shape == (num_bins,) and bool(np.isfinite(values).all())


class _FeatureJobs(Dataset):
    """Computes and caches the features of missing clips (run by DataLoader workers)."""

    def __init__(
        self,
        corpus: Corpus,
        clips: Sequence[Clip],
        keys: Sequence[str],
        cache: FeatureCache,
        featurizer: Featurizer,
    ) -> None:
        self.corpus = corpus
        self.clips = clips
        self.keys = keys
        self.cache = cache
        self.featurizer = featurizer

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> list[str]:
        """Warnings raised while reading the clip; they travel back so that worker processes
        do not print them on their own. An unusable clip is marked bad in the cache."""
        clip, key = self.clips[index], self.keys[index]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                config = self.featurizer.config
                waveform = self.corpus.load_waveform(clip, config.sample_rate, config.n_fft)
                features = self.featurizer(waveform, clip.path)
            except BadAudioError as err:
                self.cache.mark_bad(key, clip.path, err.reason)
                return [str(w.message) for w in caught]
        self.cache.save(key, features.numpy())
        return [str(w.message) for w in caught]


def _identity(job: list[str]) -> list[str]:
    return job


def fill_cache(
    corpus: Corpus,
    clips: Sequence[Clip],
    keys: Sequence[str],
    cache: FeatureCache,
    featurizer: Featurizer,
    num_workers: int = 0,
    what: str = "",
) -> None:
    """Compute with ``featurizer`` and store the features of ``clips`` (entry ``keys``) that
    are not cached yet, in ``num_workers`` worker processes when > 0, with a progress bar.

    A damaged entry is discarded first, with a warning naming the clip; a clip whose audio
    is unusable is marked bad (:meth:`FeatureCache.bad_reason`) instead.
    """
    for clip, key in zip(clips, keys, strict=True):
        problem = cache.problem(key) if cache.has(key) else None
        if problem is not None:
            rank_zero_warn(
                f"{clip.path}: its cached features {cache.feature_path(key)} are damaged "
                f"({problem}); discarded, computing them again"
            )
            cache.discard(key)
    todo = [i for i, k in enumerate(keys) if not cache.has(k) and cache.bad_reason(k) is None]
    if not todo:
        return
    jobs = _FeatureJobs(
        corpus, [clips[i] for i in todo], [keys[i] for i in todo], cache, featurizer
    )
    # A generator of its own: a loader draws its workers' base seed from the global generator
    # otherwise, and a fit that fills the cache would then train on other random numbers
    # than one that finds it filled.
    loader = DataLoader(
        jobs,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_identity,
        generator=torch.Generator(),
    )
    at = f" at tempo {featurizer.tempo:g}" if featurizer.tempo != 1.0 else ""
    desc = f"Computing {featurizer.config.kind} features ({what}{at})"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny transforms: intra-op threads only add overhead
    try:
        for messages in tqdm(loader, total=len(jobs), desc=desc, unit="clip", leave=False):
            for message in messages:
                rank_zero_warn(message)
    finally:
        torch.set_num_threads(threads)


def training_statistics(cache: FeatureCache, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin ``(mean, std)`` over every frame of the entries ``keys`` (a training split),
    read from the cache or computed and stored there. Refuses an empty set."""
    if not keys:
        raise ValueError("normalisation statistics need at least one cached feature")
    stats = cache.load_stats(keys)
    if stats is not None:
        return stats
    total = np.zeros(cache.num_bins)
    squares = np.zeros(cache.num_bins)
    count = 0
    for key in keys:
        feature = read_feature(cache.feature_path(key), cache.num_bins).astype(np.float64)
        total += feature.sum(axis=0)
        squares += (feature**2).sum(axis=0)
        count += feature.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    stats = (mean.astype(np.float32), std.astype(np.float32))
    cache.save_stats(keys, *stats)
    return stats
