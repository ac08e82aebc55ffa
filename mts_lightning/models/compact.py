"""A compact modern CNN: the project's fast default model."""

from collections.abc import Sequence

import torch
from torch import nn

from mts_lightning.models.layers import ConvFactory, ConvType, ScaleFactors
from mts_lightning.models.registry import register_model
from mts_lightning.nn.options import DEFAULT_SCALE_FACTORS


@register_model("compact_cnn")
class CompactCNN(nn.Module):
    """One stage per entry of ``channels`` (default 16-32-64): conv (MTS-able) -> batch norm ->
    ReLU -> 2x2 max pool; then global average pooling, dropout and a linear head.

    The kernels are longer in time than in frequency (default 5 frames x 3 bins, padded to keep
    the size), so the default time factors give 3-, 5- and 7-frame branches. Any input of at least
    12 frames x 8 bins works (three stages, default factors); ~64x64 mel spectrograms are the
    intended use.

    Input ``(B, input_shape[0], time, freq)``; output logits ``(B, num_classes)``.
    ``output_type`` ``"pooled_map"`` and ``"interleave_chdim"`` (doubled channels) are supported;
    ``"concat_fmaps"`` raises ``ValueError``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 64),
        conv_type: ConvType = "mts",
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: tuple[int, int] = (5, 3),
        dropout: float = 0.2,
        scale_factors: ScaleFactors = DEFAULT_SCALE_FACTORS,
        output_type: str = "pooled_map",
        kernel_sharing: str = "average",
        training_mode: str = "train_and_eval",
        stretch_penalty_lambda: float = 0.0,
        fmap_align: str = "interpolate",
    ) -> None:
        super().__init__()
        conv = ConvFactory(
            conv_type,
            scale_factors=scale_factors,
            output_type=output_type,
            kernel_sharing=kernel_sharing,
            training_mode=training_mode,
            stretch_penalty_lambda=stretch_penalty_lambda,
            fmap_align=fmap_align,
        )
        conv.reject_concat_fmaps(type(self).__name__)
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        layers, in_channels = [], input_shape[0]
        for out_channels in channels:
            layers += [
                conv(in_channels, out_channels, kernel_size, padding=padding, bias=False),
                nn.BatchNorm2d(conv.channel_multiplier * out_channels),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels = conv.channel_multiplier * out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, time, freq)`` spectrograms -> ``(B, num_classes)`` logits."""
        return self.head(self.features(x))
