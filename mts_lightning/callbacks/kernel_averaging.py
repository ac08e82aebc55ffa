"""``KernelAveraging``: fold the MTS branch-kernel updates into the base kernel after each step."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from typing_extensions import override

from mts_lightning.nn import MultiscaleConv1d, MultiscaleConv2d
from mts_lightning.nn.options import AVERAGING_MODES

MTS_LAYER_TYPES = (MultiscaleConv2d, MultiscaleConv1d)


def averaging_layers(module: nn.Module) -> list[nn.Module]:
    """The MTS layers of ``module`` whose kernels need ``update_kernels()`` (averaging modes)."""
    return [
        m
        for m in module.modules()
        if isinstance(m, MTS_LAYER_TYPES) and m.kernel_sharing in AVERAGING_MODES
    ]


class KernelAveraging(Callback):
    """Call ``update_kernels()`` on every MTS layer after each real optimizer step.

    In ``kernel_sharing="average"`` (or ``"average_updates"``) mode the optimizer updates each branch kernel with its
    own branch's gradient, and the next forward overwrites the branch kernels from the base:
    their updates reach the base kernel only through ``update_kernels()``. This callback does
    that, so any LightningModule built from MTS layers trains as the original layer does.

    How a real step is recognised: ``on_train_batch_end`` compares ``trainer.global_step``
    (which counts optimizer steps, in automatic and manual optimization) with the value it
    saw last time. So with ``accumulate_grad_batches > 1`` nothing is averaged between
    accumulation batches, and the last, shorter accumulation window of an epoch is averaged
    once its step runs. Lightning also counts a step that AMP's ``GradScaler`` skipped
    (gradients with inf/NaN); the callback recognises those by the scaler's scale dropping
    (the scaler lowers it exactly when it skips a step) and does not average after them, at
    the cost of one host sync per optimizer step, and only when a scaler is in use.

    Under DDP every rank holds the same base and branch kernels after the (all-reduced)
    step, so every rank computes the same average; no extra communication is needed. The
    averaging runs with autocast disabled, so mixed precision changes nothing. Layers in
    ``kernel_sharing="autograd"`` mode need no averaging and are left alone.

    Args:
        every_n_steps: average after every ``n``-th real optimizer step (1: after each).

    Attributes:
        num_optimizer_steps: real optimizer steps seen (skipped AMP steps excluded).
        num_averagings: how many times the kernels were averaged.

    Example:
        A LightningModule with one MTS layer, trained with gradient accumulation: eight batches
        of two epochs make four real optimizer steps, each followed by one averaging.

        >>> import lightning.pytorch as pl
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from mts_lightning import KernelAveraging, MultiscaleConv2d
        >>> class Tiny(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = MultiscaleConv2d(1, 2, (5, 3), scale_factors=[0.7, 1.428])
        ...     def training_step(self, batch, batch_idx):
        ...         return self.conv(batch[0]).square().mean()
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> loader = DataLoader(TensorDataset(torch.randn(8, 1, 32, 16)), batch_size=2)
        >>> averaging = KernelAveraging()
        >>> trainer = pl.Trainer(max_epochs=2, accumulate_grad_batches=2, callbacks=[averaging],
        ...                      logger=False, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Tiny(), loader)
        >>> averaging.num_optimizer_steps, averaging.num_averagings
        (4, 4)
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int):
            raise ValueError(f"every_n_steps must be an int >= 1, got {every_n_steps!r}")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.num_optimizer_steps = 0
        self.num_averagings = 0
        self._steps_since_average = 0
        self._layers: list[nn.Module] = []
        self._last_global_step: int | None = None
        self._scale_before_step: float | None = None

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Collected here, after `configure_model` and checkpoint restoring, where the global
        # step is the one training goes on from.
        self._layers = averaging_layers(pl_module)
        self._last_global_step = trainer.global_step
        self._scale_before_step = None

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, *args: Any) -> None:
        scaler = _grad_scaler(trainer)
        if self._layers and scaler is not None and scaler.is_enabled():
            self._scale_before_step = scaler.get_scale()

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if self._last_global_step is None:
            self._last_global_step = step
        new_steps = step - self._last_global_step
        self._last_global_step = step
        if new_steps <= 0:
            return  # an accumulation batch: no optimizer step, nothing to fold in
        if self._step_was_skipped(trainer):
            new_steps -= 1
        self.num_optimizer_steps += new_steps
        self._steps_since_average += new_steps
        if self._steps_since_average < self.every_n_steps:
            return
        self._steps_since_average = 0
        if not self._layers:
            return
        device_type = pl_module.device.type
        with torch.no_grad(), torch.autocast(device_type=device_type, enabled=False):
            for layer in self._layers:
                layer.update_kernels()
        self.num_averagings += 1

    def _step_was_skipped(self, trainer: pl.Trainer) -> bool:
        scale_before, self._scale_before_step = self._scale_before_step, None
        scaler = _grad_scaler(trainer)
        if scale_before is None or scaler is None:
            return False
        return scaler.get_scale() < scale_before

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "every_n_steps": self.every_n_steps,
            "num_optimizer_steps": self.num_optimizer_steps,
            "num_averagings": self.num_averagings,
            "steps_since_average": self._steps_since_average,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_optimizer_steps = int(state_dict["num_optimizer_steps"])
        self.num_averagings = int(state_dict["num_averagings"])
        # A different `every_n_steps` on resume is the user's choice; the counter carries over.
        self._steps_since_average = int(state_dict["steps_since_average"])


def _grad_scaler(trainer: pl.Trainer) -> Any:
    """The AMP ``GradScaler`` of the trainer's precision plugin, if it has one."""
    return getattr(trainer.precision_plugin, "scaler", None)
