"""Multi-time-scale (MTS) convolution.

Paper: "Multi-Time-Scale Convolution for Emotion Recognition from Speech Audio Signals",
Eric Guizzo, Tillman Weyde, Jack Barnett Leveson, ICASSP 2020 (arXiv:2003.03375).

An MTS layer convolves its input with its kernel and, in parallel, with copies of the
kernel resampled along time (and optionally frequency); the branch maps are aligned to the
base map and merged element-wise by a maximum, so each output element comes from the time
scale that matches the input best (or, by option, by a soft rule of :mod:`.merge.reference`).
Every branch kernel is derived from the base kernel (:mod:`.kernel_sharing`); the derived
sizes are one :class:`.geometry.BranchGeometry`, and :mod:`.dispatch` picks the merge backend.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mts_lightning.nn import dispatch, kernel_sharing, options
from mts_lightning.nn.convolution import conv_branch
from mts_lightning.nn.frozen import export_merge, exporting
from mts_lightning.nn.geometry import BranchGeometry
from mts_lightning.nn.input_checks import check_fits, check_input
from mts_lightning.nn.merge.attention import ScaleAttention
from mts_lightning.nn.merge.reference import MAX_RULE, MergeRule
from mts_lightning.nn.options import ScalePair
from mts_lightning.nn.usage import StretchUsage


class MultiscaleMixin:
    """The MTS machinery, written once for 2-D tensors; the 1-D layer
    (:mod:`.multiscale_conv1d`) views itself as 2-D.

    Subclasses are ``nn.ConvNd`` subclasses that call :meth:`_init_multiscale` at the end of
    ``__init__`` with their arguments in 2-D form, and provide the ``_2d`` views of their
    kernel, input and output.
    """

    def _init_multiscale(
        self, scale_factors: tuple[ScalePair, ...], conv_args_2d: tuple, kernel_size_2d: tuple,
        output_type: str, stretch_penalty_lambda: float, training_mode: str, sharing: str,
        fmap_align: str, track_stretch_usage: bool, fuse_branches: str, merge: str,
        temperature: float, learn_temperature: bool, scale_dropout: float,
    ) -> None:  # fmt: skip
        (self.output_type, self.training_mode, self.kernel_sharing, self.fmap_align,
         self.fuse_branches) = options.check_modes(
            output_type, training_mode, sharing, fmap_align, fuse_branches
        )  # fmt: skip
        self.merge, self.temperature, self.learn_temperature, self.scale_dropout = (
            options.check_merge(merge, temperature, learn_temperature, scale_dropout, output_type)
        )
        self.stretch_penalty_lambda = stretch_penalty_lambda
        self.track_stretch_usage = bool(track_stretch_usage)
        self.scale_factors = scale_factors
        stride, padding, dilation = conv_args_2d
        fuse = dispatch.wants_fusion(
            fuse_branches, stride, dilation, self.padding_mode, self.groups, self.in_channels,
            len(scale_factors),
        )  # fmt: skip
        self.geometry = BranchGeometry.build(
            kernel_size_2d, scale_factors, stride=stride, padding=padding, dilation=dilation,
            groups=self.groups, padding_mode=self.padding_mode, fmap_align=fmap_align,
            stretch_penalty_lambda=stretch_penalty_lambda, fuse=fuse,
        )  # fmt: skip
        self.register_buffer(
            "_branch_log_time_scales", torch.tensor(self.geometry.log_time_scales), persistent=False
        )
        self.branch_weights = kernel_sharing.DerivedKernels()
        if self.kernel_sharing in options.AVERAGING_MODES:
            with torch.no_grad():
                for kernel in self.branch_kernels()[1:]:
                    self.branch_weights.append(nn.Parameter(kernel.clone()))
        self._branch_kernels_fresh = False
        self._base_at_forward = None
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        # The learned merge parameters exist only where asked for: by default the layer has
        # exactly nn.Conv2d's parameters (and, for "average" sharing, the branch kernels).
        self.log_temperature = (
            nn.Parameter(torch.tensor(math.log(self.temperature), **factory))
            if self.learn_temperature
            else None
        )
        self.scale_attention = (
            ScaleAttention(self.out_channels, self.num_branches, **factory)
            if self.merge == "attention"
            else None
        )
        # "max" counts the elements each branch wins; the soft rules sum its weights.
        usage_dtype = torch.long if self.merge == "max" else torch.float64
        self._usage = StretchUsage(self.num_branches, usage_dtype)
        self.frozen = False

    # ----------------------------------------------------------------- public state
    @property
    def num_branches(self) -> int:
        """Number of parallel branches, the base included."""
        return self.geometry.num_branches

    @property
    def branch_scales(self) -> tuple[ScalePair, ...]:
        """``(s_time, s_freq)`` of every branch, the base's ``(1.0, 1.0)`` first."""
        return self.geometry.scales

    @property
    def branch_kernel_sizes(self) -> tuple[tuple[int, int], ...]:
        """(time, freq) kernel size of every branch (2-D view), base first."""
        return self.geometry.kernel_sizes

    @property
    def stretch_usage_counts(self) -> Tensor:
        """Usage of each branch (base first) since :meth:`reset_stretch_usage`.

        For ``merge="max"`` the elements each branch won (int64); for the soft rules the
        weight each branch received, summed over the output elements (float64). A tensor on
        the layer's device, summed over every forward that computed the branches; callers
        that keep it should clone it.
        """
        return self._usage.total

    @property
    def last_stretch_usage_counts(self) -> Tensor:
        """Usage of each branch (base first, as :attr:`stretch_usage_counts`) in the last
        forward that ran them."""
        return self._usage.last

    @property
    def current_temperature(self) -> float | Tensor:
        """The temperature of ``"logsumexp"``/``"softmax"``: ``temperature``, or when learned
        the exponential of the ``log_temperature`` parameter (a tensor in the graph)."""
        if self.log_temperature is None:
            return self.temperature
        return self.log_temperature.exp()

    def reset_stretch_usage(self) -> None:
        """Zero the accumulated usage counts."""
        self._usage.total.zero_()

    def get_stretch_percs(self) -> np.ndarray:
        """Fraction of output elements each branch won in the last forward, base first; for
        the soft rules the mean weight each branch received.

        The fractions sum to 1. Raises ``RuntimeError`` before any forward has run the
        branches (in a mode that skips them, or with ``track_stretch_usage=False``).
        """
        return self._usage.fractions(type(self).__name__)

    def branch_kernels(self) -> list[Tensor]:
        """The kernel of every branch, base first, as the next forward will use them."""
        weight = self._to_2d(self.weight)
        return [
            self._from_2d(k) for k in kernel_sharing.resampled_kernels(weight, self.scale_factors)
        ]

    @torch.no_grad()
    def update_kernels(self) -> None:
        """Fold the branch kernels' updates into the base kernel; call after each step.

        ``"average"`` (the published scheme): the base becomes the mean of itself and every
        branch kernel resampled back to its size; ``"average_updates"``: only what changed
        since the forward is averaged in (see :func:`.kernel_sharing.averaged_base_kernel`).
        A no-op in ``"autograd"`` mode, and when no training forward has run the branches
        since the last call. The bias is shared and needs nothing.
        """
        if self.kernel_sharing not in options.AVERAGING_MODES or not self._branch_kernels_fresh:
            return
        averaged = kernel_sharing.averaged_base_kernel(
            self._to_2d(self.weight),
            self.scale_factors,
            [self._to_2d(w) for w in self.branch_weights],
            self._base_at_forward if self.kernel_sharing == "average_updates" else None,
        )
        self.weight.copy_(self._from_2d(averaged))
        self._branch_kernels_fresh = False

    @torch.no_grad()
    def freeze(self):
        """The inference form (returns the layer, in evaluation mode): branch kernels computed
        once into buffers outside the state dict, no usage counting, a forward that exports
        (trace, ONNX) and gives the training form's evaluation output. It cannot train:
        :meth:`unfreeze` (or loading a state dict) gives the training form back."""
        self.unfreeze()
        branch_kernels = kernel_sharing.resampled_kernels(
            self._to_2d(self.weight), self.scale_factors
        )
        for branch, kernel in enumerate(branch_kernels[1:], start=1):
            self.register_buffer(f"_frozen_kernel_{branch}", kernel.clone(), persistent=False)
        self.frozen = True
        return self.eval()

    def unfreeze(self):
        """The training form back (a no-op on a layer that is not frozen); returns the layer."""
        for branch in range(1, self.num_branches):
            self._buffers.pop(f"_frozen_kernel_{branch}", None)
        self.frozen = False
        return self

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.unfreeze()  # the frozen kernels would no longer match the loaded weight
        super()._load_from_state_dict(*args, **kwargs)

    # ----------------------------------------------------------------- forward
    def _branch_kernel_list(self) -> list[Tensor]:
        weight = self._to_2d(self.weight)
        if self.kernel_sharing == "autograd" or not torch.is_grad_enabled():
            return kernel_sharing.resampled_kernels(weight, self.scale_factors)
        branch_views = [self._to_2d(w) for w in self.branch_weights]
        kernels = kernel_sharing.refreshed_kernels(weight, self.scale_factors, branch_views)
        if self.kernel_sharing == "average_updates":
            self._base_at_forward = weight.detach().clone()
        self._branch_kernels_fresh = True
        return kernels

    def forward(self, input: Tensor, training_state: bool | None = None) -> Tensor:
        """Convolve at every time scale and merge; see the class docstring for shapes.

        ``training_state`` selects the branches for ``training_mode`` (``None`` means
        ``self.training``), so the original call style ``layer(x, self.training)`` works.
        """
        name = type(self).__name__
        checked = not (self.frozen and exporting())  # a graph holds no Python checks
        if checked:
            check_input(input, name, self.in_channels, self._input_dims)
        unbatched = input.dim() == self._input_dims[1]
        batched = input.unsqueeze(0) if unbatched else input
        x = self._to_2d_input(batched)
        channels_last = (
            input.dim() == 4
            and not input.is_contiguous()
            and input.is_contiguous(memory_format=torch.channels_last)
        )
        training = self.training if training_state is None else bool(training_state)
        if self.frozen and training:
            raise RuntimeError(f"{name} is frozen (inference form): unfreeze() it to train")
        runs = bool(self.scale_factors) and options.runs_branches(self.training_mode, training)
        # Evaluated, "only_gradients" gives the base map's value: the frozen form computes it alone.
        runs = runs and not (self.frozen and self.training_mode == "only_gradients")
        num_branches = self.num_branches if runs else 1
        if checked:
            check_fits(batched.shape, self.geometry, num_branches, name, self.in_channels)
        if num_branches == 1:
            base = conv_branch(x, self._to_2d(self.weight), self.bias, self.geometry, 0)
            return self._finish(base, unbatched)

        rule = self._merge_rule(x.shape[0], training, x.device)
        if not self.frozen:
            kernels = self._branch_kernel_list()
        else:
            kernels = [self._to_2d(self.weight)] + [
                self.get_buffer(f"_frozen_kernel_{branch}") for branch in range(1, num_branches)
            ]
        if self.frozen and exporting():
            output = export_merge(
                x, kernels, self.bias, self.geometry, self.output_type,
                self._branch_log_time_scales, rule,
            )  # fmt: skip
        else:
            output, counts = dispatch.merged_output(
                x, kernels, self.bias, self.geometry, self.output_type, self.fuse_branches,
                self.training_mode == "only_gradients", self._branch_log_time_scales,
                count=self.track_stretch_usage and not self.frozen, rule=rule,
            )  # fmt: skip
            if counts is not None:
                self._usage.record(counts)
        return self._finish(output, unbatched, channels_last)

    def _merge_rule(self, batch: int, training: bool, device: torch.device) -> MergeRule:
        """The merge of this forward; in training with ``scale_dropout``, each sample drops
        each stretched branch with that probability (the base is always kept)."""
        if self.merge == "max" and not (training and self.scale_dropout):
            return MAX_RULE
        keep = None
        if training and self.scale_dropout:
            stretched = torch.rand(batch, self.num_branches - 1, device=device)
            keep = torch.cat(
                (torch.ones(batch, 1, dtype=torch.bool, device=device),
                 stretched >= self.scale_dropout), dim=1,
            )  # fmt: skip
        return MergeRule(self.merge, self.current_temperature, keep, self.scale_attention)

    def _finish(self, output: Tensor, unbatched: bool, channels_last: bool = False) -> Tensor:
        # Channels-last may be an internal choice: hand back the layout nn.Conv2d would.
        output = self._from_2d_output(output)
        if output.dim() == 4:
            layout = torch.channels_last if channels_last else torch.contiguous_format
            output = output.contiguous(memory_format=layout)
        return output.squeeze(0) if unbatched else output

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self._usage.apply(fn)  # the counters follow .to(device)
        return self

    def extra_repr(self) -> str:
        scales = ", ".join(
            f"{s[0]:g}" if s[1] == 1.0 else f"({s[0]:g}, {s[1]:g})" for s in self.scale_factors
        )
        parts = [super().extra_repr(), f"scale_factors=[{scales}]"]
        defaults = dict(
            output_type="pooled_map", merge="max", temperature=1.0, learn_temperature=False,
            scale_dropout=0.0, training_mode="train_and_eval", kernel_sharing="average",
            fmap_align="interpolate", stretch_penalty_lambda=0.0,
        )  # fmt: skip
        parts += [f"{k}={getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v]
        if not self.track_stretch_usage:
            parts.append("track_stretch_usage=False")
        if self.frozen:
            parts.append("frozen")
        return ", ".join(parts)


class MultiscaleConv2d(MultiscaleMixin, nn.Conv2d):
    """2-D multi-time-scale convolution, a drop-in replacement for :class:`torch.nn.Conv2d`.

    Input ``(B, C_in, T, F)`` (time on axis 2, frequency on axis 3; or ``(C_in, T, F)``).
    Branch 0 convolves with the kernel itself; branch ``i`` with the kernel resampled
    bilinearly by ``scale_factors[i - 1] = (s_time, s_freq)`` to size
    ``floor(k_t * s_time) x floor(k_f * s_freq)``, with the same bias, stride, padding,
    dilation, groups and padding mode. Each branch map is aligned to the base map's size
    (``fmap_align``), scaled by the stretch penalty, then merged (``output_type``):

    - ``"pooled_map"``: merged by ``merge`` (default the element-wise maximum, ties to the
      lowest branch). Output ``(B, C_out, T_out, F_out)``, the shape ``nn.Conv2d`` gives.
    - ``"concat_fmaps"``: maps concatenated on time: ``(B, C_out, n_branches * T_out, F_out)``.
    - ``"interleave_chdim"``: ``(B, 2 * C_out, T_out, F_out)``, each pooled channel followed
      by the ``ln(s_time)`` of the branch that won each element (for a soft ``merge``, its
      mean under the element's branch weights).

    The arguments beyond ``nn.Conv2d``'s are keyword-only.

    Args:
        scale_factors: one entry per extra branch, a number ``s`` (meaning ``(s, 1.0)``) or
            a pair ``(s_time, s_freq)``; empty gives plain ``nn.Conv2d``.
        output_type: ``"pooled_map"``, ``"concat_fmaps"`` or ``"interleave_chdim"``.
        merge: how the aligned maps ``y_i`` (``n`` branches) become the pooled map:
            ``"max"`` (the published rule; the gradient goes to the winning branch),
            ``"mean"`` (``mean_i y_i``), ``"logsumexp"`` (``T * log(mean_i exp(y_i / T))``:
            the log-sum-exp less ``T * log(n)``, so between the mean and the maximum),
            ``"softmax"`` (``sum_i softmax_i(y / T) * y_i``) or ``"attention"`` (weights from a
            learned selective-kernel attention per sample, channel and time frame, Li et al.,
            "Selective Kernel Networks", CVPR 2019; see :mod:`.merge.attention`; it adds the
            parameters of two 1x1 convolutions, ``scale_attention``). Not with
            ``output_type="concat_fmaps"``, which merges nothing. The soft rules run in stock
            operators, slower than the maximum's fast merge (on CPU 1.3-3.7x its
            forward+backward time: ``benchmarks/layer.py --merge-rules``).
        temperature: ``T`` of ``"logsumexp"`` and ``"softmax"`` (a number > 0; towards 0 they
            approach the maximum, towards infinity the mean).
        learn_temperature: learn ``T`` from ``temperature`` on: adds one trainable parameter,
            ``log_temperature`` (``T = exp(log_temperature)``); by default the layer has none
            beyond ``nn.Conv2d``'s.
        scale_dropout: in training, each sample drops each stretched branch with this
            probability (in ``[0, 1)``); the base is always kept, and dropped branches are left
            out of that sample's merge (they never win, weigh 0, are not counted in the mean).
            Evaluation uses every branch (an identity, nothing to rescale).
        stretch_penalty_lambda: multiplies branch maps by ``1 - lambda * (|ln s_t| + |ln s_f|)``
            (alias ``stretch_penality_lambda``, the original spelling).
        training_mode: when the branches run: ``"train_and_eval"``, ``"only_eval"``,
            ``"only_train"``, or ``"only_gradients"`` (output is the base map, the gradient
            that of the pooled map: ``pooled + (base - pooled).detach()``).
        kernel_sharing: ``"average"`` (the published scheme; call :meth:`update_kernels`
            after each optimizer step), ``"average_updates"`` (only the updates are averaged
            in) or ``"autograd"`` (branch kernels a differentiable function of the base).
        fmap_align: ``"interpolate"`` (bilinear resize) or ``"crop"`` (centre crop / pad).
        track_stretch_usage: count the elements each branch wins, or for a soft ``merge`` sum
            the weight each branch receives (no host synchronisation).
        fuse_branches: ``"auto"``, ``"always"`` or ``"never"``: run every branch as one
            convolution over a zero-padded common kernel (stride 1, dilation 1, groups 1, zero
            padding). Same result; ``"auto"`` fuses where that is faster (see :mod:`.dispatch`).

    Example:
        A layer with two stretched branches, on spectrograms ``(batch, channels, time, freq)``;
        in the published ``"average"`` mode, ``update_kernels()`` follows each optimizer step
        (:class:`~mts_lightning.callbacks.KernelAveraging` does it in Lightning):

        >>> import torch
        >>> from mts_lightning import MultiscaleConv2d
        >>> layer = MultiscaleConv2d(1, 8, kernel_size=(5, 3), padding=(2, 1),
        ...                          scale_factors=[0.7, 1.428])
        >>> layer.branch_kernel_sizes  # the base kernel, then each stretched copy
        ((5, 3), (3, 3), (7, 3))
        >>> y = layer(torch.randn(4, 1, 64, 40))
        >>> y.shape  # what nn.Conv2d(1, 8, (5, 3), padding=(2, 1)) gives
        torch.Size([4, 8, 64, 40])
        >>> optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
        >>> y.square().mean().backward()
        >>> optimizer.step()
        >>> layer.update_kernels()
        >>> usage = layer.get_stretch_percs()  # share of outputs each branch won, base first
        >>> usage.shape, round(float(usage.sum()), 6)
        ((3,), 1.0)
    """

    _input_dims = (4, 3)

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
        scale_factors: Iterable[float | tuple[float, float]] = options.DEFAULT_SCALE_FACTORS,
        output_type: str = "pooled_map",
        merge: str = "max",
        temperature: float = 1.0,
        learn_temperature: bool = False,
        scale_dropout: float = 0.0,
        stretch_penalty_lambda: float = 0.0,
        training_mode: str = "train_and_eval",
        kernel_sharing: str = "average",
        fmap_align: str = "interpolate",
        track_stretch_usage: bool = True,
        fuse_branches: str = "auto",
        stretch_penality_lambda: float | None = None,
    ) -> None:
        factors = options.normalize_scale_factors(scale_factors)
        penalty = options.check_penalty(stretch_penalty_lambda, stretch_penality_lambda)
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip
        self._init_multiscale(
            factors, (self.stride, self.padding, self.dilation), self.kernel_size,
            output_type, penalty, training_mode, kernel_sharing, fmap_align,
            track_stretch_usage, fuse_branches, merge, temperature, learn_temperature,
            scale_dropout,
        )  # fmt: skip

    def _to_2d(self, weight: Tensor) -> Tensor:
        return weight

    def _from_2d(self, weight: Tensor) -> Tensor:
        return weight

    _to_2d_input = _from_2d_output = _to_2d
