"""A deliberately plain MTS layer that follows the original recipe step by step.

One ``nn.Conv2d`` per branch, the branch kernel copied in from the resampled base kernel,
a bilinear resize (or an explicit crop/pad) of every branch map, concatenation on a new
axis, a 3-D max pool across the branches, and comparison masks for the usage. It is slow
and memory-hungry on purpose: the tests hold the fast layer to it, and the layer benchmark
uses it as its baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _pair_factors(scale_factors):
    return [
        (float(s), 1.0) if isinstance(s, (int, float)) else (float(s[0]), float(s[1]))
        for s in scale_factors
    ]


def _centre_crop_or_pad(fmap, target_time, target_freq):
    """Explicit per-axis crop (centre, odd surplus cut at the end) or zero pad."""
    out = fmap
    for axis, target in ((2, target_time), (3, target_freq)):
        size = out.shape[axis]
        if size > target:
            start = (size - target) // 2
            index = torch.arange(start, start + target, device=out.device)
            out = out.index_select(axis, index)
        elif size < target:
            before = (target - size) // 2
            after = target - size - before
            shape_before = list(out.shape)
            shape_before[axis] = before
            shape_after = list(out.shape)
            shape_after[axis] = after
            out = torch.cat(
                [out.new_zeros(shape_before), out, out.new_zeros(shape_after)], dim=axis
            )
    return out


class ReferenceMultiscaleConv2d(nn.Module):
    """Reference MTS convolution: same arguments and semantics as ``MultiscaleConv2d``."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        *,
        scale_factors=((0.7, 1.0), (1.428, 1.0)),
        output_type="pooled_map",
        stretch_penalty_lambda=0.0,
        training_mode="train_and_eval",
        kernel_sharing="average",
        fmap_align="interpolate",
    ):
        super().__init__()
        conv_args = dict(
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=padding_mode,
        )
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias, **conv_args)
        self.factors = _pair_factors(scale_factors)
        self.stretched = nn.ModuleList()
        for s_time, s_freq in self.factors:
            size = (
                math.floor(self.conv.kernel_size[0] * s_time),
                math.floor(self.conv.kernel_size[1] * s_freq),
            )
            self.stretched.append(
                nn.Conv2d(in_channels, out_channels, size, bias=False, **conv_args)
            )
        self.output_type = output_type
        self.penalty = stretch_penalty_lambda
        self.training_mode = "only_gradients" if training_mode == "only_gradient" else training_mode
        self.kernel_sharing = kernel_sharing
        self.fmap_align = fmap_align
        self.last_counts = None

    def branch_weights(self):
        return [conv.weight for conv in self.stretched]

    def forward(self, x, training_state=None):
        training = self.training if training_state is None else training_state
        base = self.conv(x)
        skip = (self.training_mode == "only_eval" and training) or (
            self.training_mode == "only_train" and not training
        )
        if not self.factors or skip:
            return base

        maps = [base]
        for (s_time, s_freq), conv in zip(self.factors, self.stretched, strict=True):
            kernel = F.interpolate(self.conv.weight, scale_factor=(s_time, s_freq), mode="bilinear")
            if self.kernel_sharing == "average":
                with torch.no_grad():
                    conv.weight.copy_(kernel)
                kernel = conv.weight
            out = conv._conv_forward(x, kernel, self.conv.bias)
            if self.fmap_align == "interpolate":
                out = F.interpolate(out, size=base.shape[-2:], mode="bilinear")
            else:
                out = _centre_crop_or_pad(out, base.shape[2], base.shape[3])
            out = out * (1 - self.penalty * (abs(math.log(s_time)) + abs(math.log(s_freq))))
            maps.append(out)

        stacked = torch.stack(maps, dim=2)  # (B, C, branches, T, F)
        pooled = F.max_pool3d(stacked, kernel_size=(len(maps), 1, 1)).squeeze(2)

        claimed = torch.zeros_like(pooled, dtype=torch.bool)
        index_map = torch.zeros_like(pooled)
        log_scales = [0.0] + [math.log(s_time) for s_time, _ in self.factors]
        counts = []
        for branch in range(len(maps)):
            mask = (stacked[:, :, branch] == pooled) & ~claimed
            claimed |= mask
            counts.append(int(mask.sum()))
            index_map[mask] = log_scales[branch]
        self.last_counts = counts

        if self.output_type == "concat_fmaps":
            return torch.cat(maps, dim=2)
        if self.output_type == "interleave_chdim":
            channels = [t for c in range(pooled.shape[1]) for t in (pooled[:, c], index_map[:, c])]
            return torch.stack(channels, dim=1)
        if self.training_mode == "only_gradients":
            return pooled + (base - pooled).detach()
        return pooled

    @torch.no_grad()
    def update_kernels(self):
        if self.kernel_sharing != "average":
            return
        size = self.conv.weight.shape[-2:]
        kernels = [self.conv.weight] + [
            F.interpolate(conv.weight, size=size, mode="bilinear") for conv in self.stretched
        ]
        self.conv.weight.copy_(torch.stack(kernels).mean(dim=0))
