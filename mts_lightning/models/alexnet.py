"""AlexNet (Krizhevsky, Sutskever, Hinton, NeurIPS 2012; torchvision's variant) for spectrograms."""

import torch
from torch import nn

from mts_lightning.models.layers import ConvFactory, ConvType, ScaleFactors
from mts_lightning.models.registry import register_model
from mts_lightning.nn.options import DEFAULT_SCALE_FACTORS


@register_model("alexnet")
class AlexNet(nn.Module):
    """AlexNet with every conv MTS-able: five convs with ReLU (widths w, 3w, 6w, 4w, 4w, i.e.
    torchvision's 64-192-384-256-256 for ``width=64``) and three 3x3 stride-2 max pools, adaptive
    average pooling to ``pool_size``, then three fully connected layers with dropout.

    Adapted to small single-channel spectrograms: the first conv is 5x5 with stride 2 (ImageNet's
    is 11x11 with stride 4), the second 5x5, and the pools pad by 1, so any input of at least
    9 frames works (default factors); adaptive pooling makes the head independent of the size.

    Input ``(B, input_shape[0], time, freq)``; output logits ``(B, num_classes)``.
    ``output_type`` ``"pooled_map"`` and ``"interleave_chdim"`` (doubled channels) are supported;
    ``"concat_fmaps"`` raises ``ValueError``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 64),
        conv_type: ConvType = "mts",
        width: int = 64,
        hidden_units: int = 4096,
        pool_size: tuple[int, int] = (6, 6),
        dropout: float = 0.5,
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
        c1, c2, c3, c4, c5 = width, 3 * width, 6 * width, 4 * width, 4 * width
        self.features = nn.Sequential(
            conv(input_shape[0], c1, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            conv(m * c1, c2, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            conv(m * c2, c3, 3, padding=1),
            nn.ReLU(),
            conv(m * c3, c4, 3, padding=1),
            nn.ReLU(),
            conv(m * c4, c5, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(m * c5 * pool_size[0] * pool_size[1], hidden_units),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_units, hidden_units),
            nn.ReLU(),
            nn.Linear(hidden_units, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, time, freq)`` spectrograms -> ``(B, num_classes)`` logits."""
        return self.classifier(self.avgpool(self.features(x)))
