"""mts-lightning: multi-time-scale convolution and speech emotion recognition on Lightning."""

from mts_lightning.callbacks import KernelAveraging, StretchUsageLogger
from mts_lightning.data import SpectrogramDataModule
from mts_lightning.inference import EmotionRecognizer
from mts_lightning.module import EmotionClassifier
from mts_lightning.nn import MultiscaleConv1d, MultiscaleConv2d, convert_to_mts

__all__ = [
    "EmotionClassifier",
    "EmotionRecognizer",
    "KernelAveraging",
    "MultiscaleConv1d",
    "MultiscaleConv2d",
    "SpectrogramDataModule",
    "StretchUsageLogger",
    "convert_to_mts",
]

__version__ = "0.1.0"
