"""The branch-merge rule of the MTS layer, written plainly with stock operators.

Given each branch's own map (base first): align every stretched map to the base map's size,
multiply it by its stretch penalty, take the element-wise maximum, record which branch won
each element (the lowest index on ties) and count each branch's wins. The fast backends in
this package compute exactly this; the tests hold them to :func:`reference_merge`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


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
    """Bring a branch output map ``(B, C, T_i, F_i)`` to the base map's ``(time, freq)`` ``size``.

    ``mode="interpolate"`` resizes bilinearly; ``mode="crop"`` centre-crops or zero-pads
    (split evenly, any odd element at the end), keeping each position on its kernel centre.
    """
    if tuple(fmap.shape[-2:]) == tuple(size):
        return fmap
    if mode == "interpolate":
        return F.interpolate(fmap, size=tuple(size), mode="bilinear", align_corners=False)
    fmap = _crop_or_pad_axis(fmap, fmap.dim() - 2, size[0])
    return _crop_or_pad_axis(fmap, fmap.dim() - 1, size[1])


def penalise(fmaps: Sequence[Tensor], penalties: Sequence[float]) -> list[Tensor]:
    """Multiply each stretched map by its penalty (and cast it to the base's dtype, which
    autocast may have left different)."""
    base = fmaps[0]
    return [base] + [
        (fmap if factor == 1.0 else fmap * factor).to(base.dtype)
        for fmap, factor in zip(fmaps[1:], penalties, strict=True)
    ]


def align_and_penalise(
    fmaps: Sequence[Tensor], fmap_align: str, penalties: Sequence[float]
) -> list[Tensor]:
    """Every branch's own map brought to the base map's size and penalised."""
    size = fmaps[0].shape[-2:]
    aligned = [fmaps[0]] + [align_fmap(f, size, fmap_align) for f in fmaps[1:]]
    return penalise(aligned, penalties)


def reference_merge(
    fmaps: Sequence[Tensor], fmap_align: str, penalties: Sequence[float]
) -> tuple[Tensor, Tensor, Tensor]:
    """The rule: ``fmaps`` are each branch's own ``(B, C, T_i, F_i)`` map, base first.

    Returns ``(pooled, winner, counts)``: the element-wise maximum of the aligned, penalised
    maps ``(B, C, T_0, F_0)`` (its gradient goes to the winning branch), the index of the
    winning branch (int64, lowest index on ties) and the number of elements each branch won
    (int64, ``(n_branches,)``).
    """
    aligned = torch.stack(align_and_penalise(fmaps, fmap_align, penalties))
    pooled = aligned.amax(dim=0)
    # The first branch holding the maximum: argmax of "is maximal" finds the first True.
    winner = (aligned == pooled.unsqueeze(0)).to(torch.uint8).argmax(dim=0)
    pooled = aligned.gather(0, winner.unsqueeze(0)).squeeze(0)
    counts = torch.stack([(winner == i).sum() for i in range(len(fmaps))])
    return pooled, winner, counts
