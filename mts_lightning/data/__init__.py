"""Spectrogram data: corpora (a registry), the embedded synthetic set, features (a registry),
splits, cache, datasets and the DataModule."""

from .audio import AUDIO_EXTENSIONS, BadAudioError, list_audio_files, load_audio
from .augment import Augment, SpecAugment
from .cache import FeatureCache, default_cache_dir
from .corpora import (
    CORPUS_CLASSES,
    CORPUS_NAMES,
    SCANNERS,
    Clip,
    Corpus,
    CorpusSpec,
    FileCorpus,
    NamingScheme,
    SkippedFile,
    SyntheticConfig,
    SyntheticCorpus,
    SyntheticOptions,
    get_corpus,
    list_corpora,
    register_corpus,
    scan_crema_d,
    scan_emodb,
    scan_iemocap,
    scan_manifest,
    scan_ravdess,
    scan_savee,
    scan_tess,
)
from .datamodule import SpectrogramDataModule, restored_settings
from .dataset import SegmentedClipDataset, SpectrogramDataset, collate_segments
from .errors import DataError
from .features import (
    FeatureConfig,
    FeatureExtractor,
    Featurizer,
    SpectrogramFeature,
    list_features,
    register_feature,
)
from .frontend import PAD_MODES, ModelInput, fix_length, segment_starts
from .label_sets import LabelSet, get_label_set, list_label_sets, register_label_set
from .settings import grouped_settings
from .splits import SPLIT_METHODS, make_split, split_speakers
from .tempo import change_tempo

__all__ = [
    "AUDIO_EXTENSIONS",
    "Augment",
    "BadAudioError",
    "CORPUS_CLASSES",
    "CORPUS_NAMES",
    "Clip",
    "Corpus",
    "CorpusSpec",
    "DataError",
    "FeatureCache",
    "FeatureConfig",
    "FeatureExtractor",
    "Featurizer",
    "FileCorpus",
    "LabelSet",
    "NamingScheme",
    "ModelInput",
    "SCANNERS",
    "SPLIT_METHODS",
    "SegmentedClipDataset",
    "SkippedFile",
    "SpecAugment",
    "SpectrogramDataModule",
    "SpectrogramDataset",
    "SpectrogramFeature",
    "SyntheticConfig",
    "SyntheticCorpus",
    "SyntheticOptions",
    "change_tempo",
    "collate_segments",
    "default_cache_dir",
    "PAD_MODES",
    "fix_length",
    "get_corpus",
    "get_label_set",
    "grouped_settings",
    "list_audio_files",
    "list_corpora",
    "list_features",
    "list_label_sets",
    "load_audio",
    "make_split",
    "register_corpus",
    "register_feature",
    "register_label_set",
    "restored_settings",
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
