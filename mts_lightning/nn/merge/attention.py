"""Learned attention over the time scales of an MTS layer (``merge="attention"``).

The fuse-and-select step of selective-kernel networks (Li, Wang, Hu, Yang, "Selective Kernel
Networks", CVPR 2019), with the choice following time: the branch maps are fused (their
mean), squeezed over frequency (SKNet pools over the whole map), passed through a small
bottleneck (two 1x1 convolutions with a ReLU between them) and turned into one logit per
branch, channel and time frame; a softmax over the branches gives the weights.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

#: SKNet's bottleneck: ``max(channels // REDUCTION, MIN_HIDDEN)`` units (its ``r`` and ``L``).
REDUCTION = 16
MIN_HIDDEN = 32


class ScaleAttention(nn.Module):
    """Logits of the branch weights, per sample, channel and time frame.

    ``forward(stacked, mask)`` takes the aligned branch maps ``(n_branches, B, C, T, F)`` and
    the mask of the branches each sample keeps (``(n_branches, B, 1, 1, 1)`` bool, or
    ``None`` for all) and returns ``(n_branches, B, C, T, 1)`` logits. The fused map is the mean
    of the kept maps (SKNet sums them; the mean keeps its scale when scale dropout removes
    branches). Parameters: ``C * d + d`` and ``d * n * C + n * C`` with
    ``d = max(C // 16, 32)``.

    Args:
        channels: the layer's output channels ``C``.
        num_branches: ``n``, the base included.
        device, dtype: of the parameters.
    """

    def __init__(
        self, channels: int, num_branches: int, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        hidden = max(channels // REDUCTION, MIN_HIDDEN)
        self.num_branches = num_branches
        self.squeeze = nn.Conv1d(channels, hidden, 1, device=device, dtype=dtype)
        self.select = nn.Conv1d(hidden, num_branches * channels, 1, device=device, dtype=dtype)

    def forward(self, stacked: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            fused = stacked.mean(dim=0)
        else:
            fused = (stacked * mask).sum(dim=0) / mask.sum(dim=0)
        context = fused.mean(dim=-1)  # (B, C, T): the choice follows time, not frequency
        logits = self.select(F.relu(self.squeeze(context)))  # (B, n * C, T)
        return logits.unflatten(1, (self.num_branches, -1)).transpose(0, 1).unsqueeze(-1)
