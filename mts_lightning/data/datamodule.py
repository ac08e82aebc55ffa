"""``SpectrogramDataModule``: speaker-independent, cached, normalised spectrogram batches."""

from __future__ import annotations

import inspect
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from mts_lightning.arguments import build_dataclass
from mts_lightning.run_dir import run_dir

from .audio import list_audio_files
from .augment import Augment
from .bad_files import BadFiles
from .cache import FeatureCache, fill_cache, training_statistics, write_json
from .corpora import Clip, Corpus, FileCorpus, SkippedFile, get_corpus, list_corpora
from .corpora.protocols import SPLIT_NAMES
from .dataset import (
    Item,
    SegmentedClipDataset,
    SpectrogramDataset,
    class_weights,
    collate_segments,
    make_items,
)
from .errors import DataError
from .features import FEATURE_SETTINGS, FeatureConfig, Featurizer
from .frontend import ModelInput, PadMode, check_pad_mode
from .label_sets import LabelSetArg, LabelSetReport, apply_label_set, get_label_set
from .splits import check_fraction, make_split, split_speakers
from .tempo import check_tempo

#: With ``duration=None``, a longest clip this many times the median one is warned about.
LONG_CLIP_RATIO = 4.0
#: DataModule arguments besides the feature settings that decide the length of an item.
LENGTH_SETTINGS = ("duration", "segment_duration")
#: Settings a trained model is evaluated with unless given otherwise; any value works with
#: any model, so an explicit one is honoured.
PADDING_SETTINGS = ("pad_mode",)
#: Where the normalisation statistics of an evaluation come from (``normalise_with``).
NORMALISE_WITH = ("train", "test")
#: The defaults of the ``features`` and ``augment`` groups: the features of ``make train``, no
#: augmentation.
DEFAULT_FEATURES = FeatureConfig()
NO_AUGMENT = Augment()


def restored_settings() -> tuple[str, ...]:
    """The DataModule settings that shape a trained model's input and output, as dotted paths
    (``features.n_mels``): ``corpus``, every feature setting, the length settings and the
    corpus options that decide a registered corpus's classes (``corpus_options.num_classes``).
    ``predict``, ``validate`` and ``test`` take them from the checkpoint unless given
    explicitly, which the CLI honours only where the model can take the value
    (:class:`~mts_lightning.cli.MTSLightningCLI`)."""
    class_options = (option for name in list_corpora() for option in get_corpus(name).class_options)
    return (
        "corpus",
        *(f"features.{name}" for name in FEATURE_SETTINGS),
        *LENGTH_SETTINGS,
        *PADDING_SETTINGS,
        *dict.fromkeys(f"corpus_options.{option}" for option in class_options),
        "label_set",
    )


class SpectrogramDataModule(pl.LightningDataModule):
    """Spectrogram batches ``(B, 1, time, freq)`` float32 with labels ``(B,)`` int64.

    With ``segment_duration`` the clips are cut into overlapping segments. Training batches
    stay pairs, one segment per item. Validation, test and predict batches are scored per
    clip (utterance): each item is a whole clip with all its segments, and a batch is the
    triple ``(spectrograms (S, 1, time, freq), labels (B,) or paths, clip_index (S,))`` of the
    ``S`` segments of ``B`` clips (:func:`collate_segments`); ``EmotionClassifier`` averages
    the segment logits of each clip. ``batch_size`` then counts clips, and samplers (DDP's
    too) split clips, not segments.

    Args:
        corpus: a registered corpus (:func:`list_corpora`): ``synthetic`` (embedded, the
            default), ``ravdess``, ``crema_d``, ``emodb``, ``tess``, ``savee``, ``iemocap``,
            ``manifest``, or one you registered.
        root: the corpus folder (searched recursively), or the CSV file for ``manifest``.
        corpus_options: the corpus's own options, checked against its declaration
            (:meth:`CorpusSpec.corpus_options`; an unknown name is refused, naming the ones it
            takes): the synthetic corpus's :class:`~mts_lightning.data.SyntheticOptions`
            (``seed``, ``num_classes``, ``num_speakers``, ``clips_per_speaker``,
            ``duration``, ``snr_db``, ``train_stretch``, ``test_stretch``), RAVDESS's
            ``include_song`` (song files too). ``None``: the defaults.
        features: the feature settings (:class:`FeatureConfig`, a mapping in Python too):
            ``kind`` is a registered feature kind, ``stft`` (``|X|^(2/3)`` magnitude, the
            paper's) or ``logmel``; ``sample_rate``, ``n_fft``, ``hop_length``,
            ``win_length``, ``n_mels``, ``f_min``, ``f_max``; ``options``, the kind's own.
        split: ``speaker_kfold``, ``loso`` (leave one speaker out), ``paper`` (the MTS
            paper's protocol for the corpus), ``random`` (seeded, stratified) or ``all``
            (every clip is a validation and a test clip, none trains: a corpus a checkpoint
            was not trained on; the CLI picks it when ``--data.corpus`` differs from the
            checkpoint's).
        fold: which fold of ``speaker_kfold``/``loso``/``paper`` to use.
        num_folds: folds of ``speaker_kfold``.
        split_ratios: train/val/test ratios of ``random``.
        seed: seed of the speaker shuffle, of the random split and of the training speakers
            kept by ``train_speaker_fraction``.
        train_speaker_fraction: train on this fraction of the split's training speakers only
            (rounded, at least one; all their clips), chosen with ``seed``: a smaller training
            set for the same validation and test speakers. With one seed, a quarter's speakers
            are among a half's. 1.0 (default): every training speaker.
        batch_size, num_workers: DataLoader settings (workers are persistent; memory is pinned
            when training on a GPU). ``num_workers`` also parallelises the cache fill.
        cache_dir: feature cache folder; default ``$MTS_LIGHTNING_CACHE`` or
            ``~/.cache/mts-lightning``.
        duration: fixed length in seconds (crop or pad); ``None`` pads to the longest
            usable clip of the training corpus (:meth:`longest_usable_duration`).
        pad_mode: how a clip shorter than the input is filled: ``zeros`` (after
            normalisation: the training mean) or ``repeat`` (the clip again from its start).
            With ``zeros`` the share of padding in an input tells the clip's length, a cue a
            model can learn and that moves with the speaking rate; ``repeat`` leaves none.
            Restored from the checkpoint for evaluation and prediction.
        segment_duration: when set, clips are cut into segments of this many seconds with
            ``segment_overlap`` (e.g. 4.0 and 0.5 for IEMOCAP, as in the paper); each segment
            is a training item with its clip's label, and clips are scored from all their
            segments (see above).
        test_tempo: the test split's audio is played this many times as fast, pitch kept,
            before the features are computed (:func:`~mts_lightning.data.tempo.change_tempo`):
            0.7 makes every test clip 1/0.7 times longer. Train, validation, predict and the
            normalisation statistics are untouched. With a fixed ``duration`` a slowed clip
            is cropped like any long clip (a sped-up one padded); with segments a slowed clip
            gives more segments. The synthetic corpus applies it on top of its render-time
            ``test_stretch``. Features at a tempo other than 1.0 are cached apart,
            keyed by it. Tempos are honoured from :data:`~mts_lightning.data.tempo.MIN_TEMPO`
            to :data:`~mts_lightning.data.tempo.MAX_TEMPO` (why: there); a clip that ends
            shorter than one analysis frame is a bad file (``skip_bad_files``).
        augment: the augmentation of the training split (:class:`Augment`, a mapping in
            Python too): ``spec_augment``, SpecAugment-style masks and a random time stretch
            (:class:`SpecAugment`'s settings), and ``tempos``, re-timed training audio; with
            either, random crops. Default: none.
        skip_bad_files: skip (and report) unusable files instead of raising an error.
        predict_paths: audio files and/or folders for ``predict``.
        label_set: shared classes that the corpus's classes map onto
            (:mod:`~mts_lightning.data.label_sets`): a registered name (``shared4``,
            ``shared4_excited``, ``acted6``) or an inline ``{shared class: [corpus classes]}``.
            The classes are then the set's; clips of other classes are left out, logged, and
            counted in ``label_set.json`` of the run and in the fit summary. A checkpoint
            trained with a label set can be tested on any corpus the set covers.
        normalise_with: the statistics an evaluation normalises with: ``train`` (those of the
            training split, from the checkpoint) or ``test`` (the evaluated clips' own: the
            validate/test part, or the predict files). Fit always uses the training split's.
        balance_test: subsample the test part to the same number of clips per class (the
            fewest of any class present; seeded with ``seed``), so that UA and WA agree.

    The flat spellings of earlier versions (``n_mels``, ``augment_tempos``,
    ``synthetic_speakers``, ...) are refused by the CLI, showing the grouped YAML
    (:mod:`~mts_lightning.data.settings`); checkpoints that hold them load as before.

    In YAML::

        data:
          corpus: synthetic
          corpus_options: {num_speakers: 4, clips_per_speaker: 6}
          features: {kind: logmel, n_mels: 64}
          augment: {spec_augment: {time_masks: 2}, tempos: [0.7, 1.0, 1.4]}
          duration: 3.0

    Example:
        A small synthetic corpus (3 classes, 5 speakers, 1-s clips), its features cached in a
        temporary folder:

        >>> import tempfile
        >>> from mts_lightning import SpectrogramDataModule
        >>> cache = tempfile.TemporaryDirectory()
        >>> data = SpectrogramDataModule(
        ...     corpus="synthetic", duration=1.0, batch_size=4, cache_dir=cache.name,
        ...     corpus_options={"num_classes": 3, "num_speakers": 5, "clips_per_speaker": 6,
        ...                     "duration": 1.0})
        >>> data.prepare_data()
        >>> data.setup("fit")
        >>> data.class_names, data.input_shape  # what the model is told
        (['pattern_0', 'pattern_1', 'pattern_2'], (1, 32, 64))
        >>> spectrograms, labels = next(iter(data.train_dataloader()))
        >>> spectrograms.shape, labels.dtype
        (torch.Size([4, 1, 32, 64]), torch.int64)
        >>> cache.cleanup()
    """

    def __init__(
        self,
        corpus: str = "synthetic",
        root: str | None = None,
        corpus_options: dict[str, Any] | None = None,
        features: FeatureConfig = DEFAULT_FEATURES,
        split: Literal["speaker_kfold", "loso", "paper", "random", "all"] = "speaker_kfold",
        fold: int = 0,
        num_folds: int = 5,
        split_ratios: tuple[float, float, float] = (0.7, 0.2, 0.1),
        seed: int = 0,
        train_speaker_fraction: float = 1.0,
        batch_size: int = 32,
        num_workers: int = 0,
        cache_dir: str | None = None,
        duration: float | None = 3.0,
        pad_mode: PadMode = "zeros",
        segment_duration: float | None = None,
        segment_overlap: float = 0.5,
        test_tempo: float = 1.0,
        augment: Augment = NO_AUGMENT,
        skip_bad_files: bool = False,
        predict_paths: list[str] | None = None,
        label_set: LabelSetArg = None,
        normalise_with: Literal["train", "test"] = "train",
        balance_test: bool = False,
    ) -> None:
        super().__init__()
        settings = {name: value for name, value in locals().items() if name in _ARGUMENTS}
        self.corpus_spec = get_corpus(corpus)
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
        check_fraction(train_speaker_fraction)
        check_tempo("test_tempo", test_tempo)
        check_pad_mode(pad_mode)
        if normalise_with not in NORMALISE_WITH:
            raise ValueError(
                f"normalise_with must be one of {', '.join(NORMALISE_WITH)}, got {normalise_with!r}"
            )
        #: The corpus options, checked and completed with the corpus's defaults.
        self.corpus_options = self.corpus_spec.corpus_options(corpus_options)
        self.feature_config = build_dataclass(FeatureConfig, features, "features")
        self.augment = build_dataclass(Augment, augment, "augment")
        # Saved as plain values (checkpoints load them with weights_only=True).
        self.save_hyperparameters(
            {
                **settings,
                "corpus_options": self.corpus_options,
                "features": asdict(self.feature_config),
                "augment": asdict(self.augment),
            }
        )
        self.label_set = get_label_set(label_set)
        #: How the label set met the corpus (set when the corpus is scanned).
        self.label_set_report: LabelSetReport | None = None
        self._corpora: dict[str, Corpus] = {}
        self.bad_files = BadFiles(corpus, skip_bad_files)
        if self.label_set is not None:
            self.class_names = self.label_set.classes
        else:
            self.class_names = list(
                self.corpus_spec.classes
                if self.corpus_spec.classes is not None
                else self.load_corpus().class_names
            )
        self.num_classes = len(self.class_names)
        length = segment_duration or duration or self.longest_usable_duration()
        frames = self.feature_config.seconds_to_frames(length)
        self.input_shape: tuple[int, int, int] = (1, frames, self.feature_config.num_bins)

        #: Features -> model input: the statistics are set in ``setup`` or restored.
        self.model_input = ModelInput(
            frames, pad_mode, segment_overlap if segment_duration is not None else None
        )
        self.split_indices: dict[str, list[int]] | None = None
        self.split_speakers: dict[str, list[str]] = {}
        self.class_weights: torch.Tensor | None = None
        self.train_dataset: SpectrogramDataset | None = None
        self.val_dataset: SpectrogramDataset | None = None
        self.test_dataset: SpectrogramDataset | None = None
        self.predict_dataset: SpectrogramDataset | None = None
        self.predict_files: list[str] = []
        self._keys: dict[str, list[str | None]] = {}

    @property
    def corpus(self) -> str:
        """The registered name of the corpus."""
        return self.hparams.corpus

    @property
    def label_set_info(self) -> dict | None:
        """The label set as a checkpoint keeps it (:meth:`LabelSet.describe`), or None."""
        return None if self.label_set is None else self.label_set.describe(self.corpus)

    @property
    def predict_paths(self) -> list[str] | None:
        """Audio files and/or folders for ``predict``."""
        return self.hparams.predict_paths

    @property
    def skipped_files(self) -> list[SkippedFile]:
        """The bad files skipped so far (``skip_bad_files``), each once."""
        return self.bad_files.skipped

    @property
    def frames(self) -> int:
        """Frames per item (axis 2 of a batch)."""
        return self.input_shape[1]

    # ------------------------------------------------------------------ corpus and split
    def load_corpus(self, part: str = "train") -> Corpus:
        """The corpus (scanned once). Corpora registered with ``test_part_differs`` (the
        synthetic one: its test stretch range) give the test part apart."""
        variant = "test" if self.corpus_spec.test_part_differs and part == "test" else "train"
        if variant not in self._corpora:
            options = dict(self.corpus_options)
            if self.corpus_spec.test_part_differs:
                options["part"] = variant
            if self.label_set is not None:
                options.update(self.corpus_spec.label_set_scan)
            hp = self.hparams
            corpus = self.corpus_spec.scan(hp.root, skip_bad_files=hp.skip_bad_files, **options)
            self.bad_files.record(corpus.skipped)
            if self.label_set is not None:
                where = "the embedded corpus" if hp.root is None else str(hp.root)
                corpus, self.label_set_report = apply_label_set(corpus, self.label_set, where)
                rank_zero_info(self.label_set_report.line())
            if corpus.excluded:
                rank_zero_info(corpus.excluded_summary())
            self._corpora[variant] = corpus
        return self._corpora[variant]

    def make_split(self) -> dict[str, list[int]]:
        """The train/val/test clip indices (made once); raises when the corpus cannot give the
        configured split (too few speakers, a fold out of range)."""
        if self.split_indices is None:
            hp, clips = self.hparams, self.load_corpus().clips
            if hp.split == "all":
                every = list(range(len(clips)))
                self.split_indices = {"train": [], "val": every, "test": list(every)}
            else:
                self.split_indices = make_split(
                    clips,
                    hp.split,
                    hp.fold,
                    hp.num_folds,
                    hp.seed,
                    hp.split_ratios,
                    hp.corpus,
                    hp.train_speaker_fraction,
                )
            if hp.balance_test:
                test = self.split_indices["test"]
                self.split_indices["test"] = balanced(clips, test, hp.seed)
                rank_zero_info(
                    f"{self.corpus} test: balanced to {len(self.split_indices['test'])} clips, "
                    f"the same number per class, of {len(test)} (balance_test, seed {hp.seed})"
                )
            self.split_speakers = split_speakers(clips, self.split_indices)
        return self.split_indices

    def longest_usable_duration(self) -> float:
        """Seconds of the longest clip that can be used (what ``duration=None`` pads to).

        Headers give every clip's length; from the longest down, clips are read in full until
        one is usable, so a bad file is skipped (``skip_bad_files``) or refused as it is
        everywhere else. Warns, naming the clip, when it is more than ``LONG_CLIP_RATIO`` times
        the median clip: every item is padded to it.
        """
        corpus, config = self.load_corpus(), self.feature_config
        found = corpus.longest_usable(config.sample_rate, config.n_fft, self.bad_files.handle)
        if found is None:
            raise self._nothing_left(
                f"none of its {len(corpus.clips)} clips is usable, so duration=None has no "
                "longest clip to pad to"
            )
        longest, clip, median = found
        if longest > LONG_CLIP_RATIO * median:
            rank_zero_warn(
                f"{self.corpus}: the longest usable clip, {clip.path} ({longest:.1f} s), is "
                f"{longest / median:.1f} times the median clip ({median:.1f} s), and "
                "duration=None pads every clip to it; cap the length with --data.duration "
                "SECONDS (longer clips are cropped) or leave that clip out"
            )
        return longest

    # ------------------------------------------------------------------ cache and items
    def _cache(self, name: str, featurizer: Featurizer) -> FeatureCache:
        """The cache of ``featurizer``'s features of corpus ``name``."""
        return FeatureCache(
            self.hparams.cache_dir, name, featurizer.settings(), self.feature_config.num_bins
        )

    def _featurizer(self, tempo: float = 1.0) -> Featurizer:
        return Featurizer(self.feature_config, tempo)

    def _fill(
        self,
        corpus: Corpus,
        clips: list[Clip],
        cache: FeatureCache,
        featurizer: Featurizer,
        what: str,
    ) -> list[str | None]:
        """Cache the features of ``clips`` that are not cached yet; return each clip's key, or
        None for a bad clip. Under a trainer, :meth:`prepare_data` has filled the cache before
        (on one process per node), so that every process of ``setup`` only reads it.
        """
        keys = [cache.key(corpus.identity(clip)) for clip in clips]
        fill_cache(corpus, clips, keys, cache, featurizer, self.hparams.num_workers, what)
        reasons = [None if cache.has(key) else cache.bad_reason(key) for key in keys]
        self.bad_files.handle(
            [SkippedFile(c.path, r) for c, r in zip(clips, reasons, strict=True) if r is not None]
        )
        return [key if r is None else None for key, r in zip(keys, reasons, strict=True)]

    def _part(self, name: str) -> list[Item]:
        """Fill the cache for one part of the split (the test part at ``test_tempo``) and
        return its items: one per clip, or one per segment for the training part when clips
        are cut into segments."""
        hp = self.hparams
        corpus = self.load_corpus(name)
        clips = [corpus.clips[i] for i in self.make_split()[name]]
        if not clips:
            raise DataError(
                f"the {name} split of {self.corpus} is empty (split={hp.split!r}, "
                f"fold={hp.fold}); choose another split or fold"
            )
        featurizer = self._featurizer(hp.test_tempo if name == "test" else 1.0)
        cache = self._cache(self.corpus, featurizer)
        self._keys[name] = keys = self._fill(
            corpus, clips, cache, featurizer, f"{self.corpus} {name}"
        )
        self._check_usable(name, clips, keys)
        features = [
            (str(cache.feature_path(key)), clip.label)
            for clip, key in zip(clips, keys, strict=True)
            if key is not None
        ]
        per_segment = name == "train" and self.segmented
        retimed = None
        if name == "train" and self.augment.tempos:
            retimed = self._retimed(corpus, [c for c, k in zip(clips, keys, strict=True) if k])
        return make_items(
            features, self.frames, hp.segment_overlap if per_segment else None, retimed
        )

    def _retimed(self, corpus: Corpus, clips: list[Clip]) -> list[tuple[tuple[str, float], ...]]:
        """Every clip's features at each of ``augment.tempos`` (cached per tempo)."""
        paths: list[list[tuple[str, float]]] = [[] for _ in clips]
        for tempo in self.augment.tempos or ():
            featurizer = self._featurizer(tempo)
            cache = self._cache(self.corpus, featurizer)
            keys = self._fill(corpus, clips, cache, featurizer, f"{self.corpus} train")
            self._check_usable(f"train (tempo {tempo:g})", clips, keys)
            for versions, key in zip(paths, keys, strict=True):
                if key is not None:
                    versions.append((str(cache.feature_path(key)), tempo))
        return [tuple(v) for v in paths]

    @property
    def segmented(self) -> bool:
        """Whether clips are cut into segments (``segment_duration`` is set)."""
        return self.hparams.segment_duration is not None

    def _dataset(self, items: list[Item], training: bool = False) -> SpectrogramDataset:
        """The dataset of a part: whole clips with their segments when scoring segmented
        clips, single spectrograms otherwise."""
        if self.segmented and not training:
            return SegmentedClipDataset(items, self.model_input)
        return SpectrogramDataset(
            items,
            self.model_input,
            augment=self.augment.spec_augment if training else None,
            random_crop=training and self.augment.random_crop and not self.segmented,
        )

    def _check_usable(self, name: str, clips: list[Clip], keys: list[str | None]) -> None:
        """Refuse a part that skipping emptied; note the classes the training part lost (the
        model cannot learn them; their class weight is 0), for the report of skipped files."""
        kept = [clip for clip, key in zip(clips, keys, strict=True) if key is not None]
        if not kept:
            speakers = sorted({c.speaker for c in clips if c.speaker is not None})
            whose = f" (speakers {', '.join(speakers)})" if speakers else ""
            raise self._nothing_left(
                f"the {name} split{whose} has no usable clip left of its {len(clips)} "
                f"(split={self.hparams.split!r}, fold={self.hparams.fold})"
            )
        if name == "train":
            lost = {c.label for c in clips} - {c.label for c in kept}
            self.bad_files.lost_classes = [self.class_names[label] for label in sorted(lost)]

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Scan the corpus, split it and fill the feature cache of the parts that the trainer's
        stage reads (fit: train, with its re-timed versions, and val; validate: val; test:
        test; predict: the predict files; every split part without a trainer).

        Lightning calls it on one process per node (local rank 0) while the others wait,
        before ``setup`` on every process; ``setup`` then finds the features cached. Called
        alone or skipped, ``setup`` fills what is missing itself.
        """
        trainer = self.trainer
        stage = trainer.state.fn.value if trainer is not None and trainer.state.fn else None
        if stage == "predict":
            self._predict_keys()
            return
        parts = self._stage_parts(stage)
        self._check_stage(parts)
        for name in parts:
            self._part(name)

    @staticmethod
    def _stage_parts(stage: str | None) -> Sequence[str]:
        """The split parts that ``stage`` reads (None: all)."""
        return {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "", SPLIT_NAMES
        )

    def setup(self, stage: str | None = None) -> None:
        """Split and build the datasets of ``stage`` (None: all parts) from the cache that
        :meth:`prepare_data` filled (filling what is missing)."""
        if stage == "predict":
            self._setup_predict()
            return
        parts = self._stage_parts(stage)
        self._check_stage(parts)
        for name in parts:
            dataset = self._dataset(self._part(name), training=name == "train")
            setattr(self, f"{name}_dataset", dataset)
        self.class_weights = self._class_weights()
        self.bad_files.report()
        self._write_log()

    def _check_stage(self, parts: Sequence[str]) -> None:
        """Refuse settings that only apply to evaluation when training."""
        hp = self.hparams
        if "train" in parts and hp.split == "all":
            raise DataError(
                f"split='all' makes every clip of {self.corpus} a test clip and leaves none to "
                "train on; it evaluates a checkpoint (validate, test): choose another split to fit"
            )
        if "train" in parts and hp.normalise_with != "train":
            raise DataError(
                f"normalise_with={hp.normalise_with!r} normalises an evaluation with the "
                "evaluated clips' own statistics (validate, test, predict with --ckpt_path); "
                "fit normalises with the training split: leave it 'train'"
            )

    def _class_weights(self) -> torch.Tensor:
        """:func:`class_weights` of the usable training clips."""
        if self.hparams.split == "all":
            return torch.ones(self.num_classes)  # nothing trains
        clips = self.load_corpus().clips
        indices = self.make_split()["train"]
        keys = self._keys.get("train")
        if keys is not None:
            indices = [i for i, k in zip(indices, keys, strict=True) if k is not None]
        return class_weights([clips[i].label for i in indices], self.num_classes)

    def _ensure_stats(self, stage: str = "train") -> None:
        """Set the training split's per-bin mean/std unless set (or restored) already; with
        ``normalise_with='test'``, the evaluated ``stage``'s own (val, test or predict)."""
        if self.model_input.ready:
            return
        part = stage if self.hparams.normalise_with == "test" else "train"
        if part not in self._keys:
            self._part(part)
        keys = [k for k in self._keys[part] if k is not None]
        tempo = self.hparams.test_tempo if part == "test" else 1.0
        cache = self._cache(
            "predict" if part == "predict" else self.corpus, self._featurizer(tempo)
        )
        self.model_input.set_statistics(*training_statistics(cache, keys))
        if part != "train":
            what = "the predict files" if part == "predict" else f"{self.corpus} {part}"
            rank_zero_info(
                f"normalisation: the statistics of {what} itself ({len(keys)} clips; "
                "normalise_with='test')"
            )

    def _predict_keys(self) -> tuple[FeatureCache, list[str], list[str | None]]:
        """Fill the cache of the predict files: their cache, their paths and their keys (None
        for a bad file)."""
        if not self.predict_paths:
            raise ValueError(
                "predict needs `predict_paths`: audio files and/or folders to classify"
            )
        files = [str(p) for p in list_audio_files(self.predict_paths)]
        corpus = FileCorpus("predict", self.class_names, [Clip(f, -1, None) for f in files])
        featurizer = self._featurizer()
        cache = self._cache("predict", featurizer)
        return cache, files, self._fill(corpus, corpus.clips, cache, featurizer, "predict")

    def _setup_predict(self) -> None:
        cache, files, keys = self._predict_keys()
        kept = [(f, k) for f, k in zip(files, keys, strict=True) if k is not None]
        self.predict_files = [f for f, _ in kept]
        self._keys["predict"] = [k for _, k in kept]
        items = [Item(str(cache.feature_path(k)), f) for f, k in kept]
        self.predict_dataset = self._dataset(items)
        self.bad_files.report()

    def _nothing_left(self, missing: str) -> DataError:
        """:meth:`BadFiles.nothing_left`, pointing at ``skipped_files.json`` when written."""
        listed_in = self._write_log() if self.skipped_files else None
        return self.bad_files.nothing_left(missing, listed_in)

    def _write_log(self) -> str | None:
        """Write ``split_speakers.json`` (and ``skipped_files.json``) into the run's folder;
        return the path of the list of skipped files, if one was written."""
        trainer = self.trainer
        if trainer is None or not trainer.is_global_zero:
            return None
        log_dir = run_dir(trainer)
        files: dict[str, object] = {"split_speakers.json": self.split_speakers}
        if self.label_set_report is not None:
            files["label_set.json"] = self.label_set_report.as_dict()
        if self.skipped_files:
            files["skipped_files.json"] = [
                {"path": s.path, "reason": s.reason} for s in self.skipped_files
            ]
        for name, content in files.items():
            write_json(Path(log_dir) / name, content)
        return str(Path(log_dir) / "skipped_files.json") if self.skipped_files else None

    def _loader(
        self, dataset: SpectrogramDataset | None, stage: str, shuffle: bool = False
    ) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"no {stage} dataset: call setup() with the matching stage first")
        self._ensure_stats(stage)
        trainer = self.trainer
        on_gpu = (
            isinstance(trainer.accelerator, CUDAAccelerator)
            if trainer is not None
            else torch.cuda.is_available()
        )
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > self.hparams.batch_size,
            num_workers=workers,
            pin_memory=on_gpu,
            persistent_workers=workers > 0,
            collate_fn=collate_segments if isinstance(dataset, SegmentedClipDataset) else None,
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
        if not self.model_input.ready:
            return {}
        return {
            "norm_mean": self.model_input.mean,
            "norm_std": self.model_input.std,
            "norm_corpus": self.corpus,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the training statistics (used even when the corpus is not available)."""
        if "norm_mean" not in state_dict:
            return
        trained_on = state_dict.get("norm_corpus", "the training corpus")
        if self.hparams.normalise_with == "test":
            rank_zero_info(
                f"normalisation: the evaluated clips' own statistics (normalise_with='test'), "
                f"not those of the training split of {trained_on} in the checkpoint"
            )
            return
        mean = torch.as_tensor(state_dict["norm_mean"])
        if mean.numel() != self.feature_config.num_bins:
            raise ValueError(
                f"checkpoint normalisation has {mean.numel()} frequency bins but the datamodule's "
                f"features have {self.feature_config.num_bins}; use the feature settings of training"
            )
        self.model_input.set_statistics(mean, state_dict["norm_std"])
        if state_dict.get("norm_corpus", self.corpus) != self.corpus:
            rank_zero_info(
                f"normalisation: the statistics of the training split of {trained_on}, from the "
                f"checkpoint (normalise_with='train'; --data.normalise_with test uses "
                f"{self.corpus}'s own)"
            )


#: The constructor's arguments (saved as the DataModule's hyperparameters).
_ARGUMENTS = tuple(inspect.signature(SpectrogramDataModule.__init__).parameters)[1:]


def balanced(clips: Sequence[Clip], indices: Sequence[int], seed: int) -> list[int]:
    """The clips ``indices`` subsampled to the same number per class, the fewest of any class
    present, drawn with ``seed`` (sorted)."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        by_label[clips[i].label].append(i)
    if not by_label:
        return []
    count = min(len(members) for members in by_label.values())
    chosen = []
    for label, members in sorted(by_label.items()):
        chosen += random.Random(f"{seed}-balance-{label}").sample(sorted(members), count)
    return sorted(chosen)
