"""Spectrogram features in the ``(time, freq)`` layout, as registered feature kinds; the offline
:class:`Featurizer` (re-timing, then features); the short-clip rule of inference.

A feature kind is a ``torch.nn.Module`` registered with :func:`register_feature`: it names the
:class:`FeatureConfig` settings it depends on (its cache key), says how many frequency bins
its frames have, and composes torchaudio transforms, as ``MelSpectrogram`` is ``Spectrogram``
plus ``MelScale``. A setting of its own is a field of its ``Options`` dataclass, set under
``features.options`` (:meth:`FeatureConfig.setting`). Adding a kind is one registered class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import torch
import torchaudio.transforms as T
from torch import nn

from mts_lightning.arguments import check_keyword_arguments

from .audio import check_length
from .tempo import change_tempo

#: Power-law compression of the STFT magnitude used by the MTS paper: |X| ** (2/3).
STFT_COMPRESSION = 2.0 / 3.0
#: Floor added to mel power before the logarithm.
LOG_EPS = 1e-6


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting that may change the computed spectrogram (the DataModule's ``features``
    group); ``kind`` names the registered feature kind, which decides which of the others
    matter (:meth:`key`). ``options`` holds the kind's own settings, the fields of its
    ``Options`` dataclass: checked key by key and completed with their defaults.

    In YAML::

        data:
          features: {kind: logmel, n_mels: 64, hop_length: 512}
    """

    kind: str = "logmel"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 512
    win_length: int | None = None
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _FEATURES:
            raise ValueError(
                f"features.kind must be one of {', '.join(list_features())}, got {self.kind!r}"
            )
        own = self.kind_class.Options
        check_keyword_arguments(own, self.options, f"features.options of {self.kind!r}")
        # Completed with the kind's defaults, so that a saved config and the cache key hold
        # every value.
        object.__setattr__(self, "options", asdict(own(**self.options)))
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.window > self.n_fft:
            raise ValueError(f"win_length ({self.window}) must not exceed n_fft ({self.n_fft})")

    @property
    def kind_class(self) -> type[SpectrogramFeature]:
        """The registered feature class of ``kind``."""
        return _FEATURES[self.kind]

    def setting(self, name: str) -> Any:
        """The value of setting ``name``: a field, or one of the kind's ``options``."""
        return self.options[name] if name in self.options else getattr(self, name)

    @property
    def window(self) -> int:
        """Analysis window length in samples (``n_fft`` unless ``win_length`` is set)."""
        return self.win_length or self.n_fft

    @property
    def num_bins(self) -> int:
        """Number of frequency bins of one frame."""
        return self.kind_class.num_bins(self)

    def num_frames(self, num_samples: int) -> int:
        """Frames of a (centred) STFT of ``num_samples`` samples."""
        return 1 + num_samples // self.hop_length

    def seconds_to_frames(self, seconds: float) -> int:
        """Frames covering ``seconds`` of audio at this configuration."""
        return self.num_frames(round(seconds * self.sample_rate))

    def key(self) -> dict:
        """The settings that matter for the configured feature kind (cache key material)."""
        return self.kind_class.key(self)


#: The names of the feature settings (the fields of :class:`FeatureConfig`).
FEATURE_SETTINGS = tuple(f.name for f in fields(FeatureConfig))


@dataclass(frozen=True)
class NoOptions:
    """The ``Options`` of a feature kind without settings of its own."""


class SpectrogramFeature(nn.Module):
    """Base of the feature kinds: waveform ``(samples,)`` -> feature ``(time, num_bins)``.

    Subclasses set ``settings`` (the settings they read, besides ``kind``: fields of
    :class:`FeatureConfig` or of their own ``Options``), ``constants`` (fixed values of their
    transform that belong in the cache key) and :meth:`num_bins`, and build ``self.transform``
    (frequency-first output). A setting of their own is a field of ``Options``, a frozen
    dataclass with a default for every field (read with :meth:`FeatureConfig.setting`).
    """

    settings: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions
    constants: ClassVar[dict[str, float]] = {}
    transform: nn.Module

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def num_bins(cls, config: FeatureConfig) -> int:
        raise NotImplementedError

    @classmethod
    def key(cls, config: FeatureConfig) -> dict:
        """Cache key material: the kind, the settings it reads and its constants."""
        key = {
            "features": config.kind,
            **{name: config.setting(name) for name in cls.settings},
        }
        if "win_length" in key:
            key["win_length"] = config.window
        return {**key, **cls.constants}

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.transform(waveform.float()).transpose(-2, -1).contiguous()


F = TypeVar("F", bound=type[SpectrogramFeature])
_FEATURES: dict[str, type[SpectrogramFeature]] = {}


def register_feature(name: str) -> Callable[[F], F]:
    """Class decorator registering a feature kind under ``name`` (``features: {kind: name}``)."""

    def decorator(cls: F) -> F:
        known = _FEATURES.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"feature kind {name!r} is already registered to {known}")
        _FEATURES[name] = cls
        return cls

    return decorator


def list_features() -> list[str]:
    """The registered feature kinds, sorted."""
    return sorted(_FEATURES)


class PowerLaw(nn.Module):
    """``x ** exponent`` (magnitude compression)."""

    def __init__(self, exponent: float) -> None:
        super().__init__()
        self.exponent = exponent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(self.exponent)


class Log(nn.Module):
    """``log(x + eps)``."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x + self.eps)


@register_feature("stft")
class CompressedSTFT(SpectrogramFeature):
    """Magnitude STFT (Hann window) compressed as ``|X| ** (2/3)``, as in the MTS paper."""

    settings = ("sample_rate", "n_fft", "hop_length", "win_length")
    constants = {"compression": STFT_COMPRESSION}

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__(config)
        self.transform = nn.Sequential(
            T.Spectrogram(
                n_fft=config.n_fft, win_length=config.window, hop_length=config.hop_length, power=1
            ),
            PowerLaw(STFT_COMPRESSION),
        )

    @classmethod
    def num_bins(cls, config: FeatureConfig) -> int:
        return config.n_fft // 2 + 1


@register_feature("logmel")
class LogMel(SpectrogramFeature):
    """Natural log of the mel power spectrogram."""

    settings = ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "f_min", "f_max")
    constants = {"log_eps": LOG_EPS}

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__(config)
        self.transform = nn.Sequential(
            T.MelSpectrogram(
                sample_rate=config.sample_rate,
                n_fft=config.n_fft,
                win_length=config.window,
                hop_length=config.hop_length,
                n_mels=config.n_mels,
                f_min=config.f_min,
                f_max=config.f_max,
                power=2.0,
            ),
            Log(LOG_EPS),
        )

    @classmethod
    def num_bins(cls, config: FeatureConfig) -> int:
        return config.n_mels


class FeatureExtractor:
    """Waveform ``(samples,)`` -> feature ``(time, freq)`` float32 tensor, with the kind
    registered under ``config.kind``."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.transform = config.kind_class(config)

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.transform(waveform)


class Featurizer:
    """Offline features of a clip: waveform ``(samples,)`` at ``config.sample_rate`` ->
    ``(time, freq)`` float32 tensor, the audio played ``tempo`` times as fast first, pitch
    kept (:func:`~mts_lightning.data.tempo.change_tempo`), then featurised as ``config`` says
    (:class:`FeatureExtractor`).

    :meth:`settings` identifies what it computes, so that a store of features (the feature
    cache) keys its entries by it.

    Example:
        >>> config = FeatureConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=40)
        >>> Featurizer(config)(torch.randn(8000)).shape          # 1 s at 8 kHz
        torch.Size([63, 40])
        >>> Featurizer(config, tempo=2.0)(torch.randn(8000)).shape  # played twice as fast
        torch.Size([32, 40])
    """

    def __init__(self, config: FeatureConfig, tempo: float = 1.0) -> None:
        self.config = config
        self.tempo = float(tempo)
        self.extractor = FeatureExtractor(config)

    def settings(self) -> dict:
        """The feature settings and, when not 1.0, the tempo (so that the features of
        unchanged audio keep the key they had before tempo changes existed)."""
        settings = dict(self.config.key())
        if self.tempo != 1.0:
            settings["tempo"] = self.tempo
        return settings

    def __call__(self, waveform: torch.Tensor, path: str = "waveform") -> torch.Tensor:
        """Features of ``waveform``; raises :class:`~mts_lightning.data.audio.BadAudioError`
        naming ``path`` when the re-timed clip is shorter than one analysis frame."""
        if self.tempo != 1.0:
            # A sped-up clip can end shorter than the one frame its features need.
            waveform = check_length(
                change_tempo(waveform, self.config.sample_rate, self.tempo),
                path,
                self.config.n_fft,
                after=f"re-timing at tempo {self.tempo:g}",
            )
        return self.extractor(waveform)


def analysis_waveform(
    waveform: torch.Tensor, config: FeatureConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inference rule for clips of any length, written with tensor operations only (no
    Python value of the length), so that it traces and exports with a dynamic length.

    The rule: a clip shorter than one analysis frame (``n_fft`` samples) is zero-padded to
    ``n_fft``; its features are the frames of the centred STFT (``n_fft // 2`` samples of
    reflect padding each side) of the padded clip. The reflect padding of a clip shorter than
    the padding does not exist, and a padding whose size depends on the length needs a Python
    branch; so the clip is instead extended by a fixed ``n_fft + n_fft // 2`` samples: the
    zero-padded clip, its right reflection (what the centred STFT appends), then filler. The
    first ``frames`` frames of the centred STFT of the extension are exactly those of the
    padded clip; the rest must be dropped.

    Args:
        waveform: mono clips ``(batch, samples)``, all of ``samples >= 1`` samples; empty
            clips raise ``ValueError`` (in an exported graph, which cannot word an error, they
            fail with an index out of range).
        config: the feature settings (``n_fft``, ``hop_length``).

    Returns:
        The extended clips ``(batch, samples + n_fft + n_fft // 2)`` and ``frames``, a 0-d
        int64 tensor: how many leading frames of their features belong to the clips.
    """
    if waveform.shape[-1] < 1:  # decided when a graph is exported, whose length is >= 1
        raise ValueError(
            f"waveform has no samples (shape {tuple(waveform.shape)}): at least 1 is needed"
        )
    n_fft, reflected = config.n_fft, config.n_fft // 2
    extension = n_fft + reflected
    # Positions of the extended clip: an arange of a dynamic length (``[:1].sum(0)``: for a
    # batch of 0 too).
    extended_shape = torch.nn.functional.pad(waveform[:1].sum(0), (0, extension))
    position = torch.ones_like(extended_shape, dtype=torch.long).cumsum(0) - 1
    length = position[-1] + 1 - extension
    padded_length = length.clamp(min=n_fft)
    # Position ``padded_length + k`` reflects ``padded_length - 2 - k``, which is >= 0 within
    # the reflection as padded_length >= n_fft; the filler after it repeats sample 0.
    source = torch.where(position < padded_length, position, 2 * (padded_length - 1) - position)
    source = source.clamp(min=0)
    samples = waveform.index_select(-1, source.minimum(length - 1))
    extended = torch.where(source < length, samples, torch.zeros_like(samples))
    frames = 1 + torch.div(
        padded_length + 2 * reflected - n_fft, config.hop_length, rounding_mode="floor"
    )
    return extended, frames
