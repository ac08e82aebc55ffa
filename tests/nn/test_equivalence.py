"""The fast MTS layer against the plain reference, in value and gradient (float64, 1e-6).

Every test runs twice: with the native merge kernel (the CPU default) and with the stock
PyTorch operators it falls back to (other devices, autocast, ``torch.compile``, or no C
compiler). With the native kernel, the layer runs one sample per chunk, so the chunked
forward and backward are held to the reference too (the rest of the suite runs it in one
chunk).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from mts_lightning.nn import MultiscaleConv2d, dispatch
from mts_lightning.nn.merge import native_build
from tests.helpers.reference_mts import ReferenceMultiscaleConv2d


@pytest.fixture(autouse=True, params=["native", "stock"])
def merge_backend(request, monkeypatch, kernel_calls):
    """Run the test with the native merge kernel, then with the stock operators."""
    if request.param == "stock":
        monkeypatch.setenv(native_build.SWITCH_ENV, "0")
    else:
        assert native_build.library() is not None, "the native merge kernel did not build"
        monkeypatch.setattr(dispatch, "CHUNK_ABOVE_BYTES", 0)
        monkeypatch.setattr(dispatch, "CHUNK_BYTES", 1)
    yield request.param
    if request.param == "stock":
        assert not kernel_calls, "the stock backend ran the kernel"


TOL = dict(rtol=1e-6, atol=1e-6)

CONV_SETTINGS = [
    # (in, out, kernel, stride, padding, dilation, groups, padding_mode)
    (1, 3, (5, 3), 1, 0, 1, 1, "zeros"),
    (2, 4, (4, 2), 1, 0, 1, 1, "zeros"),  # even kernel sizes
    (2, 4, (5, 3), (2, 1), (2, 1), 1, 1, "zeros"),
    (2, 4, (3, 3), 1, "same", 1, 1, "zeros"),
    (2, 4, (4, 3), 1, "same", 1, 1, "reflect"),
    (2, 2, (3, 2), 1, "valid", (2, 1), 1, "zeros"),
    (4, 6, (3, 3), 2, 1, 1, 2, "zeros"),
    (2, 4, (5, 3), 1, (2, 1), 1, 1, "replicate"),
    (2, 4, (5, 3), 1, (2, 1), 1, 1, "circular"),
    (8, 4, (3, 3), 1, 1, 1, 1, "zeros"),  # wide input: the channels-last path
]

FACTOR_SETS = [
    (),
    ((0.7, 1.0),),
    (0.5, 2.0),
    ((0.7, 1.0), (1.428, 1.0), (1.5, 0.5), (1.2, 1.7)),  # factors that change frequency too
    ((0.5, 1.0), (0.7, 1.0), (1.428, 1.0), (2.0, 1.0)),
]

MODES = [
    # (output_type, training_mode, training)
    ("pooled_map", "train_and_eval", True),
    ("pooled_map", "train_and_eval", False),
    ("concat_fmaps", "train_and_eval", True),
    ("interleave_chdim", "train_and_eval", True),
    ("pooled_map", "only_eval", True),
    ("pooled_map", "only_eval", False),
    ("pooled_map", "only_train", True),
    ("pooled_map", "only_train", False),
    ("pooled_map", "only_gradients", True),
]


def fusable(conv_setting, factors):
    _, _, _, stride, _, dilation, groups, padding_mode = conv_setting
    return stride == 1 and dilation == 1 and groups == 1 and padding_mode == "zeros" and factors


def make_pair(
    conv_setting, factors, output_type, training_mode, sharing, align, penalty=0.0, fuse="never"
):
    in_ch, out_ch, kernel, stride, padding, dilation, groups, padding_mode = conv_setting
    args = (in_ch, out_ch, kernel, stride, padding, dilation, groups, True, padding_mode)
    options = dict(
        scale_factors=factors,
        output_type=output_type,
        training_mode=training_mode,
        kernel_sharing=sharing,
        fmap_align=align,
        stretch_penalty_lambda=penalty,
    )
    layer = MultiscaleConv2d(*args, dtype=torch.float64, fuse_branches=fuse, **options)
    reference = ReferenceMultiscaleConv2d(*args, **options).double()
    with torch.no_grad():
        reference.conv.weight.copy_(layer.weight)
        reference.conv.bias.copy_(layer.bias)
    return layer, reference


def run_and_compare(layer, reference, x, training):
    x_layer = x.clone().requires_grad_(True)
    x_ref = x.clone().requires_grad_(True)
    out = layer(x_layer, training)
    expected = reference(x_ref, training)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, **TOL)

    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(x_layer.grad, x_ref.grad, **TOL)
    torch.testing.assert_close(layer.weight.grad, reference.conv.weight.grad, **TOL)
    torch.testing.assert_close(layer.bias.grad, reference.conv.bias.grad, **TOL)
    if layer.kernel_sharing == "average" and reference.last_counts is not None:
        for mine, theirs in zip(layer.branch_weights, reference.branch_weights(), strict=True):
            torch.testing.assert_close(mine, theirs, **TOL)
            torch.testing.assert_close(mine.grad, theirs.grad, **TOL)
    if reference.last_counts is not None:
        assert layer.last_stretch_usage_counts.tolist() == reference.last_counts


GRID = [
    (conv_index, factor_index, fuse)
    for conv_index, factor_index in itertools.product(
        range(len(CONV_SETTINGS)), range(len(FACTOR_SETS))
    )
    for fuse in ("never", "always")
    if fuse == "never" or fusable(CONV_SETTINGS[conv_index], FACTOR_SETS[factor_index])
]


@pytest.mark.slow
@pytest.mark.parametrize("sharing", ["average", "autograd"])
@pytest.mark.parametrize("align", ["interpolate", "crop"])
@pytest.mark.parametrize(("conv_index", "factor_index", "fuse"), GRID)
def test_matches_reference_over_conv_settings(conv_index, factor_index, fuse, align, sharing):
    setting = CONV_SETTINGS[conv_index]
    layer, reference = make_pair(
        setting,
        FACTOR_SETS[factor_index],
        "pooled_map",
        "train_and_eval",
        sharing,
        align,
        fuse=fuse,
    )
    x = torch.randn(2, setting[0], 19, 13, dtype=torch.float64)
    run_and_compare(layer, reference, x, training=True)


@pytest.mark.slow
@pytest.mark.parametrize("conv_index", [2, 3])  # separate convolutions / fused
@pytest.mark.parametrize("sharing", ["average", "autograd"])
@pytest.mark.parametrize("align", ["interpolate", "crop"])
@pytest.mark.parametrize(("output_type", "training_mode", "training"), MODES)
@pytest.mark.parametrize("factor_index", [0, 2, 3])
def test_matches_reference_over_modes(
    output_type, training_mode, training, align, sharing, factor_index, conv_index
):
    setting = CONV_SETTINGS[conv_index]
    fuse = "always" if fusable(setting, FACTOR_SETS[factor_index]) else "never"
    layer, reference = make_pair(
        setting, FACTOR_SETS[factor_index], output_type, training_mode, sharing, align, fuse=fuse
    )
    x = torch.randn(2, setting[0], 17, 11, dtype=torch.float64)
    run_and_compare(layer, reference, x, training)
    assert (layer.geometry.fused is not None) == (fuse == "always")


@pytest.mark.parametrize("penalty", [0.1, 0.5])
@pytest.mark.parametrize("output_type", ["pooled_map", "concat_fmaps"])
def test_stretch_penalty_matches_reference(penalty, output_type):
    layer, reference = make_pair(
        CONV_SETTINGS[0], FACTOR_SETS[3], output_type, "train_and_eval", "autograd", "interpolate",
        penalty, fuse="always",
    )  # fmt: skip
    x = torch.randn(3, 1, 21, 12, dtype=torch.float64)
    run_and_compare(layer, reference, x, training=True)


@pytest.mark.slow
@pytest.mark.parametrize("sharing", ["average", "autograd"])
def test_sgd_step_then_update_kernels_matches_reference(sharing):
    layer, reference = make_pair(
        CONV_SETTINGS[1], FACTOR_SETS[4], "pooled_map", "train_and_eval", sharing, "interpolate"
    )
    opt_layer = torch.optim.SGD(layer.parameters(), lr=0.1)
    opt_ref = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(3):
        x = torch.randn(2, 2, 24, 10, dtype=torch.float64)
        target = torch.randn_like(reference(x))
        for module, opt in ((layer, opt_layer), (reference, opt_ref)):
            opt.zero_grad()
            ((module(x) - target) ** 2).mean().backward()
            opt.step()
            module.update_kernels()
        torch.testing.assert_close(layer.weight, reference.conv.weight, **TOL)
        torch.testing.assert_close(layer.bias, reference.conv.bias, **TOL)
