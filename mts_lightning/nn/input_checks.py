"""Run-time checks of an MTS layer's input, raising errors that name the expected shape."""

from __future__ import annotations

from torch import Tensor

from mts_lightning.nn.geometry import BranchGeometry, format_size

_AXIS_NAMES = ("time", "frequency")


def check_input(x: Tensor, layer_name: str, in_channels: int, dims: tuple[int, int]) -> None:
    """``x`` must have ``dims[0]`` axes (``dims[1]`` unbatched) and ``in_channels`` channels."""
    batched, unbatched = dims
    expected = expected_shape(in_channels, batched)
    if x.dim() not in (batched, unbatched):
        raise ValueError(
            f"{layer_name} expects a {batched}-D input {expected} (or "
            f"{unbatched}-D without the batch axis), got shape {tuple(x.shape)}"
        )
    channels = x.shape[0 if x.dim() == unbatched else 1]
    if channels != in_channels:
        raise ValueError(
            f"{layer_name} expects {in_channels} input channels {expected}, "
            f"got shape {tuple(x.shape)} with {channels} channels"
        )


def check_fits(
    input_shape: tuple[int, ...],
    geometry: BranchGeometry,
    num_branches: int,
    layer_name: str,
    in_channels: int,
) -> None:
    """Every one of the first ``num_branches`` branch kernels must fit the padded input.

    ``input_shape`` is the user's (batched) input shape; its last axes are time (and
    frequency, for a 2-D layer).
    """
    size_2d = (input_shape[2], input_shape[3] if len(input_shape) > 3 else 1)
    misfit = geometry.misfit(size_2d, num_branches)
    if misfit is None:
        return
    branch = misfit.branch
    raise ValueError(
        f"{layer_name} expects input {expected_shape(in_channels, len(input_shape))} large "
        f"enough for every branch, got shape {tuple(input_shape)}: branch {branch} (scale "
        f"{geometry.scales[branch]}) has kernel {format_size(geometry.kernel_sizes[branch])} "
        f"and needs {misfit.needed} {_AXIS_NAMES[misfit.axis]} steps after padding, the input "
        f"gives {misfit.available}"
    )


def expected_shape(in_channels: int, dims: int) -> str:
    """``(batch, C, time, frequency)`` for a 2-D layer, ``(batch, C, time)`` for a 1-D one."""
    return (
        f"(batch, {in_channels}, time, frequency)" if dims == 4 else f"(batch, {in_channels}, time)"
    )
