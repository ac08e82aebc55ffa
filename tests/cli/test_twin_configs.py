"""configs/<corpus>/modern_conv.yaml: beside every modern.yaml, the same recipe with the conv
twin of equal cost (tests/cli/test_configs.py runs both end to end)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mts_lightning.data import FeatureConfig
from mts_lightning.models import build_model
from mts_lightning.models.complexity import count_macs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODERN = sorted(CONFIGS.glob("*/modern.yaml"))
MTS_CALLBACKS = {"mts_lightning.KernelAveraging", "mts_lightning.StretchUsageLogger"}
#: modern.yaml's MTS network against its twin: the cost must agree within this ratio.
COST_TOLERANCE = 0.02


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def input_shape(data: dict) -> tuple[int, int, int]:
    """The (channels, frames, bins) the DataModule derives from a config's data settings."""
    config = FeatureConfig(**data["features"])
    seconds = data.get("segment_duration") or data["duration"]
    return (1, config.seconds_to_frames(seconds), config.num_bins)


def without_the_layers(config: dict) -> dict:
    """A config with what may differ between the MTS recipe and its twin taken out."""
    config = yaml.safe_load(yaml.safe_dump(config))
    callbacks = config["trainer"]["callbacks"]
    config["trainer"]["callbacks"] = [c for c in callbacks if c["class_path"] not in MTS_CALLBACKS]
    del config["model"]["backbone_kwargs"]
    return config


def test_every_modern_recipe_has_a_twin():
    assert len(MODERN) >= 6
    missing = [p for p in MODERN if not p.with_name("modern_conv.yaml").is_file()]
    assert not missing


@pytest.mark.slow
@pytest.mark.parametrize("modern", MODERN, ids=lambda p: p.parent.name)
def test_twin_is_the_same_recipe_with_plain_convolutions_of_equal_cost(modern):
    mts, conv = load(modern), load(modern.with_name("modern_conv.yaml"))
    assert without_the_layers(mts) == without_the_layers(conv)
    assert mts["model"]["backbone"] == conv["model"]["backbone"] == "compact_cnn"
    assert conv["model"]["backbone_kwargs"]["conv_type"] == "conv"
    shape = input_shape(mts["data"])
    macs = {
        name: count_macs(
            build_model(
                "compact_cnn", num_classes=4, input_shape=shape, **c["model"]["backbone_kwargs"]
            ),
            shape,
        )
        for name, c in (("mts", mts), ("conv", conv))
    }
    assert abs(macs["conv"] / macs["mts"] - 1) < COST_TOLERANCE, (shape, macs)
