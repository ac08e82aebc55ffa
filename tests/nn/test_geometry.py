"""The branch geometry on its own: sizes, paddings, penalties, the one-convolution layout."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
import torch

from mts_lightning.nn.convolution import fused_conv, fused_weights, own_fmaps
from mts_lightning.nn.geometry import BranchGeometry, fusion_blockers
from mts_lightning.nn.kernel_sharing import resampled_kernels
from mts_lightning.nn.merge.reference import align_fmap
from mts_lightning.nn.merge.stacked import zero_edges_

FACTORS = ((0.7, 1.0), (1.428, 1.0), (1.5, 0.5))


def test_scales_kernel_sizes_and_penalties():
    geometry = BranchGeometry.build((5, 3), FACTORS, stretch_penalty_lambda=0.1)
    assert geometry.num_branches == 4
    assert geometry.scales == ((1.0, 1.0), *FACTORS)
    assert geometry.scale_factors == FACTORS
    assert geometry.kernel_sizes == ((5, 3), (3, 3), (7, 3), (7, 1))
    expected = [1 - 0.1 * (abs(math.log(t)) + abs(math.log(f))) for t, f in FACTORS]
    assert geometry.penalties == pytest.approx(expected)
    assert geometry.log_time_scales == pytest.approx([0.0, *(math.log(t) for t, _ in FACTORS)])


@pytest.mark.parametrize(
    ("padding", "dilation", "pads"),
    [
        ((2, 1), (1, 1), [(1, 1, 2, 2)] * 4),  # numeric padding: shared by every branch
        ("valid", (1, 1), [(0, 0, 0, 0)] * 4),
        # "same": each branch padded for its own kernel, odd totals one more after
        ("same", (1, 1), [(1, 1, 2, 2), (1, 1, 1, 1), (1, 1, 3, 3), (0, 0, 3, 3)]),
        ("same", (2, 1), [(1, 1, 4, 4), (1, 1, 2, 2), (1, 1, 6, 6), (0, 0, 6, 6)]),
    ],
)
def test_pads_totals_and_reaches(padding, dilation, pads):
    geometry = BranchGeometry.build((5, 3), FACTORS, padding=padding, dilation=dilation)
    assert list(geometry.pads) == pads
    assert geometry.pad_totals == tuple((p[2] + p[3], p[0] + p[1]) for p in pads)
    assert geometry.reaches == tuple(
        (dilation[0] * (t - 1) + 1, f) for t, f in geometry.kernel_sizes
    )


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "padding_mode"),
    [
        ((1, 1), (0, 0), (1, 1), "zeros"),
        ((2, 1), (2, 1), (1, 2), "zeros"),
        ((1, 1), "same", (1, 1), "reflect"),
    ],
)
def test_map_sizes_are_the_convolutions_output_sizes(stride, padding, dilation, padding_mode):
    geometry = BranchGeometry.build(
        (5, 3), FACTORS, stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode,
    )  # fmt: skip
    x = torch.randn(1, 2, 23, 11)
    kernels = resampled_kernels(torch.randn(4, 2, 5, 3), FACTORS)
    maps = own_fmaps(x, kernels, None, geometry)
    assert geometry.map_sizes((23, 11)) == [tuple(m.shape[-2:]) for m in maps]


def test_misfit_names_the_first_branch_that_does_not_fit():
    geometry = BranchGeometry.build((5, 3), FACTORS, padding=(1, 0))
    misfit = geometry.misfit((4, 3))
    assert (misfit.branch, misfit.axis, misfit.needed, misfit.available) == (2, 0, 7, 6)
    assert geometry.misfit((4, 3), num_branches=2) is None  # base and 0.7 fit 4 + 2 steps
    assert geometry.misfit((5, 3)) is None
    misfit = geometry.misfit((9, 2))
    assert (misfit.branch, misfit.axis, misfit.needed, misfit.available) == (0, 1, 3, 2)


def test_a_factor_that_shrinks_a_kernel_to_nothing_is_refused():
    with pytest.raises(
        ValueError, match=r"entry \(0.1, 1.0\) shrinks the kernel of size 5x3 to 0x3"
    ):
        BranchGeometry.build((5, 3), ((0.1, 1.0),))


def test_fusion_is_refused_where_it_cannot_run():
    assert fusion_blockers((1, 1), (1, 1), "zeros", 1, 2) == []
    assert fusion_blockers((2, 1), (1, 2), "reflect", 2, 0) == [
        "stride != 1", "dilation != 1", "padding_mode='reflect'", "groups != 1",
        "no scale_factors",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="fuse_branches='always' needs .* got stride != 1"):
        BranchGeometry.build((5, 3), FACTORS, stride=(2, 1), fuse=True)
    assert BranchGeometry.build((5, 3), FACTORS).fused is None


@pytest.mark.parametrize("padding", [(0, 0), (2, 1), "same"])
@pytest.mark.parametrize("align", ["interpolate", "crop"])
def test_one_convolution_holds_every_branch_map(align, padding):
    geometry = BranchGeometry.build((5, 3), FACTORS, padding=padding, fmap_align=align, fuse=True)
    layout = geometry.fused
    x = torch.randn(2, 1, 23, 11, dtype=torch.float64)
    kernels = resampled_kernels(torch.randn(3, 1, 5, 3, dtype=torch.float64), FACTORS)
    bias = torch.randn(3, dtype=torch.float64)
    fused = fused_conv(x, *fused_weights(kernels, bias, layout), layout, geometry.num_branches)
    assert tuple(fused.shape[-2:]) == layout.output_size((23, 11))
    separate = own_fmaps(x, kernels, bias, geometry)
    for branch, own in enumerate(separate):
        t, f = own.shape[-2:]
        if align == "interpolate":  # each branch map at the origin, at its own size
            torch.testing.assert_close(fused[:, branch, :, :t, :f], own)
            continue
        # crop: each branch centred on the base grid, the crop rule's zeros outside its edges
        zeroed = zero_edges_(fused.clone(), layout.edges)[:, branch]
        torch.testing.assert_close(zeroed, align_fmap(own, separate[0].shape[-2:], "crop"))


def test_is_a_frozen_picklable_value():
    geometry = BranchGeometry.build((5, 3), FACTORS, padding="same", fmap_align="crop", fuse=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        geometry.penalties = ()
    assert pickle.loads(pickle.dumps(geometry)) == geometry
    assert hash(geometry) == hash(
        BranchGeometry.build((5, 3), FACTORS, padding="same", fmap_align="crop", fuse=True)
    )
