"""Behaviour of the MTS layers users rely on: drop-in use, averaging, usage, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from mts_lightning.callbacks.kernel_averaging import averaging_layers
from mts_lightning.nn import MultiscaleConv1d, MultiscaleConv2d, convert_to_mts, dispatch

# --------------------------------------------------------------------- drop-in for nn.Conv2d


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=(10, 5)),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(4, 2), padding="same", padding_mode="reflect"),
        dict(kernel_size=3, padding="valid", dilation=2, groups=2),
    ],
)
def test_without_factors_equals_conv2d(kwargs):
    conv = nn.Conv2d(2, 4, **kwargs)
    layer = MultiscaleConv2d(2, 4, **kwargs, scale_factors=())
    layer.load_state_dict(conv.state_dict())
    x = torch.randn(3, 2, 20, 16)
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=0)
    torch.testing.assert_close(layer(x[0]), conv(x[0]), rtol=0, atol=0)


@pytest.mark.parametrize("sharing", ["average", "autograd"])
def test_state_dict_is_conv2d_compatible(sharing):
    conv = nn.Conv2d(1, 4, (10, 5))
    layer = MultiscaleConv2d(1, 4, (10, 5), kernel_sharing=sharing)
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        k: v.shape for k, v in conv.state_dict().items()
    }
    layer.load_state_dict(conv.state_dict())
    torch.testing.assert_close(layer.weight, conv.weight)
    conv.load_state_dict(layer.state_dict())

    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    restored = MultiscaleConv2d(1, 4, (10, 5), kernel_sharing=sharing)
    restored.load_state_dict(torch.load(buffer))
    x = torch.randn(2, 1, 30, 12)
    torch.testing.assert_close(restored(x), layer(x))


def test_autograd_mode_has_exactly_conv2d_parameters():
    layer = MultiscaleConv2d(1, 4, (10, 5), kernel_sharing="autograd")
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    averaging = MultiscaleConv2d(1, 4, (10, 5))
    assert len(list(averaging.parameters())) == 4


def test_repr_shows_scales_and_options():
    text = repr(MultiscaleConv2d(1, 4, 3, scale_factors=[0.5, (2, 1.5)], fmap_align="crop"))
    assert "scale_factors=[0.5, (2, 1.5)]" in text
    assert "fmap_align='crop'" in text


def _tiny_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, (5, 3), padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding="same", padding_mode="reflect"), nn.ReLU()),
        nn.Conv2d(4, 2, 3, stride=2, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def test_convert_without_factors_keeps_output():
    model = _tiny_net().eval()
    x = torch.randn(2, 1, 24, 16)
    before = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    convert_to_mts(model, scale_factors=())
    assert sum(isinstance(m, MultiscaleConv2d) for m in model.modules()) == 3
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_convert_with_factors_keeps_weights_and_filters_names():
    model = _tiny_net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    convert_to_mts(model, scale_factors=[0.5, 2.0], exclude=["3"], kernel_sharing="autograd")
    assert isinstance(model[0], MultiscaleConv2d)
    assert isinstance(model[2][0], MultiscaleConv2d)
    assert type(model[3]) is nn.Conv2d
    assert model[0].scale_factors == ((0.5, 1.0), (2.0, 1.0))
    assert model[2][0].kernel_sharing == "autograd" and model[2][0].padding_mode == "reflect"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert model(torch.randn(2, 1, 24, 16)).shape == (2, 2)

    only_first = convert_to_mts(_tiny_net(), include="0")
    assert [type(m).__name__ for m in only_first.modules() if isinstance(m, nn.Conv2d)] == [
        "MultiscaleConv2d",
        "Conv2d",
        "Conv2d",
    ]
    with pytest.raises(ValueError, match="include pattern 'conv9'"):
        convert_to_mts(_tiny_net(), include=["conv9"])


# --------------------------------------------------------------------- kernel averaging


def test_update_kernels_by_hand():
    layer = MultiscaleConv2d(1, 1, (2, 1), scale_factors=[2.0])
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 3.0]).view(1, 1, 2, 1))
        layer.bias.fill_(0.25)
    layer(torch.randn(1, 1, 6, 1)).sum().backward()
    # Bilinear, align_corners=False, factor 2: source positions -0.25, 0.25, 0.75, 1.25.
    torch.testing.assert_close(
        layer.branch_weights[0].detach().flatten(), torch.tensor([1.0, 1.5, 2.5, 3.0])
    )
    with torch.no_grad():  # what an optimizer step could have made of the branch kernel
        layer.branch_weights[0].copy_(torch.tensor([2.0, 2.0, 4.0, 4.0]).view(1, 1, 4, 1))
    layer.update_kernels()
    # Back to 2 taps by size: source positions 0.5 and 2.5 -> [2, 4]; mean with [1, 3].
    torch.testing.assert_close(layer.weight.detach().flatten(), torch.tensor([1.5, 3.5]))
    torch.testing.assert_close(layer.bias.detach(), torch.tensor([0.25]))
    layer.update_kernels()  # no training forward since: nothing new to fold in
    torch.testing.assert_close(layer.weight.detach().flatten(), torch.tensor([1.5, 3.5]))


def test_average_updates_without_a_step_changes_nothing():
    averaging = MultiscaleConv2d(2, 3, (5, 3), kernel_sharing="average")
    updates = MultiscaleConv2d(2, 3, (5, 3), kernel_sharing="average_updates")
    updates.load_state_dict(averaging.state_dict())
    before = updates.weight.detach().clone()
    x = torch.randn(2, 2, 20, 10)
    for layer in (averaging, updates):
        layer(x).sum().backward()
        layer.update_kernels()
    torch.testing.assert_close(updates.weight.detach(), before, rtol=0, atol=0)
    # the published scheme smooths the kernel through the resample round trip
    assert not torch.allclose(averaging.weight.detach(), before)


@pytest.mark.parametrize("align", ["interpolate", "crop"])
def test_average_updates_computes_what_average_computes(align):
    averaging = MultiscaleConv2d(1, 3, (5, 3), fmap_align=align, dtype=torch.float64)
    updates = MultiscaleConv2d(
        1, 3, (5, 3), fmap_align=align, kernel_sharing="average_updates", dtype=torch.float64
    )
    updates.load_state_dict(averaging.state_dict())
    x = torch.randn(2, 1, 20, 10, dtype=torch.float64)
    out = updates(x)
    torch.testing.assert_close(out, averaging(x))
    out.sum().backward()
    averaging(x).sum().backward()
    for mine, theirs in zip(updates.parameters(), averaging.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad)


def test_average_updates_after_an_sgd_step_by_hand():
    layer = MultiscaleConv2d(
        1, 2, (4, 3), scale_factors=[0.5, 1.5], kernel_sharing="average_updates",
        dtype=torch.float64,
    )  # fmt: skip
    before = layer.weight.detach().clone()
    layer(torch.randn(2, 1, 16, 8, dtype=torch.float64)).square().sum().backward()
    grads = [layer.weight.grad] + [w.grad for w in layer.branch_weights]
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    layer.update_kernels()
    # before - lr * mean(g_base, each branch gradient resized back to 4x3)
    resized = [torch.nn.functional.interpolate(g, size=(4, 3), mode="bilinear") for g in grads]
    expected = before - 0.1 * torch.stack(resized).mean(dim=0)
    torch.testing.assert_close(layer.weight.detach(), expected)
    assert [type(m).__name__ for m in averaging_layers(nn.Sequential(layer))] == [
        "MultiscaleConv2d"
    ]


def test_update_kernels_skips_branches_that_did_not_run():
    layer = MultiscaleConv2d(1, 2, 3, training_mode="only_eval")
    before = layer.weight.detach().clone()
    layer.train()
    layer(torch.randn(1, 1, 8, 8)).sum().backward()
    layer.update_kernels()
    torch.testing.assert_close(layer.weight.detach(), before)


def test_autograd_mode_gradcheck_and_update_is_noop():
    layer = MultiscaleConv2d(
        1, 2, (3, 2), scale_factors=[0.7, (1.5, 1.5)], kernel_sharing="autograd",
        dtype=torch.float64,
    )  # fmt: skip
    x = torch.randn(1, 1, 8, 5, dtype=torch.float64, requires_grad=True)

    def apply(inputs, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (inputs,))

    weight = layer.weight.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(apply, (x, weight, bias))

    layer(x).sum().backward()
    before = layer.weight.detach().clone()
    layer.update_kernels()
    torch.testing.assert_close(layer.weight.detach(), before, rtol=0, atol=0)


def test_autograd_mode_gradient_reaches_base_from_every_branch():
    layer = MultiscaleConv2d(1, 1, (4, 1), scale_factors=[0.5, 2.0], kernel_sharing="autograd")
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    for sign, winner in ((1.0, 2), (-1.0, 1)):
        layer.zero_grad()
        x = torch.full((1, 1, 16, 1), sign)
        layer(x).sum().backward()
        assert layer.last_stretch_usage_counts.argmax().item() == winner
        assert layer.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------- stretch usage


def _usage_layer(**kwargs):
    layer = MultiscaleConv2d(1, 1, (4, 1), scale_factors=[0.5, 2.0], **kwargs)
    with torch.no_grad():
        layer.weight.fill_(1.0)  # every branch kernel is all ones: 4, 2 and 8 taps
        layer.bias.zero_()
    return layer


def test_usage_fractions_on_inputs_with_known_winner():
    layer = _usage_layer()
    layer(torch.full((1, 1, 20, 3), 2.0))  # sums 8, 4, 16: the x2 branch wins
    np.testing.assert_allclose(layer.get_stretch_percs(), [0.0, 0.0, 1.0])
    layer(torch.full((1, 1, 20, 3), -2.0))  # sums -8, -4, -16: the x0.5 branch wins
    np.testing.assert_allclose(layer.get_stretch_percs(), [0.0, 1.0, 0.0])
    layer(torch.zeros(1, 1, 20, 3))  # all tie: the base wins, counted once
    np.testing.assert_allclose(layer.get_stretch_percs(), [1.0, 0.0, 0.0])


def test_usage_fractions_with_crop_alignment():
    # Base map: 17 frames. The x2 branch (8 taps) gives 13, zero-padded by 2 on each side;
    # the x0.5 branch (2 taps) gives 19, centre-cropped.
    layer = _usage_layer(fmap_align="crop")
    layer(torch.full((1, 1, 20, 3), 2.0))  # 8 / 4 / 16 inside, the base wins the padding
    np.testing.assert_allclose(layer.get_stretch_percs(), [4 / 17, 0.0, 13 / 17])
    layer(torch.full((1, 1, 20, 3), -2.0))  # -8 / -4 / -16 inside, the padding's 0 wins
    np.testing.assert_allclose(layer.get_stretch_percs(), [0.0, 13 / 17, 4 / 17])


def test_usage_accumulates_sums_to_one_and_resets():
    layer = _usage_layer()
    x = torch.cat([torch.full((1, 1, 20, 3), 1.0), torch.full((1, 1, 20, 3), -1.0)])
    layer(x)
    np.testing.assert_allclose(layer.get_stretch_percs(), [0.0, 0.5, 0.5])
    per_forward = layer.last_stretch_usage_counts.clone()
    layer(x)
    assert torch.equal(layer.stretch_usage_counts, 2 * per_forward)
    layer(torch.randn(4, 1, 30, 5))
    assert layer.get_stretch_percs().sum() == pytest.approx(1.0)
    assert layer.last_stretch_usage_counts.sum() == 4 * 27 * 5
    layer.reset_stretch_usage()
    assert layer.stretch_usage_counts.sum() == 0


def test_get_stretch_percs_before_any_branch_forward():
    layer = MultiscaleConv2d(1, 2, 3)
    with pytest.raises(RuntimeError, match="no forward has computed the branches"):
        layer.get_stretch_percs()


def test_usage_not_counted_when_disabled_or_branches_skipped():
    layer = MultiscaleConv2d(1, 2, 3, track_stretch_usage=False)
    layer(torch.randn(1, 1, 10, 10))
    assert layer.stretch_usage_counts.sum() == 0
    only_train = MultiscaleConv2d(1, 2, 3, training_mode="only_train")
    only_train(torch.randn(1, 1, 10, 10), False)  # the original's call style
    assert only_train.stretch_usage_counts.sum() == 0
    only_train(torch.randn(1, 1, 10, 10), True)
    assert only_train.stretch_usage_counts.sum() == 2 * 8 * 8


def test_interleave_index_map_holds_log_scale_of_winner():
    layer = _usage_layer(output_type="interleave_chdim")
    out = layer(torch.full((1, 1, 20, 3), 2.0))
    assert out.shape == (1, 2, 17, 3)
    torch.testing.assert_close(out[:, 1], torch.full((1, 17, 3), float(np.log(2.0))))
    torch.testing.assert_close(out[:, 0], torch.full((1, 17, 3), 16.0))


def test_forward_never_synchronises_with_host(monkeypatch):
    layer = MultiscaleConv2d(2, 3, 3, scale_factors=[0.5, 1.5, (2.0, 0.5)])
    x = torch.randn(2, 2, 16, 12)

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation in forward")

    for name in ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    for output_type in ("pooled_map", "concat_fmaps", "interleave_chdim"):
        layer.output_type = output_type
        layer(x).sum().backward()
    monkeypatch.undo()
    assert layer.stretch_usage_counts.sum().item() == 3 * 2 * 3 * 14 * 10


@pytest.mark.slow
@pytest.mark.parametrize("sharing", ["autograd", "average"])
def test_runs_under_torch_compile_fullgraph(sharing):
    torch._dynamo.reset()
    layer = MultiscaleConv2d(2, 3, (5, 3), kernel_sharing=sharing)
    eager = MultiscaleConv2d(2, 3, (5, 3), kernel_sharing=sharing)
    eager.load_state_dict(layer.state_dict())
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 2, 20, 10)
    out = compiled(x)
    out.sum().backward()
    expected = eager(x)
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(layer.weight.grad, eager.weight.grad)
    assert torch.equal(layer.stretch_usage_counts, eager.stretch_usage_counts)


# --------------------------------------------------------------------- dtypes, modes, 1-D


@pytest.mark.parametrize("fuse", ["never", "always"])
@pytest.mark.parametrize("align", ["interpolate", "crop"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_on_cpu(dtype, align, fuse):
    layer = MultiscaleConv2d(1, 4, (5, 3), fmap_align=align, fuse_branches=fuse)
    x = torch.randn(2, 1, 24, 12)
    expected = layer(x)
    with torch.autocast("cpu", dtype=dtype):
        out = layer(x)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    "options",
    [
        dict(fuse_branches="always"),
        dict(fuse_branches="always", fmap_align="crop", stretch_penalty_lambda=0.1),
        dict(fuse_branches="always", training_mode="only_gradients"),
        dict(fuse_branches="always", output_type="interleave_chdim", kernel_sharing="autograd"),
        dict(fuse_branches="never", stride=(2, 1)),
        dict(fuse_branches="never", fmap_align="crop", training_mode="only_gradients"),
    ],
)
def test_batch_in_chunks_equals_one_pass(options, monkeypatch, kernel_calls):
    def run(chunk_above_bytes):
        monkeypatch.setattr(dispatch, "CHUNK_ABOVE_BYTES", chunk_above_bytes)
        monkeypatch.setattr(dispatch, "CHUNK_BYTES", 1)
        torch.manual_seed(0)
        layer = MultiscaleConv2d(2, 3, (5, 3), padding=1, dtype=torch.float64, **options)
        x = torch.randn(5, 2, 30, 12, dtype=torch.float64, requires_grad=True)
        kernel_calls.clear()
        out = layer(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        return len(kernel_calls), out, x.grad, layer.weight.grad, layer.stretch_usage_counts

    one_pass, in_chunks = run(2**30), run(0)  # the whole batch, then one sample per chunk
    assert (one_pass[0], in_chunks[0]) == (1, 5)
    for whole, chunked in zip(one_pass[1:], in_chunks[1:], strict=True):
        torch.testing.assert_close(chunked, whole)


@pytest.mark.parametrize(
    ("args", "kwargs", "shape", "samples"),
    [
        ((1, 10, (10, 5)), {}, (16, 1, 512, 128), 1),  # 40 MB maps, 13 MB a sample
        ((1, 10, (10, 5)), dict(fuse_branches="always"), (16, 1, 512, 128), 1),  # 200 MB
        ((2, 16, (10, 5)), {}, (16, 2, 512, 128), 1),  # 64 MB maps
        ((1, 10, (10, 5)), dict(stride=(2, 1)), (16, 1, 512, 128), 16),  # 20 MB maps
        ((16, 32, (5, 5)), {}, (16, 16, 128, 64), 16),  # 15 MB maps
        ((1, 10, (10, 5)), {}, (0, 1, 512, 128), 1),  # an empty batch is one chunk
    ],
)
def test_only_batches_with_large_maps_run_in_chunks(args, kwargs, shape, samples):
    layer = MultiscaleConv2d(*args, scale_factors=[0.5, 0.7, 1.428, 2.0], **kwargs)
    fused = layer.fuse_branches == "always"
    chunk = dispatch.chunk_samples(torch.empty(shape), layer.geometry, layer.out_channels, fused)
    assert chunk == samples


def test_memory_format_follows_the_input():
    layer = MultiscaleConv2d(16, 8, 3, padding=1)  # wide enough for the channels-last path
    conv = nn.Conv2d(16, 8, 3, padding=1)
    x = torch.randn(2, 16, 12, 10)
    out = layer(x)
    assert out.is_contiguous() and out.shape == conv(x).shape
    out_cl = layer(x.contiguous(memory_format=torch.channels_last))
    assert out_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_cl, out)
    assert layer(x).view(2, -1).shape == (2, 8 * 12 * 10)


def test_float64_layer():
    layer = MultiscaleConv2d(1, 2, 3, dtype=torch.float64)
    assert layer(torch.randn(1, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_only_gradients_forward_is_base_and_backward_is_pooled():
    layer = MultiscaleConv2d(1, 2, (5, 3), training_mode="only_gradient", kernel_sharing="autograd")
    base = MultiscaleConv2d(1, 2, (5, 3), scale_factors=())
    pooled = MultiscaleConv2d(1, 2, (5, 3), kernel_sharing="autograd")
    base.load_state_dict(layer.state_dict())
    pooled.load_state_dict(layer.state_dict())
    x = torch.randn(2, 1, 20, 10)
    out = layer(x)
    torch.testing.assert_close(out, base(x))
    out.sum().backward()
    pooled(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, pooled.weight.grad)


def test_average_mode_allows_two_forwards_before_backward():
    layer = MultiscaleConv2d(1, 2, 3)
    x1 = torch.randn(1, 1, 10, 10, requires_grad=True)
    x2 = torch.randn(1, 1, 10, 10, requires_grad=True)
    (layer(x1).sum() + layer(x2).sum()).backward()
    assert x1.grad is not None and layer.branch_weights[0].grad is not None


def test_conv1d_matches_conv2d_on_a_frequency_axis_of_one():
    layer1d = MultiscaleConv1d(3, 4, 5, padding=2, scale_factors=[0.5, 1.6], dtype=torch.float64)
    layer2d = MultiscaleConv2d(
        3, 4, (5, 1), padding=(2, 0), scale_factors=[0.5, 1.6], dtype=torch.float64
    )
    with torch.no_grad():
        layer2d.weight.copy_(layer1d.weight.unsqueeze(-1))
        layer2d.bias.copy_(layer1d.bias)
    x = torch.randn(2, 3, 30, dtype=torch.float64)
    out1d = layer1d(x)
    torch.testing.assert_close(out1d, layer2d(x.unsqueeze(-1)).squeeze(-1))
    out1d.sum().backward()
    layer1d.update_kernels()
    assert layer1d.get_stretch_percs().sum() == pytest.approx(1.0)
    assert layer1d(x[0]).shape == (4, 30)

    conv = nn.Conv1d(3, 4, 5, padding="same", padding_mode="circular")
    plain = MultiscaleConv1d(3, 4, 5, padding="same", padding_mode="circular", scale_factors=[])
    plain.load_state_dict(conv.state_dict())
    torch.testing.assert_close(plain(x.float()), conv(x.float()))


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(scale_factors=[0.0]), "finite number > 0, got 0.0"),
        (dict(scale_factors=[float("nan")]), "finite number > 0"),
        (dict(scale_factors=[(1.5, -1.0)]), "finite number > 0, got -1.0"),
        (dict(scale_factors=["fast"]), "a number or an \\(s_time, s_freq\\) pair, got 'fast'"),
        (dict(scale_factors=[(1, 2, 3)]), "each entry must be"),
        (dict(scale_factors=0.7), "must be a list"),
        (dict(scale_factors=[0.05]), "shrinks the kernel of size 10x5 to 0x5"),
        (dict(output_type="pooled"), "output_type must be one of"),
        (dict(training_mode="eval"), "training_mode must be one of"),
        (dict(kernel_sharing="mean"), "kernel_sharing must be one of"),
        (dict(fmap_align="pad"), "fmap_align must be one of"),
        (dict(training_mode="only_eval", output_type="concat_fmaps"), "needs output_type"),
        (dict(stretch_penalty_lambda=float("inf")), "stretch_penalty_lambda must be"),
        (dict(stretch_penalty_lambda=0.1, stretch_penality_lambda=0.2), "alias"),
        (dict(fuse_branches="yes"), "fuse_branches must be one of"),
        (dict(fuse_branches="always", stride=2), "got stride != 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiscaleConv2d(1, 4, (10, 5), **kwargs)


def test_penalty_alias_accepted():
    assert MultiscaleConv2d(1, 2, 3, stretch_penality_lambda=0.3).stretch_penalty_lambda == 0.3


def test_conv1d_refuses_pairs():
    with pytest.raises(ValueError, match="each entry must be a number"):
        MultiscaleConv1d(1, 2, 3, scale_factors=[(0.5, 1.0)])


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            (2, 1, 30, 10, 1),
            "expects a 4-D input \\(batch, 1, time, frequency\\) \\(or 3-D without the batch axis\\), got shape \\(2, 1, 30, 10, 1\\)",
        ),
        ((2, 3, 30, 10), "expects 1 input channels.*got shape \\(2, 3, 30, 10\\) with 3 channels"),
        ((2, 1, 12, 10), "branch 2 \\(scale \\(1.428, 1.0\\)\\) has kernel 14x5 and needs 14 time"),
        ((2, 1, 30, 4), "branch 0 .* has kernel 10x5 and needs 5 frequency steps"),
    ],
)
def test_bad_inputs(shape, message):
    layer = MultiscaleConv2d(1, 4, (10, 5))
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(*shape))
