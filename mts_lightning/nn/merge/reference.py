"""The branch-merge rules of the MTS layer, written plainly with stock operators.

Given each branch's own map (base first): align every stretched map to the base map's size,
multiply it by its stretch penalty, then merge the aligned maps ``y_i`` element-wise by the
layer's ``merge`` rule (:class:`MergeRule`):

- ``"max"`` (the published rule): the maximum; the branch that holds it (the lowest index on
  ties) wins the element and receives its gradient. Usage: the elements each branch won.
- ``"mean"``: ``mean_i y_i``.
- ``"logsumexp"``: ``T * log(mean_i exp(y_i / T))``, the log-sum-exp less ``T * log(n)``, so
  it lies between the mean (``T -> inf``) and the maximum (``T -> 0``) and gives ``y`` where
  every branch gives ``y``.
- ``"softmax"``: ``sum_i softmax_i(y / T) * y_i``, also between the mean and the maximum.
- ``"attention"``: ``sum_i a_i * y_i`` with ``a = softmax_i(logits)`` from a
  :class:`~mts_lightning.nn.merge.attention.ScaleAttention` (selective kernels, Li et al.
  2019), per sample, channel and time frame.

For the soft rules the usage is the weight each branch received, summed over the elements
(``1/n``; ``softmax(y / T)``, which is also the log-sum-exp's gradient; ``a``), so a branch's
share is the mean weight it received. Scale dropout (``MergeRule.keep``) leaves dropped
branches out of a sample's merge: they never win, get weight 0, and the mean and the
log-sum-exp's ``log(n)`` count only the kept ones.

The fast backends in this package compute exactly this; the tests hold them to
:func:`reference_merge`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class MergeRule(NamedTuple):
    """How the aligned, penalised branch maps become one map, for one forward."""

    name: str = "max"  # one of options.MERGE_RULES
    temperature: float | Tensor = 1.0  # of "logsumexp" and "softmax"; a tensor when learned
    # (B, n_branches) bool, the branches each sample keeps (scale dropout); None keeps all.
    keep: Tensor | None = None
    # "attention": stacked maps (n, B, C, T, F) and the kept-branch mask -> logits
    # (n, B, C, T, 1), see merge/attention.py.
    attention: Callable[[Tensor, Tensor | None], Tensor] | None = None

    @property
    def is_plain_max(self) -> bool:
        """The published rule with every branch: what every backend computes."""
        return self.name == "max" and self.keep is None


#: The published rule, every branch kept.
MAX_RULE = MergeRule()


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


def keep_mask(rule: MergeRule, num_branches: int) -> Tensor | None:
    """``rule.keep`` as a ``(n_branches, B, 1, 1, 1)`` mask over stacked maps (or ``None``)."""
    if rule.keep is None:
        return None
    return rule.keep.t().reshape(num_branches, -1, 1, 1, 1)


def soft_merge(aligned: Sequence[Tensor], rule: MergeRule) -> tuple[Tensor, Tensor]:
    """A soft rule (every rule but ``"max"``) over the aligned maps ``(B, C, T, F)``, base first.

    Returns ``(pooled, weights)``: the merged map ``(B, C, T, F)`` and the weight of each
    branch, broadcastable to the stacked maps ``(n, B, C, T, F)`` (``(n, 1, 1, 1, 1)`` for the
    mean of every branch), summing to 1 over the branches.
    """
    n = len(aligned)  # a Python number, also in a traced graph
    stacked = torch.stack(list(aligned))
    mask = keep_mask(rule, n)
    if rule.name == "mean":
        if mask is None:
            weights = stacked.new_full((n, 1, 1, 1, 1), 1.0 / n)
            return stacked.mean(dim=0), weights
        weights = mask.to(stacked.dtype) / mask.sum(dim=0)
        return (weights * stacked).sum(dim=0), weights
    if rule.name in ("logsumexp", "softmax"):
        temperature = rule.temperature
        if isinstance(temperature, Tensor):
            temperature = temperature.to(stacked.dtype)
        unit = isinstance(temperature, float) and temperature == 1.0  # the default: no pass
        logits = stacked if unit else stacked / temperature
    elif rule.name == "attention":
        logits = rule.attention(stacked, mask)
    else:
        raise ValueError(f"soft_merge: unknown merge rule {rule.name!r}")
    if mask is not None:
        logits = logits.masked_fill(~mask, -math.inf)
    if rule.name == "logsumexp":
        log_kept = math.log(n) if mask is None else mask.sum(dim=0).to(stacked.dtype).log()
        pooled = torch.logsumexp(logits, dim=0) - log_kept
        pooled = pooled if unit else temperature * pooled
        # Its gradient's weights, for the usage and the index map: outside the graph.
        return pooled, torch.softmax(logits.detach(), dim=0)
    weights = torch.softmax(logits, dim=0)
    return (weights * stacked).sum(dim=0), weights


def weight_usage(weights: Tensor, shape: Sequence[int]) -> Tensor:
    """Each branch's weight summed over the elements of maps stacked to ``shape``
    (float64, ``(n_branches,)``)."""
    with torch.no_grad():
        return weights.detach().expand(tuple(shape)).sum(dim=(1, 2, 3, 4)).to(torch.float64)


def index_map(
    log_time_scales: Tensor, pooled: Tensor, winner: Tensor | None, weights: Tensor | None
) -> Tensor:
    """``interleave_chdim``'s index map: ``ln(s_time)`` of the winning branch (``"max"``), or
    its mean under each element's branch ``weights`` (the soft rules). A value without
    gradient, for every rule."""
    log_time_scales = log_time_scales.to(pooled.dtype)
    if weights is None:
        return log_time_scales[winner.long()]
    weights = weights.detach().expand(-1, *pooled.shape)
    return (weights * log_time_scales.view(-1, 1, 1, 1, 1)).sum(dim=0)


def reference_merge(
    fmaps: Sequence[Tensor],
    fmap_align: str,
    penalties: Sequence[float],
    rule: MergeRule = MAX_RULE,
) -> tuple[Tensor, Tensor, Tensor]:
    """The rule: ``fmaps`` are each branch's own ``(B, C, T_i, F_i)`` map, base first.

    Returns ``(pooled, choice, usage)``: the merged map ``(B, C, T_0, F_0)`` of the aligned,
    penalised maps, then for ``"max"`` the index of the winning branch (int64, lowest index on
    ties; the gradient goes to it) and the number of elements each branch won (int64,
    ``(n_branches,)``); for the soft rules each branch's weights (see :func:`soft_merge`) and
    their sum over the elements (float64, ``(n_branches,)``).
    """
    if rule.name != "max":
        pooled, weights = soft_merge(align_and_penalise(fmaps, fmap_align, penalties), rule)
        return pooled, weights, weight_usage(weights, (len(fmaps), *pooled.shape))
    aligned = torch.stack(align_and_penalise(fmaps, fmap_align, penalties))
    mask = keep_mask(rule, len(fmaps))
    if mask is not None:
        aligned = aligned.masked_fill(~mask, -math.inf)  # a dropped branch never wins
    pooled = aligned.amax(dim=0)
    # The first branch holding the maximum: argmax of "is maximal" finds the first True.
    winner = (aligned == pooled.unsqueeze(0)).to(torch.uint8).argmax(dim=0)
    pooled = aligned.gather(0, winner.unsqueeze(0)).squeeze(0)
    counts = torch.stack([(winner == i).sum() for i in range(len(fmaps))])
    return pooled, winner, counts
