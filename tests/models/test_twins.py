"""The fair twins of the compact CNN (equal cost, long kernels), the multiply-add count they are
judged by, and the statistics-pooling heads."""

import math

import pytest
import torch
from torch import nn

from mts_lightning.models import CompactCNN, build_model
from mts_lightning.models.complexity import count_macs, equal_cost_width
from mts_lightning.models.pooling import (
    AttentiveStatisticsPooling,
    StatisticsPooling,
    weighted_statistics,
)
from mts_lightning.nn import MultiscaleConv1d, MultiscaleConv2d

SHAPE = (1, 40, 32)


def test_count_macs_of_a_plain_conv_and_linear_written_out():
    model = nn.Sequential(
        nn.Conv2d(2, 4, (3, 5), padding=(1, 0), groups=2), nn.Flatten(), nn.Linear(4 * 10 * 4, 3)
    )
    # conv: 4 x 10 x 4 outputs, each 2 / 2 x 3 x 5 taps; linear: 3 outputs x 160 inputs
    assert count_macs(model, (2, 10, 8)) == 4 * 10 * 4 * 1 * 15 + 3 * 160


def test_count_macs_of_an_mts_layer_counts_every_branch_at_its_own_size():
    layer = MultiscaleConv2d(3, 4, (5, 3), scale_factors=[0.7, 1.428])  # 5x3, 3x3, 7x3 kernels
    expected = sum(4 * (20 - k + 1) * (10 - 3 + 1) * 3 * k * 3 for k in (5, 3, 7))
    assert count_macs(layer, (3, 20, 10)) == expected
    # only the base runs without scale factors: a plain conv's count
    assert count_macs(MultiscaleConv2d(3, 4, (5, 3), scale_factors=[]), (3, 20, 10)) == (
        count_macs(nn.Conv2d(3, 4, (5, 3)), (3, 20, 10))
    )
    one_d = MultiscaleConv1d(3, 4, 5, scale_factors=[0.7, 1.428])
    assert count_macs(one_d, (3, 20)) == sum(4 * (20 - k + 1) * 3 * k for k in (5, 3, 7))


def test_count_macs_leaves_the_model_as_it_was():
    model = CompactCNN(4, SHAPE, mts={"kernel_sharing": "autograd"})
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, SHAPE)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    layer = next(m for m in model.modules() if isinstance(m, MultiscaleConv2d))
    assert int(layer.stretch_usage_counts.sum()) == 0
    with pytest.raises(ValueError, match="input_shape must be positive sizes"):
        count_macs(model, (1, 0, 32))


@pytest.mark.slow
def test_equal_cost_conv_twin_is_within_two_percent_of_the_mts_network():
    mts = count_macs(CompactCNN(4, SHAPE), SHAPE)
    conv = count_macs(CompactCNN(4, SHAPE, conv_type="conv"), SHAPE)
    assert 2.7 < mts / conv < 3.1  # branches of 5, 3 and 7 frames against 5

    def twin(width):
        return CompactCNN(4, SHAPE, conv_type="conv", width_multiplier=width)

    width = equal_cost_width(twin, mts, SHAPE)
    assert 1.6 < width < 1.9
    assert abs(count_macs(twin(width), SHAPE) / mts - 1) < 0.02
    with pytest.raises(ValueError, match="outside the costs of widths"):
        equal_cost_width(twin, mts, SHAPE, low=2.0, high=3.0)


def test_width_multiplier_scales_every_stage():
    model = CompactCNN(4, SHAPE, conv_type="conv", width_multiplier=1.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [24, 48, 96]
    assert model(torch.randn(2, *SHAPE)).shape == (2, 4)
    for bad in (0, -1.0, True, "2"):
        with pytest.raises(ValueError, match="width_multiplier must be a positive number"):
            CompactCNN(4, SHAPE, width_multiplier=bad)


@pytest.mark.parametrize(
    "mts, kernel",
    [(None, (7, 3)), ({"scale_factors": [0.5, 0.7, 1.428, 2.0]}, (10, 3))],
)
def test_long_kernel_twin_spans_the_longest_mts_branch(mts, kernel):
    twin = build_model(
        "compact_cnn", num_classes=4, input_shape=SHAPE, conv_type="conv", mts=mts,
        kernel_span="longest_scale",
    )  # fmt: skip
    assert {m.kernel_size for m in twin.modules() if isinstance(m, nn.Conv2d)} == {kernel}
    reference = CompactCNN(4, SHAPE, mts=mts)
    sizes = [
        k
        for m in reference.modules()
        if isinstance(m, MultiscaleConv2d)
        for k in m.branch_kernel_sizes
    ]
    assert max(k[0] for k in sizes) == kernel[0]
    assert twin(torch.randn(2, *SHAPE)).shape == (2, 4)


def test_long_kernel_twin_needs_conv_and_a_known_span():
    with pytest.raises(ValueError, match="kernel_span='longest_scale' builds a conv twin"):
        CompactCNN(4, SHAPE, kernel_span="longest_scale")
    with pytest.raises(ValueError, match="kernel_span must be one of"):
        CompactCNN(4, SHAPE, conv_type="conv", kernel_span="longest")


def test_statistics_pooling_is_the_mean_and_population_std_over_time():
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    expected = torch.cat([x.mean(-1), x.std(-1, correction=0)], dim=1)
    torch.testing.assert_close(StatisticsPooling()(x), expected)
    # a constant row: std 0 up to the variance floor, and a finite gradient
    flat = torch.ones(1, 2, 4, requires_grad=True)
    StatisticsPooling()(flat).sum().backward()
    assert torch.isfinite(flat.grad).all()


def test_attentive_statistics_pooling_weights_frames_per_channel():
    torch.manual_seed(0)
    pool = AttentiveStatisticsPooling(4, bottleneck=8).eval()
    x = torch.randn(2, 4, 9)
    out = pool(x)
    assert out.shape == (2, 8)
    # written out: softmax over time of the attention on [x; mean; std]
    context = StatisticsPooling()(x).unsqueeze(-1).expand(-1, -1, 9)
    weights = torch.softmax(pool.attention(torch.cat([x, context], dim=1)), dim=-1)
    mean = (weights * x).sum(-1)
    std = ((weights * (x - mean.unsqueeze(-1)) ** 2).sum(-1)).sqrt()
    torch.testing.assert_close(out, torch.cat([mean, std], dim=1), atol=1e-5, rtol=1e-4)
    # uniform weights give the plain statistics
    uniform = torch.full_like(x, 1 / 9)
    torch.testing.assert_close(weighted_statistics(x, uniform), StatisticsPooling()(x))
    with pytest.raises(ValueError, match=r"expects \(B, 4, time\)"):
        pool(torch.randn(2, 5, 9))
    with pytest.raises(ValueError, match="bottleneck must be an int >= 1"):
        AttentiveStatisticsPooling(4, bottleneck=0)


@pytest.mark.parametrize("pooling", ["stats", "attentive_stats"])
@pytest.mark.parametrize("conv_type", ["mts", "conv"])
def test_compact_cnn_statistics_heads_train_and_take_any_length(pooling, conv_type):
    torch.manual_seed(0)
    model = CompactCNN(4, SHAPE, conv_type=conv_type, pooling=pooling)
    linear = model.head[-1]
    assert linear.in_features == 2 * 64 * (SHAPE[2] // 8)  # mean and std of C x F' rows
    x, y = torch.randn(6, *SHAPE), torch.tensor([0, 1, 2, 3, 0, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model.eval()(torch.randn(2, 1, 57, SHAPE[2])).shape == (2, 4)


def test_statistics_head_reads_what_average_pooling_cannot():
    """A map whose rows differ in spread only: the average head sees the same features for
    both, the statistics head does not."""
    model = CompactCNN(2, SHAPE, pooling="stats")
    calm = torch.zeros(1, 64, 6, 4)
    lively = torch.zeros(1, 64, 6, 4)
    lively[..., 0::2, :], lively[..., 1::2, :] = 1.0, -1.0
    rows = model.head[0]
    assert torch.equal(calm.mean((2, 3)), lively.mean((2, 3)))
    assert not torch.equal(model.head[1](rows(calm)), model.head[1](rows(lively)))
    with pytest.raises(ValueError, match="pooling must be one of"):
        CompactCNN(2, SHAPE, pooling="max")


def test_default_head_keeps_its_parameter_names():
    """Checkpoints of the average head load as before: the linear layer is still head.3."""
    names = {k for k in CompactCNN(4, SHAPE).state_dict() if k.startswith("head")}
    assert names == {"head.3.weight", "head.3.bias"}
    assert math.isclose(CompactCNN(4, SHAPE).head[3].in_features, 64)
