"""The native backend: the branch merge in one pass per direction, in C (``_merge.c``).

:func:`native_branch_max` computes what :func:`~mts_lightning.nn.merge.reference.reference_merge`
computes (align every branch map, penalise it, maximum, winner, counts), reading each map
once: the alignment is given as per-axis tables, so branch maps are read where they lie
(their own size, or a region of a fused convolution's output) and never materialised
aligned. Its backward routes each gradient element to the winning branch and scatters it
through the transposed alignment in one pass, writing every branch's gradient once.

It serves CPU float32/float64 maps outside ``torch.compile``; :func:`supported` says when.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from mts_lightning.nn.merge import native_build

#: How one axis of a branch map is brought to the base map's length:
#: ``("interpolate", own, target)`` bilinear resize; ``("crop", own, target)`` centre crop or
#: zero-pad; ``("edges", target, before, after)`` already on the base grid, with border strips
#: that count as zeros.
AxisAlignment = tuple

_KERNEL_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_MAX_BRANCHES = 255  # winners are stored as one byte


def supported(x: Tensor, num_maps: int) -> bool:
    """Whether :func:`native_branch_max` can merge ``num_maps`` maps computed from ``x`` in
    its own dtype (else use the stock operators)."""
    return (
        x.device.type == "cpu"
        and x.dtype in _KERNEL_DTYPES
        and num_maps <= _MAX_BRANCHES
        and not torch.is_autocast_enabled(x.device.type)
        and not torch.compiler.is_compiling()
        and native_build.library() is not None
    )


@functools.lru_cache(maxsize=512)
def axis_table(alignment: AxisAlignment) -> tuple[Tensor, Tensor, bool]:
    """``(index, weight, is_identity)`` of one axis alignment.

    ``index`` is ``(target, 2)`` int64: the two source positions each output position reads,
    -1 where the branch counts as zero; ``weight`` is ``(target, 2)`` float64. The bilinear
    rule is ``F.interpolate(size=..., mode="bilinear", align_corners=False)``'s.
    """
    kind = alignment[0]
    if kind == "interpolate":
        _, own, target = alignment
        source = ((torch.arange(target, dtype=torch.float64) + 0.5) * (own / target) - 0.5).clamp(
            min=0
        )
        first = source.long()
        second = torch.where(first < own - 1, first + 1, first)
        upper = (source - first).clamp(0, 1)
        index = torch.stack((first, second), 1)
        weight = torch.stack((1 - upper, upper), 1)
        return index, weight, own == target
    if kind == "crop":
        _, own, target = alignment
        positions = torch.arange(target)
        if own >= target:
            first = positions + (own - target) // 2
        else:
            first = positions - (target - own) // 2
            first = torch.where((first >= 0) & (first < own), first, -1)
        identity = own == target
    elif kind == "edges":
        _, target, before, after = alignment
        first = torch.arange(target)
        first = torch.where((first >= before) & (first < target - after), first, -1)
        identity = before == after == 0
    else:
        raise ValueError(f"unknown axis alignment {alignment!r}")
    weight = torch.zeros(target, 2, dtype=torch.float64)
    weight[:, 0] = 1.0
    return torch.stack((first, first), 1), weight, identity


def axis_alignments(
    maps: Sequence[Tensor], fmap_align: str
) -> tuple[list[AxisAlignment | None], list[AxisAlignment | None]]:
    """Time and frequency alignments bringing each map (after the base) to the base's size
    by ``fmap_align`` (``"interpolate"`` or ``"crop"``), for :func:`native_branch_max`."""
    time, freq = maps[0].shape[2:]
    return (
        [None] + [(fmap_align, m.shape[2], time) for m in maps[1:]],
        [None] + [(fmap_align, m.shape[3], freq) for m in maps[1:]],
    )


class _Layout:
    """How every map is cut into planes of rows of contiguous runs (see ``_merge.c``)."""

    def __init__(self, maps: Sequence[Tensor], freq_identity: bool) -> None:
        base = maps[0]
        self.channels_last = (
            freq_identity
            and all(m.stride(1) == 1 and m.stride(3) == m.shape[1] for m in maps)
            and not all(m.stride(3) == 1 for m in maps)
        )
        batch, channels, time, freq = base.shape
        self.shape = (batch, channels, time, freq)
        if self.channels_last:
            self.planes, self.rows, self.run = (batch, 1), time, freq * channels
            self.memory_format = torch.channels_last
        else:
            self.planes, self.rows, self.run = (batch, channels), time, freq
            self.memory_format = torch.contiguous_format

    def strides(self, t: Tensor) -> tuple[int, int, int]:
        """Element strides of ``t`` (laid out like the maps) along plane, plane, row."""
        if self.channels_last:
            return t.stride(0), 0, t.stride(2)
        return t.stride(0), t.stride(1), t.stride(2)

    def own_run(self, t: Tensor) -> int:
        return t.shape[3] * t.shape[1] if self.channels_last else t.shape[3]

    def fits(self, t: Tensor) -> bool:
        """Whether the runs of ``t`` are contiguous in this layout."""
        if self.channels_last:
            return t.stride(1) == 1 and t.stride(3) == t.shape[1]
        return t.stride(3) == 1 or t.shape[3] == 1


class _MapGeometry(ctypes.Structure):
    """One map's geometry row, the ``Geometry`` struct of ``_merge.c``."""

    _fields_ = [
        ("stride_a1", ctypes.c_int64),  # element strides along the two plane axes
        ("stride_a2", ctypes.c_int64),
        ("stride_row", ctypes.c_int64),
        ("rows", ctypes.c_int64),  # the map's own size: rows (time) of runs
        ("run", ctypes.c_int64),
        ("zero_rows", ctypes.c_int64),  # the block its gradient buffer must zero
        ("zero_run", ctypes.c_int64),
        ("run_is_identity", ctypes.c_int64),  # the run needs no alignment table
    ]


def _pointer_array(values: Sequence[int]) -> ctypes.Array:
    return (ctypes.c_void_p * len(values))(*values)


class _Plan:
    """Everything the kernel needs besides the data: geometry, tables, penalties."""

    def __init__(
        self,
        layout: _Layout,
        sources: Sequence[Tensor],
        maps: Sequence[Tensor],
        blocks: Sequence[Tensor],
        time_alignments: Sequence[AxisAlignment | None],
        freq_alignments: Sequence[AxisAlignment | None],
        penalties: Sequence[float],
    ) -> None:
        n = len(maps)
        tables = [(None, None)] + [
            (axis_table(time_alignments[i]), axis_table(freq_alignments[i])) for i in range(1, n)
        ]
        self.layout = layout
        self.num_branches = n
        self.source_of = [
            next(k for k, s in enumerate(sources) if _same_storage(m, s)) for m in maps
        ]
        self.offsets = [
            m.storage_offset() - sources[k].storage_offset()
            for m, k in zip(maps, self.source_of, strict=True)
        ]
        rows = []
        for i, (m, block) in enumerate(zip(maps, blocks, strict=True)):
            stride_a1, stride_a2, stride_row = layout.strides(m)
            rows.append(
                _MapGeometry(
                    stride_a1=stride_a1,
                    stride_a2=stride_a2,
                    stride_row=stride_row,
                    rows=m.shape[2],
                    run=layout.own_run(m),
                    zero_rows=block.shape[2],
                    zero_run=layout.own_run(block),
                    run_is_identity=int(i == 0 or layout.channels_last or tables[i][1][2]),
                )
            )
        run_tables = [None] + [None if layout.channels_last else t[1] for t in tables[1:]]
        # The kernel gets raw pointers into these tensors: keep them alive with the plan.
        self._keep_alive = (
            tables,
            (_MapGeometry * n)(*rows),
            torch.tensor([1.0, *penalties], dtype=torch.float64),
        )
        # The arguments both directions pass after the data: geometry, row tables, run
        # tables, penalties (see _merge.c).
        self.alignment_args = (
            ctypes.addressof(self._keep_alive[1]),
            _pointer_array([0] + [t[0][0].data_ptr() for t in tables[1:]]),
            _pointer_array([0] + [t[0][1].data_ptr() for t in tables[1:]]),
            _pointer_array([t[0].data_ptr() if t else 0 for t in run_tables]),
            _pointer_array([t[1].data_ptr() if t else 0 for t in run_tables]),
            self._keep_alive[2].data_ptr(),
        )
        self.source_specs = [(s.shape, s.stride()) for s in sources]

    def _map_pointers(self, sources: Sequence[Tensor]) -> ctypes.Array:
        item = sources[0].element_size()
        return _pointer_array(
            [
                sources[k].data_ptr() + off * item
                for k, off in zip(self.source_of, self.offsets, strict=True)
            ]
        )

    def forward(
        self, sources: Sequence[Tensor], out: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        layout = self.layout
        first = sources[self.source_of[0]]
        if out is None:
            out = torch.empty(layout.shape, dtype=first.dtype, memory_format=layout.memory_format)
        winner = torch.empty(layout.shape, dtype=torch.uint8, memory_format=layout.memory_format)
        counts = torch.zeros(self.num_branches, dtype=torch.int64)
        _kernel_function("forward", first.dtype)(
            self.num_branches,
            *layout.planes,
            self._map_pointers(sources),
            *self.alignment_args,
            out.data_ptr(),
            _strides_pointer(layout.strides(out)),
            winner.data_ptr(),
            _strides_pointer(layout.strides(winner)),
            counts.data_ptr(),
            torch.get_num_threads(),
        )
        return out, winner, counts

    def backward(self, grad: Tensor, winner: Tensor) -> list[Tensor]:
        layout = self.layout
        grad = grad.contiguous(memory_format=layout.memory_format)
        grads = [
            torch.empty_strided(shape, stride, dtype=grad.dtype)
            for shape, stride in self.source_specs
        ]
        _kernel_function("backward", grad.dtype)(
            self.num_branches,
            *layout.planes,
            grad.data_ptr(),
            _strides_pointer(layout.strides(grad)),
            winner.data_ptr(),
            _strides_pointer(layout.strides(winner)),
            self._map_pointers(grads),
            *self.alignment_args,
            torch.get_num_threads(),
        )
        return grads


def _kernel_function(direction: str, dtype: torch.dtype):
    """``mts_merge_{direction}`` of ``_merge.c`` for ``dtype``."""
    return getattr(native_build.library(), f"mts_merge_{direction}_{_KERNEL_DTYPES[dtype]}")


def _strides_pointer(strides: Sequence[int]) -> ctypes.Array:
    return (ctypes.c_int64 * 3)(*strides)


def _same_storage(view: Tensor, source: Tensor) -> bool:
    return view.untyped_storage().data_ptr() == source.untyped_storage().data_ptr()


class _NativeBranchMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan: _Plan, inplace: bool, *sources: Tensor):
        pooled, winner, counts = plan.forward(sources, sources[0] if inplace else None)
        if inplace:
            ctx.mark_dirty(pooled)
        ctx.save_for_backward(winner)
        ctx.mark_non_differentiable(winner, counts)
        ctx.plan = plan
        return pooled, winner, counts

    @staticmethod
    def backward(ctx, grad_pooled: Tensor, _grad_winner, _grad_counts):
        (winner,) = ctx.saved_tensors
        return None, None, *ctx.plan.backward(grad_pooled, winner)


def native_branch_max(
    sources: Sequence[Tensor],
    maps: Sequence[Tensor],
    time_alignments: Sequence[AxisAlignment | None],
    freq_alignments: Sequence[AxisAlignment | None],
    penalties: Sequence[float],
    *,
    blocks: Sequence[Tensor] | None = None,
    inplace: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Align, penalise and merge branch maps by maximum in one kernel pass.

    ``maps[i]`` is branch ``i``'s own ``(B, C, T_i, F_i)`` map: a source tensor itself or a
    view into one of ``sources`` (the tensors gradients are returned for). Branch 0 is the
    base, whose size is the output's; ``time_alignments[i]``/``freq_alignments[i]`` (``i >=
    1``) say how branch ``i`` is brought to it, and ``penalties[i - 1]`` multiplies it.
    ``blocks[i]`` (default ``maps[i]``) is the region of its source that branch ``i``'s
    gradient covers (the rest of the source gets none). With ``inplace`` the result is
    written into ``maps[0]``, which must then be ``sources[0]``. Returns ``(pooled, winner,
    counts)``: the maximum, the winning branch per element (uint8, lowest index on ties)
    and the number of elements each branch won (int64).
    """
    maps, sources = list(maps), list(sources)
    if len(maps) > _MAX_BRANCHES:
        raise ValueError(
            f"native_branch_max merges at most {_MAX_BRANCHES} branch maps (winners are kept "
            f"in one byte); got {len(maps)}"
        )
    blocks = maps if blocks is None else list(blocks)
    layout = _Layout(maps, all(axis_table(a)[2] for a in freq_alignments[1:]))
    dense = all(s.is_contiguous(memory_format=layout.memory_format) for s in sources)
    if not dense or not all(layout.fits(t) for t in (*maps, *blocks)):
        # Rare layouts (a channels-last map resized along frequency, a strided map): copy
        # each into the plain layout. Views into a shared source are always laid out densely.
        if len(maps) != len(sources) or any(m is not s for m, s in zip(maps, sources, strict=True)):
            raise ValueError(
                "native_branch_max: maps that are views into shared sources need every source "
                "dense (contiguous or channels-last) with each map's rows contiguous; got "
                f"source strides {[s.stride() for s in sources]} and map strides "
                f"{[m.stride() for m in maps]}. Pass separate maps (they are copied into "
                "place) or a dense source."
            )
        maps = blocks = sources = [m.contiguous() for m in maps]
        layout = _Layout(maps, freq_identity=False)
    plan = _Plan(layout, sources, maps, blocks, time_alignments, freq_alignments, penalties)
    inplace = inplace and maps[0] is sources[0]
    if torch.is_grad_enabled() and any(s.requires_grad for s in sources):
        return _NativeBranchMax.apply(plan, inplace, *sources)
    with torch.no_grad():
        return plan.forward(sources, sources[0] if inplace else None)
