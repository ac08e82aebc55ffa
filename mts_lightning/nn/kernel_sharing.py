"""The branch kernels, derived from the base kernel; the ``kernel_sharing`` schemes.

- ``"autograd"``: each branch kernel is the resampled base kernel, a differentiable
  function of it.
- ``"average"`` / ``"average_updates"``: each branch kernel is a parameter of its own,
  overwritten from the base at every training forward with no gradient link; after the
  optimizer step :func:`averaged_base_kernel` folds the branches' updates back.

Kernels are ``(out, in, k_time, k_freq)``; the 1-D layer passes 2-D views of its kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mts_lightning.nn.options import ScalePair


def resample_kernel(weight: Tensor, scale: ScalePair) -> Tensor:
    """Resample a ``(out, in, kt, kf)`` kernel by ``scale = (s_time, s_freq)``.

    Bilinear, ``align_corners=False``, the factor itself mapping coordinates: exactly
    ``F.interpolate(weight, scale_factor=scale, mode="bilinear")``. The base scale ``(1, 1)``
    returns ``weight`` itself.
    """
    if scale == (1.0, 1.0):
        return weight
    return F.interpolate(weight, scale_factor=scale, mode="bilinear", align_corners=False)


def resize_kernel(weight: Tensor, size: Sequence[int]) -> Tensor:
    """Resample a kernel back to ``size`` (bilinear, by size), as kernel averaging needs."""
    if tuple(weight.shape[-2:]) == tuple(size):
        return weight
    return F.interpolate(weight, size=tuple(size), mode="bilinear", align_corners=False)


class DerivedKernels(nn.ParameterList):
    """Branch kernels of the averaging modes: parameters, but derived state.

    They are rewritten from the base kernel at every training forward, so they stay out of
    the state dict: an MTS layer's state dict is exactly ``nn.Conv2d``'s, and either loads
    into the other.
    """

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        return

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        return


def resampled_kernels(weight: Tensor, scale_factors: Sequence[ScalePair]) -> list[Tensor]:
    """The base kernel then each stretched branch's kernel, differentiable in ``weight``."""
    return [weight] + [resample_kernel(weight, s) for s in scale_factors]


def refreshed_kernels(
    weight: Tensor, scale_factors: Sequence[ScalePair], branch_weights: Sequence[Tensor]
) -> list[Tensor]:
    """The averaging modes' kernels: ``branch_weights`` (views of the branch parameters)
    overwritten with the resampled base, and returned after the base.

    Writing through ``.data`` keeps autograd's version counters untouched, so several
    forwards before one backward (with an unchanged base) stay valid; the optimizer then
    updates each branch kernel with its own branch's gradient.
    """
    with torch.no_grad():
        for scale, branch_weight in zip(scale_factors, branch_weights, strict=True):
            branch_weight.data.copy_(resample_kernel(weight, scale))
    return [weight, *branch_weights]


def averaged_base_kernel(
    weight: Tensor,
    scale_factors: Sequence[ScalePair],
    branch_weights: Sequence[Tensor],
    base_at_forward: Tensor | None,
) -> Tensor:
    """The base kernel after folding the branches' updates back (``update_kernels``).

    With ``base_at_forward=None`` (``"average"``, the published scheme): the mean of the base
    and every branch kernel resampled back to its size. Otherwise (``"average_updates"``):
    ``base_at_forward + mean(base update, resampled-back branch updates)``, the updates
    being measured from the kernels the last forward derived from ``base_at_forward``.
    """
    size = weight.shape[-2:]
    if base_at_forward is None:
        total = weight.clone()
        for branch_weight in branch_weights:
            total += resize_kernel(branch_weight, size)
        return total / (1 + len(branch_weights))
    total = weight - base_at_forward
    for scale, branch_weight in zip(scale_factors, branch_weights, strict=True):
        total += resize_kernel(branch_weight - resample_kernel(base_at_forward, scale), size)
    return base_at_forward + total / (1 + len(branch_weights))
