"""A bag-of-frames baseline: what the features alone tell without any temporal structure."""

import torch
from torch import nn

from mts_lightning.models.registry import register_model


@register_model("bag_of_frames")
class BagOfFrames(nn.Module):
    """Per-clip mean and standard deviation of every feature bin over time, then a linear layer.

    The order of the frames plays no part, so neither does the speaking rate beyond what it does
    to the bins' statistics: read every convolutional model against it. It has no convolutions,
    hence no ``conv_type`` or MTS options; an experiment variant that switches to it also resets
    ``backbone_kwargs``. Zero-padded frames of short clips count as frames (they sit at the
    training mean after normalisation).

    Input ``(B, channels, time, freq)``; output logits ``(B, num_classes)``.

    Args:
        num_classes: number of classes, >= 2.
        input_shape: ``(channels, time, freq)`` of one example; ``channels * freq`` bins.
        dropout: dropout on the ``2 * channels * freq`` statistics before the linear layer.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
            raise ValueError(
                f"input_shape must be (channels, time, freq) of positive sizes, got {input_shape!r}"
            )
        if int(input_shape[1]) < 2:
            raise ValueError(
                f"input_shape has {input_shape[1]} frame(s): a standard deviation over time "
                "needs at least 2"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        channels, _, freq = self.input_shape
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels * freq, num_classes)

    @staticmethod
    def statistics(x: torch.Tensor) -> torch.Tensor:
        """``(B, C, time, freq)`` -> ``(B, 2 * C * freq)``: the mean of every (channel, bin)
        over time, then its standard deviation (population, so a constant bin gives 0)."""
        mean = x.mean(dim=2)
        std = x.std(dim=2, correction=0)
        return torch.cat([mean.flatten(1), std.flatten(1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, time, freq)`` spectrograms -> ``(B, num_classes)`` logits."""
        if x.dim() != 4 or x.shape[1] != self.input_shape[0] or x.shape[3] != self.input_shape[2]:
            raise ValueError(
                f"BagOfFrames was built for inputs (B, {self.input_shape[0]}, time, "
                f"{self.input_shape[2]}), got {tuple(x.shape)}"
            )
        return self.head(self.dropout(self.statistics(x)))
