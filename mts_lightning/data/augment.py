"""Training-time augmentation: of ``(time, freq)`` spectrograms, a random time stretch and
SpecAugment-style time and frequency masks (torchaudio's ``mask_along_axis``); the
DataModule's ``augment`` group (:class:`Augment`), which adds random crops and re-timed
training audio."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from .frontend import PadMode, check_pad_mode, fix_length
from .tempo import check_augment_tempos


@dataclass(frozen=True)
class SpecAugment:
    """Random time stretch, then ``time_masks`` time masks of up to ``time_mask_frames`` frames
    and ``freq_masks`` frequency masks of up to ``freq_mask_bins`` bins.

    Applied to a normalised spectrogram, so masks are set to 0, the training mean; a shortened
    stretch is filled as ``pad_mode`` says (:func:`~mts_lightning.data.frontend.fix_length`).
    ``stretch`` is a ``(low, high)`` factor range drawn log-uniformly (``(1, 1)`` disables it);
    the output keeps the input's number of frames.
    """

    time_masks: int = 2
    time_mask_frames: int = 10
    freq_masks: int = 2
    freq_mask_bins: int = 8
    stretch: tuple[float, float] = (0.8, 1.25)

    def __post_init__(self) -> None:
        if min(self.time_masks, self.time_mask_frames, self.freq_masks, self.freq_mask_bins) < 0:
            raise ValueError("mask counts and widths must be non-negative")
        low, high = (float(v) for v in self.stretch)
        if not 0 < low <= high:
            raise ValueError(
                f"augment stretch must be (low, high) with 0 < low <= high, got {self.stretch}"
            )
        object.__setattr__(self, "stretch", (low, high))

    def time_stretch(self, spec: torch.Tensor, pad_mode: PadMode = "zeros") -> torch.Tensor:
        """Resample the time axis by a random factor (> 1 slows down), keeping the length."""
        low, high = self.stretch
        if low == high == 1.0:
            return spec
        factor = math.exp(torch.empty(()).uniform_(math.log(low), math.log(high)).item())
        frames = spec.shape[0]
        size = max(1, round(frames * factor))
        stretched = F.interpolate(spec.T[None], size=size, mode="linear", align_corners=False)
        return fix_length(stretched[0].T, frames, pad_mode=check_pad_mode(pad_mode))

    def __call__(self, spec: torch.Tensor, pad_mode: PadMode = "zeros") -> torch.Tensor:
        """``spec`` ``(time, freq)`` stretched and masked, ``pad_mode`` filling a shortened
        stretch."""
        spec = self.time_stretch(spec, pad_mode)
        for _ in range(self.time_masks):
            spec = AF.mask_along_axis(spec, self.time_mask_frames, 0.0, axis=0)
        for _ in range(self.freq_masks):
            spec = AF.mask_along_axis(spec, self.freq_mask_bins, 0.0, axis=1)
        return spec


@dataclass(frozen=True)
class Augment:
    """The augmentation of the training split (the DataModule's ``augment`` group); validation,
    test and the normalisation statistics are never augmented.

    Args:
        spec_augment: time stretch and masks of each training spectrogram
            (:class:`SpecAugment`'s settings); ``None`` (default): none. In YAML ``{}`` takes
            its defaults.
        tempos: waveform rate augmentation: each training item is read at a tempo drawn
            uniformly from this list at every read, its audio played that many times as fast,
            pitch kept, before the features (as ``test_tempo``; 1.0 is the clip as recorded,
            which is left out unless listed). Features at every tempo are computed once and
            cached. E.g. ``[0.7, 0.85, 1.0, 1.2, 1.4]``; the range of ``test_tempo``. ``None``
            (default): no rate augmentation.

    With either, a training clip longer than the input is cropped at a random start
    (:attr:`random_crop`). In YAML::

        data:
          augment:
            spec_augment: {time_masks: 2, freq_masks: 2, stretch: [0.8, 1.25]}
            tempos: [0.7, 0.85, 1.0, 1.2, 1.4]
    """

    spec_augment: SpecAugment | None = None
    tempos: Sequence[float] | None = None

    def __post_init__(self) -> None:
        tempos = check_augment_tempos(self.tempos)
        object.__setattr__(self, "tempos", list(tempos) if tempos else None)

    @property
    def random_crop(self) -> bool:
        """Whether a training clip longer than the input is cropped at a random start."""
        return self.spec_augment is not None or bool(self.tempos)
