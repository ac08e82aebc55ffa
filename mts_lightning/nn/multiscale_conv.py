"""Multi-time-scale (MTS) convolution.

Paper: "Multi-Time-Scale Convolution for Emotion Recognition from Speech Audio Signals",
Eric Guizzo, Tillman Weyde, Jack Barnett Leveson, ICASSP 2020 (arXiv:2003.03375).

An MTS layer convolves its input with its kernel and, in parallel, with copies of the
kernel resampled along the time axis (and optionally the frequency axis). The branch
output maps are aligned to the base map and merged element-wise by a maximum, so each
output element comes from the time scale that matches the input best. No trainable
parameter is added: every branch kernel is derived from the base kernel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mts_lightning.nn import fused_merge
from mts_lightning.nn.functional import (
    ScalePair,
    align_fmap,
    branch_max,
    count_wins,
    fused_interpolated_max,
    resample_kernel,
    resize_kernel,
    stacked_branch_max,
    stretch_penalty_factor,
    stretched_size,
    winning_branch,
    zero_edges_,
)
from mts_lightning.nn.fused_merge import axis_alignments, fused_branch_max

OUTPUT_TYPES = ("pooled_map", "concat_fmaps", "interleave_chdim")
TRAINING_MODES = ("train_and_eval", "only_eval", "only_train", "only_gradients")
KERNEL_SHARING_MODES = ("average", "average_updates", "autograd")
#: Modes in which branch kernels are parameters that ``update_kernels()`` folds back.
AVERAGING_MODES = ("average", "average_updates")
FMAP_ALIGN_MODES = ("interpolate", "crop")
FUSE_MODES = ("auto", "always", "never")
_TRAINING_MODE_ALIASES = {"only_gradient": "only_gradients"}
# On the stock path, "auto" fuses the branches into one convolution up to this many input
# channels: there a convolution is memory-bound, and one wide convolution and one stacked
# merge beat several narrow ones. The CPU merge kernel, which reads branch maps in place and
# runs large batches in chunks, is mostly faster with separate convolutions (8 of 10 first
# layers, by 1.2-4.4x; see benchmarks/README.md), so there "auto" does not fuse.
_AUTO_FUSE_MAX_IN = 4
# From this many input channels, CPU convolutions of the separate branches share one
# channels-last copy of the input (benchmarks/layer.py, middle-layer configurations).
_CHANNELS_LAST_MIN_IN = 8
# On CPU, a batch whose largest convolution output would exceed _CHUNK_ABOVE_BYTES runs in
# chunks of at most _CHUNK_BYTES of branch maps. glibc's malloc maps a block that large fresh
# at every allocation (its mmap threshold adapts up to 32 MiB), and the OS faults it in
# page by page; chunk-sized blocks are served again and again from memory malloc keeps, and
# are still in cache when the merge reads them. First layers of benchmarks/layer.py run
# about twice as fast, with a third to a half of the peak memory; smaller maps gain nothing.
_CHUNK_ABOVE_BYTES = 32 * 2**20
_CHUNK_BYTES = 16 * 2**20
DEFAULT_SCALE_FACTORS: tuple[ScalePair, ...] = ((0.7, 1.0), (1.428, 1.0))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_factor(value: Any, entry: Any) -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"scale_factors: every factor must be a finite number > 0, got {value!r} "
            f"in entry {entry!r}"
        )
    return float(value)


def normalize_scale_factors(
    scale_factors: Any, *, allow_pairs: bool = True
) -> tuple[ScalePair, ...]:
    """Turn user ``scale_factors`` into a tuple of ``(s_time, s_freq)`` pairs.

    A bare number ``s`` means ``(s, 1.0)``; pairs are refused when ``allow_pairs`` is False
    (the 1-D layer has no frequency axis).
    """
    if (
        scale_factors is None
        or isinstance(scale_factors, (str, bytes))
        or _is_number(scale_factors)
    ):
        raise ValueError(
            "scale_factors must be a list of numbers or (s_time, s_freq) pairs, "
            f"got {scale_factors!r}"
        )
    pairs = []
    for entry in scale_factors:
        if _is_number(entry):
            pairs.append((_check_factor(entry, entry), 1.0))
        elif allow_pairs and isinstance(entry, Sequence) and len(entry) == 2:
            pairs.append((_check_factor(entry[0], entry), _check_factor(entry[1], entry)))
        else:
            expected = "a number or an (s_time, s_freq) pair" if allow_pairs else "a number"
            raise ValueError(f"scale_factors: each entry must be {expected}, got {entry!r}")
    return tuple(pairs)


def _check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _cat(tensors: list[Tensor]) -> Tensor:
    """``torch.cat`` on the batch axis, without a copy for a single tensor."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


class _MultiscaleMixin:
    """The MTS machinery, written once for 2-D tensors; the 1-D layer views itself as 2-D.

    Subclasses are ``nn.ConvNd`` subclasses that call :meth:`_init_multiscale` at the end of
    ``__init__`` and provide the ``_2d`` views of their kernel, input and arguments.
    """

    def _init_multiscale(
        self,
        scale_factors: tuple[ScalePair, ...],
        output_type: str,
        stretch_penalty_lambda: float,
        training_mode: str,
        kernel_sharing: str,
        fmap_align: str,
        track_stretch_usage: bool,
        fuse_branches: str,
    ) -> None:
        self.output_type = _check_choice("output_type", output_type, OUTPUT_TYPES)
        training_mode = _TRAINING_MODE_ALIASES.get(training_mode, training_mode)
        self.training_mode = _check_choice("training_mode", training_mode, TRAINING_MODES)
        self.kernel_sharing = _check_choice("kernel_sharing", kernel_sharing, KERNEL_SHARING_MODES)
        self.fmap_align = _check_choice("fmap_align", fmap_align, FMAP_ALIGN_MODES)
        if training_mode != "train_and_eval" and output_type != "pooled_map":
            raise ValueError(
                f"training_mode={training_mode!r} needs output_type='pooled_map' (got "
                f"{output_type!r}): other output types change the output shape, which would "
                "then differ between training and evaluation"
            )
        if not _is_number(stretch_penalty_lambda) or not math.isfinite(stretch_penalty_lambda):
            raise ValueError(
                f"stretch_penalty_lambda must be a finite number, got {stretch_penalty_lambda!r}"
            )
        self.stretch_penalty_lambda = float(stretch_penalty_lambda)
        self.track_stretch_usage = bool(track_stretch_usage)

        base_size = self._kernel_size_2d
        for scale in scale_factors:
            size = tuple(stretched_size(k, s) for k, s in zip(base_size, scale, strict=True))
            if min(size) < 1:
                raise ValueError(
                    f"scale_factors: entry {scale} shrinks the kernel of size "
                    f"{self._format_size(base_size)} to {self._format_size(size)}; every "
                    "factor must keep floor(kernel_size * factor) >= 1"
                )
        self.scale_factors = scale_factors
        self.branch_scales: tuple[ScalePair, ...] = ((1.0, 1.0), *scale_factors)
        self.branch_kernel_sizes = tuple(
            tuple(stretched_size(k, s) for k, s in zip(base_size, scale, strict=True))
            for scale in self.branch_scales
        )
        self._penalty_factors = tuple(
            stretch_penalty_factor(scale, self.stretch_penalty_lambda)
            for scale in self.scale_factors
        )
        self.register_buffer(
            "_branch_log_time_scales",
            torch.tensor([math.log(s[0]) for s in self.branch_scales]),
            persistent=False,
        )
        self.branch_weights = _DerivedKernels()
        if self.kernel_sharing in AVERAGING_MODES:
            with torch.no_grad():
                for scale in self.scale_factors:
                    kernel = self._from_2d(resample_kernel(self._to_2d(self.weight), scale))
                    self.branch_weights.append(nn.Parameter(kernel.clone()))
        self._branch_kernels_fresh = False
        # Usage counters are plain attributes, not buffers: DDP broadcasts buffers from rank
        # zero before every forward, which would overwrite each rank's own counts.
        self._usage_total = torch.zeros(self.num_branches, dtype=torch.long)
        self._usage_last = torch.zeros(self.num_branches, dtype=torch.long)
        self._usage_seen = False
        self._branch_pads = self._compute_branch_pads()
        self._plan_fusion(fuse_branches)

    # ----------------------------------------------------------------- public state
    @property
    def num_branches(self) -> int:
        """Number of parallel branches, the base included."""
        return 1 + len(self.scale_factors)

    @property
    def stretch_usage_counts(self) -> Tensor:
        """Elements won by each branch (base first) since :meth:`reset_stretch_usage`.

        An int64 tensor on the layer's device, summed over every forward that computed
        the branches; callers that keep it should clone it.
        """
        return self._usage_total

    @property
    def last_stretch_usage_counts(self) -> Tensor:
        """Elements won by each branch (base first) in the last forward that ran them."""
        return self._usage_last

    def reset_stretch_usage(self) -> None:
        """Zero the accumulated usage counts."""
        self._usage_total.zero_()

    def get_stretch_percs(self) -> np.ndarray:
        """Fraction of output elements each branch won in the last forward, base first.

        The fractions sum to 1. Raises ``RuntimeError`` before any forward has run the
        branches (in a mode that skips them, or with ``track_stretch_usage=False``).
        """
        if not self._usage_seen:
            raise RuntimeError(
                f"{type(self).__name__}.get_stretch_percs(): no forward has computed the "
                "branches yet (or track_stretch_usage=False), so there is no usage to report"
            )
        counts = self._usage_last.detach().to("cpu", torch.float64).numpy()
        return counts / counts.sum()

    def branch_kernels(self) -> list[Tensor]:
        """The kernel of every branch, base first, as the next forward will use them."""
        weight = self._to_2d(self.weight)
        return [self._from_2d(resample_kernel(weight, scale)) for scale in self.branch_scales]

    @torch.no_grad()
    def update_kernels(self) -> None:
        """Fold the branch kernels' updates into the base kernel; call after each step.

        In ``kernel_sharing="average"`` mode (the published scheme) the base kernel becomes
        the mean of itself and every branch kernel resampled back to its size (bilinear, by
        size). The optimizer has updated each branch kernel with its own branch's gradient,
        so this carries those updates over; the bias is shared and needs nothing. The
        resample round trip also smooths the kernel at every call, which slows learning
        for small kernels. ``"average_updates"`` folds in only what changed since the
        forward: ``base_then + mean(base update, resampled-back branch updates)``, so a call
        without an optimizer step changes nothing. A no-op in ``"autograd"`` mode, and when
        no training forward has run the branches since the last call.
        """
        if self.kernel_sharing not in AVERAGING_MODES or not self._branch_kernels_fresh:
            return
        weight = self._to_2d(self.weight)
        if self.kernel_sharing == "average":
            total = weight.clone()
            for branch_weight in self.branch_weights:
                total += resize_kernel(self._to_2d(branch_weight), weight.shape[-2:])
            averaged = total / self.num_branches
        else:
            before = self._base_at_forward
            total = weight - before
            for scale, branch_weight in zip(self.scale_factors, self.branch_weights, strict=True):
                update = self._to_2d(branch_weight) - resample_kernel(before, scale)
                total += resize_kernel(update, weight.shape[-2:])
            averaged = before + total / self.num_branches
        self.weight.copy_(self._from_2d(averaged))
        self._branch_kernels_fresh = False

    # ----------------------------------------------------------------- forward
    def _runs_branches(self, training: bool) -> bool:
        if not self.scale_factors:
            return False
        if self.training_mode == "only_eval":
            return not training
        if self.training_mode == "only_train":
            return training
        return True

    def _branch_kernel_list(self) -> list[Tensor]:
        weight = self._to_2d(self.weight)
        if self.kernel_sharing == "autograd" or not torch.is_grad_enabled():
            return [weight] + [resample_kernel(weight, s) for s in self.scale_factors]
        # Averaging modes: each branch kernel is its own parameter (so the optimizer updates it
        # with its branch's gradient), refreshed from the base with no gradient link.
        # Writing through .data keeps autograd's version counters untouched, so several
        # forwards before one backward (with an unchanged base) stay valid.
        kernels = [weight]
        with torch.no_grad():
            for scale, branch_weight in zip(self.scale_factors, self.branch_weights, strict=True):
                branch_weight.data.copy_(self._from_2d(resample_kernel(weight, scale)))
                kernels.append(self._to_2d(branch_weight))
            if self.kernel_sharing == "average_updates":
                self._base_at_forward = weight.detach().clone()
        self._branch_kernels_fresh = True
        return kernels

    def _penalised(self, fmaps: list[Tensor]) -> list[Tensor]:
        """Apply the stretch penalty to the branch maps (and autocast's dtype to all)."""
        base = fmaps[0]
        return [base] + [
            (fmap if factor == 1.0 else fmap * factor).to(base.dtype)
            for fmap, factor in zip(fmaps[1:], self._penalty_factors, strict=True)
        ]

    def _own_fmaps(self, x: Tensor, kernels: list[Tensor]) -> list[Tensor]:
        """One convolution per branch, each map at its own size."""
        if x.device.type == "cpu" and self.in_channels >= _CHANNELS_LAST_MIN_IN:
            # oneDNN reorders an NCHW input for every convolution; reorder it once instead.
            x = x.contiguous(memory_format=torch.channels_last)
        return [self._conv_branch(x, kernel, i) for i, kernel in enumerate(kernels)]

    def _align_and_penalise(self, fmaps: list[Tensor]) -> list[Tensor]:
        size = fmaps[0].shape[-2:]
        return self._penalised(
            [fmaps[0]] + [align_fmap(f, size, self.fmap_align) for f in fmaps[1:]]
        )

    def _separate_fmaps(self, x: Tensor, kernels: list[Tensor]) -> list[Tensor]:
        """One convolution per branch, each map aligned to the base map and penalised."""
        return self._align_and_penalise(self._own_fmaps(x, kernels))

    def _aligned_fmaps(self, x: Tensor, kernels: list[Tensor]) -> list[Tensor]:
        """Every branch map aligned to the base map and penalised (for ``concat_fmaps``)."""
        if self._fusion is None:
            return self._separate_fmaps(x, kernels)
        fused = self._fused_conv(x, *self._fused_weights(kernels))
        if self.fmap_align == "crop":
            return self._penalised(list(zero_edges_(fused, self._fused_edges).unbind(1)))
        return self._align_and_penalise(self._fused_own_fmaps(fused, x))

    def _pooled(self, x: Tensor, kernels: list[Tensor]) -> tuple[Tensor, ...]:
        """Merge the branches by maximum.

        Returns ``(base map, pooled map, winning branch, wins per branch or None)``; the base
        map may be None where ``training_mode`` does not use it. CPU float32/float64 maps go
        through the one-pass kernel of :mod:`.fused_merge`; elsewhere stock operators compute
        the same.
        """
        if fused_merge.supported(x, self.num_branches):
            return self._kernel_pooled(x, kernels)
        if self._fusion is None:
            fmaps = self._separate_fmaps(x, kernels)
            # The base map is overwritten by the maximum unless it is needed afterwards.
            inplace = self.training_mode != "only_gradients"
            return (fmaps[0], *branch_max(fmaps, inplace=inplace), None)
        fused = self._fused_conv(x, *self._fused_weights(kernels))
        if self.fmap_align == "crop":
            if self.stretch_penalty_lambda:
                factors = fused.new_tensor((1.0, *self._penalty_factors))
                fused = fused * factors.view(1, -1, 1, 1, 1)
            return (fused[:, 0], *stacked_branch_max(fused, self._fused_edges), None)
        sizes = self._branch_map_sizes(x)
        base = fused[:, 0, :, : sizes[0][0], : sizes[0][1]]
        return (base, *fused_interpolated_max(fused, sizes, self._penalty_factors), None)

    def _kernel_pooled(
        self, x: Tensor, kernels: list[Tensor]
    ) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        """:meth:`_pooled` through the merge kernel, in batch chunks when maps are large.

        Each chunk is convolved, merged, and its maps dropped before the next one (see
        ``_CHUNK_BYTES``); autograd runs the chunks' backward the same way.
        """
        keep_base = self.training_mode == "only_gradients"
        fused = self._fusion is not None and self.fuse_branches == "always"
        fused_weights = self._fused_weights(kernels) if fused else None
        bases, pooled, winners, counts = [], [], [], 0
        for chunk in x.split(self._chunk_samples(x, fused)):
            if fused_weights is None:
                fmaps = self._own_fmaps(chunk, kernels)
                time, freq = axis_alignments(fmaps, self.fmap_align)
                # The base map takes the maximum unless its own value is kept.
                merged = fused_branch_max(
                    fmaps, fmaps, time, freq, self._penalty_factors, inplace=not keep_base
                )
                base = fmaps[0]
            else:
                base, *merged = self._merge_fused(self._fused_conv(chunk, *fused_weights), chunk)
                # Only the base's value is used: a copy lets the rest of the chunk's maps go.
                base = base.clone() if keep_base else base
            if keep_base:
                bases.append(base.detach())
            pooled.append(merged[0])
            winners.append(merged[1])
            counts = counts + merged[2]
        return (_cat(bases) if keep_base else None, _cat(pooled), _cat(winners), counts)

    def _chunk_samples(self, x: Tensor, fused: bool) -> int:
        """Samples per chunk of :meth:`_kernel_pooled` (see ``_CHUNK_ABOVE_BYTES``)."""
        if fused:
            sizes = [self._fused_output_size(x)] * self.num_branches
            planes = self.out_channels
        else:
            sizes = self._branch_map_sizes(x)
            planes = 1 if x.shape[1] >= _CHANNELS_LAST_MIN_IN else self.out_channels
        sample_bytes = [self.out_channels * t * f * x.element_size() for t, f in sizes]
        if max(sample_bytes) * x.shape[0] <= _CHUNK_ABOVE_BYTES:
            return max(x.shape[0], 1)
        # The kernel shares out its planes (per sample: one, channels-last; else a channel
        # each) among the threads: keep every thread busy.
        min_samples = -(-torch.get_num_threads() // planes)
        return max(1, min_samples, _CHUNK_BYTES // sum(sample_bytes))

    def _merge_fused(self, fused: Tensor, x: Tensor) -> tuple[Tensor, ...]:
        """The one-pass merge of :meth:`_pooled` over the output of :meth:`_fused_conv`."""
        blocks = list(fused.unbind(1))
        if self.fmap_align == "crop":
            maps = blocks
            time_size, freq_size = blocks[0].shape[-2:]
            time = [("edges", time_size, *edges[0]) for edges in self._fused_edges]
            freq = [("edges", freq_size, *edges[1]) for edges in self._fused_edges]
        else:
            maps = self._fused_own_fmaps(fused, x)
            time, freq = axis_alignments(maps, "interpolate")
        merged = fused_branch_max([fused], maps, time, freq, self._penalty_factors, blocks=blocks)
        return (maps[0], *merged)

    def _fused_weights(self, kernels: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """The kernel and bias of :meth:`_fused_conv`: each branch kernel zero-padded into a
        common size (offsets in ``self._fusion``), stacked on the output channels."""
        (t_off, t_size, _, _, _), (f_off, f_size, _, _, _) = self._fusion
        fused_kernel = torch.cat(
            [
                F.pad(
                    k,
                    (
                        f_off[i],
                        f_size - f_off[i] - k.shape[-1],
                        t_off[i],
                        t_size - t_off[i] - k.shape[-2],
                    ),
                )
                for i, k in enumerate(kernels)
            ]
        )
        bias = None if self.bias is None else self.bias.repeat(self.num_branches)
        return fused_kernel, bias

    def _fused_conv(self, x: Tensor, fused_kernel: Tensor, bias: Tensor | None) -> Tensor:
        """Every branch in one convolution, over the kernel of :meth:`_fused_weights`.

        Returns ``(B, n_branches, C_out, T, F)``. The kernel offsets put every branch map
        on the base output grid for ``"crop"`` (the border strips that the crop rule
        zero-pads, ``self._fused_edges``, still hold convolution values: the merge treats
        them as 0), and at the origin for ``"interpolate"``. On the stock path one
        convolution with ``n * C_out`` channels beats ``n`` narrow ones when the input has few
        channels (a first layer), where a convolution is memory-bound (see ``_AUTO_FUSE_MAX_IN``).
        """
        _, _, t_lo, t_hi, _ = self._fusion[0]
        _, _, f_lo, f_hi, _ = self._fusion[1]
        fused = F.conv2d(F.pad(x, (f_lo, f_hi, t_lo, t_hi)), fused_kernel, bias)
        return fused.unflatten(1, (self.num_branches, self.out_channels))

    def _fused_output_size(self, x: Tensor) -> tuple[int, int]:
        """(time, freq) size of :meth:`_fused_conv`'s output."""
        (_, t_size, t_lo, t_hi, _), (_, f_size, f_lo, f_hi, _) = self._fusion
        return (x.shape[2] + t_lo + t_hi - t_size + 1, x.shape[3] + f_lo + f_hi - f_size + 1)

    def _branch_map_sizes(self, x: Tensor) -> list[tuple[int, int]]:
        """(time, freq) size of each branch's own map."""
        stride, _, dilation = self._conv_args_2d

        def length(axis: int, branch: int) -> int:
            padded = x.shape[2 + axis] + self._branch_pad_totals[branch][axis]
            reach = dilation[axis] * (self.branch_kernel_sizes[branch][axis] - 1) + 1
            return (padded - reach) // stride[axis] + 1

        return [(length(0, i), length(1, i)) for i in range(self.num_branches)]

    def _fused_own_fmaps(self, fused: Tensor, x: Tensor) -> list[Tensor]:
        """Each branch's own map in an ``"interpolate"`` fused output: its top-left corner."""
        sizes = self._branch_map_sizes(x)
        return [fused[:, i, :, : size[0], : size[1]] for i, size in enumerate(sizes)]

    def _conv_branch(self, x: Tensor, kernel: Tensor, branch: int) -> Tensor:
        stride, padding, dilation = self._conv_args_2d
        if self.padding_mode != "zeros":
            x = F.pad(x, self._branch_pads[branch], mode=self.padding_mode)
            padding = (0, 0)
        return F.conv2d(x, kernel, self.bias, stride, padding, dilation, self.groups)

    def _check_input(self, x: Tensor) -> None:
        batched, unbatched = self._input_dims
        expected = self._expected_shape()
        if x.dim() not in (batched, unbatched):
            raise ValueError(
                f"{type(self).__name__} expects a {batched}-D input {expected} (or "
                f"{unbatched}-D without the batch axis), got shape {tuple(x.shape)}"
            )
        channels = x.shape[0 if x.dim() == unbatched else 1]
        if channels != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects {self.in_channels} input channels {expected}, "
                f"got shape {tuple(x.shape)} with {channels} channels"
            )

    def _check_size(self, x: Tensor, num_branches: int) -> None:
        _, _, dilation = self._conv_args_2d
        for branch in range(num_branches):
            size = self.branch_kernel_sizes[branch]
            pads = self._branch_pads[branch]
            padded = (pads[2] + pads[3], pads[0] + pads[1])
            for axis, name in enumerate(self._axis_names):
                needed = dilation[axis] * (size[axis] - 1) + 1
                available = x.shape[2 + axis] + padded[axis]
                if available < needed:
                    raise ValueError(
                        f"{type(self).__name__} expects input {self._expected_shape()} large "
                        f"enough for every branch, got shape {tuple(self._from_2d_input(x).shape)}"
                        f": branch {branch} (scale {self.branch_scales[branch]}) has kernel "
                        f"{self._format_size(size)} and needs {needed} {name} steps after "
                        f"padding, the input gives {available}"
                    )

    def forward(self, input: Tensor, training_state: bool | None = None) -> Tensor:
        """Convolve at every time scale and merge; see the class docstring for shapes.

        ``training_state`` selects the branches for ``training_mode`` (``None`` means
        ``self.training``), so the original call style ``layer(x, self.training)`` works.
        """
        self._check_input(input)
        unbatched = input.dim() == self._input_dims[1]
        x = self._to_2d_input(input.unsqueeze(0) if unbatched else input)
        channels_last = (
            input.dim() == 4
            and not input.is_contiguous()
            and input.is_contiguous(memory_format=torch.channels_last)
        )
        training = self.training if training_state is None else bool(training_state)
        if not self._runs_branches(training):
            self._check_size(x, 1)
            return self._finish(self._conv_branch(x, self._to_2d(self.weight), 0), unbatched)
        self._check_size(x, self.num_branches)

        kernels = self._branch_kernel_list()
        if self.output_type == "concat_fmaps":
            fmaps = self._aligned_fmaps(x, kernels)
            if self.track_stretch_usage:
                with torch.no_grad():
                    self._record_usage(winning_branch([f.detach() for f in fmaps])[1])
            return self._finish(torch.cat(fmaps, dim=2), unbatched, channels_last)

        base, pooled, winner, counts = self._pooled(x, kernels)
        if self.track_stretch_usage:
            self._record_usage(winner, counts)
        if self.output_type == "interleave_chdim":
            log_scales = self._branch_log_time_scales.to(pooled.dtype)[winner.long()]
            output = torch.stack((pooled, log_scales), dim=2).flatten(1, 2)
        elif self.training_mode == "only_gradients":
            # Value of the base map, gradient of the pooled map only. The literal
            # ``base + (pooled - pooled.detach())`` would add the base's gradient twice.
            output = pooled + (base - pooled).detach()
        else:
            output = pooled
        return self._finish(output, unbatched, channels_last)

    def _record_usage(self, winner: Tensor, counts: Tensor | None = None) -> None:
        if counts is None:
            counts = count_wins(winner, self.num_branches)
        if self._usage_total.device != counts.device:
            self._usage_total = self._usage_total.to(counts.device)
            self._usage_last = self._usage_last.to(counts.device)
        self._usage_total.add_(counts)
        self._usage_last.copy_(counts)
        self._usage_seen = True

    def _finish(self, output: Tensor, unbatched: bool, channels_last: bool = False) -> Tensor:
        # Channels-last may be an internal choice: hand back the layout nn.Conv2d would.
        output = self._from_2d_output(output)
        if output.dim() == 4:
            layout = torch.channels_last if channels_last else torch.contiguous_format
            output = output.contiguous(memory_format=layout)
        return output.squeeze(0) if unbatched else output

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # Unpickled in another process (ddp_spawn shares tensors through shared memory):
        # each process must count into counters of its own.
        self._usage_total = self._usage_total.clone()
        self._usage_last = self._usage_last.clone()

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        # Follow .to(device) with the usage counters (fn leaves integer dtypes alone).
        self._usage_total = fn(self._usage_total)
        self._usage_last = fn(self._usage_last)
        return self

    def extra_repr(self) -> str:
        scales = ", ".join(
            f"{s[0]:g}" if s[1] == 1.0 else f"({s[0]:g}, {s[1]:g})" for s in self.scale_factors
        )
        parts = [super().extra_repr(), f"scale_factors=[{scales}]"]
        defaults = {
            "output_type": "pooled_map",
            "training_mode": "train_and_eval",
            "kernel_sharing": "average",
            "fmap_align": "interpolate",
            "stretch_penalty_lambda": 0.0,
        }
        parts += [
            f"{name}={getattr(self, name)!r}"
            for name, default in defaults.items()
            if getattr(self, name) != default
        ]
        if not self.track_stretch_usage:
            parts.append("track_stretch_usage=False")
        return ", ".join(parts)

    # ----------------------------------------------------------------- 2-D views
    def _compute_branch_pads(self) -> tuple[tuple[int, int, int, int], ...]:
        """``F.pad`` amounts (freq left/right, time left/right) of each branch.

        ``padding="same"`` pads each branch for its own kernel size, as ``nn.Conv2d`` with
        that kernel would; numeric padding is the same for every branch.
        """
        _, padding, dilation = self._conv_args_2d
        pads = []
        for size in self.branch_kernel_sizes:
            if padding == "same":
                totals = [d * (k - 1) for d, k in zip(dilation, size, strict=True)]
                time, freq = ((t // 2, t - t // 2) for t in totals)
            elif padding == "valid":
                time, freq = (0, 0), (0, 0)
            else:
                time, freq = (padding[0], padding[0]), (padding[1], padding[1])
            pads.append((*freq, *time))
        return tuple(pads)

    def _plan_fusion(self, fuse_branches: str) -> None:
        """Decide whether the branches run as one convolution, and lay out its kernel."""
        _check_choice("fuse_branches", fuse_branches, FUSE_MODES)
        self.fuse_branches = fuse_branches
        self._branch_pad_totals = tuple((p[2] + p[3], p[0] + p[1]) for p in self._branch_pads)
        stride, _, dilation = self._conv_args_2d
        blockers = [
            reason
            for reason, blocked in (
                ("stride != 1", tuple(stride) != (1, 1)),
                ("dilation != 1", tuple(dilation) != (1, 1)),
                (f"padding_mode={self.padding_mode!r}", self.padding_mode != "zeros"),
                ("groups != 1", self.groups != 1),
                ("no scale_factors", not self.scale_factors),
            )
            if blocked
        ]
        if fuse_branches == "always" and blockers:
            raise ValueError(
                "fuse_branches='always' needs stride 1, dilation 1, padding_mode 'zeros', "
                f"groups 1 and at least one scale factor; got {', '.join(blockers)}"
            )
        use = fuse_branches == "always" or (
            fuse_branches == "auto"
            and not blockers
            and self.in_channels // self.groups <= _AUTO_FUSE_MAX_IN
        )
        if not use:
            self._fusion = None
            return
        sizes = list(zip(*self.branch_kernel_sizes, strict=True))
        lows = ([p[2] for p in self._branch_pads], [p[0] for p in self._branch_pads])
        highs = ([p[3] for p in self._branch_pads], [p[1] for p in self._branch_pads])
        self._fusion = tuple(
            _fused_axis_layout(sizes[axis], lows[axis], highs[axis], self.fmap_align)
            for axis in range(2)
        )
        self._fused_edges = tuple(zip(self._fusion[0][4], self._fusion[1][4], strict=True))

    @staticmethod
    def _format_size(size: Sequence[int]) -> str:
        return "x".join(str(s) for s in size)


def _fused_axis_layout(
    sizes: Sequence[int], lows: Sequence[int], highs: Sequence[int], fmap_align: str
) -> tuple[tuple[int, ...], int, int, int, tuple[tuple[int, int], ...]]:
    """Where each branch kernel sits in the fused kernel along one axis (stride 1).

    ``sizes``/``lows``/``highs``: each branch's kernel size and padding before/after.
    Branch ``i``'s own map has length ``L + lows[i] + highs[i] - sizes[i] + 1``. Returns
    ``(offsets, fused_size, pad_before, pad_after, zeroed_edges)``: for ``"crop"`` the
    fused output is the base grid with each branch centred on it, and ``zeroed_edges``
    are the (before, after) positions the crop rule pads with zeros; for
    ``"interpolate"`` every branch map starts at the output's origin.
    """
    n = len(sizes)
    if fmap_align == "crop":
        extra = [
            (lows[i] + highs[i] - sizes[i]) - (lows[0] + highs[0] - sizes[0]) for i in range(n)
        ]
        shifts = [e // 2 if e >= 0 else -(-e // 2) for e in extra]
        edges = tuple((0, 0) if e >= 0 else (-e // 2, -e - (-e // 2)) for e in extra)
    else:
        shifts = [0] * n
        edges = ((0, 0),) * n
    pad_before = max(lows[i] - shifts[i] for i in range(n))
    offsets = tuple(pad_before + shifts[i] - lows[i] for i in range(n))
    fused_size = max(offsets[i] + sizes[i] for i in range(n))
    if fmap_align == "crop":
        pad_after = lows[0] + highs[0] - sizes[0] - pad_before + fused_size
    else:
        pad_after = max(lows[i] + highs[i] - sizes[i] for i in range(n)) - pad_before + fused_size
    return offsets, fused_size, pad_before, pad_after, edges


class _DerivedKernels(nn.ParameterList):
    """Branch kernels of the averaging modes: parameters, but derived state.

    They are rewritten from the base kernel at every training forward, so they stay out of
    the state dict: an MTS layer's state dict is exactly ``nn.Conv2d``'s, and either loads
    into the other.
    """

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        return

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        return


def _alias_penalty(stretch_penalty_lambda: float, legacy: float | None) -> float:
    if legacy is None:
        return stretch_penalty_lambda
    if stretch_penalty_lambda not in (0.0, legacy):
        raise ValueError(
            "stretch_penality_lambda is an alias of stretch_penalty_lambda; got both, with "
            f"different values ({legacy!r} and {stretch_penalty_lambda!r})"
        )
    return legacy


class MultiscaleConv2d(_MultiscaleMixin, nn.Conv2d):
    """2-D multi-time-scale convolution, a drop-in replacement for :class:`torch.nn.Conv2d`.

    Input ``(B, C_in, T, F)`` (time on axis 2, frequency on axis 3; or ``(C_in, T, F)``).
    Branch 0 convolves with the kernel itself; branch ``i`` with the kernel resampled
    bilinearly by ``scale_factors[i - 1] = (s_time, s_freq)`` to size
    ``floor(k_t * s_time) x floor(k_f * s_freq)``, with the same bias, stride, padding,
    dilation, groups and padding mode. Each branch map is aligned to the base map's size
    (``fmap_align``), scaled by the stretch penalty, then merged (``output_type``):

    - ``"pooled_map"``: element-wise maximum, ties to the lowest branch. Output
      ``(B, C_out, T_out, F_out)``, the shape ``nn.Conv2d`` gives.
    - ``"concat_fmaps"``: maps concatenated on time: ``(B, C_out, n_branches * T_out, F_out)``.
    - ``"interleave_chdim"``: ``(B, 2 * C_out, T_out, F_out)``, each pooled channel followed
      by the ``ln(s_time)`` of the branch that won each element.

    Args beyond ``nn.Conv2d``'s (keyword-only):
        scale_factors: one entry per extra branch, a number ``s`` (meaning ``(s, 1.0)``) or
            a pair ``(s_time, s_freq)``; empty gives plain ``nn.Conv2d``.
        output_type: ``"pooled_map"``, ``"concat_fmaps"`` or ``"interleave_chdim"``.
        stretch_penalty_lambda: multiplies branch maps by ``1 - lambda * (|ln s_t| + |ln s_f|)``
            (alias ``stretch_penality_lambda``, the original spelling).
        training_mode: when the branches run: ``"train_and_eval"``, ``"only_eval"``,
            ``"only_train"``, or ``"only_gradients"`` (output is the base map, the gradient
            that of the pooled map: ``pooled + (base - pooled).detach()``).
        kernel_sharing: ``"average"`` (the published scheme: branch kernels are parameters
            refreshed from the base at each forward; call :meth:`update_kernels` after each
            optimizer step), ``"average_updates"`` (the same, but only the updates are
            averaged in, so the kernel is not smoothed at every step) or ``"autograd"``
            (branch kernels are a differentiable function of the base).
        fmap_align: ``"interpolate"`` (bilinear resize) or ``"crop"`` (centre crop / pad).
        track_stretch_usage: count the elements each branch wins (no host synchronisation).
        fuse_branches: ``"auto"`` (default), ``"always"`` or ``"never"``: run every branch
            as one convolution over a zero-padded common kernel (stride 1, dilation 1,
            groups 1, zero padding only). Same result; ``"auto"`` fuses where that is faster:
            inputs of at most 4 channels (a first layer) merged by stock operators (GPU,
            autocast, ``torch.compile``), not on the CPU merge kernel.
    """

    _input_dims = (4, 3)
    _axis_names = ("time", "frequency")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        scale_factors: Iterable[float | tuple[float, float]] = DEFAULT_SCALE_FACTORS,
        output_type: str = "pooled_map",
        stretch_penalty_lambda: float = 0.0,
        training_mode: str = "train_and_eval",
        kernel_sharing: str = "average",
        fmap_align: str = "interpolate",
        track_stretch_usage: bool = True,
        fuse_branches: str = "auto",
        stretch_penality_lambda: float | None = None,
    ) -> None:
        factors = normalize_scale_factors(scale_factors)
        penalty = _alias_penalty(stretch_penalty_lambda, stretch_penality_lambda)
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip
        self._conv_args_2d = (self.stride, self.padding, self.dilation)
        self._kernel_size_2d = self.kernel_size
        self._init_multiscale(
            factors, output_type, penalty, training_mode, kernel_sharing, fmap_align,
            track_stretch_usage, fuse_branches,
        )  # fmt: skip

    def _to_2d(self, weight: Tensor) -> Tensor:
        return weight

    def _from_2d(self, weight: Tensor) -> Tensor:
        return weight

    _to_2d_input = _from_2d_input = _from_2d_output = _to_2d

    def _expected_shape(self) -> str:
        return f"(batch, {self.in_channels}, time, frequency)"


class MultiscaleConv1d(_MultiscaleMixin, nn.Conv1d):
    """1-D multi-time-scale convolution, a drop-in replacement for :class:`torch.nn.Conv1d`.

    Input ``(B, C_in, T)`` (or ``(C_in, T)``). The same computation as
    :class:`MultiscaleConv2d` along the single (time) axis: ``scale_factors`` are bare
    numbers, branch ``i`` uses the kernel resampled (linearly) to ``floor(k * s_i)`` taps.
    Output ``(B, C_out, T_out)`` for ``"pooled_map"``, ``(B, C_out, n_branches * T_out)``
    for ``"concat_fmaps"``, ``(B, 2 * C_out, T_out)`` for ``"interleave_chdim"``.
    Every other argument and method is that of :class:`MultiscaleConv2d`.
    """

    _input_dims = (3, 2)
    _axis_names = ("time", "frequency")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1,
        padding: str | int | tuple[int] = 0,
        dilation: int | tuple[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        scale_factors: Iterable[float] = (0.7, 1.428),
        output_type: str = "pooled_map",
        stretch_penalty_lambda: float = 0.0,
        training_mode: str = "train_and_eval",
        kernel_sharing: str = "average",
        fmap_align: str = "interpolate",
        track_stretch_usage: bool = True,
        fuse_branches: str = "auto",
        stretch_penality_lambda: float | None = None,
    ) -> None:
        factors = normalize_scale_factors(scale_factors, allow_pairs=False)
        penalty = _alias_penalty(stretch_penalty_lambda, stretch_penality_lambda)
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip
        padding_2d = self.padding if isinstance(self.padding, str) else (self.padding[0], 0)
        self._conv_args_2d = ((self.stride[0], 1), padding_2d, (self.dilation[0], 1))
        self._kernel_size_2d = (self.kernel_size[0], 1)
        self._init_multiscale(
            factors, output_type, penalty, training_mode, kernel_sharing, fmap_align,
            track_stretch_usage, fuse_branches,
        )  # fmt: skip

    def _to_2d(self, weight: Tensor) -> Tensor:
        return weight.unsqueeze(-1)

    def _from_2d(self, weight: Tensor) -> Tensor:
        return weight.squeeze(-1)

    _to_2d_input = _to_2d
    _from_2d_input = _from_2d_output = _from_2d

    def _expected_shape(self) -> str:
        return f"(batch, {self.in_channels}, time)"
