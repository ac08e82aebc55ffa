"""ResNet-18 (He, Zhang, Ren, Sun, CVPR 2016; torchvision's variant) for spectrograms."""

import torch
from torch import nn

from mts_lightning.models.layers import ConvFactory, ConvType, ScaleFactors
from mts_lightning.models.registry import register_model
from mts_lightning.nn.options import DEFAULT_SCALE_FACTORS


class BasicBlock(nn.Module):
    """Two 3x3 convs (MTS-able) with batch norm, plus a shortcut: identity, or a plain 1x1 conv
    and batch norm when the stride or width changes (a 1-wide kernel cannot be shrunk in time).

    Input ``(B, in_channels, T, F)``; output ``(B, m * planes, ceil(T / stride), ceil(F / stride))``
    with ``m = conv.channel_multiplier``.
    """

    def __init__(self, conv: ConvFactory, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = conv.channel_multiplier * planes
        self.conv1 = conv(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv(out_channels, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register_model("resnet18")
class ResNet18(nn.Module):
    """ResNet-18: stem (7x7 stride-2 conv, batch norm, ReLU, 3x3 stride-2 max pool), four stages
    of two ``BasicBlock`` (widths w, 2w, 4w, 8w; 64-128-256-512 for ``width=64``), global average
    pooling and a linear head. The stem conv and every 3x3 conv are MTS when ``conv_type="mts"``;
    the 1x1 shortcut convs stay ``nn.Conv2d``.

    Adapted to spectrograms by its input channels (``input_shape[0]``, usually 1). The total
    stride is 32, so the time axis needs at least 33 frames with the default scale factors (the
    last stage's stretched 4-frame kernels must fit).

    Input ``(B, input_shape[0], time, freq)``; output logits ``(B, num_classes)``.
    ``output_type`` ``"pooled_map"`` and ``"interleave_chdim"`` (doubled channels, shortcuts
    included) are supported; ``"concat_fmaps"`` raises ``ValueError``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 64),
        conv_type: ConvType = "mts",
        width: int = 64,
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
        m = conv.channel_multiplier
        self.stem = nn.Sequential(
            conv(input_shape[0], width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(m * width),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        blocks, channels = [], m * width
        for i, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            blocks += [
                BasicBlock(conv, channels, planes, stride),
                BasicBlock(conv, m * planes, planes),
            ]
            channels = m * planes
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, time, freq)`` spectrograms -> ``(B, num_classes)`` logits."""
        return self.head(self.blocks(self.stem(x)))
