"""Merges over the output of one convolution for all branches (``fuse_branches``).

The fused output is ``(B, n_branches, C, T, F)``. Its backward writes every branch's
gradient into one buffer of that shape, which spares autograd a zero-filled copy per branch.
Stock operators only: every device, dtype and ``torch.compile``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mts_lightning.nn.geometry import Edges
from mts_lightning.nn.merge.reference import align_fmap
from mts_lightning.nn.merge.stock import outside_strips, routed_grad, winning_branch


def zero_edges_(stacked: Tensor, edges: Sequence[Edges]) -> Tensor:
    """Zero, in place and differentiably, the border strips ``edges[i]`` of ``stacked[:, i]``."""
    for index, border in enumerate(edges):
        for strip in outside_strips(border, stacked.shape[-2:]):
            stacked[(slice(None), index, slice(None), *strip)] = 0
    return stacked


class _StackedBranchMax(torch.autograd.Function):
    """:func:`~mts_lightning.nn.merge.stock.branch_max` over maps stacked on axis 1, returning one stacked gradient.

    Writing every branch's gradient into one buffer spares the zero-fill and copy that
    autograd would spend to stack separate per-branch gradients back together; border
    strips given by ``edges`` count as zeros and get no gradient.
    """

    @staticmethod
    def forward(ctx, stacked: Tensor, edges: Sequence[Edges]) -> tuple[Tensor, Tensor]:
        pooled, winner = winning_branch(stacked.unbind(1), edges=edges)
        ctx.save_for_backward(winner)
        ctx.mark_non_differentiable(winner)
        ctx.stacked_shape = stacked.shape
        ctx.edges = edges
        return pooled, winner

    @staticmethod
    def backward(ctx, grad_pooled: Tensor, _grad_winner: Tensor) -> tuple[Tensor, None]:
        (winner,) = ctx.saved_tensors
        grad = grad_pooled.new_empty(ctx.stacked_shape)
        for index in range(ctx.stacked_shape[1]):
            routed_grad(grad_pooled, winner, index, out=grad[:, index])
            for strip in outside_strips(ctx.edges[index], ctx.stacked_shape[-2:]):
                grad[(slice(None), index, slice(None), *strip)] = 0
        return grad, None


def stacked_branch_max(stacked: Tensor, edges: Sequence[Edges]) -> tuple[Tensor, Tensor]:
    """:func:`~mts_lightning.nn.merge.stock.branch_max` over ``stacked`` maps ``(B, n_branches, C, T, F)``.

    ``edges[i]``: border strips of map ``i`` that count as zeros (see :func:`winning_branch`).
    """
    if not torch.is_grad_enabled() or not stacked.requires_grad:
        return winning_branch(stacked.unbind(1), edges=edges)
    return _StackedBranchMax.apply(stacked, edges)


def _resized_fused_maps(
    fused: Tensor, sizes: Sequence[tuple[int, int]], penalties: Sequence[float]
) -> list[Tensor]:
    base_size = tuple(sizes[0])
    maps = [fused[:, 0, :, : base_size[0], : base_size[1]]]
    for index in range(1, fused.shape[1]):
        own = fused[:, index, :, : sizes[index][0], : sizes[index][1]]
        fmap = align_fmap(own, base_size, "interpolate")
        maps.append(fmap if penalties[index - 1] == 1.0 else fmap * penalties[index - 1])
    return maps


class _FusedInterpolatedMax(torch.autograd.Function):
    """Resize each branch map of a fused convolution output to the base map, then merge.

    ``fused`` is ``(B, n_branches, C, T_max, F_max)``; branch ``i``'s own map is its
    ``sizes[i]`` top-left corner and is resized (bilinear) to ``sizes[0]`` and multiplied
    by ``penalties[i - 1]``. The backward writes every branch's gradient straight into
    one buffer, which spares autograd a zero-filled copy per branch.
    """

    @staticmethod
    def forward(ctx, fused: Tensor, sizes: Sequence[tuple[int, int]], penalties) -> tuple:
        pooled, winner = winning_branch(_resized_fused_maps(fused, sizes, penalties))
        ctx.save_for_backward(winner)
        ctx.mark_non_differentiable(winner)
        ctx.fused_shape, ctx.sizes, ctx.penalties = fused.shape, sizes, penalties
        return pooled, winner

    @staticmethod
    def backward(ctx, grad_pooled: Tensor, _grad_winner: Tensor) -> tuple[Tensor, None, None]:
        (winner,) = ctx.saved_tensors
        grad = grad_pooled.new_zeros(ctx.fused_shape)
        base_size = list(ctx.sizes[0])
        routed_grad(grad_pooled, winner, 0, out=grad[:, 0, :, : base_size[0], : base_size[1]])
        for index in range(1, ctx.fused_shape[1]):
            routed = routed_grad(grad_pooled, winner, index)
            if ctx.penalties[index - 1] != 1.0:
                routed = routed * ctx.penalties[index - 1]
            own_size = list(ctx.sizes[index])
            batch, _, channels = ctx.fused_shape[:3]
            grad[:, index, :, : own_size[0], : own_size[1]] = (
                torch.ops.aten.upsample_bilinear2d_backward(
                    routed, base_size, [batch, channels, *own_size], False, None, None
                )
            )
        return grad, None, None


def fused_interpolated_max(
    fused: Tensor, sizes: Sequence[tuple[int, int]], penalties: Sequence[float]
) -> tuple[Tensor, Tensor]:
    """:func:`~mts_lightning.nn.merge.stock.branch_max` of the branch maps of a fused convolution, resized to the base."""
    if not torch.is_grad_enabled() or not fused.requires_grad:
        return winning_branch(_resized_fused_maps(fused, sizes, penalties))
    return _FusedInterpolatedMax.apply(fused, tuple(sizes), tuple(penalties))
