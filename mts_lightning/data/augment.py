"""Training-time augmentation of ``(time, freq)`` spectrograms: random time stretch and
SpecAugment-style time and frequency masks (torchaudio's ``mask_along_axis``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from .frontend import PadMode, check_pad_mode, fix_length


class SpecAugment:
    """Random time stretch, then ``time_masks`` time masks of up to ``time_mask_frames`` frames
    and ``freq_masks`` frequency masks of up to ``freq_mask_bins`` bins.

    Applied to a normalised spectrogram, so masks are set to 0, the training mean; a shortened
    stretch is filled as ``pad_mode`` says (:func:`~mts_lightning.data.frontend.fix_length`).
    ``stretch`` is a ``(low, high)`` factor range drawn log-uniformly (``(1, 1)`` disables it);
    the output keeps the input's number of frames.
    """

    def __init__(
        self,
        time_masks: int = 2,
        time_mask_frames: int = 10,
        freq_masks: int = 2,
        freq_mask_bins: int = 8,
        stretch: tuple[float, float] = (0.8, 1.25),
        pad_mode: PadMode = "zeros",
    ) -> None:
        if min(time_masks, time_mask_frames, freq_masks, freq_mask_bins) < 0:
            raise ValueError("mask counts and widths must be non-negative")
        low, high = (float(v) for v in stretch)
        if not 0 < low <= high:
            raise ValueError(
                f"augment stretch must be (low, high) with 0 < low <= high, got {stretch}"
            )
        self.time_masks, self.time_mask_frames = time_masks, time_mask_frames
        self.freq_masks, self.freq_mask_bins = freq_masks, freq_mask_bins
        self.stretch = (low, high)
        self.pad_mode = check_pad_mode(pad_mode)

    def time_stretch(self, spec: torch.Tensor) -> torch.Tensor:
        """Resample the time axis by a random factor (> 1 slows down), keeping the length."""
        low, high = self.stretch
        if low == high == 1.0:
            return spec
        factor = math.exp(torch.empty(()).uniform_(math.log(low), math.log(high)).item())
        frames = spec.shape[0]
        size = max(1, round(frames * factor))
        stretched = F.interpolate(spec.T[None], size=size, mode="linear", align_corners=False)
        return fix_length(stretched[0].T, frames, pad_mode=self.pad_mode)

    def __call__(self, spec: torch.Tensor) -> torch.Tensor:
        spec = self.time_stretch(spec)
        for _ in range(self.time_masks):
            spec = AF.mask_along_axis(spec, self.time_mask_frames, 0.0, axis=0)
        for _ in range(self.freq_masks):
            spec = AF.mask_along_axis(spec, self.freq_mask_bins, 0.0, axis=1)
        return spec
