"""The bag-of-frames baseline of the model zoo."""

from __future__ import annotations

import pytest
import torch

from mts_lightning import EmotionClassifier
from mts_lightning.models import BagOfFrames, build_model, list_models


def test_statistics_are_per_bin_mean_and_std_over_time():
    x = torch.randn(3, 2, 7, 5)
    stats = BagOfFrames.statistics(x)
    assert stats.shape == (3, 2 * 2 * 5)
    mean = x.mean(dim=2).flatten(1)
    std = ((x - x.mean(dim=2, keepdim=True)) ** 2).mean(dim=2).sqrt().flatten(1)
    torch.testing.assert_close(stats, torch.cat([mean, std], dim=1))


def test_frame_order_plays_no_part():
    model = BagOfFrames(num_classes=4, input_shape=(1, 20, 8)).eval()
    x = torch.randn(2, 1, 20, 8)
    shuffled = x[:, :, torch.randperm(20)]
    torch.testing.assert_close(model(x), model(shuffled))
    # Any number of frames works: the statistics pool over time.
    assert model(torch.randn(2, 1, 33, 8)).shape == (2, 4)


@pytest.mark.slow
def test_learns_a_class_told_by_spread_alone():
    """Two classes with equal means and different spreads per bin: only the std separates them."""
    torch.manual_seed(0)
    labels = torch.arange(64) % 2
    x = torch.randn(64, 1, 16, 6) * (1 + 2 * labels.float()).view(-1, 1, 1, 1)
    model = BagOfFrames(num_classes=2, input_shape=(1, 16, 6))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()
    accuracy = (model(x).argmax(-1) == labels).float().mean()
    assert accuracy == 1.0


def test_registered_and_built_by_the_classifier():
    assert "bag_of_frames" in list_models()
    model = build_model("bag_of_frames", num_classes=3, input_shape=(1, 10, 4))
    assert isinstance(model, BagOfFrames) and model.head.in_features == 8
    classifier = EmotionClassifier(
        backbone="bag_of_frames", num_classes=5, input_shape=(1, 12, 6), backbone_kwargs={}
    )
    assert classifier(torch.zeros(2, 1, 12, 6)).shape == (2, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be an int >= 2"),
        ({"num_classes": 3, "input_shape": (1, 10)}, "input_shape must be"),
        ({"num_classes": 3, "input_shape": (1, 1, 8)}, "at least 2"),
        ({"num_classes": 3, "dropout": 1.0}, "dropout must be in"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BagOfFrames(**kwargs)


def test_wrong_input_is_refused():
    model = BagOfFrames(num_classes=3, input_shape=(1, 10, 4))
    with pytest.raises(ValueError, match=r"built for inputs \(B, 1, time, 4\)"):
        model(torch.zeros(2, 1, 10, 5))
