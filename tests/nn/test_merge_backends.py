"""The reference merge rule against every fast backend: values, gradients, winners, counts."""

from __future__ import annotations

import pytest
import torch

from mts_lightning.nn import dispatch
from mts_lightning.nn.convolution import own_fmaps
from mts_lightning.nn.geometry import BranchGeometry
from mts_lightning.nn.kernel_sharing import resampled_kernels
from mts_lightning.nn.merge import native_build
from mts_lightning.nn.merge.native import axis_alignments, native_branch_max
from mts_lightning.nn.merge.reference import (
    MAX_RULE,
    MergeRule,
    align_and_penalise,
    reference_merge,
)
from mts_lightning.nn.merge.stock import branch_max, count_wins

FACTORS = ((0.7, 1.0), (1.428, 1.0), (1.5, 0.5), (0.5, 1.0))
SETTINGS = [  # (padding, stride); stride 1 only where the branches are fused
    ((0, 0), (1, 1)),
    ((2, 1), (1, 1)),
    ("same", (1, 1)),
    ((1, 0), (2, 1)),
]
# (backend, fuse_branches): the native merge over separate maps and over one convolution,
# the stacked merge over one convolution, the stock merge over separate maps.
BACKENDS = [
    (dispatch.NativeBackend, "never"),
    (dispatch.NativeBackend, "always"),
    (dispatch.StackedBackend, "always"),
    (dispatch.StockBackend, "never"),
]


def _inputs(dtype=torch.float64):
    x = torch.randn(2, 2, 23, 12, dtype=dtype, requires_grad=True)
    weight = torch.randn(3, 2, 5, 3, dtype=dtype, requires_grad=True)
    bias = torch.randn(3, dtype=dtype, requires_grad=True)
    return x, weight, bias


def _grads(outputs, upstream, inputs):
    return torch.autograd.grad(outputs, inputs, upstream)


@pytest.mark.slow
@pytest.mark.parametrize("penalty", [0.0, 0.3])
@pytest.mark.parametrize("align", ["interpolate", "crop"])
@pytest.mark.parametrize(
    ("backend", "fuse", "setting"),
    [
        (backend, fuse, setting)
        for backend, fuse in BACKENDS
        for setting in SETTINGS
        if fuse == "never" or setting[1] == (1, 1)
    ],
    ids=lambda value: getattr(value, "name", str(value)),
)
def test_backend_matches_the_reference(backend, fuse, setting, align, penalty):
    padding, stride = setting
    geometry = BranchGeometry.build(
        (5, 3), FACTORS, stride=stride, padding=padding, fmap_align=align,
        stretch_penalty_lambda=penalty, fuse=fuse == "always",
    )  # fmt: skip
    x, weight, bias = _inputs()
    assert backend.supports(x, geometry, fuse, MAX_RULE)
    kernels = resampled_kernels(weight, FACTORS)
    merged = backend.pooled(x, kernels, bias, geometry, fuse, False, MAX_RULE)

    fmaps = own_fmaps(x, resampled_kernels(weight, FACTORS), bias, geometry)
    pooled, winner, counts = reference_merge(fmaps, align, geometry.penalties)
    torch.testing.assert_close(merged.pooled, pooled, rtol=1e-12, atol=1e-12)
    assert torch.equal(merged.winner.long(), winner)
    mine = merged.counts if merged.counts is not None else count_wins(merged.winner, 5)
    assert mine.tolist() == counts.tolist() and sum(counts.tolist()) == pooled.numel()
    assert len(set(winner.unique().tolist())) > 2  # several branches win somewhere

    upstream = torch.randn_like(pooled)
    for ours, theirs in zip(
        _grads(merged.pooled, upstream, (x, weight, bias)),
        _grads(pooled, upstream, (x, weight, bias)),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("align", ["interpolate", "crop"])
def test_the_merge_functions_match_the_reference_on_maps(align):
    sizes = [(20, 14), (23, 14), (17, 9), (20, 11), (26, 19)]
    maps = [torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True) for size in sizes]
    penalties = [0.9, 1.0, 0.8, 1.1]
    pooled, winner, counts = reference_merge(maps, align, penalties)
    upstream = torch.randn_like(pooled)
    expected_grads = _grads(pooled, upstream, maps)

    time, freq = axis_alignments(maps, align)
    native = native_branch_max(maps, maps, time, freq, penalties)
    stock_pooled, stock_winner = branch_max(align_and_penalise(maps, align, penalties))
    stock = (stock_pooled, stock_winner, count_wins(stock_winner, len(maps)))
    for ours in (native, stock):
        torch.testing.assert_close(ours[0], pooled, rtol=1e-12, atol=1e-12)
        assert torch.equal(ours[1].long(), winner) and ours[2].tolist() == counts.tolist()
        for mine, theirs in zip(_grads(ours[0], upstream, maps), expected_grads, strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_ties_go_to_the_lowest_branch_in_the_reference():
    base = torch.tensor([[[[1.0, 2.0, 3.0]]]], requires_grad=True)
    higher = torch.tensor([[[[1.0, 5.0, 3.0]]]], requires_grad=True)
    pooled, winner, counts = reference_merge([base, higher, base.detach() * 1], "crop", [1.0, 1.0])
    assert winner.flatten().tolist() == [0, 1, 0] and counts.tolist() == [2, 1, 0]
    (grad_base, grad_higher) = torch.autograd.grad(pooled.sum(), (base, higher))
    assert grad_base.flatten().tolist() == [1.0, 0.0, 1.0]
    assert grad_higher.flatten().tolist() == [0.0, 1.0, 0.0]


def test_the_choice_follows_what_each_backend_supports(monkeypatch):
    separate = BranchGeometry.build((5, 3), FACTORS)
    fused = BranchGeometry.build((5, 3), FACTORS, fuse=True)
    x = torch.randn(1, 1, 20, 10)
    assert native_build.library() is not None
    assert dispatch.choose_backend(x, separate, "never") is dispatch.NativeBackend
    assert dispatch.choose_backend(x.half(), separate, "never") is dispatch.StockBackend
    assert dispatch.choose_backend(x.half(), fused, "auto") is dispatch.StackedBackend
    monkeypatch.setenv(native_build.SWITCH_ENV, "0")
    assert dispatch.choose_backend(x, fused, "auto") is dispatch.StackedBackend
    assert dispatch.choose_backend(x, separate, "auto") is dispatch.StockBackend


@pytest.mark.parametrize("align", ["interpolate", "crop"])
def test_the_stock_maximum_with_scale_dropout_matches_the_reference(align):
    geometry = BranchGeometry.build((5, 3), FACTORS, fmap_align=align, stretch_penalty_lambda=0.2)
    x, weight, bias = _inputs()
    keep = torch.tensor([[True, False, True, False, True], [True, True, False, False, False]])
    rule = MergeRule("max", keep=keep)
    assert dispatch.choose_backend(x, geometry, "never", rule) is dispatch.StockBackend
    kernels = resampled_kernels(weight, FACTORS)
    merged = dispatch.StockBackend.pooled(x, kernels, bias, geometry, "never", False, rule)
    fmaps = own_fmaps(x, resampled_kernels(weight, FACTORS), bias, geometry)
    pooled, winner, counts = reference_merge(fmaps, align, geometry.penalties, rule)
    torch.testing.assert_close(merged.pooled, pooled, rtol=1e-12, atol=1e-12)
    assert torch.equal(merged.winner.long(), winner)
    # Each sample's winners are among the branches it keeps.
    for sample in range(2):
        assert set(winner[sample].unique().tolist()) <= set(keep[sample].nonzero()[:, 0].tolist())
    assert count_wins(merged.winner, 5).tolist() == counts.tolist()
    upstream = torch.randn_like(pooled)
    for ours, theirs in zip(
        _grads(merged.pooled, upstream, (x, weight, bias)),
        _grads(pooled, upstream, (x, weight, bias)),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
