"""The model zoo: every model trains in both conv types, honours the MTS options, and the
registry builds models by name."""

import math

import jsonargparse
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mts_lightning.models import (
    AlexNet,
    CompactCNN,
    PaperSingleConvNet,
    PaperTwoConvNet,
    ResNet18,
    build_model,
    list_models,
    make_conv,
    register_model,
    registry,
)
from mts_lightning.nn import MultiscaleConv2d

NUM_CLASSES = 4
SIZES = [(1, 40, 32), (1, 64, 48)]
# Small widths keep the big backbones fast; the architecture is the same.
SMALL = {
    "paper_1conv_1ch": {},
    "paper_1conv_10ch": {},
    "paper_2conv": {},
    "alexnet": {"width": 8, "hidden_units": 64, "dropout": 0.0},
    "resnet18": {"width": 8},
    "compact_cnn": {},
}
PAPER = {"paper_1conv_1ch", "paper_1conv_10ch", "paper_2conv"}


def small_model(name: str, input_shape=SIZES[0], **kwargs) -> nn.Module:
    return build_model(
        name, num_classes=NUM_CLASSES, input_shape=input_shape, **SMALL[name], **kwargs
    )


def mts_layers(model: nn.Module) -> list[MultiscaleConv2d]:
    return [m for m in model.modules() if isinstance(m, MultiscaleConv2d)]


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_registry_lists_the_zoo():
    assert set(SMALL) <= set(list_models())
    assert list_models() == sorted(list_models())


def test_registry_defaults_and_overrides():
    assert build_model("paper_1conv_1ch", num_classes=3).features[0].out_channels == 1
    assert build_model("paper_1conv_10ch", num_classes=3).features[0].out_channels == 10
    model = build_model("paper_1conv_10ch", num_classes=3, channels=4, conv_type="conv")
    assert type(model) is PaperSingleConvNet and model.features[0].out_channels == 4


def test_build_model_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown model name 'nope'.*compact_cnn.*resnet18"):
        build_model("nope", num_classes=2)


def test_register_model_rejects_a_taken_name(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @register_model("tiny", hidden=3)
    class Tiny(nn.Linear):
        def __init__(self, num_classes: int, hidden: int = 1) -> None:
            super().__init__(hidden, num_classes)

    assert "tiny" in list_models() and build_model("tiny", num_classes=2).in_features == 3
    with pytest.raises(ValueError, match="already registered"):
        register_model("compact_cnn")(Tiny)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bad_conv_type_is_rejected(name):
    with pytest.raises(ValueError, match=r"conv_type must be one of 'mts', 'conv' for "):
        small_model(name, conv_type="multi")


@pytest.mark.slow
@pytest.mark.parametrize("input_shape", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("conv_type", ["mts", "conv"])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_trains_a_few_steps(name, conv_type, input_shape):
    model = small_model(name, input_shape, conv_type=conv_type)
    x, y = torch.randn(8, *input_shape), torch.arange(8) % NUM_CLASSES
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for layer in mts_layers(model):
            layer.update_kernels()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert bool(mts_layers(model)) == (conv_type == "mts")
    model.eval()
    with torch.no_grad():
        assert model(x[:3]).shape == (3, NUM_CLASSES)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_conv_and_mts_have_the_same_trainable_parameters_in_autograd_mode(name):
    conv = small_model(name, conv_type="conv")
    mts = small_model(name, conv_type="mts", mts={"kernel_sharing": "autograd"})
    assert trainable(mts) == trainable(conv)
    # MTS layers sit exactly where the plain model has its convs (1x1 shortcuts stay plain).
    conv_modules = dict(conv.named_modules())
    for layer_name, module in mts.named_modules():
        if isinstance(module, MultiscaleConv2d):
            assert type(conv_modules[layer_name]) is nn.Conv2d
        elif isinstance(module, nn.Conv2d):
            assert module.kernel_size == (1, 1) and type(conv_modules[layer_name]) is nn.Conv2d


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_mts_options_reach_every_layer(name):
    options = dict(
        scale_factors=((0.5, 1.0), (1.5, 1.25)),
        kernel_sharing="autograd",
        training_mode="only_eval",
        stretch_penalty_lambda=0.1,
        fmap_align="crop",
        track_stretch_usage=False,
        fuse_branches="never",
    )
    model = small_model(name, SIZES[1], mts=options)
    layers = mts_layers(model)
    expected = {"resnet18": 17, "alexnet": 5, "compact_cnn": 3, "paper_2conv": 2}.get(name, 1)
    assert len(layers) == expected
    for layer in layers:
        assert layer.branch_scales == ((1.0, 1.0), (0.5, 1.0), (1.5, 1.25))
        assert layer.kernel_sharing == "autograd" and layer.training_mode == "only_eval"
        assert layer.stretch_penalty_lambda == 0.1 and layer.fmap_align == "crop"
        assert not layer.track_stretch_usage and layer.fuse_branches == "never"
    model.eval()
    assert model(torch.randn(2, *SIZES[1])).shape == (2, NUM_CLASSES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_interleave_chdim_doubles_the_channels(name):
    model = small_model(name, mts={"output_type": "interleave_chdim"})
    assert all(layer.output_type == "interleave_chdim" for layer in mts_layers(model))
    loss = model(torch.randn(2, *SIZES[0])).sum()
    loss.backward()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_concat_fmaps_only_in_the_paper_networks(name):
    if name in PAPER:
        model = small_model(name, mts={"output_type": "concat_fmaps"})
        assert model(torch.randn(2, *SIZES[0])).shape == (2, NUM_CLASSES)
        plain = small_model(name, conv_type="conv")
        assert model.classifier[1].in_features > plain.classifier[1].in_features
    else:
        with pytest.raises(ValueError, match="concat_fmaps"):
            small_model(name, mts={"output_type": "concat_fmaps"})


def test_paper_network_needs_its_input_shape():
    model = PaperTwoConvNet(num_classes=2, input_shape=(1, 40, 32))
    with pytest.raises(
        ValueError, match=r"built for inputs \(B, 1, 40, 32\), got \(2, 1, 41, 32\)"
    ):
        model(torch.randn(2, 1, 41, 32))


def test_dry_run_leaves_no_stretch_usage():
    model = PaperSingleConvNet(num_classes=2, input_shape=(1, 40, 32))
    layer = mts_layers(model)[0]
    assert layer.stretch_usage_counts.sum() == 0 and layer.track_stretch_usage
    model(torch.randn(2, 1, 40, 32))
    assert layer.stretch_usage_counts.sum() == 2 * 31 * 28


def test_make_conv_picks_the_layer():
    assert type(make_conv("conv", 1, 4, 3, padding=1)) is nn.Conv2d
    layer = make_conv("mts", 1, 4, 3, mts={"scale_factors": [2.0]}, padding=1)
    assert isinstance(layer, MultiscaleConv2d) and layer.branch_scales == ((1.0, 1.0), (2.0, 1.0))
    with pytest.raises(ValueError, match="conv_type"):
        make_conv("Conv2d", 1, 4, 3)


@pytest.mark.parametrize(
    "cls", [PaperSingleConvNet, PaperTwoConvNet, AlexNet, ResNet18, CompactCNN]
)
def test_instantiable_from_a_lightning_cli_config(cls):
    parser = jsonargparse.ArgumentParser()
    parser.add_subclass_arguments(nn.Module, "model")
    config = parser.parse_string(
        f"""
        model:
          class_path: {cls.__module__}.{cls.__name__}
          init_args:
            num_classes: 3
            input_shape: [1, 64, 48]
            mts:
              scale_factors: [[0.5, 1.0], 2.0]
              kernel_sharing: autograd
              fuse_branches: never
              track_stretch_usage: false
        """
    )
    model = parser.instantiate_classes(config).model
    assert type(model) is cls
    layers = mts_layers(model)
    assert layers and all(
        layer.branch_scales == ((1.0, 1.0), (0.5, 1.0), (2.0, 1.0)) for layer in layers
    )
    assert all(m.fuse_branches == "never" and not m.track_stretch_usage for m in layers)


def test_mts_options_are_checked_by_the_layer_and_by_name():
    # Values: the layer's own checks, naming the option.
    with pytest.raises(ValueError, match="kernel_sharing"):
        small_model("compact_cnn", mts={"kernel_sharing": "sometimes"})
    with pytest.raises(ValueError, match="fuse_branches"):
        small_model("paper_2conv", mts={"fuse_branches": "maybe"})
    # Names: an option the layer does not have is named, with the ones it has.
    with pytest.raises(ValueError, match=r"mts: unknown option\(s\) kernel_size; .*fuse_branches"):
        small_model("resnet18", mts={"kernel_size": 3})
    with pytest.raises(ValueError, match="mts must be a mapping"):
        small_model("alexnet", mts=[0.7, 1.428])
    # Plain convolutions ignore them.
    assert not mts_layers(small_model("alexnet", conv_type="conv", mts={"scale_factors": [2.0]}))


def test_flat_mts_options_show_the_new_spelling():
    with pytest.raises(ValueError) as info:
        build_model(
            "compact_cnn",
            num_classes=3,
            conv_type="mts",
            scale_factors=[[0.7, 1.0], [1.428, 1.0]],
            kernel_sharing="autograd",
        )
    assert str(info.value).startswith(
        "backbone_kwargs: scale_factors, kernel_sharing now go in one mapping `mts`; write "
        "backbone_kwargs: {conv_type: mts, mts: {scale_factors: [[0.7, 1.0], [1.428, 1.0]], "
        "kernel_sharing: autograd}}"
    )


def test_compact_cnn_puts_mts_layers_in_the_chosen_stages_only():
    model = small_model("compact_cnn", mts_stages=[0, 2], mts={"scale_factors": [0.5, 2.0]})
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [type(m).__name__ for m in convs] == ["MultiscaleConv2d", "Conv2d", "MultiscaleConv2d"]
    assert all(m.scale_factors == ((0.5, 1.0), (2.0, 1.0)) for m in convs[::2])
    assert model(torch.randn(2, *SIZES[0])).shape == (2, 4)
    every = small_model("compact_cnn")
    assert all(isinstance(m, MultiscaleConv2d) for m in every.features if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mts_stages": [3]}, r"distinct stage indices in 0\.\.2"),
        ({"mts_stages": [0, 0]}, r"distinct stage indices in 0\.\.2"),
        ({"mts_stages": [True]}, r"mts_stages must be a list of int or null"),
        ({"mts_stages": "0"}, r"mts_stages must be a list of int or null"),
        ({"mts_stages": [0], "conv_type": "conv"}, r"mts_stages needs conv_type='mts'"),
    ],
)
def test_compact_cnn_refuses_bad_mts_stages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_model("compact_cnn", **kwargs)
