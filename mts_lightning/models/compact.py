"""A compact modern CNN: the project's fast default model."""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from mts_lightning.models.layers import ConvFactory, ConvType, MTSOptions
from mts_lightning.models.pooling import AttentiveStatisticsPooling, StatisticsPooling
from mts_lightning.models.registry import register_model
from mts_lightning.nn import MultiscaleConv2d

Pooling = Literal["average", "stats", "attentive_stats"]
POOLINGS: tuple[str, ...] = ("average", "stats", "attentive_stats")
KernelSpan = Literal["base", "longest_scale"]
KERNEL_SPANS: tuple[str, ...] = ("base", "longest_scale")


@register_model("compact_cnn")
class CompactCNN(nn.Module):
    """One stage per entry of ``channels`` (default 16-32-64): conv (MTS-able) -> batch norm ->
    ReLU -> 2x2 max pool; then a pooling head, dropout and a linear layer.

    The kernels are longer in time than in frequency (default 5 frames x 3 bins, padded to keep
    the size), so the default time factors give 3-, 5- and 7-frame branches. Any input of at least
    12 frames x 8 bins works (three stages, default factors); ~64x64 mel spectrograms are the
    intended use.

    Input ``(B, input_shape[0], time, freq)``; output logits ``(B, num_classes)``.
    ``mts`` holds the options of its MTS layers, keyword arguments of ``MultiscaleConv2d`` (e.g.
    ``{"scale_factors": [0.7, 1.428], "kernel_sharing": "autograd"}``), ignored for
    ``conv_type="conv"`` except by ``kernel_span``. Its ``output_type`` ``"pooled_map"`` and
    ``"interleave_chdim"`` (doubled channels) are supported; ``"concat_fmaps"`` raises
    ``ValueError``. ``mts_stages`` (0-based stage indices) puts MTS layers in those stages only
    and plain convolutions elsewhere; ``None`` (default): every stage, as ``conv_type`` says.

    The fair twins of an MTS network (``conv_type="conv"``):

    - ``width_multiplier`` scales every entry of ``channels`` (rounded, at least 1): the conv
      twin of equal cost is the one whose multiply-adds match the MTS network's
      (:func:`~mts_lightning.models.complexity.equal_cost_width` finds the multiplier: 1.74
      for the default network, see ``configs/*/modern_conv.yaml``);
    - ``kernel_span="longest_scale"`` makes every kernel as long (in time and frequency) as the
      longest branch kernel of the MTS layers that ``mts`` describes (its ``scale_factors``,
      else the layer's default ones): 7x3 for 5x3 kernels and factors 0.7 and 1.428.

    ``pooling`` is the head's reduction of the last feature map ``(B, C, T', F')``:
    ``"average"`` (global average, ``C`` features), ``"stats"`` (mean and standard deviation
    over time of each of the ``C * F'`` channel-frequency rows, ``2 * C * F'`` features,
    :class:`~mts_lightning.models.pooling.StatisticsPooling`) or ``"attentive_stats"`` (the
    same statistics under a learnt attention over time,
    :class:`~mts_lightning.models.pooling.AttentiveStatisticsPooling`). The statistics heads
    fix the number of frequency bins to ``input_shape[2]``; every head takes any length.
    """

    #: Any number of frames works (pooling over time): a test may change the input length.
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
        width_multiplier: float = 1.0,
        kernel_span: KernelSpan = "base",
        pooling: Pooling = "average",
    ) -> None:
        super().__init__()
        stages = check_stages(mts_stages, len(channels))
        if stages is not None and conv_type != "mts":
            raise ValueError(f"mts_stages needs conv_type='mts', got conv_type={conv_type!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        channels = widened(channels, width_multiplier)
        kernel_size = spanned_kernel(kernel_size, kernel_span, conv_type, mts)
        mts_conv, plain_conv = ConvFactory(conv_type, mts), ConvFactory("conv")
        mts_conv.reject_concat_fmaps(type(self).__name__)
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        layers, in_channels, bins = [], input_shape[0], input_shape[2]
        for stage, out_channels in enumerate(channels):
            conv = mts_conv if stages is None or stage in stages else plain_conv
            layers += [
                conv(in_channels, out_channels, kernel_size, padding=padding, bias=False),
                nn.BatchNorm2d(conv.channel_multiplier * out_channels),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels = conv.channel_multiplier * out_channels
            bins = (bins + 2 * padding[1] - kernel_size[1] + 1) // 2
        self.features = nn.Sequential(*layers)
        self.pooling = pooling
        if pooling == "average":
            reduce, pool, pooled = nn.AdaptiveAvgPool2d(1), nn.Flatten(), in_channels
        else:
            rows = in_channels * bins
            reduce = TimeRows()
            pool = StatisticsPooling() if pooling == "stats" else AttentiveStatisticsPooling(rows)
            pooled = 2 * rows
        self.head = nn.Sequential(reduce, pool, nn.Dropout(dropout), nn.Linear(pooled, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, time, freq)`` spectrograms -> ``(B, num_classes)`` logits."""
        return self.head(self.features(x))


class TimeRows(nn.Module):
    """``(B, C, T, F)`` feature maps -> ``(B, C * F, T)``: every channel-frequency row as a
    channel of a sequence over time (the input of the statistics poolings)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 1, 3, 2).flatten(1, 2)


def widened(channels: Sequence[int], width_multiplier: float) -> list[int]:
    """``channels`` times ``width_multiplier``, each rounded and at least 1."""
    if (
        isinstance(width_multiplier, bool)
        or not isinstance(width_multiplier, (int, float))
        or not width_multiplier > 0
    ):
        raise ValueError(f"width_multiplier must be a positive number, got {width_multiplier!r}")
    return [max(1, round(c * width_multiplier)) for c in channels]


def spanned_kernel(
    kernel_size: Sequence[int], kernel_span: str, conv_type: str, mts: MTSOptions | None
) -> tuple[int, int]:
    """The kernel size ``kernel_span`` asks for (see :class:`CompactCNN`)."""
    if kernel_span not in KERNEL_SPANS:
        raise ValueError(f"kernel_span must be one of {KERNEL_SPANS}, got {kernel_span!r}")
    kernel = (int(kernel_size[0]), int(kernel_size[1]))
    if kernel_span == "base":
        return kernel
    if conv_type != "conv":
        raise ValueError(
            "kernel_span='longest_scale' builds a conv twin: it needs conv_type='conv', got "
            f"conv_type={conv_type!r}"
        )
    scales = {k: v for k, v in (mts or {}).items() if k == "scale_factors"}
    sizes = MultiscaleConv2d(1, 1, kernel, **scales).branch_kernel_sizes
    return (max(s[0] for s in sizes), max(s[1] for s in sizes))


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
