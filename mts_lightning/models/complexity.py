"""What a network costs: multiply-adds of one forward, and the width that makes a conv twin
cost what an MTS network costs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from mts_lightning.nn import MultiscaleConv1d, MultiscaleConv2d, options

_MTS_LAYERS = (MultiscaleConv2d, MultiscaleConv1d)
_CONV_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward of ``model`` on one example of ``input_shape`` (no batch
    axis), in evaluation mode.

    Counted: every convolution (``out elements x in_channels / groups x kernel taps``), every
    branch convolution of an MTS layer (each branch at its own kernel and map size; the
    branches a layer runs in evaluation, per its ``training_mode``), and every linear layer.
    Not counted: normalisation, activations, pooling, the merge of the branches and the
    resampling of their maps (element-wise work, no multiply-adds of weights). A dry run on
    zeros finds the sizes; the model's training flag, running statistics and stretch usage
    are left as they were.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be positive sizes without the batch axis, got {shape}")
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _module_macs(module, inputs[0], output)

    counted = (*_CONV_LAYERS, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    mts_layers = [m for m in model.modules() if isinstance(m, _MTS_LAYERS)]
    tracking = [m.track_stretch_usage for m in mts_layers]
    was_training = model.training
    try:
        for layer in mts_layers:
            layer.track_stretch_usage = False
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        for handle in handles:
            handle.remove()
        for layer, track in zip(mts_layers, tracking, strict=True):
            layer.track_stretch_usage = track
        model.train(was_training)
    return total


def _module_macs(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> int:
    """Multiply-adds of one call of a convolution, MTS layer or linear layer (batch of one)."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    per_output = module.in_channels // module.groups
    if not isinstance(module, _MTS_LAYERS):
        return output.numel() * per_output * math.prod(module.kernel_size)
    runs = bool(module.scale_factors) and options.runs_branches(module.training_mode, False)
    branches = module.num_branches if runs else 1
    input_size = tuple(module._to_2d_input(x).shape[-2:])
    geometry = module.geometry
    map_sizes = geometry.map_sizes(input_size)[:branches]
    kernel_sizes = geometry.kernel_sizes[:branches]
    return sum(
        module.out_channels * math.prod(size) * per_output * math.prod(kernel)
        for size, kernel in zip(map_sizes, kernel_sizes, strict=True)
    )


def equal_cost_width(
    build: Callable[[float], nn.Module],
    target_macs: int,
    input_shape: Sequence[int],
    low: float = 1.0,
    high: float = 4.0,
    steps: int = 40,
) -> float:
    """The width multiplier ``w`` in ``[low, high]`` whose model ``build(w)`` costs closest to
    ``target_macs`` (:func:`count_macs` on ``input_shape``): a bisection, since a model's cost
    grows with its width; the result is rounded to 3 decimals, as a config would hold it.

    E.g. the conv twin of an MTS compact CNN:
    ``equal_cost_width(lambda w: CompactCNN(8, shape, "conv", width_multiplier=w),
    count_macs(CompactCNN(8, shape), shape), shape)``.
    """
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, got low={low}, high={high}")
    cost = {}

    def macs(width: float) -> int:
        if width not in cost:
            cost[width] = count_macs(build(width), input_shape)
        return cost[width]

    if not macs(low) <= target_macs <= macs(high):
        raise ValueError(
            f"target_macs {target_macs} is outside the costs of widths {low} and {high} "
            f"({macs(low)} to {macs(high)}); widen the range"
        )
    lo, hi = low, high
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if macs(mid) < target_macs else (lo, mid)
    candidates = {round(lo, 3), round(hi, 3)}
    return min(sorted(candidates), key=lambda w: abs(macs(w) - target_macs))
