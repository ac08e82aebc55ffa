"""Pooling over time of ``(B, channels, time)`` features: plain and attentive statistics."""

from __future__ import annotations

import torch
from torch import nn

#: Variance floor before the square root: a constant channel gives a finite gradient.
_VARIANCE_FLOOR = 1e-8


def weighted_statistics(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation of ``x`` ``(B, D, T)`` over time under ``weights`` (same
    shape, or broadcastable, summing to 1 over time): ``(B, 2 * D)``, the means first."""
    mean = (weights * x).sum(dim=-1)
    variance = (weights * x.square()).sum(dim=-1) - mean.square()
    std = variance.clamp_min(_VARIANCE_FLOOR).sqrt()
    return torch.cat([mean, std], dim=1)


class StatisticsPooling(nn.Module):
    """Mean and (population) standard deviation of every channel over time.

    Input ``(B, D, T)``; output ``(B, 2 * D)``, the means first (Snyder et al., "X-vectors",
    ICASSP 2018).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = x.new_full((1, 1, x.shape[-1]), 1.0 / x.shape[-1])
        return weighted_statistics(x, weights)


class AttentiveStatisticsPooling(nn.Module):
    """Channel- and context-dependent attentive statistics pooling, as in ECAPA-TDNN
    (Desplanques, Thienpondt, Demuynck, Interspeech 2020).

    Each frame's attention logits come from the frame and the utterance's global mean and
    standard deviation (``[h_t; mean; std]``, ``3 * D`` values) through a 1x1 bottleneck
    (conv, ReLU, batch norm, tanh) and a 1x1 conv back to ``D`` channels; a softmax over time
    per channel gives the weights of each channel's mean and standard deviation.

    Input ``(B, D, T)``; output ``(B, 2 * D)``, the means first.

    Args:
        channels: ``D``.
        bottleneck: channels of the attention's hidden layer (128 in the paper).
    """

    def __init__(self, channels: int, bottleneck: int = 128) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("bottleneck", bottleneck)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.channels = channels
        self.attention = nn.Sequential(
            nn.Conv1d(3 * channels, bottleneck, 1),
            nn.ReLU(),
            nn.BatchNorm1d(bottleneck),
            nn.Tanh(),
            nn.Conv1d(bottleneck, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(
                f"AttentiveStatisticsPooling expects (B, {self.channels}, time), got "
                f"{tuple(x.shape)}"
            )
        frames = x.shape[-1]
        uniform = x.new_full((1, 1, frames), 1.0 / frames)
        context = weighted_statistics(x, uniform).unsqueeze(-1).expand(-1, -1, frames)
        logits = self.attention(torch.cat([x, context], dim=1))
        return weighted_statistics(x, torch.softmax(logits, dim=-1))
