"""The one place where the zoo chooses between ``nn.Conv2d`` and ``MultiscaleConv2d``, and
where the zoo's models receive the MTS options: one mapping ``mts`` per model."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from mts_lightning.arguments import check_keyword_arguments
from mts_lightning.nn import MultiscaleConv2d

ConvType = Literal["mts", "conv"]
#: The MTS options of a zoo model: keyword arguments of ``MultiscaleConv2d``, e.g.
#: ``{"scale_factors": [[0.7, 1.0], [1.428, 1.0]], "kernel_sharing": "autograd"}`` or
#: ``{"merge": "softmax", "temperature": 0.5, "scale_dropout": 0.2}``.
MTSOptions = Mapping[str, Any]

#: What ``conv_type`` takes: MTS layers or plain convolutions.
CONV_TYPES: tuple[str, ...] = ("mts", "conv")
# The layer's keyword-only arguments are its MTS options: read from its signature, so every
# option it gains is reachable from YAML, and its own defaults and checks apply.
_LAYER_OPTIONS = {
    name: parameter.default
    for name, parameter in inspect.signature(MultiscaleConv2d.__init__).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}
#: The keys of a model's ``mts`` mapping: the keyword-only arguments of ``MultiscaleConv2d``.
MTS_OPTIONS: tuple[str, ...] = tuple(_LAYER_OPTIONS)


def check_mts_options(mts: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for a key of ``mts`` that is not an MTS option, or a value whose
    type is not the one ``MultiscaleConv2d`` declares for it (its own checks see the rest)."""
    unknown = [k for k in mts if k not in MTS_OPTIONS]
    if unknown:
        raise ValueError(
            f"mts: unknown option(s) {', '.join(unknown)}; MultiscaleConv2d takes "
            f"{', '.join(MTS_OPTIONS)}"
        )
    try:
        check_keyword_arguments(MultiscaleConv2d.__init__, mts, "MultiscaleConv2d", MTS_OPTIONS)
    except ValueError as err:
        raise ValueError(f"mts: {err}") from None


def reject_flat_mts_options(model_kwargs: Mapping[str, Any]) -> None:
    """Raise for MTS options given one by one to a zoo model (``scale_factors=...``), the
    spelling before ``mts``; the message shows the new one with the same values."""
    flat = {k: v for k, v in model_kwargs.items() if k in MTS_OPTIONS}
    if not flat:
        return
    given = ", ".join(f"{k}: {_yaml_value(v)}" for k, v in flat.items())
    conv_type = model_kwargs.get("conv_type", "mts")
    raise ValueError(
        f"backbone_kwargs: {', '.join(flat)} now go in one mapping `mts`; write "
        f"backbone_kwargs: {{conv_type: {conv_type}, mts: {{{given}}}}} "
        f"(in Python: mts={dict(flat)!r})"
    )


def _yaml_value(value: Any) -> str:
    """``value`` in YAML flow style (tuples as lists)."""
    return json.dumps(value) if not isinstance(value, str) else value


class ConvFactory:
    """Builds every MTS-able conv of a model: ``nn.Conv2d`` for ``conv_type="conv"``, else
    ``MultiscaleConv2d`` with the model's MTS options.

    ``conv(in_channels, out_channels, kernel_size, **conv2d_kwargs)`` returns the layer;
    ``channel_multiplier`` is how many channels each requested output channel becomes (2 with
    ``output_type="interleave_chdim"``), so the next layer's ``in_channels`` can follow.

    Args:
        conv_type: ``"mts"`` or ``"conv"``.
        mts: keyword arguments of ``MultiscaleConv2d`` for every MTS layer (any of
            ``MTS_OPTIONS``: ``scale_factors``, ``output_type``, ``merge``, ``temperature``,
            ``learn_temperature``, ``scale_dropout``, ``kernel_sharing``, ``training_mode``,
            ``stretch_penalty_lambda``, ``fmap_align``, ``track_stretch_usage``,
            ``fuse_branches``); the layer checks their values. From YAML:
            ``backbone_kwargs: {conv_type: mts, mts: {merge: softmax, temperature: 0.5}}``.
            Ignored for ``conv_type="conv"``.
    """

    def __init__(self, conv_type: str, mts: MTSOptions | None = None) -> None:
        if conv_type not in CONV_TYPES:
            raise ValueError(f"conv_type must be one of {CONV_TYPES}, got {conv_type!r}")
        if mts is not None and not isinstance(mts, Mapping):
            raise ValueError(f"mts must be a mapping of MTS options, got {type(mts).__name__}")
        options = dict(mts or {})
        check_mts_options(options)
        self.conv_type = conv_type
        self.mts_options = options
        output_type = options.get("output_type", _LAYER_OPTIONS["output_type"])
        self.output_type = output_type if conv_type == "mts" else "pooled_map"

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
    mts: MTSOptions | None = None,
    **conv2d_kwargs,
) -> nn.Conv2d:
    """One conv layer: ``nn.Conv2d`` (``conv_type="conv"``) or ``MultiscaleConv2d`` (``"mts"``,
    configured by ``mts``, as in :class:`ConvFactory`)."""
    return ConvFactory(conv_type, mts)(in_channels, out_channels, kernel_size, **conv2d_kwargs)


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
