"""A compact modern CNN: the project's fast default model."""

from collections.abc import Sequence

import torch
from torch import nn

from mts_lightning.models.layers import ConvFactory, ConvType, MTSOptions
from mts_lightning.models.registry import register_model


@register_model("compact_cnn")
class CompactCNN(nn.Module):
    """One stage per entry of ``channels`` (default 16-32-64): conv (MTS-able) -> batch norm ->
    ReLU -> 2x2 max pool; then global average pooling, dropout and a linear head.

    The kernels are longer in time than in frequency (default 5 frames x 3 bins, padded to keep
    the size), so the default time factors give 3-, 5- and 7-frame branches. Any input of at least
    12 frames x 8 bins works (three stages, default factors); ~64x64 mel spectrograms are the
    intended use.

    Input ``(B, input_shape[0], time, freq)``; output logits ``(B, num_classes)``.
    ``mts`` holds the options of its MTS layers, keyword arguments of ``MultiscaleConv2d`` (e.g.
    ``{"scale_factors": [0.7, 1.428], "kernel_sharing": "autograd"}``), ignored for
    ``conv_type="conv"``. Its ``output_type`` ``"pooled_map"`` and ``"interleave_chdim"``
    (doubled channels) are supported; ``"concat_fmaps"`` raises ``ValueError``.
    ``mts_stages`` (0-based stage indices) puts MTS layers in those stages only and plain
    convolutions elsewhere; ``None`` (default): every stage, as ``conv_type`` says.
    """

    #: Any number of frames works (global average pooling): a test may change the input length.
    accepts_any_length = True

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 64),
        conv_type: ConvType = "mts",
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: tuple[int, int] = (5, 3),
        dropout: float = 0.2,
        mts: MTSOptions | None = None,
        mts_stages: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        stages = check_stages(mts_stages, len(channels))
        if stages is not None and conv_type != "mts":
            raise ValueError(f"mts_stages needs conv_type='mts', got conv_type={conv_type!r}")
        mts_conv, plain_conv = ConvFactory(conv_type, mts), ConvFactory("conv")
        mts_conv.reject_concat_fmaps(type(self).__name__)
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        layers, in_channels = [], input_shape[0]
        for stage, out_channels in enumerate(channels):
            conv = mts_conv if stages is None or stage in stages else plain_conv
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


def check_stages(stages: Sequence[int] | None, count: int) -> frozenset[int] | None:
    """Validate ``mts_stages``: ``None`` or distinct stage indices in ``[0, count)``."""
    if stages is None:
        return None
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence):
        raise ValueError(f"mts_stages must be a list of stage indices, got {stages!r}")
    bad = [s for s in stages if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < count]
    if bad or len(set(stages)) != len(stages):
        raise ValueError(
            f"mts_stages must be distinct stage indices in 0..{count - 1} (one per entry of "
            f"channels), got {list(stages)}"
        )
    return frozenset(stages)
