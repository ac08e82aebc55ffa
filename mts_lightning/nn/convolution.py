"""The branch convolutions of an MTS layer: one per branch, or all in one.

Functions of values: the input, the branch kernels (base first, 2-D views), the shared bias
and the layer's :class:`~mts_lightning.nn.geometry.BranchGeometry`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mts_lightning.nn.geometry import BranchGeometry, FusedLayout

# From this many input channels, CPU convolutions of the separate branches share one
# channels-last copy of the input (benchmarks/layer.py, middle-layer configurations).
CHANNELS_LAST_MIN_IN = 8


def conv_branch(
    x: Tensor, kernel: Tensor, bias: Tensor | None, geometry: BranchGeometry, branch: int
) -> Tensor:
    """Branch ``branch``'s own map ``(B, C_out, T_i, F_i)``, as ``nn.Conv2d`` with its kernel
    computes it."""
    padding = geometry.padding
    if geometry.padding_mode != "zeros":
        x = F.pad(x, geometry.pads[branch], mode=geometry.padding_mode)
        padding = (0, 0)
    return F.conv2d(x, kernel, bias, geometry.stride, padding, geometry.dilation, geometry.groups)


def own_fmaps(
    x: Tensor,
    kernels: Sequence[Tensor],
    bias: Tensor | None,
    geometry: BranchGeometry,
    reorder: bool = True,
) -> list[Tensor]:
    """One convolution per branch, each map at its own size. ``reorder=False`` keeps the
    input's memory layout (a graph being recorded has no use for the reorder)."""
    if reorder and x.device.type == "cpu" and x.shape[1] >= CHANNELS_LAST_MIN_IN:
        # oneDNN reorders an NCHW input for every convolution; reorder it once instead.
        x = x.contiguous(memory_format=torch.channels_last)
    return [conv_branch(x, kernel, bias, geometry, i) for i, kernel in enumerate(kernels)]


def fused_weights(
    kernels: Sequence[Tensor], bias: Tensor | None, layout: FusedLayout
) -> tuple[Tensor, Tensor | None]:
    """The kernel and bias of :func:`fused_conv`: each branch kernel zero-padded into the
    common size at its offsets, stacked on the output channels."""
    time, freq = layout
    fused_kernel = torch.cat(
        [
            F.pad(
                k,
                (
                    freq.offsets[i],
                    freq.size - freq.offsets[i] - k.shape[-1],
                    time.offsets[i],
                    time.size - time.offsets[i] - k.shape[-2],
                ),
            )
            for i, k in enumerate(kernels)
        ]
    )
    return fused_kernel, None if bias is None else bias.repeat(len(kernels))


def fused_conv(
    x: Tensor, fused_kernel: Tensor, bias: Tensor | None, layout: FusedLayout, num_branches: int
) -> Tensor:
    """Every branch in one convolution over the kernel of :func:`fused_weights`.

    Returns ``(B, n_branches, C_out, T, F)``, laid out as :class:`FusedLayout` says.
    """
    fused = F.conv2d(F.pad(x, layout.input_pad), fused_kernel, bias)
    return fused.unflatten(1, (num_branches, -1))


def fused_own_fmaps(fused: Tensor, map_sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """Each branch's own map in an ``"interpolate"`` fused output: its top-left corner."""
    return [fused[:, i, :, : size[0], : size[1]] for i, size in enumerate(map_sizes)]
