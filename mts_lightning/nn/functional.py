"""Pure helpers behind the multi-time-scale convolution layers.

Everything here works on 4-D tensors laid out ``(batch, channels, time, frequency)``;
the 1-D layer views its tensors as 4-D with a frequency axis of size 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

ScalePair = tuple[float, float]


def stretched_size(kernel_size: int, scale: float) -> int:
    """Size of a kernel axis of ``kernel_size`` taps resampled by ``scale``.

    This is the size ``F.interpolate(..., scale_factor=scale)`` produces: ``floor(k * s)``.
    """
    return math.floor(kernel_size * scale)


def resample_kernel(weight: Tensor, scale: ScalePair) -> Tensor:
    """Resample a ``(out, in, kt, kf)`` kernel by ``scale = (s_time, s_freq)``.

    Bilinear, ``align_corners=False``, the factor itself mapping coordinates: exactly
    ``F.interpolate(weight, scale_factor=scale, mode="bilinear")``. The base scale ``(1, 1)``
    returns ``weight`` itself.
    """
    if scale == (1.0, 1.0):
        return weight
    return F.interpolate(weight, scale_factor=scale, mode="bilinear", align_corners=False)


def resize_kernel(weight: Tensor, size: Sequence[int]) -> Tensor:
    """Resample a kernel back to ``size`` (bilinear, by size), as kernel averaging needs."""
    if tuple(weight.shape[-2:]) == tuple(size):
        return weight
    return F.interpolate(weight, size=tuple(size), mode="bilinear", align_corners=False)


def _crop_or_pad_axis(fmap: Tensor, axis: int, target: int) -> Tensor:
    size = fmap.shape[axis]
    if size > target:
        # Centre crop; an odd surplus element is dropped at the end.
        return fmap.narrow(axis, (size - target) // 2, target)
    if size < target:
        missing = target - size
        before, after = missing // 2, missing - missing // 2
        pad = [0, 0, 0, 0]
        pad_index = 2 * (fmap.dim() - 1 - axis)
        pad[pad_index], pad[pad_index + 1] = before, after
        return F.pad(fmap, pad)
    return fmap


def align_fmap(fmap: Tensor, size: Sequence[int], mode: str) -> Tensor:
    """Bring a branch output map to the base map's ``(time, freq)`` ``size``.

    ``mode="interpolate"`` resizes bilinearly; ``mode="crop"`` centre-crops or zero-pads
    (split evenly, any odd element at the end), keeping each position on its kernel centre.
    """
    if tuple(fmap.shape[-2:]) == tuple(size):
        return fmap
    if mode == "interpolate":
        return F.interpolate(fmap, size=tuple(size), mode="bilinear", align_corners=False)
    fmap = _crop_or_pad_axis(fmap, fmap.dim() - 2, size[0])
    return _crop_or_pad_axis(fmap, fmap.dim() - 1, size[1])


def stretch_penalty_factor(scale: ScalePair, penalty_lambda: float) -> float:
    """Multiplier ``1 - lambda * (|ln s_time| + |ln s_freq|)`` of a stretched branch's map."""
    return 1.0 - penalty_lambda * (abs(math.log(scale[0])) + abs(math.log(scale[1])))


def _index_dtype(num_branches: int) -> torch.dtype:
    return torch.uint8 if num_branches <= 255 else torch.int32


Edges = tuple[tuple[int, int], tuple[int, int]]


def _outside(edges: Edges, size: Sequence[int]) -> list[tuple[slice, slice]]:
    """(time, freq) slices of the border strips ``edges`` cuts off a ``size`` map."""
    (t_before, t_after), (f_before, f_after) = edges
    time, freq = size
    inner_time = slice(t_before, time - t_after)
    strips = [
        (slice(0, t_before), slice(None)),
        (slice(time - t_after, time), slice(None)),
        (inner_time, slice(0, f_before)),
        (inner_time, slice(freq - f_after, freq)),
    ]
    return [s for s, n in zip(strips, (t_before, t_after, f_before, f_after), strict=True) if n]


def _take_if_better(pooled: Tensor, winner: Tensor, fmap: Tensor | float, index: int) -> None:
    better = torch.lt(pooled, fmap)
    if isinstance(fmap, Tensor):
        torch.maximum(pooled, fmap, out=pooled)
    else:
        pooled.clamp_(min=fmap)
    # Branches come in increasing order, so "index where better, else unchanged" is a
    # maximum: ten times faster than masked_fill_ on CPU.
    flags = better.view(torch.uint8) if winner.dtype == torch.uint8 else better.to(winner.dtype)
    torch.maximum(winner, flags * index, out=winner)


def winning_branch(
    fmaps: Sequence[Tensor],
    out: Tensor | None = None,
    edges: Sequence[Edges | None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Element-wise maximum over ``fmaps`` and the index of the map that holds it.

    Ties go to the lowest index (the base first). The maximum is written into ``out``
    (which may be ``fmaps[0]`` itself, saving a copy) or a new tensor. ``edges[i]``, when
    given, are ((before, after) on time, (before, after) on freq) border strips where map
    ``i`` counts as 0 whatever it holds (the zero padding of crop alignment).
    Returns ``(pooled, winner)``.
    """
    pooled = fmaps[0].clone() if out is None else out
    if out is not None and out is not fmaps[0]:
        pooled.copy_(fmaps[0])
    winner = torch.zeros_like(pooled, dtype=_index_dtype(len(fmaps)))
    for index, fmap in enumerate(fmaps[1:], start=1):
        border = edges[index] if edges is not None else None
        if not border or border == ((0, 0), (0, 0)):
            _take_if_better(pooled, winner, fmap, index)
            continue
        (t_before, t_after), (f_before, f_after) = border
        time, freq = pooled.shape[-2:]
        inner = (..., slice(t_before, time - t_after), slice(f_before, freq - f_after))
        _take_if_better(pooled[inner], winner[inner], fmap[inner], index)
        for strip in _outside(border, (time, freq)):
            _take_if_better(pooled[(..., *strip)], winner[(..., *strip)], 0.0, index)
    return pooled, winner


def zero_edges_(stacked: Tensor, edges: Sequence[Edges]) -> Tensor:
    """Zero, in place and differentiably, the border strips ``edges[i]`` of ``stacked[:, i]``."""
    for index, border in enumerate(edges):
        for strip in _outside(border, stacked.shape[-2:]):
            stacked[(slice(None), index, slice(None), *strip)] = 0
    return stacked


_SAME_WIDTH_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _routed(grad: Tensor, winner: Tensor, index: int, out: Tensor | None = None) -> Tensor:
    """``grad`` where branch ``index`` won, else 0: the gradient that branch receives.

    On CPU, mixed float/bool element-wise ops (``torch.where``, a product with a mask) are
    not vectorised; masking the gradient's bits with an all-ones/all-zeros integer of the
    same width is, and runs in about 60% of the time. Elsewhere ``torch.where`` is one
    fused kernel (``out=`` is avoided there: the compiler refuses strided ``out`` views).
    """
    if grad.device.type != "cpu" or torch.compiler.is_compiling():
        routed = torch.where(winner == index, grad, 0.0)
        return routed if out is None else out.copy_(routed)
    bits = _SAME_WIDTH_INT[grad.element_size()]
    mask = torch.empty_like(winner, dtype=bits) if out is None else out.view(bits)
    torch.eq(winner, index, out=mask).neg_()  # -1 (all bits set) where the branch won, else 0
    return torch.bitwise_and(grad.view(bits), mask, out=mask).view(grad.dtype)


class _BranchMax(torch.autograd.Function):
    """Max over branch maps whose backward routes each gradient element to its winner only.

    With ``inplace`` the maximum is written into the first (base) map, which the caller
    hands over. No stacked copy in forward, and the backward keeps one byte per element
    instead of scattering into a stacked zero tensor.
    """

    @staticmethod
    def forward(ctx, inplace: bool, *fmaps: Tensor) -> tuple[Tensor, Tensor]:
        pooled, winner = winning_branch(fmaps, out=fmaps[0] if inplace else None)
        if inplace:
            ctx.mark_dirty(pooled)
        ctx.save_for_backward(winner)
        ctx.mark_non_differentiable(winner)
        return pooled, winner

    @staticmethod
    def backward(ctx, grad_pooled: Tensor, _grad_winner: Tensor) -> tuple[Tensor | None, ...]:
        (winner,) = ctx.saved_tensors
        return (None,) + tuple(
            _routed(grad_pooled, winner, index) if needed else None
            for index, needed in enumerate(ctx.needs_input_grad[1:])
        )


def branch_max(fmaps: Sequence[Tensor], inplace: bool = False) -> tuple[Tensor, Tensor]:
    """Differentiable element-wise max over branch maps, with the winning branch index.

    With ``inplace``, ``fmaps[0]`` is overwritten with the result (saving a copy): pass a
    base map that nothing else uses and that is not a view. The gradient of each output
    element goes to the branch that won it (lowest index on ties). Returns
    ``(pooled, winner)``; ``winner`` is an integer tensor without gradient.
    """
    if not torch.is_grad_enabled() or not any(f.requires_grad for f in fmaps):
        return winning_branch(fmaps, out=fmaps[0] if inplace else None)
    return _BranchMax.apply(inplace, *fmaps)


class _StackedBranchMax(torch.autograd.Function):
    """:func:`branch_max` over maps stacked on axis 1, returning one stacked gradient.

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
            _routed(grad_pooled, winner, index, out=grad[:, index])
            for strip in _outside(ctx.edges[index], ctx.stacked_shape[-2:]):
                grad[(slice(None), index, slice(None), *strip)] = 0
        return grad, None


def stacked_branch_max(stacked: Tensor, edges: Sequence[Edges]) -> tuple[Tensor, Tensor]:
    """:func:`branch_max` over ``stacked`` maps ``(B, n_branches, C, T, F)``.

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
        _routed(grad_pooled, winner, 0, out=grad[:, 0, :, : base_size[0], : base_size[1]])
        for index in range(1, ctx.fused_shape[1]):
            routed = _routed(grad_pooled, winner, index)
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
    """:func:`branch_max` of the branch maps of a fused convolution, resized to the base."""
    if not torch.is_grad_enabled() or not fused.requires_grad:
        return winning_branch(_resized_fused_maps(fused, sizes, penalties))
    return _FusedInterpolatedMax.apply(fused, tuple(sizes), tuple(penalties))


def count_wins(winner: Tensor, num_branches: int) -> Tensor:
    """Number of elements each branch won, as an int64 tensor on ``winner``'s device.

    Never waits for the device: on CPU one ``bincount`` pass; elsewhere (``bincount`` would
    synchronise on CUDA to size its output) and under ``torch.compile``, comparisons and
    counts. ``num_branches >= 2``.
    """
    if winner.dim() == 4 and winner.is_contiguous(memory_format=torch.channels_last):
        winner = winner.permute(0, 2, 3, 1)  # the same elements, now contiguous
    if winner.device.type == "cpu" and winner.is_contiguous() and not torch.compiler.is_compiling():
        return torch.bincount(winner.view(-1), minlength=num_branches)
    stretched = [torch.count_nonzero(winner == index) for index in range(1, num_branches)]
    base = winner.numel() - torch.stack(stretched).sum()
    return torch.stack([base, *stretched])
