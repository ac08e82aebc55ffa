"""Which backend merges an MTS layer's branches, and how the CPU batch is cut into chunks.

Every backend computes the rule of :mod:`mts_lightning.nn.merge.reference` and says through
``supports`` where it can run and which merge rules it computes; :func:`choose_backend` takes
the first that can, from :data:`BACKENDS` (fastest first), so a rule a fast backend does not
compute falls back, silently, to one that does (the reference computes every rule). A new
backend is a class with ``name``, ``supports`` and ``pooled`` placed in that tuple. Everything
here takes values (tensors, the geometry, option strings, the :class:`.merge.reference.MergeRule`
of the forward), never the layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from mts_lightning.nn.convolution import (
    CHANNELS_LAST_MIN_IN,
    fused_conv,
    fused_own_fmaps,
    fused_weights,
    own_fmaps,
)
from mts_lightning.nn.geometry import BranchGeometry, fusion_blockers
from mts_lightning.nn.merge import native
from mts_lightning.nn.merge.reference import (
    MAX_RULE,
    MergeRule,
    align_and_penalise,
    index_map,
    keep_mask,
    penalise,
    reference_merge,
)
from mts_lightning.nn.merge.stacked import fused_interpolated_max, stacked_branch_max, zero_edges_
from mts_lightning.nn.merge.stock import branch_max, count_wins, winning_branch

# On the stock path, "auto" fuses the branches into one convolution up to this many input
# channels: there a convolution is memory-bound, and one wide convolution and one stacked
# merge beat several narrow ones. The native merge, which reads branch maps in place and
# runs large batches in chunks, is mostly faster with separate convolutions (see
# benchmarks/README.md), so there "auto" does not fuse.
AUTO_FUSE_MAX_IN = 4
# On CPU, a batch whose largest convolution output would exceed CHUNK_ABOVE_BYTES runs in
# chunks of at most CHUNK_BYTES of branch maps: glibc's malloc maps so large a block fresh at
# every allocation and the OS faults it in page by page, while chunk-sized blocks are reused
# and still in cache when the merge reads them (benchmarks/README.md).
CHUNK_ABOVE_BYTES = 32 * 2**20
CHUNK_BYTES = 16 * 2**20


def wants_fusion(
    fuse_branches: str,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    padding_mode: str,
    groups: int,
    in_channels: int,
    num_factors: int,
) -> bool:
    """Whether the layer lays out one convolution for all branches (``fuse_branches``)."""
    if fuse_branches == "always":
        return True
    return (
        fuse_branches == "auto"
        and not fusion_blockers(stride, dilation, padding_mode, groups, num_factors)
        and in_channels // groups <= AUTO_FUSE_MAX_IN
    )


class Merged(NamedTuple):
    """What a backend returns for ``output_type="pooled_map"``/``"interleave_chdim"``."""

    base: Tensor | None  # the base map's value, where ``keep_base`` asked for it
    pooled: Tensor
    winner: Tensor | None  # the winning branch per element ("max")
    counts: Tensor | None  # usage per branch, where the backend counted it on the way
    weights: Tensor | None = None  # each branch's weights (soft rules), see reference.soft_merge


class NativeBackend:
    """The C merge (:mod:`.merge.native`): CPU float32/float64 outside autocast and
    ``torch.compile``; large batches in chunks. Fuses the convolutions only for
    ``fuse_branches="always"``."""

    name = "native"

    @staticmethod
    def supports(x: Tensor, geometry: BranchGeometry, fuse_branches: str, rule: MergeRule) -> bool:
        return rule.is_plain_max and native.supported(x, geometry.num_branches)

    @staticmethod
    def pooled(
        x: Tensor,
        kernels: Sequence[Tensor],
        bias: Tensor | None,
        geometry: BranchGeometry,
        fuse_branches: str,
        keep_base: bool,
        rule: MergeRule,
    ) -> Merged:
        layout = geometry.fused if fuse_branches == "always" else None
        weights = None if layout is None else fused_weights(kernels, bias, layout)
        out_channels = kernels[0].shape[0]
        bases, pooled, winners, counts = [], [], [], 0
        for chunk in x.split(chunk_samples(x, geometry, out_channels, layout is not None)):
            if weights is None:
                fmaps = own_fmaps(chunk, kernels, bias, geometry)
                time, freq = native.axis_alignments(fmaps, geometry.fmap_align)
                # The base map takes the maximum unless its own value is kept.
                merged = native.native_branch_max(
                    fmaps, fmaps, time, freq, geometry.penalties, inplace=not keep_base
                )
                base = fmaps[0]
            else:
                fused = fused_conv(chunk, *weights, layout, geometry.num_branches)
                base, *merged = _native_fused_merge(fused, geometry, chunk.shape[-2:])
                # Only the base's value is used: a copy lets the rest of the chunk's maps go.
                base = base.clone() if keep_base else base
            if keep_base:
                bases.append(base.detach())
            pooled.append(merged[0])
            winners.append(merged[1])
            counts = counts + merged[2]
        return Merged(_cat(bases) if keep_base else None, _cat(pooled), _cat(winners), counts)


class StackedBackend:
    """Stock operators over one convolution for all branches (:mod:`.merge.stacked`)."""

    name = "stacked"

    @staticmethod
    def supports(x: Tensor, geometry: BranchGeometry, fuse_branches: str, rule: MergeRule) -> bool:
        return rule.is_plain_max and geometry.fused is not None

    @staticmethod
    def pooled(
        x: Tensor,
        kernels: Sequence[Tensor],
        bias: Tensor | None,
        geometry: BranchGeometry,
        fuse_branches: str,
        keep_base: bool,
        rule: MergeRule,
    ) -> Merged:
        layout = geometry.fused
        fused = fused_conv(x, *fused_weights(kernels, bias, layout), layout, geometry.num_branches)
        if geometry.fmap_align == "crop":
            if any(p != 1.0 for p in geometry.penalties):
                factors = fused.new_tensor((1.0, *geometry.penalties))
                fused = fused * factors.view(1, -1, 1, 1, 1)
            return Merged(fused[:, 0], *stacked_branch_max(fused, layout.edges), None)
        sizes = geometry.map_sizes(x.shape[-2:])
        base = fused[:, 0, :, : sizes[0][0], : sizes[0][1]]
        return Merged(base, *fused_interpolated_max(fused, sizes, geometry.penalties), None)


class StockBackend:
    """Stock operators over separately convolved maps (:mod:`.merge.stock`): anywhere, for the
    maximum, with scale dropout too (a dropped branch's map counts as ``-inf``)."""

    name = "stock"

    @staticmethod
    def supports(x: Tensor, geometry: BranchGeometry, fuse_branches: str, rule: MergeRule) -> bool:
        return rule.name == "max"

    @staticmethod
    def pooled(
        x: Tensor,
        kernels: Sequence[Tensor],
        bias: Tensor | None,
        geometry: BranchGeometry,
        fuse_branches: str,
        keep_base: bool,
        rule: MergeRule,
    ) -> Merged:
        fmaps = align_and_penalise(
            own_fmaps(x, kernels, bias, geometry), geometry.fmap_align, geometry.penalties
        )
        mask = keep_mask(rule, len(fmaps))
        if mask is not None:  # the base is always kept: it stays the map that takes the maximum
            fmaps[1:] = [
                f.masked_fill(~m, -torch.inf) for f, m in zip(fmaps[1:], mask[1:], strict=True)
            ]
        # The base map is overwritten by the maximum unless its own value is kept.
        return Merged(fmaps[0], *branch_max(fmaps, inplace=not keep_base), None)


class ReferenceBackend:
    """The rule as :mod:`.merge.reference` states it, over separately convolved maps: every
    merge rule, anywhere; the backend of the soft rules."""

    name = "reference"

    @staticmethod
    def supports(x: Tensor, geometry: BranchGeometry, fuse_branches: str, rule: MergeRule) -> bool:
        return True

    @staticmethod
    def pooled(
        x: Tensor,
        kernels: Sequence[Tensor],
        bias: Tensor | None,
        geometry: BranchGeometry,
        fuse_branches: str,
        keep_base: bool,
        rule: MergeRule,
    ) -> Merged:
        fmaps = own_fmaps(x, kernels, bias, geometry)
        pooled, choice, usage = reference_merge(
            fmaps, geometry.fmap_align, geometry.penalties, rule
        )
        if rule.name == "max":
            return Merged(fmaps[0], pooled, choice, usage)
        return Merged(fmaps[0], pooled, None, usage, choice)


#: Merge backends, in order of preference.
BACKENDS = (NativeBackend, StackedBackend, StockBackend, ReferenceBackend)


def choose_backend(
    x: Tensor, geometry: BranchGeometry, fuse_branches: str, rule: MergeRule = MAX_RULE
):
    """The first backend of :data:`BACKENDS` that supports merging branch maps of ``x`` by
    ``rule``."""
    return next(b for b in BACKENDS if b.supports(x, geometry, fuse_branches, rule))


def pooled_merge(
    x: Tensor,
    kernels: Sequence[Tensor],
    bias: Tensor | None,
    geometry: BranchGeometry,
    fuse_branches: str,
    keep_base: bool,
    rule: MergeRule = MAX_RULE,
) -> Merged:
    """Convolve ``x`` (``(B, C_in, T, F)``) with every branch kernel and merge by ``rule``."""
    backend = choose_backend(x, geometry, fuse_branches, rule)
    return backend.pooled(x, kernels, bias, geometry, fuse_branches, keep_base, rule)


def merged_output(
    x: Tensor,
    kernels: Sequence[Tensor],
    bias: Tensor | None,
    geometry: BranchGeometry,
    output_type: str,
    fuse_branches: str,
    keep_base: bool,
    log_time_scales: Tensor,
    count: bool,
    rule: MergeRule = MAX_RULE,
) -> tuple[Tensor, Tensor | None]:
    """The layer's output (2-D view) for ``output_type``, and the usage of each branch when
    ``count`` (else ``None``): the elements it won (int64) for ``"max"``, the weight it
    received summed over the elements (float64) for the soft rules.

    ``keep_base`` (``training_mode="only_gradients"``): the base map's value with the pooled
    map's gradient. ``log_time_scales``: the index map's value for each branch (for a soft
    rule, their mean under each element's weights). ``rule``: the merge of the pooled map.
    """
    if output_type == "concat_fmaps":
        fmaps = aligned_fmaps(x, kernels, bias, geometry)
        counts = None
        if count:
            with torch.no_grad():
                winner = winning_branch([f.detach() for f in fmaps])[1]
                counts = count_wins(winner, geometry.num_branches)
        return torch.cat(fmaps, dim=2), counts
    base, pooled, winner, counts, weights = pooled_merge(
        x, kernels, bias, geometry, fuse_branches, keep_base, rule
    )
    if count and counts is None:
        counts = count_wins(winner, geometry.num_branches)
    if output_type == "interleave_chdim":
        log_scales = index_map(log_time_scales, pooled, winner, weights)
        output = torch.stack((pooled, log_scales), dim=2).flatten(1, 2)
    elif keep_base:
        # Value of the base map, gradient of the pooled map only. The literal
        # ``base + (pooled - pooled.detach())`` would add the base's gradient twice.
        output = pooled + (base - pooled).detach()
    else:
        output = pooled
    return output, counts if count else None


def aligned_fmaps(
    x: Tensor, kernels: Sequence[Tensor], bias: Tensor | None, geometry: BranchGeometry
) -> list[Tensor]:
    """Every branch map aligned to the base map and penalised (for ``concat_fmaps``)."""
    layout = geometry.fused
    if layout is None:
        return align_and_penalise(
            own_fmaps(x, kernels, bias, geometry), geometry.fmap_align, geometry.penalties
        )
    fused = fused_conv(x, *fused_weights(kernels, bias, layout), layout, geometry.num_branches)
    if geometry.fmap_align == "crop":
        return penalise(list(zero_edges_(fused, layout.edges).unbind(1)), geometry.penalties)
    maps = fused_own_fmaps(fused, geometry.map_sizes(x.shape[-2:]))
    return align_and_penalise(maps, geometry.fmap_align, geometry.penalties)


def chunk_samples(x: Tensor, geometry: BranchGeometry, out_channels: int, fused: bool) -> int:
    """Samples per chunk of the native backend (see ``CHUNK_ABOVE_BYTES``)."""
    if fused:
        sizes = [geometry.fused.output_size(x.shape[-2:])] * geometry.num_branches
        planes = out_channels
    else:
        sizes = geometry.map_sizes(x.shape[-2:])
        planes = 1 if x.shape[1] >= CHANNELS_LAST_MIN_IN else out_channels
    sample_bytes = [out_channels * t * f * x.element_size() for t, f in sizes]
    if max(sample_bytes) * x.shape[0] <= CHUNK_ABOVE_BYTES:
        return max(x.shape[0], 1)
    # The kernel shares out its planes (per sample: one, channels-last; else a channel
    # each) among the threads: keep every thread busy.
    min_samples = -(-torch.get_num_threads() // planes)
    return max(1, min_samples, CHUNK_BYTES // sum(sample_bytes))


def _native_fused_merge(
    fused: Tensor, geometry: BranchGeometry, input_size: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The native merge over a fused output: ``(base map, pooled, winner, counts)``."""
    blocks = list(fused.unbind(1))
    if geometry.fmap_align == "crop":
        maps = blocks
        time_size, freq_size = blocks[0].shape[-2:]
        edges = geometry.fused.edges
        time = [("edges", time_size, *e[0]) for e in edges]
        freq = [("edges", freq_size, *e[1]) for e in edges]
    else:
        maps = fused_own_fmaps(fused, geometry.map_sizes(input_size))
        time, freq = native.axis_alignments(maps, "interpolate")
    merged = native.native_branch_max([fused], maps, time, freq, geometry.penalties, blocks=blocks)
    return (maps[0], *merged)


def _cat(tensors: list[Tensor]) -> Tensor:
    """``torch.cat`` on the batch axis, without a copy for a single tensor."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)
