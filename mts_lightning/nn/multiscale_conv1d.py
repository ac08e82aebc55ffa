"""The 1-D multi-time-scale convolution: the MTS machinery of :mod:`.multiscale_conv`
(written once for 2-D tensors) on a 1-D convolution viewed as 2-D with a frequency axis of
one (Guizzo, Weyde, Barnett Leveson, ICASSP 2020)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from mts_lightning.nn import options
from mts_lightning.nn.multiscale_conv import MultiscaleMixin


class MultiscaleConv1d(MultiscaleMixin, nn.Conv1d):
    """1-D multi-time-scale convolution, a drop-in replacement for :class:`torch.nn.Conv1d`.

    Input ``(B, C_in, T)`` (or ``(C_in, T)``). The same computation as
    :class:`MultiscaleConv2d` along the single (time) axis: ``scale_factors`` are bare
    numbers, branch ``i`` uses the kernel resampled (linearly) to ``floor(k * s_i)`` taps.
    Output ``(B, C_out, T_out)`` for ``"pooled_map"``, ``(B, C_out, n_branches * T_out)``
    for ``"concat_fmaps"``, ``(B, 2 * C_out, T_out)`` for ``"interleave_chdim"``.
    Every other argument and method is that of :class:`MultiscaleConv2d` (``merge``,
    ``temperature``, ``learn_temperature`` and ``scale_dropout`` included; the attention of
    ``merge="attention"`` then weighs each time step).

    Example:
        >>> import torch
        >>> from mts_lightning import MultiscaleConv1d
        >>> layer = MultiscaleConv1d(16, 32, kernel_size=9, padding=4, scale_factors=[0.5, 2.0],
        ...                          kernel_sharing="autograd")
        >>> y = layer(torch.randn(2, 16, 100))  # (batch, channels, time)
        >>> y.shape, layer.num_branches
        (torch.Size([2, 32, 100]), 3)
        >>> y.sum().backward()  # "autograd": the gradient reaches the base kernel directly
        >>> layer.weight.grad.shape
        torch.Size([32, 16, 9])
    """

    _input_dims = (3, 2)

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
        scale_factors: Iterable[float] = options.DEFAULT_SCALE_FACTORS_1D,
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
        factors = options.normalize_scale_factors(scale_factors, allow_pairs=False)
        penalty = options.check_penalty(stretch_penalty_lambda, stretch_penality_lambda)
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip
        padding_2d = self.padding if isinstance(self.padding, str) else (self.padding[0], 0)
        self._init_multiscale(
            factors, ((self.stride[0], 1), padding_2d, (self.dilation[0], 1)),
            (self.kernel_size[0], 1), output_type, penalty, training_mode, kernel_sharing, fmap_align,
            track_stretch_usage, fuse_branches, merge, temperature, learn_temperature,
            scale_dropout,
        )  # fmt: skip

    def _to_2d(self, weight: Tensor) -> Tensor:
        return weight.unsqueeze(-1)

    def _from_2d(self, weight: Tensor) -> Tensor:
        return weight.squeeze(-1)

    _to_2d_input = _to_2d
    _from_2d_output = _from_2d
