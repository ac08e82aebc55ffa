"""The inference form of the MTS layers: equivalence, state, and export (TorchScript, ONNX)."""

from __future__ import annotations

import contextlib
import itertools
import warnings

import pytest
import torch
from torch import nn

from mts_lightning.models import build_model
from mts_lightning.nn import MultiscaleConv1d, MultiscaleConv2d, freeze, multiscale_conv, unfreeze
from mts_lightning.nn.frozen import _resize_time
from mts_lightning.nn.merge import native_build
from tests.nn.test_equivalence import CONV_SETTINGS, FACTOR_SETS, fusable

TOL = dict(rtol=1e-10, atol=1e-10)
LENGTHS = (23, 30, 41)  # three time lengths through one exported graph


FROZEN_PATHS = ("native", "stock", "graph")


@contextlib.contextmanager
def frozen_path(monkeypatch, path):
    """The frozen forward run eagerly with the native merge (``"native"``), eagerly with stock
    operators (``"stock"``), or as it is recorded into a graph: trace, ONNX, compile
    (``"graph"``)."""
    with monkeypatch.context() as patch:
        if path == "native":
            assert native_build.library() is not None
        elif path == "stock":
            patch.setenv(native_build.SWITCH_ENV, "0")
        else:
            patch.setattr(multiscale_conv, "exporting", lambda: True)
        yield


def make_layer(conv_setting, factors, fuse="never", **options):
    in_ch, out_ch, kernel, stride, padding, dilation, groups, padding_mode = conv_setting
    return MultiscaleConv2d(
        in_ch, out_ch, kernel, stride, padding, dilation, groups, True, padding_mode,
        dtype=torch.float64, scale_factors=factors, fuse_branches=fuse, **options,
    ).eval()  # fmt: skip


def assert_frozen_matches(layer, x, monkeypatch):
    """``layer`` gives the same output on ``x`` frozen, on every path, as in its training
    form in evaluation."""
    with torch.no_grad():
        expected = layer(x)
    assert layer.freeze() is layer and layer.frozen and not layer.training
    for path in FROZEN_PATHS:
        with frozen_path(monkeypatch, path), torch.no_grad():
            torch.testing.assert_close(layer(x), expected, **TOL, msg=lambda m, p=path: f"{p}: {m}")


# Few tests, many cases each: the cases are tiny, the per-test set-up is not.
@pytest.mark.slow
@pytest.mark.parametrize("conv_index", range(len(CONV_SETTINGS)))
def test_frozen_matches_the_training_form_over_conv_settings(conv_index, monkeypatch):
    setting = CONV_SETTINGS[conv_index]
    x = torch.randn(2, setting[0], 19, 13, dtype=torch.float64)
    for factors, align in itertools.product(FACTOR_SETS, ("interpolate", "crop")):
        for fuse in ("never", "always") if fusable(setting, factors) else ("never",):
            layer = make_layer(setting, factors, fuse, fmap_align=align)
            assert_frozen_matches(layer, x, monkeypatch)


EVAL_MODES = [
    ("pooled_map", "train_and_eval"),
    ("pooled_map", "only_eval"),
    ("pooled_map", "only_train"),
    ("pooled_map", "only_gradients"),
    ("concat_fmaps", "train_and_eval"),
    ("interleave_chdim", "train_and_eval"),
]


@pytest.mark.parametrize(("output_type", "training_mode"), EVAL_MODES)
def test_frozen_matches_the_training_form_over_modes(output_type, training_mode, monkeypatch):
    cases = itertools.product([2, 3], ["interpolate", "crop"], ["average", "autograd"])
    for conv_index, align, sharing in cases:  # stride 2 / "same" padding, fused
        setting = CONV_SETTINGS[conv_index]
        fuse = "always" if fusable(setting, FACTOR_SETS[3]) else "never"
        options = dict(
            output_type=output_type, training_mode=training_mode, fmap_align=align,
            kernel_sharing=sharing, stretch_penalty_lambda=0.1,
        )  # fmt: skip
        x = torch.randn(2, setting[0], 17, 11, dtype=torch.float64)
        assert_frozen_matches(make_layer(setting, FACTOR_SETS[3], fuse, **options), x, monkeypatch)


def test_frozen_1d_layer_matches(monkeypatch):
    layer = MultiscaleConv1d(3, 4, 5, padding=2, dtype=torch.float64, fmap_align="crop").eval()
    assert_frozen_matches(layer, torch.randn(2, 3, 29, dtype=torch.float64), monkeypatch)
    x = torch.randn(3, 29, dtype=torch.float64)  # unbatched
    assert_frozen_matches(layer.unfreeze(), x, monkeypatch)


def test_state_dict_stays_the_training_forms_and_loading_unfreezes():
    layer = MultiscaleConv2d(2, 4, (5, 3)).eval()
    keys = set(layer.state_dict())
    frozen = MultiscaleConv2d(2, 4, (5, 3)).freeze()
    assert set(frozen.state_dict()) == keys == set(nn.Conv2d(2, 4, (5, 3)).state_dict())
    assert any(name.startswith("_frozen_kernel") for name, _ in frozen.named_buffers())
    layer.load_state_dict(frozen.state_dict())  # a frozen layer's state loads anywhere
    frozen_again = MultiscaleConv2d(2, 4, (5, 3)).freeze()
    frozen_again.load_state_dict(layer.state_dict())  # loading gives the training form back
    assert not frozen_again.frozen
    assert not any(name.startswith("_frozen") for name, _ in frozen_again.named_buffers())
    x = torch.randn(1, 2, 20, 10)
    with torch.no_grad():
        torch.testing.assert_close(frozen_again(x), layer(x))


def test_frozen_layer_neither_counts_nor_trains():
    layer = MultiscaleConv2d(1, 3, (5, 3)).freeze()
    layer(torch.randn(2, 1, 20, 10))
    assert layer.stretch_usage_counts.tolist() == [0, 0, 0]
    with pytest.raises(RuntimeError, match="is frozen .* unfreeze"):
        layer.train()(torch.randn(2, 1, 20, 10))
    with pytest.raises(RuntimeError, match="is frozen"):
        layer.eval()(torch.randn(2, 1, 20, 10), True)  # the original's call style
    layer.unfreeze().train()(torch.randn(2, 1, 20, 10))
    assert sum(layer.stretch_usage_counts.tolist()) == 2 * 3 * 16 * 8


def test_freeze_and_unfreeze_a_model():
    model = build_model("compact_cnn", num_classes=3, input_shape=(1, 40, 16))
    layers = [m for m in model.modules() if isinstance(m, MultiscaleConv2d)]
    assert freeze(model) is model and not model.training and all(m.frozen for m in layers)
    assert unfreeze(model) is model and not any(m.frozen for m in layers)


EXPORT_CASES = [
    dict(output_type=output_type, fmap_align=align)
    for output_type in ("pooled_map", "concat_fmaps", "interleave_chdim")
    for align in ("interpolate", "crop")
] + [dict(fmap_align="crop", stride=(2, 1), padding=(1, 1), scale_factors=[0.5, 1.5])]


class _Layers(nn.Module):
    """One frozen layer per export case side by side, so that one export covers them all."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MultiscaleConv2d(2, 3, (5, 3), **o) for o in EXPORT_CASES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(layer(x) for layer in self.layers)


def _onnx_outputs(module, example, inputs, tmp_path, dynamo):
    """Outputs of ``module`` exported by torch's exporter (``dynamo``: the default one, from
    torch.export; else the older TorchScript-based one, 20x faster here) and run in
    onnxruntime on each of ``inputs``."""
    import onnxruntime

    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on optional packages
        torch.onnx.export(
            module, (example,), str(path), input_names=["input"], dynamo=dynamo, verbose=False,
            **(dict(dynamic_shapes=({2: torch.export.Dim.DYNAMIC},)) if dynamo
               else dict(dynamic_axes={"input": {2: "time"}})),
        )  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [
        tuple(torch.from_numpy(y) for y in session.run(None, {"input": x.numpy()})) for x in inputs
    ]


def _traced_outputs(module, example, inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # trace is deprecated, not gone
        # A Python value read from a traced tensor would be baked into the graph.
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, example)
    return [traced(x) for x in inputs]


@pytest.mark.slow
def test_frozen_layers_export_with_a_dynamic_time_axis(tmp_path):
    """Every output type and alignment, and a strided crop, through TorchScript and ONNX."""
    module = freeze(_Layers())
    inputs = [torch.randn(2, 2, length, 12) for length in LENGTHS]
    with torch.no_grad():
        expected = [module(x) for x in inputs]
        traced = _traced_outputs(module, inputs[0], inputs)
    onnx = _onnx_outputs(module, inputs[0], inputs, tmp_path, dynamo=False)
    assert len({e[0].shape[2] for e in expected}) == 3
    for outputs in (traced, onnx):
        for ours, theirs in zip(outputs, expected, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_frozen_compact_cnn_exports(tmp_path):
    model = build_model(
        "compact_cnn", num_classes=4, input_shape=(1, 48, 16), mts={"fmap_align": "crop"}
    )
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    inputs = [torch.randn(1, 1, length, 16) for length in (48, 61, 75)]
    with torch.no_grad():
        expected = [model.eval()(x) for x in inputs]
        freeze(model)
        frozen = [model(x) for x in inputs]
        traced = _traced_outputs(model, inputs[0], inputs)
    onnx = _onnx_outputs(model, inputs[0], inputs, tmp_path, dynamo=True)
    for outputs in (frozen, traced, [y for (y,) in onnx]):
        for ours, theirs in zip(outputs, expected, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("time", "length"), [(19, 17), (17, 19), (5, 12), (12, 5)])
def test_time_resize_is_the_bilinear_resize(time, length):
    """The frozen graph's time-only resize (frequency rows as channels) computes what
    ``F.interpolate`` computes on the map itself, shrinking and stretching."""
    fmap = torch.randn(2, 3, time, 7, dtype=torch.float64)
    expected = nn.functional.interpolate(
        fmap, size=(length, 7), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(_resize_time(fmap, length), expected, rtol=0, atol=1e-15)


@pytest.mark.slow
def test_onnxruntime_resizes_time_without_transposes(tmp_path):
    """The transposes around the exported time resize cancel in onnxruntime's optimiser, so the
    resize runs on frequency rows (the fast form that benchmarks/inference.py measures)."""
    import onnx
    import onnxruntime

    layer = MultiscaleConv2d(2, 16, (5, 3), padding=(2, 1), scale_factors=[0.7, 1.428]).freeze()
    path, optimised = tmp_path / "layer.onnx", tmp_path / "optimised.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on optional packages
        torch.onnx.export(
            layer, (torch.randn(1, 2, 30, 12),), str(path), input_names=["input"],
            dynamo=True, dynamic_shapes=({0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC},),
        )  # fmt: skip
    exported = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert exported.count("Resize") == 2 and exported.count("Transpose") == 4
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimised)
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    kept = [node.op_type for node in onnx.load(str(optimised)).graph.node]
    assert kept.count("Resize") == 2 and "Transpose" not in kept
