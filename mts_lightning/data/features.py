"""Spectrogram features in the ``(time, freq)`` layout, and fixed-length/segment helpers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torchaudio.transforms as T

FeatureKind = Literal["stft", "logmel"]

#: Power-law compression of the STFT magnitude used by the MTS paper: |X| ** (2/3).
STFT_COMPRESSION = 2.0 / 3.0
#: Floor added to mel power before the logarithm.
LOG_EPS = 1e-6


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting that changes the computed spectrogram (and so the cache key)."""

    features: FeatureKind = "logmel"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 512
    win_length: int | None = None
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None

    def __post_init__(self) -> None:
        if self.features not in ("stft", "logmel"):
            raise ValueError(f"features must be 'stft' or 'logmel', got {self.features!r}")
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.window > self.n_fft:
            raise ValueError(f"win_length ({self.window}) must not exceed n_fft ({self.n_fft})")

    @property
    def window(self) -> int:
        """Analysis window length in samples (``n_fft`` unless ``win_length`` is set)."""
        return self.win_length or self.n_fft

    @property
    def num_bins(self) -> int:
        """Number of frequency bins of one frame."""
        return self.n_fft // 2 + 1 if self.features == "stft" else self.n_mels

    def num_frames(self, num_samples: int) -> int:
        """Frames of a (centred) STFT of ``num_samples`` samples."""
        return 1 + num_samples // self.hop_length

    def seconds_to_frames(self, seconds: float) -> int:
        """Frames covering ``seconds`` of audio at this configuration."""
        return self.num_frames(round(seconds * self.sample_rate))

    def key(self) -> dict:
        """The settings that matter for the configured feature kind (cache key material)."""
        key = asdict(self)
        key["win_length"] = self.window
        if self.features == "stft":
            for name in ("n_mels", "f_min", "f_max"):
                key.pop(name)
            key["compression"] = STFT_COMPRESSION
        else:
            key["log_eps"] = LOG_EPS
        return key


class FeatureExtractor:
    """Waveform ``(samples,)`` -> feature ``(time, freq)`` float32 tensor.

    ``stft``: magnitude STFT (Hann window) compressed as ``|X| ** (2/3)``, as in the MTS paper.
    ``logmel``: natural log of the mel power spectrogram.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        if config.features == "stft":
            self.transform = T.Spectrogram(
                n_fft=config.n_fft, win_length=config.window, hop_length=config.hop_length, power=1
            )
        else:
            self.transform = T.MelSpectrogram(
                sample_rate=config.sample_rate,
                n_fft=config.n_fft,
                win_length=config.window,
                hop_length=config.hop_length,
                n_mels=config.n_mels,
                f_min=config.f_min,
                f_max=config.f_max,
                power=2.0,
            )

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            spec = self.transform(waveform.float())
        if self.config.features == "stft":
            spec = spec.pow(STFT_COMPRESSION)
        else:
            spec = torch.log(spec + LOG_EPS)
        return spec.transpose(0, 1).contiguous()


def fix_length(feature: torch.Tensor, frames: int, start: int = 0) -> torch.Tensor:
    """Crop ``feature`` (time first) to ``frames`` from ``start``, zero-padding at the end."""
    out = feature[start : start + frames]
    if out.shape[0] < frames:
        pad = out.new_zeros((frames - out.shape[0], *out.shape[1:]))
        out = torch.cat([out, pad], dim=0)
    return out


def segment_starts(num_frames: int, frames: int, overlap: float) -> list[int]:
    """Start frames of windows of ``frames`` with ``overlap`` (0 <= overlap < 1).

    Short inputs give one (padded) window; the last window is aligned with the end so that no
    frame is lost.
    """
    if num_frames <= frames:
        return [0]
    hop = max(1, round(frames * (1.0 - overlap)))
    count = math.ceil((num_frames - frames) / hop) + 1
    starts = [i * hop for i in range(count)]
    starts[-1] = num_frames - frames
    return starts
