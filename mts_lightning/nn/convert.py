"""Whole-model conversions: ``nn.Conv2d`` layers into MTS layers, MTS layers into (and out of)
their inference form."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from mts_lightning.nn.multiscale_conv import MultiscaleConv2d
from mts_lightning.nn.multiscale_conv1d import MultiscaleConv1d
from mts_lightning.nn.options import DEFAULT_SCALE_FACTORS


def _matches(name: str, patterns: Iterable[str] | None) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns or ())


def _as_patterns(name: str, patterns: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if patterns is None:
        return None
    if isinstance(patterns, str):
        return (patterns,)
    patterns = tuple(patterns)
    if not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"{name} must be a glob pattern or a list of them, got {patterns!r}")
    return patterns


def convert_to_mts(
    model: nn.Module,
    scale_factors: Iterable[float | tuple[float, float]] = DEFAULT_SCALE_FACTORS,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    **mts_kwargs: Any,
) -> nn.Module:
    """Replace the ``nn.Conv2d`` modules of ``model`` by :class:`MultiscaleConv2d`, in place.

    Each replacement has the same constructor arguments, device, dtype, weights and bias,
    and the given MTS options (``mts_kwargs`` are :class:`MultiscaleConv2d`'s keyword-only
    arguments). ``include``/``exclude`` are glob patterns (``fnmatch``) on qualified module
    names such as ``"features.0"`` or ``"layer*.conv1"``: only names matching ``include``
    (when given) and not ``exclude`` are converted. Layers that already are MTS layers are
    left alone. With ``scale_factors=()`` the model computes exactly what it did before.

    Returns ``model``. Raises ``ValueError`` when an ``include`` pattern matches no
    ``nn.Conv2d`` (a typo would otherwise convert nothing without a word).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from mts_lightning import convert_to_mts
        >>> cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                     nn.Conv2d(4, 4, 3, padding=1))
        >>> x = torch.randn(2, 1, 32, 16)
        >>> before = cnn(x)
        >>> cnn = convert_to_mts(cnn, scale_factors=(), exclude=["2"])
        >>> [type(module).__name__ for module in cnn]
        ['MultiscaleConv2d', 'ReLU', 'Conv2d']
        >>> torch.equal(cnn(x), before)  # no extra branch: the same function
        True
        >>> cnn = convert_to_mts(cnn, scale_factors=[0.7, 1.428], kernel_sharing="autograd")
        >>> [type(module).__name__ for module in cnn]  # the MTS layer is left as it was
        ['MultiscaleConv2d', 'ReLU', 'MultiscaleConv2d']
        >>> cnn[2].scale_factors
        ((0.7, 1.0), (1.428, 1.0))
    """
    include = _as_patterns("include", include)
    exclude = _as_patterns("exclude", exclude)
    targets = [
        name
        for name, module in model.named_modules()
        if type(module) is nn.Conv2d  # subclasses (MTS layers included) have their own forward
        and (include is None or _matches(name, include))
        and not _matches(name, exclude)
    ]
    if include is not None:
        for pattern in include:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in targets):
                raise ValueError(
                    f"convert_to_mts: include pattern {pattern!r} matches no nn.Conv2d module "
                    "left after exclude; nn.Conv2d modules: "
                    + ", ".join(n for n, m in model.named_modules() if type(m) is nn.Conv2d)
                )
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        conv: nn.Conv2d = getattr(parent, child_name)
        mts = MultiscaleConv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            scale_factors=scale_factors,
            **mts_kwargs,
        )
        with torch.no_grad():
            # A conv's weight and bias; the merge's own parameters (a learned temperature, the
            # scale attention) keep their initial values.
            mts.load_state_dict(conv.state_dict(), strict=False)
            mts.weight.requires_grad_(conv.weight.requires_grad)
            if conv.bias is not None:
                mts.bias.requires_grad_(conv.bias.requires_grad)
        mts.train(conv.training)
        setattr(parent, child_name, mts)
    return model


def freeze(model: nn.Module) -> nn.Module:
    """Put every MTS layer of ``model`` in its inference form (:meth:`MultiscaleConv2d.freeze`)
    and ``model`` in evaluation mode; returns ``model``."""
    for module in model.modules():
        if isinstance(module, (MultiscaleConv1d, MultiscaleConv2d)):
            module.freeze()
    return model.eval()


def unfreeze(model: nn.Module) -> nn.Module:
    """Give every MTS layer of ``model`` its training form back; returns ``model``, in the mode
    it was in."""
    for module in model.modules():
        if isinstance(module, (MultiscaleConv1d, MultiscaleConv2d)):
            module.unfreeze()
    return model
