"""A model added to the zoo as a contributor adds one (ARCHITECTURE.md, "a model"): a class
decorated with ``@register_model``, taking ``conv_type`` and ``mts`` and building its
convolutions with ``ConvFactory``, is chosen by name from YAML and from the command line, gets
the MTS variant for free, fits a tiny run, restores from its checkpoint, and has its arguments
checked like every zoo model's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from mts_lightning import EmotionClassifier
from mts_lightning.cli import cli_main
from mts_lightning.models import ConvFactory, build_model, list_models, register_model, registry
from mts_lightning.models.layers import MTSOptions
from mts_lightning.nn import MultiscaleConv2d
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MTS = {"scale_factors": [[0.7, 1.0], [1.428, 1.0]], "kernel_sharing": "autograd"}


class TwoConvNet(nn.Module):
    """Two 5x3 convolutions (MTS or plain) with ReLUs, average pooling over time and frequency,
    then a linear layer: ``(B, channels, time, freq)`` -> ``(B, num_classes)`` logits."""

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 128, 64),
        conv_type: str = "mts",
        width: int = 4,
        mts: MTSOptions | None = None,
    ) -> None:
        super().__init__()
        conv = ConvFactory(conv_type, mts)
        conv.reject_concat_fmaps("two_conv_net")
        wide = width * conv.channel_multiplier
        self.features = nn.Sequential(
            conv(input_shape[0], width, (5, 3), padding=(2, 1)),
            nn.ReLU(),
            conv(wide, width, (5, 3), padding=(2, 1)),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(wide, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture
def zoo(monkeypatch):
    """The zoo with ``two_conv_net`` in it, for this test only."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    register_model("two_conv_net")(TwoConvNet)
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])


def mts_layers(model: nn.Module) -> list[MultiscaleConv2d]:
    return [m for m in model.modules() if isinstance(m, MultiscaleConv2d)]


def test_a_registered_model_is_built_by_name_in_both_conv_types(zoo):
    assert "two_conv_net" in list_models()
    mts = build_model("two_conv_net", num_classes=3, input_shape=(1, 20, 16), mts=MTS)
    conv = build_model("two_conv_net", num_classes=3, input_shape=(1, 20, 16), conv_type="conv")
    assert [m.scale_factors for m in mts_layers(mts)] == [((0.7, 1.0), (1.428, 1.0))] * 2
    assert mts_layers(conv) == []
    assert mts(torch.randn(2, 1, 20, 16)).shape == conv(torch.randn(2, 1, 20, 16)).shape == (2, 3)


@pytest.mark.slow
def test_a_registered_model_chosen_in_yaml_fits_and_restores(zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "two_conv_net.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "backbone": "two_conv_net",
                    "backbone_kwargs": {"conv_type": "mts", "width": 3, "mts": MTS},
                }
            }
        )
    )
    args = [f"--config={CONFIGS / 'synthetic.yaml'}", f"--config={config}"]
    cli = cli_main(["fit", *args, *TINY_SYNTHETIC, *TINY_TRAINER])
    backbone = cli.model.backbone
    assert isinstance(backbone, TwoConvNet) and len(mts_layers(backbone)) == 2
    assert backbone.head.in_features == 3
    assert cli.trainer.global_step == 2 and "val/UA" in cli.trainer.callback_metrics

    restored = EmotionClassifier.load_from_checkpoint(
        cli.trainer.checkpoint_callback.best_model_path
    )
    assert isinstance(restored.backbone, TwoConvNet)
    x = torch.randn(2, *restored.hparams.input_shape)
    backbone.eval(), restored.eval()
    torch.testing.assert_close(restored.backbone(x), backbone.cpu()(x))


@pytest.mark.slow
def test_a_registered_model_chosen_on_the_command_line(zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        f"--config={CONFIGS / 'synthetic.yaml'}",
        "--model.backbone=two_conv_net",
        "--model.backbone_kwargs={conv_type: conv, width: 2}",
    ]
    cli = cli_main(["fit", *args, *TINY_SYNTHETIC, *TINY_TRAINER])
    assert isinstance(cli.model.backbone, TwoConvNet)
    assert mts_layers(cli.model) == [] and cli.model.backbone.head.in_features == 2
    assert cli.trainer.global_step == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            "{conv_type: mts, widht: 3}",
            "two_conv_net takes no argument 'widht' (did you mean 'width'?)",
        ),
        ("{width: many}", "width must be int for two_conv_net, got 'many'"),
        ("{mts: {scale_factor: [[0.5, 1.0]]}}", "mts: unknown option(s) scale_factor"),
        ("{mts: {output_type: concat_fmaps}}", "two_conv_net does not support"),
    ],
)
def test_a_registered_model_has_its_arguments_checked(zoo, kwargs, message, capsys):
    args = [f"--config={CONFIGS / 'synthetic.yaml'}", "--model.backbone=two_conv_net"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *args, f"--model.backbone_kwargs={kwargs}", *TINY_SYNTHETIC])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
