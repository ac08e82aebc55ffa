"""The one place where the zoo chooses between ``nn.Conv2d`` and ``MultiscaleConv2d``."""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from mts_lightning.nn import MultiscaleConv2d
from mts_lightning.nn.options import DEFAULT_SCALE_FACTORS

ConvType = Literal["mts", "conv"]
ScaleFactors = Sequence[float | tuple[float, float]]

CONV_TYPES: tuple[str, ...] = ("mts", "conv")


class ConvFactory:
    """Builds every MTS-able conv of a model: ``nn.Conv2d`` for ``conv_type="conv"``, else
    ``MultiscaleConv2d`` with the model's MTS options (see ``MultiscaleConv2d`` for their meaning).

    ``conv(in_channels, out_channels, kernel_size, **conv2d_kwargs)`` returns the layer;
    ``channel_multiplier`` is how many channels each requested output channel becomes (2 with
    ``output_type="interleave_chdim"``), so the next layer's ``in_channels`` can follow. The MTS
    options are ignored for ``conv_type="conv"``.
    """

    def __init__(
        self,
        conv_type: str,
        *,
        scale_factors: ScaleFactors = DEFAULT_SCALE_FACTORS,
        output_type: str = "pooled_map",
        kernel_sharing: str = "average",
        training_mode: str = "train_and_eval",
        stretch_penalty_lambda: float = 0.0,
        fmap_align: str = "interpolate",
    ) -> None:
        if conv_type not in CONV_TYPES:
            raise ValueError(f"conv_type must be one of {CONV_TYPES}, got {conv_type!r}")
        self.conv_type = conv_type
        self.output_type = output_type if conv_type == "mts" else "pooled_map"
        self.mts_options = dict(
            scale_factors=tuple(scale_factors),
            output_type=output_type,
            kernel_sharing=kernel_sharing,
            training_mode=training_mode,
            stretch_penalty_lambda=stretch_penalty_lambda,
            fmap_align=fmap_align,
        )

    @property
    def channel_multiplier(self) -> int:
        return 2 if self.output_type == "interleave_chdim" else 1

    def reject_concat_fmaps(self, model_name: str) -> None:
        """Raise for ``output_type="concat_fmaps"`` in a model that cannot take it."""
        if self.output_type == "concat_fmaps":
            raise ValueError(
                f"{model_name} does not support output_type='concat_fmaps' (it multiplies the time "
                "axis by the number of branches at every MTS layer); use 'pooled_map' or "
                "'interleave_chdim', or a paper network"
            )

    def __call__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], **kwargs
    ) -> nn.Conv2d:
        if self.conv_type == "conv":
            return nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)
        return MultiscaleConv2d(
            in_channels, out_channels, kernel_size, **kwargs, **self.mts_options
        )


def make_conv(
    conv_type: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    mts_options: dict | None = None,
    **conv2d_kwargs,
) -> nn.Conv2d:
    """One conv layer: ``nn.Conv2d`` (``conv_type="conv"``) or ``MultiscaleConv2d`` (``"mts"``,
    configured by ``mts_options``, the keyword arguments of ``ConvFactory``)."""
    factory = ConvFactory(conv_type, **(mts_options or {}))
    return factory(in_channels, out_channels, kernel_size, **conv2d_kwargs)


def flat_size(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Number of features ``features`` gives for one ``(channels, time, freq)`` input (dry run).

    The dry run leaves no stretch usage behind: MTS layers do not count it.
    """
    mts_layers = [m for m in features.modules() if isinstance(m, MultiscaleConv2d)]
    tracking = [m.track_stretch_usage for m in mts_layers]
    for m in mts_layers:
        m.track_stretch_usage = False
    with torch.no_grad():
        size = features(torch.zeros(1, *input_shape)).numel()
    for m, track in zip(mts_layers, tracking, strict=True):
        m.track_stretch_usage = track
    return size
