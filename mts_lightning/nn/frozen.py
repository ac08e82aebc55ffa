"""The inference form of an MTS layer: a merge in stock operators whose sizes follow the
input, so traced and exported graphs hold for every input length.

:meth:`~mts_lightning.nn.MultiscaleConv2d.freeze` stores the branch kernels; the frozen
forward merges with the fast backends of :mod:`.dispatch` when run eagerly, and with
:func:`export_merge` while being traced, scripted, exported or compiled (the C merge is a
foreign call no graph can hold). Both compute the rule of :mod:`.merge.reference`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mts_lightning.nn.convolution import own_fmaps
from mts_lightning.nn.geometry import BranchGeometry
from mts_lightning.nn.merge.reference import MAX_RULE, MergeRule, index_map, soft_merge


def exporting() -> bool:
    """Whether the forward is being recorded into a graph (trace, script, ONNX, export,
    ``torch.compile``) rather than run eagerly."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    )


def _same_length(geometry: BranchGeometry, branch: int, axis: int) -> bool:
    """Whether branch ``branch``'s map has the base map's length on ``axis`` for every input."""
    return geometry.length_offsets[branch][axis] == geometry.length_offsets[0][axis]


def _crop_or_pad(fmap: Tensor, dim: int, target, longer: bool) -> Tensor:
    """Centre-crop (``longer``) or zero-pad ``fmap`` along ``dim`` to ``target``, with
    amounts computed from the shapes, so a trace records them for every input length."""
    size = fmap.shape[dim]
    if longer:
        return fmap.narrow(dim, (size - target) // 2, target)
    before = (target - size) // 2
    pad = [0, 0, 0, 0]
    pad[2 * (3 - dim)], pad[2 * (3 - dim) + 1] = before, target - size - before
    return F.pad(fmap, pad)


def _resize_time(fmap: Tensor, length) -> Tensor:
    """``F.interpolate(fmap, size=(length, F), mode="bilinear")`` for a map whose frequency
    size ``F`` stays: the same weights and sums, with the frequency rows as channels.

    Written this way, the exported graph resizes a channels-last view: onnxruntime cancels the
    two transposes around its Resize and runs the resize on whole frequency rows, 2-3x faster
    than its resize of an NCHW map (benchmarks/README.md); eager PyTorch takes its channels-last
    kernel.
    """
    batch, channels, time, freq = fmap.shape
    rows = fmap.reshape(batch * channels, time, 1, freq).permute(0, 3, 1, 2)
    rows = F.interpolate(rows, size=(length, 1), mode="bilinear", align_corners=False)
    return rows.permute(0, 2, 3, 1).reshape(batch, channels, length, freq)


def _aligned(fmaps: Sequence[Tensor], geometry: BranchGeometry) -> list[Tensor]:
    """Every map aligned to the base map and penalised, deciding only on the geometry."""
    base = fmaps[0]
    aligned = [base]
    for branch, fmap in enumerate(fmaps[1:], start=1):
        same = [_same_length(geometry, branch, axis) for axis in range(2)]
        if not same[0] and same[1] and geometry.fmap_align == "interpolate":
            fmap = _resize_time(fmap, base.shape[2])
        elif not all(same) and geometry.fmap_align == "interpolate":
            fmap = F.interpolate(fmap, size=base.shape[-2:], mode="bilinear", align_corners=False)
        elif not all(same):
            for axis in range(2):
                if not same[axis]:
                    # A branch whose map is longer for one input length is never shorter
                    # for another: the sign of the length difference is the geometry's.
                    longer = (
                        geometry.length_offsets[branch][axis] > geometry.length_offsets[0][axis]
                    )
                    fmap = _crop_or_pad(fmap, 2 + axis, base.shape[2 + axis], longer)
        penalty = geometry.penalties[branch - 1]
        aligned.append(fmap if penalty == 1.0 else fmap * penalty)
    return aligned


def export_merge(
    x: Tensor,
    kernels: Sequence[Tensor],
    bias: Tensor | None,
    geometry: BranchGeometry,
    output_type: str,
    log_time_scales: Tensor,
    rule: MergeRule = MAX_RULE,
) -> Tensor:
    """The frozen layer's output (2-D view) in stock operators that every exporter records.

    ``output_type``: ``"pooled_map"`` ``(B, C, T, F)``; ``"concat_fmaps"`` the aligned maps
    concatenated on time; ``"interleave_chdim"`` ``(B, 2C, T, F)``, each pooled channel then
    the ``log_time_scales`` entry of the branch that won each element (ties to the lowest), or
    for a soft ``rule`` their mean under the element's branch weights.
    """
    aligned = _aligned(own_fmaps(x, kernels, bias, geometry, reorder=False), geometry)
    if output_type == "concat_fmaps":
        return torch.cat(aligned, dim=2)
    if rule.name != "max":
        pooled, weights = soft_merge(aligned, rule)
        if output_type == "pooled_map":
            return pooled
        log_scales = index_map(log_time_scales, pooled, None, weights)
        return torch.stack((pooled, log_scales), dim=2).flatten(1, 2)
    pooled = aligned[0]
    winner = torch.zeros_like(pooled, dtype=torch.long) if output_type != "pooled_map" else None
    for branch, fmap in enumerate(aligned[1:], start=1):
        if winner is not None:
            winner = torch.where(fmap > pooled, branch, winner)
        pooled = torch.maximum(pooled, fmap)
    if winner is None:
        return pooled
    log_scales = log_time_scales.to(pooled.dtype)[winner]
    return torch.stack((pooled, log_scales), dim=2).flatten(1, 2)
