"""How features become model input: normalised, cut to the model's length, cut into segments.

One rule, written once, serves the loaders (:mod:`~mts_lightning.data.dataset`), the
recognizer (:class:`~mts_lightning.EmotionRecognizer`) and the exported graphs
(:mod:`~mts_lightning.export`): :func:`fix_length` is a pure function of tensors that runs
eagerly and inside traced graphs alike, and :class:`ModelInput` holds what a trained model
fixes (statistics, input length, pad mode, segments), built from a checkpoint in one place
(:meth:`ModelInput.from_checkpoint`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

PadMode = Literal["zeros", "repeat"]
#: How a clip shorter than the model input is filled: ``zeros`` appends zeros (the training
#: mean, after normalisation); ``repeat`` plays the clip again from its start until the input
#: is full, so that the input holds no padding whose amount would tell the clip's length.
PAD_MODES: tuple[str, ...] = ("zeros", "repeat")
#: Floor of the per-bin standard deviation used for normalisation.
MIN_STD = 1e-5


def check_pad_mode(pad_mode: str) -> str:
    """Validate a :data:`PadMode`."""
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")
    return pad_mode


def fix_length(
    feature: Tensor,
    frames: int,
    start: int = 0,
    pad_mode: PadMode = "zeros",
    length: Tensor | int | None = None,
) -> Tensor:
    """Cut ``feature`` ``(..., time, freq)`` to ``(..., frames, freq)`` from frame ``start``,
    filling what is missing at the end as ``pad_mode`` says (zeros, or the clip repeated from
    its start; an empty clip gives zeros).

    Written with tensor operations only, so that it also runs inside traced and exported
    graphs, whose time axis is dynamic. ``length`` (a 0-d tensor) says how many leading
    frames from ``start`` belong to the clip when the rest of the time axis is not the clip's
    (a graph's features of a clip extended for the STFT); default: all of them.

    Example:
        >>> clip = torch.arange(3.0)[:, None]                       # 3 frames, 1 bin
        >>> fix_length(clip, 5)[:, 0].tolist(), fix_length(clip, 5, pad_mode="repeat")[:, 0].tolist()
        ([0.0, 1.0, 2.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0, 1.0])
        >>> fix_length(clip, 2, start=1)[:, 0].tolist()
        [1.0, 2.0]
    """
    clip = feature[..., start : start + frames, :]
    if length is None:  # eager code: the clip is the whole time axis
        length = clip.shape[-2]
        if length == frames:
            return clip
        if length == 0:
            return clip.new_zeros((*clip.shape[:-2], frames, clip.shape[-1]))
    index = torch.arange(frames, device=feature.device)
    if pad_mode == "repeat":
        # Frame i of the input is frame i mod length of the clip: a crop when it is longer.
        return clip.index_select(-2, torch.remainder(index, length))
    padded = nn.functional.pad(clip, (0, 0, 0, frames))[..., :frames, :]
    return torch.where((index < length)[:, None], padded, torch.zeros_like(padded))


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


class ModelInput(nn.Module):
    """Features ``(time, freq)`` -> model input, as the model was trained.

    :meth:`normalise` subtracts the training split's per-bin mean and divides by its standard
    deviation (floored at :data:`MIN_STD`); :meth:`cut` makes one input of ``frames`` frames
    (:func:`fix_length`); :meth:`segments` makes every input of a clip: one from its start, or,
    for a model trained on segments (``segment_overlap`` set), one per overlapping segment
    (:func:`segment_starts`). ``forward`` composes them for one clip.

    The statistics are buffers, so that an exported graph carries them; they may be set
    later (:meth:`set_statistics`: a DataModule computes them in ``setup`` or restores them
    from a checkpoint), and using them before raises ``RuntimeError``.

    Args:
        frames: frames of one model input (the model's ``input_shape[1]``).
        pad_mode: how features shorter than the input are filled (:data:`PadMode`).
        segment_overlap: overlap of consecutive segments (``None``: no segments).
        mean, std: per-bin statistics ``(freq,)`` of the training split, or None.

    Example:
        >>> model_input = ModelInput(4, "repeat", mean=torch.zeros(2), std=torch.full((2,), 2.0))
        >>> model_input(torch.ones(3, 2)).shape          # (inputs, channel, frames, freq)
        torch.Size([1, 1, 4, 2])
        >>> model_input(torch.ones(3, 2))[0, 0, :, 0].tolist()
        [0.5, 0.5, 0.5, 0.5]
        >>> segmented = ModelInput(4, segment_overlap=0.5, mean=torch.zeros(2), std=torch.ones(2))
        >>> segmented(torch.ones(9, 2)).shape            # segments start at frames 0, 2, 4, 5
        torch.Size([4, 1, 4, 2])
    """

    mean: Tensor | None
    std: Tensor | None

    def __init__(
        self,
        frames: int,
        pad_mode: PadMode = "zeros",
        segment_overlap: float | None = None,
        mean: Tensor | None = None,
        std: Tensor | None = None,
    ) -> None:
        super().__init__()
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if segment_overlap is not None and not 0 <= segment_overlap < 1:
            raise ValueError(f"segment_overlap must be in [0, 1), got {segment_overlap}")
        self.frames = int(frames)
        self.pad_mode: PadMode = check_pad_mode(pad_mode)  # type: ignore[assignment]
        self.segment_overlap = segment_overlap
        self.register_buffer("mean", None)
        self.register_buffer("std", None)
        if mean is not None or std is not None:
            self.set_statistics(mean, std)

    @property
    def ready(self) -> bool:
        """Whether the normalisation statistics are set."""
        return self.mean is not None

    def set_statistics(self, mean: Tensor | Any, std: Tensor | Any) -> None:
        """Set the per-bin ``mean`` and ``std`` ``(freq,)`` (tensors or arrays)."""
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if mean.ndim != 1 or std.shape != mean.shape:
            raise ValueError(
                "mean and std must have shape (freq,) (one value per frequency bin), got "
                f"{tuple(mean.shape)} and {tuple(std.shape)}"
            )
        self.mean = mean.clone()
        self.std = std.clamp_min(MIN_STD)

    def normalise(self, features: Tensor) -> Tensor:
        """``(..., time, freq)`` features in units of the training statistics."""
        if self.mean is None or self.std is None:
            raise RuntimeError(
                "normalisation statistics are not set (no training split or checkpoint)"
            )
        return (features - self.mean) / self.std

    def cut(self, features: Tensor, start: int = 0, length: Tensor | None = None) -> Tensor:
        """One input ``(..., frames, freq)`` from frame ``start`` (:func:`fix_length`)."""
        return fix_length(features, self.frames, start, self.pad_mode, length)

    def starts(self, num_frames: int) -> list[int]:
        """Start frames of a clip's inputs: ``[0]``, or one per segment."""
        if self.segment_overlap is None:
            return [0]
        return segment_starts(num_frames, self.frames, self.segment_overlap)

    def segments(self, features: Tensor) -> Tensor:
        """Every input of one clip's normalised features ``(time, freq)``: ``(n, 1, frames,
        freq)``, ``n = 1`` without segments."""
        starts = self.starts(features.shape[0])
        return torch.stack([self.cut(features, s) for s in starts]).unsqueeze(1)

    def forward(self, features: Tensor) -> Tensor:
        """Model inputs ``(n, 1, frames, freq)`` of one clip's features ``(time, freq)``."""
        return self.segments(self.normalise(features))

    def extra_repr(self) -> str:
        return (
            f"frames={self.frames}, pad_mode={self.pad_mode!r}, "
            f"segment_overlap={self.segment_overlap}"
        )

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], source: str = "checkpoint") -> ModelInput:
        """The model input of a checkpoint written by ``mts-lightning fit`` (loaded as a
        dict): its model's ``input_shape``, its DataModule's ``pad_mode``, segment settings
        and training statistics. Raises ``ValueError`` naming ``source`` when one is missing.
        """
        data = checkpoint.get("datamodule_hyper_parameters")
        stats = datamodule_state(checkpoint)
        if not data or stats is None:
            raise ValueError(
                f"{source} lacks the data settings or normalisation statistics of training: "
                "expected a checkpoint of a run with SpectrogramDataModule (`mts-lightning fit`)"
            )
        input_shape = checkpoint.get("hyper_parameters", {}).get("input_shape")
        if not input_shape:
            raise ValueError(f"{source}: the model's input_shape is not in its hyperparameters")
        overlap = data.get("segment_overlap", 0.5) if data.get("segment_duration") else None
        return cls(
            int(input_shape[1]),
            data.get("pad_mode", "zeros"),
            overlap,
            torch.as_tensor(stats["norm_mean"]),
            torch.as_tensor(stats["norm_std"]),
        )


def datamodule_state(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The DataModule's saved state (normalisation statistics) in a checkpoint, whatever its
    key, or None."""
    for key, value in checkpoint.items():
        if (
            key.endswith("SpectrogramDataModule")
            and isinstance(value, dict)
            and "norm_mean" in value
        ):
            return value
    return None
