"""``SpectrogramDataModule``: speaker-independent, cached, normalised spectrogram batches."""

from __future__ import annotations

import json
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mts_lightning.run_dir import run_dir

from .audio import AUDIO_EXTENSIONS, BadAudioError, is_audio_file
from .augment import SpecAugment
from .cache import FeatureCache, atomic_write, read_feature
from .corpora import CORPUS_CLASSES, CORPUS_NAMES, SCANNERS, Clip, Corpus, FileCorpus, SkippedFile
from .errors import DataError, name_files
from .features import FeatureConfig, FeatureExtractor, fix_length, segment_starts
from .splits import SPLIT_NAMES, make_split, split_speakers
from .synthetic import SyntheticConfig, SyntheticCorpus, check_stretch_range

#: Floor of the per-bin standard deviation used for normalisation.
MIN_STD = 1e-5
#: With ``duration=None``, a longest clip this many times the median one is warned about.
LONG_CLIP_RATIO = 4.0


class Normalizer:
    """Per-frequency-bin mean and standard deviation of the training split.

    One instance is shared by all datasets of a datamodule and read at every item, so
    statistics restored from a checkpoint (after ``setup``) are the ones used.
    """

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    @property
    def ready(self) -> bool:
        return self.mean is not None

    def set(self, mean: torch.Tensor | np.ndarray, std: torch.Tensor | np.ndarray) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).clone()
        self.std = torch.as_tensor(std, dtype=torch.float32).clamp_min(MIN_STD)

    def __call__(self, spec: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError(
                "normalisation statistics are not set (no training split or checkpoint)"
            )
        return (spec - self.mean) / self.std


@dataclass(frozen=True)
class Item:
    """One dataset item: a cached feature file, its target, and the first frame to use."""

    feature: str
    target: int | str
    start: int = 0


class SpectrogramDataset(Dataset):
    """Items of ``(spectrogram (1, time, freq), target)`` read from the feature cache.

    Each item is normalised, cut to ``frames`` frames from its start (a random start when
    ``random_crop``), zero-padded, and augmented when ``augment`` is given.
    """

    def __init__(
        self,
        items: Sequence[Item],
        normalizer: Normalizer,
        frames: int,
        augment: SpecAugment | None = None,
        random_crop: bool = False,
    ) -> None:
        self.items = list(items)
        self.normalizer = normalizer
        self.frames = frames
        self.augment = augment
        self.random_crop = random_crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | str]:
        item = self.items[index]
        spec = self.normalizer(torch.from_numpy(np.load(item.feature, allow_pickle=False)))
        start = item.start
        if self.random_crop and spec.shape[0] > self.frames:
            start = int(torch.randint(0, spec.shape[0] - self.frames + 1, ()))
        spec = fix_length(spec, self.frames, start)
        if self.augment is not None:
            spec = self.augment(spec)
        return spec.unsqueeze(0), item.target


class _FeatureJobs(Dataset):
    """Computes and caches the features of missing clips (run by DataLoader workers)."""

    def __init__(
        self,
        corpus: Corpus,
        clips: list[Clip],
        keys: list[str],
        cache: FeatureCache,
        config: FeatureConfig,
    ) -> None:
        self.corpus = corpus
        self.clips = clips
        self.keys = keys
        self.cache = cache
        self.config = config
        self.extractor = FeatureExtractor(config)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[int, str | None, list[str]]:
        """``(index, why the clip is unusable or None, warnings raised while reading it)``;
        warnings travel back so that worker processes do not print them on their own."""
        clip, key = self.clips[index], self.keys[index]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                waveform = self.corpus.load_waveform(
                    clip, self.config.sample_rate, self.config.n_fft
                )
            except BadAudioError as err:
                self.cache.mark_bad(key, clip.path, err.reason)
                return index, err.reason, [str(w.message) for w in caught]
        self.cache.save(key, self.extractor(waveform).numpy())
        return index, None, [str(w.message) for w in caught]


def _identity(job: tuple[int, str | None, list[str]]) -> tuple[int, str | None, list[str]]:
    return job


def list_audio_files(paths: Sequence[str]) -> list[Path]:
    """Audio files named in ``paths`` (files, or folders searched recursively), in order."""
    files: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser().resolve()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_audio_file(p))
            if not found:
                raise FileNotFoundError(
                    f"predict_paths: folder '{path}' holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"predict_paths: '{path}' does not exist")
    return files


class SpectrogramDataModule(pl.LightningDataModule):
    """Spectrogram batches ``(B, 1, time, freq)`` float32 with labels ``(B,)`` int64.

    Args:
        corpus: ``synthetic`` (embedded, the default), ``ravdess``, ``crema_d``, ``emodb``,
            ``tess``, ``savee``, ``iemocap`` or ``manifest``.
        root: the corpus folder (searched recursively), or the CSV file for ``manifest``.
        features: ``stft`` (|X|^(2/3) magnitude, the paper's) or ``logmel``.
        split: ``speaker_kfold``, ``loso`` (leave one speaker out), ``paper`` (the MTS
            paper's protocol for the corpus) or ``random`` (seeded, stratified).
        fold: which fold of ``speaker_kfold``/``loso``/``paper`` to use.
        num_folds: folds of ``speaker_kfold``.
        split_ratios: train/val/test ratios of ``random``.
        seed: seed of the speaker shuffle and of the random split.
        batch_size, num_workers: DataLoader settings (workers are persistent; memory is pinned
            when training on a GPU). ``num_workers`` also parallelises the cache fill.
        cache_dir: feature cache folder; default ``$MTS_LIGHTNING_CACHE`` or
            ``~/.cache/mts-lightning``.
        sample_rate, n_fft, hop_length, win_length, n_mels, f_min, f_max: feature settings.
        duration: fixed length in seconds (crop or zero-pad); ``None`` pads to the longest clip.
        segment_duration: when set, clips are cut into segments of this many seconds with
            ``segment_overlap`` (e.g. 4.0 and 0.5 for IEMOCAP, as in the paper); each segment is
            an item with its clip's label.
        augment: SpecAugment-style masks, random time stretch (``augment_stretch``) and random
            crops on the training split only.
        include_song: use RAVDESS song files too.
        skip_bad_files: skip (and report) unusable files instead of raising an error.
        synthetic_*: the embedded corpus: seed, classes, speakers, clips per speaker, clip
            duration, and the time-stretch ranges of the train/val and of the test clips.
        predict_paths: audio files and/or folders for ``predict``.
    """

    def __init__(
        self,
        corpus: Literal[
            "synthetic", "ravdess", "crema_d", "emodb", "tess", "savee", "iemocap", "manifest"
        ] = "synthetic",
        root: str | None = None,
        features: Literal["stft", "logmel"] = "logmel",
        split: Literal["speaker_kfold", "loso", "paper", "random"] = "speaker_kfold",
        fold: int = 0,
        num_folds: int = 5,
        split_ratios: tuple[float, float, float] = (0.7, 0.2, 0.1),
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        cache_dir: str | None = None,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 512,
        win_length: int | None = None,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        duration: float | None = 3.0,
        segment_duration: float | None = None,
        segment_overlap: float = 0.5,
        augment: bool = False,
        time_masks: int = 2,
        time_mask_frames: int = 10,
        freq_masks: int = 2,
        freq_mask_bins: int = 8,
        augment_stretch: tuple[float, float] = (0.8, 1.25),
        include_song: bool = False,
        skip_bad_files: bool = False,
        synthetic_seed: int = 0,
        synthetic_classes: int = 6,
        synthetic_speakers: int = 10,
        synthetic_clips_per_speaker: int = 72,
        synthetic_duration: float = 3.0,
        synthetic_train_stretch: tuple[float, float] = (0.6, 1.6),
        synthetic_test_stretch: tuple[float, float] = (0.6, 1.6),
        predict_paths: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if corpus not in CORPUS_NAMES:
            raise ValueError(f"corpus must be one of {', '.join(CORPUS_NAMES)}, got {corpus!r}")
        for name, value, low in (
            ("fold", fold, 0),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        for name, value in (("duration", duration), ("segment_duration", segment_duration)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive seconds or None, got {value}")
        if not 0 <= segment_overlap < 1:
            raise ValueError(f"segment_overlap must be in [0, 1), got {segment_overlap}")
        self.corpus = corpus
        self.root = root
        self.split = split
        self.fold = fold
        self.num_folds = num_folds
        self.split_ratios = tuple(split_ratios)
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.segment_duration = segment_duration
        self.segment_overlap = segment_overlap
        self.include_song = include_song
        self.skip_bad_files = skip_bad_files
        self.predict_paths = list(predict_paths) if predict_paths else None
        self.feature_config = FeatureConfig(
            features=features,
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
        )
        self.augmenter = (
            SpecAugment(time_masks, time_mask_frames, freq_masks, freq_mask_bins, augment_stretch)
            if augment
            else None
        )
        self.synthetic_config = SyntheticConfig(
            seed=synthetic_seed,
            num_classes=synthetic_classes,
            num_speakers=synthetic_speakers,
            clips_per_speaker=synthetic_clips_per_speaker,
            duration=synthetic_duration,
        )
        self.synthetic_train_stretch = check_stretch_range(
            "synthetic_train_stretch", synthetic_train_stretch
        )
        self.synthetic_test_stretch = check_stretch_range(
            "synthetic_test_stretch", synthetic_test_stretch
        )

        self._corpora: dict[str, Corpus] = {}
        self.skipped_files: list[SkippedFile] = []
        self._reported = 0
        self._lost_classes: list[str] = []
        if corpus == "synthetic":
            self.class_names = [f"pattern_{c}" for c in range(synthetic_classes)]
        elif corpus == "manifest":
            self.class_names = list(self.load_corpus().class_names)
        else:
            self.class_names = list(CORPUS_CLASSES[corpus])
        self.num_classes = len(self.class_names)

        if segment_duration is not None:
            frames = self.feature_config.seconds_to_frames(segment_duration)
        elif duration is not None:
            frames = self.feature_config.seconds_to_frames(duration)
        else:
            frames = self.feature_config.seconds_to_frames(self.longest_usable_duration())
        self.input_shape: tuple[int, int, int] = (1, frames, self.feature_config.num_bins)

        self.normalizer = Normalizer()
        self.split_indices: dict[str, list[int]] | None = None
        self.split_speakers: dict[str, list[str]] = {}
        self.class_weights: torch.Tensor | None = None
        self.train_dataset: SpectrogramDataset | None = None
        self.val_dataset: SpectrogramDataset | None = None
        self.test_dataset: SpectrogramDataset | None = None
        self.predict_dataset: SpectrogramDataset | None = None
        self.predict_files: list[str] = []
        self._keys: dict[str, list[str | None]] = {}

    # ------------------------------------------------------------------ corpus and cache
    @property
    def frames(self) -> int:
        """Frames per item (axis 2 of a batch)."""
        return self.input_shape[1]

    def load_corpus(self, part: str = "train") -> Corpus:
        """The corpus (scanned once). For ``synthetic``, ``part="test"`` gives the clips
        rendered with the test stretch range; every other part uses the training range."""
        kind = "test" if self.corpus == "synthetic" and part == "test" else "train"
        if kind not in self._corpora:
            if self.corpus == "synthetic":
                stretch = (
                    self.synthetic_test_stretch if kind == "test" else self.synthetic_train_stretch
                )
                self._corpora[kind] = SyntheticCorpus(self.synthetic_config, stretch)
            else:
                options = {"include_song": self.include_song} if self.corpus == "ravdess" else {}
                corpus = SCANNERS[self.corpus](
                    self.root, skip_bad_files=self.skip_bad_files, **options
                )
                self._record_skipped(corpus.skipped)
                if corpus.excluded:
                    reasons: dict[str, int] = {}
                    for entry in corpus.excluded:
                        reasons[entry.reason] = reasons.get(entry.reason, 0) + 1
                    summary = "; ".join(f"{n} x {reason}" for reason, n in sorted(reasons.items()))
                    rank_zero_info(
                        f"{self.corpus}: left out {len(corpus.excluded)} files by design: {summary}"
                    )
                self._corpora[kind] = corpus
        return self._corpora[kind]

    def longest_usable_duration(self) -> float:
        """Seconds of the longest clip that can be used (what ``duration=None`` pads to).

        Headers give every clip's length; from the longest down, clips are read in full until
        one is usable, so a bad file is skipped (``skip_bad_files``) or refused as it is
        everywhere else. Warns, naming the clip, when it is more than ``LONG_CLIP_RATIO`` times
        the median clip: every item is padded to it.
        """
        corpus = self.load_corpus()
        lengths: list[tuple[float, Clip]] = []
        bad: list[SkippedFile] = []
        for clip in corpus.clips:
            try:
                lengths.append((corpus.duration(clip), clip))
            except BadAudioError as err:
                bad.append(SkippedFile(clip.path, err.reason))
        self._refuse_or_skip(bad)
        config = self.feature_config
        median = statistics.median(seconds for seconds, _ in lengths) if lengths else 0.0
        for _, clip in sorted(lengths, key=lambda entry: -entry[0]):
            try:
                waveform = corpus.load_waveform(clip, config.sample_rate, config.n_fft)
            except BadAudioError as err:
                self._refuse_or_skip([SkippedFile(clip.path, err.reason)])
                continue
            longest = waveform.numel() / config.sample_rate
            if longest > LONG_CLIP_RATIO * median:
                rank_zero_warn(
                    f"{self.corpus}: the longest usable clip, {clip.path} ({longest:.1f} s), is "
                    f"{longest / median:.1f} times the median clip ({median:.1f} s), and "
                    "duration=None pads every clip to it; cap the length with --data.duration "
                    "SECONDS (longer clips are cropped) or leave that clip out"
                )
            return longest
        raise self._nothing_usable(
            f"none of its {len(corpus.clips)} clips is usable, so duration=None has no "
            "longest clip to pad to"
        )

    def _refuse_or_skip(self, bad: Sequence[SkippedFile]) -> None:
        """Raise one :class:`BadAudioError` for ``bad`` files, or record them when skipping."""
        if not bad:
            return
        if not self.skip_bad_files:
            problems = [(s.path, s.reason) for s in bad]
            if len(bad) == 1:
                raise BadAudioError(
                    bad[0].path, f"{bad[0].reason} (set skip_bad_files=True to skip such files)"
                )
            raise BadAudioError(
                bad[0].path,
                f"{bad[0].reason}; {len(bad)} files cannot be used: {name_files(problems)} "
                "(set skip_bad_files=True to skip such files)",
            )
        self._record_skipped(bad)

    def _nothing_usable(self, missing: str) -> DataError:
        """The error for a corpus or split that skipping left without what it needs: how many
        files were skipped, where their list is, and what is missing."""
        self._report_skipped()
        skipped = ""
        if self.skipped_files:
            where = self._write_log() or "the warning above"
            skipped = f", after skipping {len(self.skipped_files)} bad files (listed in {where})"
        return DataError(
            f"{self.corpus}: {missing}{skipped}; fix or replace those files, or choose another "
            "split or fold"
        )

    def _cache(self, name: str) -> FeatureCache:
        return FeatureCache(
            self.cache_dir, name, self.feature_config.key(), self.feature_config.num_bins
        )

    def _record_skipped(self, skipped: Sequence[SkippedFile]) -> None:
        known = {s.path for s in self.skipped_files}
        self.skipped_files += [s for s in skipped if s.path not in known]

    def _fill(
        self, corpus: Corpus, clips: list[Clip], cache: FeatureCache, what: str
    ) -> list[str | None]:
        """Cache the features of ``clips``; return each clip's key, or None for a bad clip.

        Missing entries are computed (in ``num_workers`` worker processes when > 0) with a
        progress bar. In multi-process training, local rank zero fills while the others wait.
        """
        all_keys = [cache.key(corpus.identity(clip)) for clip in clips]
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            if trainer.local_rank == 0:
                self._fill_missing(corpus, clips, all_keys, cache, what)
            trainer.strategy.barrier("mts_lightning_feature_cache")
        self._fill_missing(corpus, clips, all_keys, cache, what)
        keys: list[str | None] = []
        bad = []
        for clip, key in zip(clips, all_keys, strict=True):
            reason = None if cache.has(key) else cache.bad_reason(key)
            if reason is not None:
                bad.append(SkippedFile(clip.path, reason))
            keys.append(None if reason is not None else key)
        self._refuse_or_skip(bad)
        return keys

    def _fill_missing(
        self, corpus: Corpus, clips: list[Clip], keys: list[str], cache: FeatureCache, what: str
    ) -> None:
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
            corpus, [clips[i] for i in todo], [keys[i] for i in todo], cache, self.feature_config
        )
        loader = DataLoader(
            jobs, batch_size=None, num_workers=self.num_workers, collate_fn=_identity
        )
        desc = f"Computing {self.feature_config.features} features ({what})"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny transforms: intra-op threads only add overhead
        try:
            jobs_done = tqdm(loader, total=len(jobs), desc=desc, unit="clip", leave=False)
            for _, _, messages in jobs_done:
                for message in messages:
                    rank_zero_warn(message)
        finally:
            torch.set_num_threads(threads)

    def _items(
        self, keys: list[str | None], targets: Sequence[int | str], cache: FeatureCache
    ) -> list[Item]:
        items = []
        for key, target in zip(keys, targets, strict=True):
            if key is None:
                continue
            path = str(cache.feature_path(key))
            if self.segment_duration is None:
                items.append(Item(path, target))
            else:
                length = np.load(path, mmap_mode="r", allow_pickle=False).shape[0]
                items += [
                    Item(path, target, s)
                    for s in segment_starts(length, self.frames, self.segment_overlap)
                ]
        return items

    def _part(self, name: str) -> list[Item]:
        """Fill the cache for one part of the split and return its items."""
        assert self.split_indices is not None
        corpus = self.load_corpus(name)
        clips = [corpus.clips[i] for i in self.split_indices[name]]
        if not clips:
            raise DataError(
                f"the {name} split of {self.corpus} is empty (split={self.split!r}, "
                f"fold={self.fold}); choose another split or fold"
            )
        cache = self._cache(self.corpus)
        self._keys[name] = keys = self._fill(corpus, clips, cache, f"{self.corpus} {name}")
        self._check_usable(name, clips, keys)
        return self._items(keys, [c.label for c in clips], cache)

    def _check_usable(self, name: str, clips: list[Clip], keys: list[str | None]) -> None:
        """Refuse a part that skipping emptied; warn when the training part lost a class (the
        model cannot learn it; its class weight is 0)."""
        kept = [clip for clip, key in zip(clips, keys, strict=True) if key is not None]
        if not kept:
            speakers = sorted({c.speaker for c in clips if c.speaker is not None})
            whose = f" (speakers {', '.join(speakers)})" if speakers else ""
            raise self._nothing_usable(
                f"the {name} split{whose} has no usable clip left of its {len(clips)} "
                f"(split={self.split!r}, fold={self.fold})"
            )
        lost = {c.label for c in clips} - {c.label for c in kept}
        if name == "train":
            self._lost_classes = [self.class_names[label] for label in sorted(lost)]

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        """Split, fill the cache and build the datasets of ``stage`` (None: all parts)."""
        if stage == "predict":
            self._setup_predict()
            return
        parts = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "", SPLIT_NAMES
        )
        self._make_split()
        for name in parts:
            dataset = SpectrogramDataset(
                self._part(name),
                self.normalizer,
                self.frames,
                augment=self.augmenter if name == "train" else None,
                random_crop=name == "train"
                and self.augmenter is not None
                and self.segment_duration is None,
            )
            setattr(self, f"{name}_dataset", dataset)
        self.class_weights = self._class_weights()
        self._report_skipped()
        self._write_log()

    def _make_split(self) -> None:
        if self.split_indices is not None:
            return
        corpus = self.load_corpus()
        self.split_indices = make_split(
            corpus.clips,
            self.split,
            self.fold,
            self.num_folds,
            self.seed,
            self.split_ratios,
            self.corpus,
        )
        self.split_speakers = split_speakers(corpus.clips, self.split_indices)

    def _class_weights(self) -> torch.Tensor:
        """Inverse class frequency of the training clips, normalised to mean 1 over the classes
        present (absent classes weigh 0)."""
        assert self.split_indices is not None
        clips = self.load_corpus().clips
        keys = self._keys.get("train")
        indices = self.split_indices["train"]
        if keys is not None:
            indices = [i for i, k in zip(indices, keys, strict=True) if k is not None]
        counts = torch.bincount(
            torch.tensor([clips[i].label for i in indices], dtype=torch.long),
            minlength=self.num_classes,
        )
        weights = torch.where(counts > 0, 1.0 / counts.clamp_min(1).float(), torch.zeros(()))
        return weights / weights[counts > 0].mean()

    def _ensure_stats(self) -> None:
        """Compute the training split's per-bin mean/std unless set (or restored) already."""
        if self.normalizer.ready:
            return
        self._make_split()
        if "train" not in self._keys:
            self._part("train")
        keys = [k for k in self._keys["train"] if k is not None]
        if not keys:
            raise self._nothing_usable("the training split has no usable clip for statistics")
        cache = self._cache(self.corpus)
        stats = cache.load_stats(keys)
        if stats is None:
            total = np.zeros(self.feature_config.num_bins)
            squares = np.zeros(self.feature_config.num_bins)
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
        self.normalizer.set(*stats)

    def _setup_predict(self) -> None:
        if not self.predict_paths:
            raise ValueError(
                "predict needs `predict_paths`: audio files and/or folders to classify"
            )
        files = [str(p) for p in list_audio_files(self.predict_paths)]
        corpus = FileCorpus("predict", self.class_names, [Clip(f, -1, None) for f in files])
        cache = self._cache("predict")
        keys = self._fill(corpus, corpus.clips, cache, "predict")
        self.predict_files = [f for f, k in zip(files, keys, strict=True) if k is not None]
        items = [
            Item(str(cache.feature_path(k)), f)
            for f, k in zip(files, keys, strict=True)
            if k is not None
        ]
        self.predict_dataset = SpectrogramDataset(items, self.normalizer, self.frames)
        self._report_skipped()

    def _report_skipped(self) -> None:
        new = self.skipped_files[self._reported :]
        self._reported = len(self.skipped_files)
        if new:
            lines = "\n".join(f"  {s.path}: {s.reason}" for s in new)
            lost = ""
            if self._lost_classes:
                lost = (
                    f"\nThe training split has no clip left of class(es) "
                    f"{', '.join(self._lost_classes)}: the model cannot learn them."
                )
            rank_zero_warn(
                f"{self.corpus}: skipped {len(new)} bad files (skip_bad_files=True):\n{lines}"
                + lost
            )

    def _write_log(self) -> str | None:
        """Write ``split_speakers.json`` (and ``skipped_files.json``) into the run's folder;
        return the path of the list of skipped files, if one was written."""
        trainer = self.trainer
        if trainer is None:
            return None
        if not trainer.is_global_zero:
            return None
        log_dir = run_dir(trainer)
        files = {"split_speakers.json": self.split_speakers}
        if self.skipped_files:
            files["skipped_files.json"] = [
                {"path": s.path, "reason": s.reason} for s in self.skipped_files
            ]
        for name, content in files.items():
            text = json.dumps(content, indent=2).encode()
            atomic_write(Path(log_dir) / name, lambda f, text=text: f.write(text))
        return str(Path(log_dir) / "skipped_files.json") if self.skipped_files else None

    def _loader(
        self, dataset: SpectrogramDataset | None, stage: str, shuffle: bool = False
    ) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"no {stage} dataset: call setup() with the matching stage first")
        self._ensure_stats()
        trainer = self.trainer
        on_gpu = (
            isinstance(trainer.accelerator, CUDAAccelerator)
            if trainer is not None
            else torch.cuda.is_available()
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=on_gpu,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset, "predict")

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict:
        """Normalisation statistics of the training split (stored in Lightning checkpoints)."""
        if not self.normalizer.ready:
            return {}
        return {"norm_mean": self.normalizer.mean, "norm_std": self.normalizer.std}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the training statistics (used even when the corpus is not available)."""
        if "norm_mean" not in state_dict:
            return
        mean = torch.as_tensor(state_dict["norm_mean"])
        if mean.numel() != self.feature_config.num_bins:
            raise ValueError(
                f"checkpoint normalisation has {mean.numel()} frequency bins but the datamodule's "
                f"features have {self.feature_config.num_bins}; use the feature settings of training"
            )
        self.normalizer.set(mean, state_dict["norm_std"])
