"""The native merge kernel on its own: alignment tables, merge rules, layouts, build and fallback."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from mts_lightning.nn import MultiscaleConv2d
from mts_lightning.nn.merge import native_build
from mts_lightning.nn.merge.native import axis_alignments, axis_table, native_branch_max
from mts_lightning.nn.merge.reference import align_fmap
from mts_lightning.nn.merge.stock import branch_max, count_wins

SIZES = [(20, 14), (23, 14), (17, 9), (20, 11), (26, 19)]  # (time, freq) of a branch map
TARGET = (20, 14)


def stock_merge(maps, align, penalties):
    aligned = [maps[0]] + [
        align_fmap(m, maps[0].shape[-2:], align) * p
        for m, p in zip(maps[1:], penalties, strict=True)
    ]
    pooled, winner = branch_max(aligned)
    return pooled, winner, count_wins(winner, len(maps))


@pytest.mark.parametrize("align", ["interpolate", "crop"])
@pytest.mark.parametrize("size", SIZES)
def test_alignment_reproduces_align_fmap_in_value_and_gradient(align, size):
    # A base far below every branch value makes the output the aligned branch itself.
    base = torch.full((2, 3, *TARGET), -1e30, dtype=torch.float64)
    branch = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    time, freq = axis_alignments([base, branch], align)
    pooled, winner, counts = native_branch_max([base, branch], [base, branch], time, freq, [1.0])
    expected = align_fmap(branch, TARGET, align)  # the crop rule's zero padding wins too
    torch.testing.assert_close(pooled, expected, rtol=1e-12, atol=1e-12)
    assert bool((winner == 1).all()) and counts.tolist() == [0, winner.numel()]
    grad = torch.randn_like(pooled)
    (ours,) = torch.autograd.grad(pooled, branch, grad)
    (theirs,) = torch.autograd.grad(expected, branch, grad)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_bilinear_table_is_interpolates_rule():
    for own, target in [(7, 5), (5, 7), (506, 503), (499, 503), (3, 1), (1, 4)]:
        index, weight, identity = axis_table(("interpolate", own, target))
        row = torch.randn(own, dtype=torch.float64)
        ours = weight[:, 0] * row[index[:, 0]] + weight[:, 1] * row[index[:, 1]]
        theirs = F.interpolate(row.view(1, 1, -1), size=target, mode="linear")
        torch.testing.assert_close(ours, theirs.view(-1))
        assert identity == (own == target)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("align", ["interpolate", "crop"])
def test_matches_the_stock_merge_with_penalties(dtype, align):
    maps = [torch.randn(2, 4, *size, dtype=dtype, requires_grad=True) for size in SIZES]
    penalties = [0.9, 1.0, 0.8, 1.1]
    time, freq = axis_alignments(maps, align)
    pooled, winner, counts = native_branch_max(maps, maps, time, freq, penalties)
    expected, expected_winner, expected_counts = stock_merge(maps, align, penalties)
    torch.testing.assert_close(pooled, expected)
    assert torch.equal(winner, expected_winner) and torch.equal(counts, expected_counts)
    grad = torch.randn_like(pooled)
    ours = torch.autograd.grad(pooled, maps, grad)
    theirs = torch.autograd.grad(expected, maps, grad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_gradcheck():
    maps = [torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True) for size in SIZES]
    time, freq = axis_alignments(maps, "interpolate")

    def merged(*inputs):
        return native_branch_max(inputs, inputs, time, freq, [0.9, 1.0, 0.8, 1.1])[0]

    assert torch.autograd.gradcheck(merged, maps)


def test_ties_go_to_the_lowest_branch_and_nan_propagates():
    base = torch.tensor([[[[1.0, 2.0, 3.0, float("nan")]]]])
    same = base.clone().nan_to_num(0.0)
    higher = torch.tensor([[[[0.0, 5.0, 3.0, 1.0]]]])
    nan = torch.tensor([[[[0.0, 0.0, float("nan"), 0.0]]]])
    maps = [base, same, higher, nan]
    time, freq = axis_alignments(maps, "crop")
    pooled, winner, counts = native_branch_max(maps, maps, time, freq, [1.0] * 3)
    assert winner.flatten().tolist() == [0, 2, 0, 0]
    assert counts.tolist() == [3, 0, 1, 0]
    assert pooled[0, 0, 0, 1] == 5.0 and pooled[0, 0, 0, 2].isnan() and pooled[0, 0, 0, 3].isnan()


def test_inplace_writes_into_the_base_map():
    maps = [torch.randn(2, 3, *size) for size in SIZES[:3]]
    expected = stock_merge(maps, "interpolate", [1.0, 1.0])[0]
    time, freq = axis_alignments(maps, "interpolate")
    pooled, _, _ = native_branch_max(maps, maps, time, freq, [1.0, 1.0], inplace=True)
    assert pooled is maps[0]
    torch.testing.assert_close(maps[0], expected)


def test_channels_last_maps_give_channels_last_results():
    # Time-only alignment: each (time step) row of a channels-last map is one run.
    maps = [torch.randn(2, 5, t, 14) for t in (20, 23, 17)]
    time, freq = axis_alignments(maps, "interpolate")
    plain = native_branch_max(maps, maps, time, freq, [1.0, 0.9])
    last = [m.contiguous(memory_format=torch.channels_last).requires_grad_() for m in maps]
    pooled, winner, counts = native_branch_max(last, last, time, freq, [1.0, 0.9])
    assert pooled.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(pooled, plain[0])
    assert torch.equal(winner, plain[1]) and torch.equal(counts, plain[2])
    grads = torch.autograd.grad(pooled, last, torch.ones_like(pooled))
    assert all(g.is_contiguous(memory_format=torch.channels_last) for g in grads)


def test_channels_last_maps_resized_along_frequency_are_merged_correctly():
    maps = [torch.randn(2, 5, *size, dtype=torch.float64) for size in SIZES[:3]]
    last = [m.contiguous(memory_format=torch.channels_last).requires_grad_() for m in maps]
    time, freq = axis_alignments(maps, "interpolate")
    pooled, _, _ = native_branch_max(last, last, time, freq, [1.0, 1.0])
    expected = stock_merge(maps, "interpolate", [1.0, 1.0])[0]
    torch.testing.assert_close(pooled, expected)
    grads = torch.autograd.grad(pooled, last, torch.ones_like(pooled))
    assert [g.shape for g in grads] == [m.shape for m in maps]


def test_views_into_one_source_get_gradients_in_their_regions_only():
    fused = torch.randn(2, 3, 4, 26, 19, dtype=torch.float64, requires_grad=True)
    blocks = list(fused.unbind(1))
    sizes = [TARGET, (23, 14), (17, 19)]
    maps = [block[..., :t, :f] for block, (t, f) in zip(blocks, sizes, strict=True)]
    time, freq = axis_alignments(maps, "interpolate")
    pooled, _, _ = native_branch_max([fused], maps, time, freq, [1.0, 1.0], blocks=blocks)
    expected = stock_merge([m.detach() for m in maps], "interpolate", [1.0, 1.0])[0]
    torch.testing.assert_close(pooled, expected)
    (grad,) = torch.autograd.grad(pooled, fused, torch.ones_like(pooled))
    for index, (t, f) in enumerate(sizes):
        outside = grad[:, index].clone()
        outside[..., :t, :f] = 0
        assert not outside.any()
    assert grad.sum().item() == pytest.approx(pooled.numel())


def test_views_into_a_source_that_is_not_dense_are_refused():
    fused = torch.randn(2, 3, 4, 20, 28)[..., ::2]  # every row strided
    maps = list(fused.unbind(1))
    time, freq = axis_alignments(maps, "crop")
    with pytest.raises(ValueError, match=r"need every source dense.*got source strides"):
        native_branch_max([fused], maps, time, freq, [1.0, 1.0])


def test_more_branches_than_a_byte_counts_are_refused():
    maps = [torch.randn(1, 1, 2, 2) for _ in range(256)]
    time, freq = axis_alignments(maps, "crop")
    with pytest.raises(ValueError, match="at most 255 branch maps.*got 256"):
        native_branch_max(maps, maps, time, freq, [1.0] * 255)


def test_layer_runs_the_kernel_on_cpu_float(kernel_calls):
    for in_channels, align in [(1, "interpolate"), (1, "crop"), (16, "interpolate"), (16, "crop")]:
        layer = MultiscaleConv2d(in_channels, 4, (5, 3), fmap_align=align)
        layer(torch.randn(2, in_channels, 24, 12)).sum().backward()
    assert len(kernel_calls) == 4


# --------------------------------------------------------------------- build and fallback


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """A library state with nothing loaded, building into an empty folder."""
    monkeypatch.setenv(native_build.BUILD_DIR_ENV, str(tmp_path / "native"))
    native_build.reset()
    yield tmp_path / "native"
    native_build.reset()


def test_builds_once_into_the_build_folder_and_reuses_it(fresh_build, monkeypatch):
    assert native_build.library() is not None
    built = list(fresh_build.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    native_build.reset()
    compiled = []
    monkeypatch.setattr(native_build, "_compile", lambda *args: compiled.append(args))
    assert native_build.library() is not None and not compiled


def test_without_a_compiler_warns_once_and_falls_back(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", str(fresh_build / "no-such-compiler"))
    layer = MultiscaleConv2d(1, 3, (5, 3), fmap_align="crop")
    x = torch.randn(2, 1, 20, 10)
    with pytest.warns(RuntimeWarning, match="no-such-compiler.*MTS_LIGHTNING_NATIVE=0"):
        out = layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(layer(x), out)
    monkeypatch.setenv(native_build.SWITCH_ENV, "0")
    native_build.reset()
    torch.testing.assert_close(layer(x), out)


def test_a_failed_compilation_leaves_nothing_behind(fresh_build, monkeypatch):
    monkeypatch.setattr(
        native_build, "FLAGS", (*native_build.FLAGS, "-DMTS_NO_SUCH_FLAG", "-Werror=bogus")
    )
    with pytest.warns(RuntimeWarning, match="exited with"):
        assert native_build.library() is None
    assert not fresh_build.exists() or not list(fresh_build.iterdir())


def test_switched_off_it_builds_nothing(fresh_build, monkeypatch):
    monkeypatch.setenv(native_build.SWITCH_ENV, "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native_build.library() is None
    assert not fresh_build.exists()
