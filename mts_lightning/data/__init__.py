"""Spectrogram data: corpora, the embedded synthetic set, features, splits, cache, DataModule."""

from .audio import AUDIO_EXTENSIONS, BadAudioError, load_audio
from .augment import SpecAugment
from .cache import FeatureCache, default_cache_dir
from .corpora import (
    CORPUS_CLASSES,
    CORPUS_NAMES,
    SCANNERS,
    Clip,
    Corpus,
    FileCorpus,
    SkippedFile,
    scan_crema_d,
    scan_emodb,
    scan_iemocap,
    scan_manifest,
    scan_ravdess,
    scan_savee,
    scan_tess,
)
from .datamodule import Normalizer, SpectrogramDataModule, SpectrogramDataset, list_audio_files
from .errors import DataError
from .features import FeatureConfig, FeatureExtractor, fix_length, segment_starts
from .splits import SPLIT_METHODS, make_split, split_speakers
from .synthetic import SyntheticConfig, SyntheticCorpus

__all__ = [
    "AUDIO_EXTENSIONS",
    "BadAudioError",
    "CORPUS_CLASSES",
    "CORPUS_NAMES",
    "Clip",
    "Corpus",
    "DataError",
    "FeatureCache",
    "FeatureConfig",
    "FeatureExtractor",
    "FileCorpus",
    "Normalizer",
    "SCANNERS",
    "SPLIT_METHODS",
    "SkippedFile",
    "SpecAugment",
    "SpectrogramDataModule",
    "SpectrogramDataset",
    "SyntheticConfig",
    "SyntheticCorpus",
    "default_cache_dir",
    "fix_length",
    "list_audio_files",
    "load_audio",
    "make_split",
    "scan_crema_d",
    "scan_emodb",
    "scan_iemocap",
    "scan_manifest",
    "scan_ravdess",
    "scan_savee",
    "scan_tess",
    "segment_starts",
    "split_speakers",
]
