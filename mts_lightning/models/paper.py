"""The small networks of Guizzo, Weyde, Barnett Leveson, "Multi-Time-Scale Convolution for
Emotion Recognition from Speech Audio Signals", ICASSP 2020 (arXiv 2003.03375).

They flatten the conv features into a 200-unit hidden layer, so they are built for one input
size, ``input_shape``; the flattened size comes from a dry run at construction, so every
``output_type`` works (``concat_fmaps`` makes the time axis, hence the hidden layer, longer).
"""

import torch
from torch import nn

from mts_lightning.models.layers import (
    DEFAULT_SCALE_FACTORS,
    ConvFactory,
    ConvType,
    ScaleFactors,
    flat_size,
)
from mts_lightning.models.registry import register_model


class _PaperNet(nn.Module):
    """``features`` -> flatten -> hidden layer -> ReLU -> linear; checks the input shape."""

    def __init__(
        self,
        features: nn.Sequential,
        input_shape: tuple[int, int, int],
        hidden_units: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.features = features
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_size(features, self.input_shape), hidden_units),
            nn.ReLU(),
            nn.Linear(hidden_units, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, *input_shape)`` spectrograms -> ``(B, num_classes)`` logits."""
        if tuple(x.shape[1:]) != self.input_shape:
            shape = ", ".join(map(str, self.input_shape))
            raise ValueError(
                f"{type(self).__name__} was built for inputs (B, {shape}), got {tuple(x.shape)}; "
                "build it with input_shape=(channels, time, freq) of your data"
            )
        return self.classifier(self.features(x))


@register_model("paper_1conv_1ch", channels=1)
@register_model("paper_1conv_10ch", channels=10)
class PaperSingleConvNet(_PaperNet):
    """The paper's one-layer network: conv (``channels`` x 10x5) -> ReLU -> flatten -> 200-unit
    hidden layer -> ReLU -> linear. Registered with 1 channel (``paper_1conv_1ch``) and 10
    channels (``paper_1conv_10ch``).

    Input ``(B, *input_shape)`` with ``input_shape = (channels, time, freq)``; output logits
    ``(B, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 64),
        conv_type: ConvType = "mts",
        channels: int = 1,
        kernel_size: tuple[int, int] = (10, 5),
        hidden_units: int = 200,
        scale_factors: ScaleFactors = DEFAULT_SCALE_FACTORS,
        output_type: str = "pooled_map",
        kernel_sharing: str = "average",
        training_mode: str = "train_and_eval",
        stretch_penalty_lambda: float = 0.0,
        fmap_align: str = "interpolate",
    ) -> None:
        conv = ConvFactory(
            conv_type,
            scale_factors=scale_factors,
            output_type=output_type,
            kernel_sharing=kernel_sharing,
            training_mode=training_mode,
            stretch_penalty_lambda=stretch_penalty_lambda,
            fmap_align=fmap_align,
        )
        features = nn.Sequential(conv(input_shape[0], channels, kernel_size), nn.ReLU())
        super().__init__(features, input_shape, hidden_units, num_classes)


@register_model("paper_2conv")
class PaperTwoConvNet(_PaperNet):
    """The paper's two-layer network: conv -> ReLU -> 2x2 max pool -> conv -> ReLU (10 channels,
    10x5 kernels) -> flatten -> 200-unit hidden layer -> ReLU -> linear.

    Input ``(B, *input_shape)`` with ``input_shape = (channels, time, freq)``; output logits
    ``(B, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 64),
        conv_type: ConvType = "mts",
        channels: int = 10,
        kernel_size: tuple[int, int] = (10, 5),
        hidden_units: int = 200,
        scale_factors: ScaleFactors = DEFAULT_SCALE_FACTORS,
        output_type: str = "pooled_map",
        kernel_sharing: str = "average",
        training_mode: str = "train_and_eval",
        stretch_penalty_lambda: float = 0.0,
        fmap_align: str = "interpolate",
    ) -> None:
        conv = ConvFactory(
            conv_type,
            scale_factors=scale_factors,
            output_type=output_type,
            kernel_sharing=kernel_sharing,
            training_mode=training_mode,
            stretch_penalty_lambda=stretch_penalty_lambda,
            fmap_align=fmap_align,
        )
        features = nn.Sequential(
            conv(input_shape[0], channels, kernel_size),
            nn.ReLU(),
            nn.MaxPool2d(2),
            conv(conv.channel_multiplier * channels, channels, kernel_size),
            nn.ReLU(),
        )
        super().__init__(features, input_shape, hidden_units, num_classes)
