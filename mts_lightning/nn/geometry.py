"""The branch geometry of an MTS layer: one frozen value, computed once from its arguments.

Everything is written for the 2-D view ``(batch, channels, time, frequency)``; the 1-D layer
passes its arguments with a frequency axis of size 1. Nothing here needs a layer or a tensor,
so the geometry can be built and tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from mts_lightning.nn.options import ScalePair

Size2d = tuple[int, int]
#: ``F.pad`` amounts: (freq before, freq after, time before, time after).
Pads = tuple[int, int, int, int]
#: Border strips of a map that count as zeros: ((time before, after), (freq before, after)).
Edges = tuple[tuple[int, int], tuple[int, int]]


def stretched_size(kernel_size: int, scale: float) -> int:
    """Size of a kernel axis of ``kernel_size`` taps resampled by ``scale``.

    This is the size ``F.interpolate(..., scale_factor=scale)`` produces: ``floor(k * s)``.
    """
    return math.floor(kernel_size * scale)


def stretch_penalty_factor(scale: ScalePair, penalty_lambda: float) -> float:
    """Multiplier ``1 - lambda * (|ln s_time| + |ln s_freq|)`` of a stretched branch's map."""
    return 1.0 - penalty_lambda * (abs(math.log(scale[0])) + abs(math.log(scale[1])))


class AxisLayout(NamedTuple):
    """Where each branch kernel sits in the one-convolution kernel, along one axis."""

    offsets: tuple[int, ...]  # first tap of each branch kernel in the common kernel
    size: int  # taps of the common kernel
    pad_before: int  # zero padding of the input before the convolution
    pad_after: int
    zeroed_edges: tuple[tuple[int, int], ...]  # per branch: border strips that count as 0


class FusedLayout(NamedTuple):
    """All branches as one convolution over zero-padded copies of their kernels.

    For ``fmap_align="crop"`` every branch map lands on the base output grid (the strips in
    :attr:`edges` hold convolution values that the crop rule replaces by zeros); for
    ``"interpolate"`` every branch map starts at the output's origin at its own size.
    """

    time: AxisLayout
    freq: AxisLayout

    @property
    def input_pad(self) -> Pads:
        """``F.pad`` amounts of the input."""
        return (
            self.freq.pad_before,
            self.freq.pad_after,
            self.time.pad_before,
            self.time.pad_after,
        )

    @property
    def edges(self) -> tuple[Edges, ...]:
        """Per branch, the border strips that count as zeros (all zero for interpolate)."""
        return tuple(zip(self.time.zeroed_edges, self.freq.zeroed_edges, strict=True))

    def output_size(self, input_size: Size2d) -> Size2d:
        """(time, freq) size of the one convolution's output for an input of ``input_size``."""
        return tuple(
            n + axis.pad_before + axis.pad_after - axis.size + 1
            for n, axis in zip(input_size, (self.time, self.freq), strict=True)
        )


def fused_axis_layout(
    sizes: Sequence[int], lows: Sequence[int], highs: Sequence[int], fmap_align: str
) -> AxisLayout:
    """The :class:`AxisLayout` of one axis (stride 1).

    ``sizes``/``lows``/``highs``: each branch's kernel size and padding before/after; branch
    ``i``'s own map has length ``L + lows[i] + highs[i] - sizes[i] + 1``.
    """
    n = len(sizes)
    surplus = [lows[i] + highs[i] - sizes[i] for i in range(n)]  # own length minus L + 1
    if fmap_align == "crop":
        extra = [s - surplus[0] for s in surplus]
        shifts = [e // 2 if e >= 0 else -(-e // 2) for e in extra]
        edges = tuple((0, 0) if e >= 0 else (-e // 2, -e - (-e // 2)) for e in extra)
    else:
        shifts = [0] * n
        edges = ((0, 0),) * n
    pad_before = max(lows[i] - shifts[i] for i in range(n))
    offsets = tuple(pad_before + shifts[i] - lows[i] for i in range(n))
    size = max(offsets[i] + sizes[i] for i in range(n))
    output_surplus = surplus[0] if fmap_align == "crop" else max(surplus)
    return AxisLayout(offsets, size, pad_before, output_surplus - pad_before + size, edges)


def fusion_blockers(
    stride: Size2d, dilation: Size2d, padding_mode: str, groups: int, num_factors: int
) -> list[str]:
    """Why the branches cannot run as one convolution (empty when they can)."""
    return [
        reason
        for reason, blocked in (
            ("stride != 1", tuple(stride) != (1, 1)),
            ("dilation != 1", tuple(dilation) != (1, 1)),
            (f"padding_mode={padding_mode!r}", padding_mode != "zeros"),
            ("groups != 1", groups != 1),
            ("no scale_factors", num_factors == 0),
        )
        if blocked
    ]


class Misfit(NamedTuple):
    """A branch whose kernel does not fit the (padded) input along one axis."""

    branch: int
    axis: int  # 0 time, 1 frequency
    needed: int
    available: int


@dataclass(frozen=True)
class BranchGeometry:
    """Scales, kernels, paddings, penalties and layout of every branch, base first.

    Build it with :meth:`build`. ``pads``/``pad_totals``/``reaches`` are per branch;
    ``penalties`` are the multipliers of the stretched branches (the base has none);
    ``fused`` is the one-convolution layout, or ``None`` when the branches run separately.
    """

    scales: tuple[ScalePair, ...]
    kernel_sizes: tuple[Size2d, ...]
    stride: Size2d
    padding: str | Size2d
    dilation: Size2d
    groups: int
    padding_mode: str
    fmap_align: str
    pads: tuple[Pads, ...]
    pad_totals: tuple[Size2d, ...]  # (time, freq) padding added around the input
    reaches: tuple[Size2d, ...]  # (time, freq) input span of one output element
    penalties: tuple[float, ...]
    fused: FusedLayout | None

    @classmethod
    def build(
        cls,
        kernel_size: Size2d,
        scale_factors: Sequence[ScalePair],
        *,
        stride: Size2d = (1, 1),
        padding: str | Size2d = (0, 0),
        dilation: Size2d = (1, 1),
        groups: int = 1,
        padding_mode: str = "zeros",
        fmap_align: str = "interpolate",
        stretch_penalty_lambda: float = 0.0,
        fuse: bool = False,
    ) -> BranchGeometry:
        """The geometry for 2-D convolution arguments and (already normalised) factors.

        Raises ``ValueError`` for a factor that shrinks a kernel axis to 0 taps, or for
        ``fuse`` where :func:`fusion_blockers` finds a reason against it.
        """
        scales = ((1.0, 1.0), *scale_factors)
        kernel_sizes = tuple(
            tuple(stretched_size(k, s) for k, s in zip(kernel_size, scale, strict=True))
            for scale in scales
        )
        for scale, size in zip(scales[1:], kernel_sizes[1:], strict=True):
            if min(size) < 1:
                raise ValueError(
                    f"scale_factors: entry {scale} shrinks the kernel of size "
                    f"{format_size(kernel_size)} to {format_size(size)}; every factor must keep "
                    "floor(kernel_size * factor) >= 1"
                )
        pads = tuple(_branch_pads(size, padding, dilation) for size in kernel_sizes)
        if fuse:
            blockers = fusion_blockers(stride, dilation, padding_mode, groups, len(scale_factors))
            if blockers:
                raise ValueError(
                    "fuse_branches='always' needs stride 1, dilation 1, padding_mode 'zeros', "
                    f"groups 1 and at least one scale factor; got {', '.join(blockers)}"
                )
            time = fused_axis_layout(
                [k[0] for k in kernel_sizes], [p[2] for p in pads], [p[3] for p in pads], fmap_align
            )
            freq = fused_axis_layout(
                [k[1] for k in kernel_sizes], [p[0] for p in pads], [p[1] for p in pads], fmap_align
            )
            fused = FusedLayout(time, freq)
        else:
            fused = None
        return cls(
            scales=scales,
            kernel_sizes=kernel_sizes,
            stride=tuple(stride),
            padding=padding if isinstance(padding, str) else tuple(padding),
            dilation=tuple(dilation),
            groups=groups,
            padding_mode=padding_mode,
            fmap_align=fmap_align,
            pads=pads,
            pad_totals=tuple((p[2] + p[3], p[0] + p[1]) for p in pads),
            reaches=tuple(
                tuple(d * (k - 1) + 1 for d, k in zip(dilation, size, strict=True))
                for size in kernel_sizes
            ),
            penalties=tuple(
                stretch_penalty_factor(s, stretch_penalty_lambda) for s in scale_factors
            ),
            fused=fused,
        )

    @property
    def num_branches(self) -> int:
        return len(self.scales)

    @property
    def scale_factors(self) -> tuple[ScalePair, ...]:
        """The stretched branches' scales (every branch but the base)."""
        return self.scales[1:]

    @property
    def log_time_scales(self) -> tuple[float, ...]:
        """``ln(s_time)`` of every branch, base (0) first: the index map's values."""
        return tuple(math.log(s[0]) for s in self.scales)

    @property
    def length_offsets(self) -> tuple[Size2d, ...]:
        """Per branch, (time, freq) ``pad total - reach``: its map is ``(L + offset) // stride
        + 1`` long for an input ``L`` long, so equal offsets mean equal map sizes."""
        return tuple(
            (totals[0] - reach[0], totals[1] - reach[1])
            for totals, reach in zip(self.pad_totals, self.reaches, strict=True)
        )

    def map_sizes(self, input_size: Size2d) -> list[Size2d]:
        """(time, freq) size of each branch's own map for an input of ``input_size``."""
        return [
            tuple(
                (n + o) // step + 1
                for n, o, step in zip(input_size, offsets, self.stride, strict=True)
            )
            for offsets in self.length_offsets
        ]

    def misfit(self, input_size: Size2d, num_branches: int | None = None) -> Misfit | None:
        """The first of the first ``num_branches`` branches (default all) whose kernel reach
        exceeds the padded input, or ``None`` when every one fits."""
        for branch in range(self.num_branches if num_branches is None else num_branches):
            for axis in range(2):
                available = input_size[axis] + self.pad_totals[branch][axis]
                if available < self.reaches[branch][axis]:
                    return Misfit(branch, axis, self.reaches[branch][axis], available)
        return None


def _branch_pads(size: Size2d, padding: str | Size2d, dilation: Size2d) -> Pads:
    """``F.pad`` amounts of one branch: ``padding="same"`` pads each branch for its own
    kernel size, as ``nn.Conv2d`` with that kernel would; numeric padding is shared."""
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, size, strict=True)]
        time, freq = ((t // 2, t - t // 2) for t in totals)
    elif padding == "valid":
        time, freq = (0, 0), (0, 0)
    else:
        time, freq = (padding[0], padding[0]), (padding[1], padding[1])
    return (*freq, *time)


def format_size(size: Sequence[int]) -> str:
    """``(5, 3)`` as ``5x3``."""
    return "x".join(str(s) for s in size)
