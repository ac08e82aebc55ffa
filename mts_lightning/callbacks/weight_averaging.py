"""``EMAWeights``: an exponential moving average of the weights, validated, checkpointed and
used for evaluation, so that a run's result does not hang on the last few noisy steps."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from typing_extensions import override

from mts_lightning.callbacks.kernel_averaging import KernelAveraging

#: Checkpoint key of the weights training goes on from (``state_dict`` holds the averages).
TRAINED_STATE_KEY = "trained_state_dict"


def averaged_names(module: nn.Module) -> list[str]:
    """The ``state_dict`` names that an average of the weights covers: every floating-point
    parameter in the ``state_dict``, and the floating-point running statistics of normalisation layers (batch
    norm's running mean and variance, which follow the weights). Other buffers (counters such
    as ``num_batches_tracked``, class weights, constants) are the trained model's own."""
    state, names = module.state_dict(), []
    for prefix, sub in module.named_modules():
        dot = f"{prefix}." if prefix else ""
        tensors = list(sub.named_parameters(recurse=False))
        if isinstance(sub, _NormBase):
            tensors += [(n, b) for n, b in sub.named_buffers(recurse=False) if b is not None]
        names += [dot + n for n, t in tensors if t.is_floating_point() and dot + n in state]
    return names


def ema_decay(base_decay: float, updates: int) -> float:
    """The decay of the ``updates + 1``-th update: ``min(base_decay, (1 + n) / (10 + n))``,
    so that early averages follow the weights instead of holding on to the initial ones."""
    return min(base_decay, (1 + updates) / (10 + updates))


class EMAWeights(Callback):
    """Keep an exponential moving average (EMA) of the weights, and use it wherever a trained
    model is judged or kept.

    After every real optimizer step (``trainer.global_step`` advanced: accumulation batches
    are skipped) each averaged tensor ``a`` follows the weights ``w``:
    ``a <- d * a + (1 - d) * w``, with ``d = min(decay, (1 + n) / (10 + n))`` after ``n``
    updates (:func:`ema_decay`). ``decay`` comes from ``half_life_epochs``: after that many
    epochs of steps a weight's share in the average has halved
    (``decay = 0.5 ** (1 / (half_life_epochs * steps_per_epoch))``, set at train start from the
    trainer's batches per epoch and ``accumulate_grad_batches``), so one setting means the same
    on a small corpus and on a large one.

    What is averaged: every floating-point parameter and the batch-norm running statistics
    (:func:`averaged_names`); those statistics are themselves a moving average of the batches,
    and averaging them with the weights keeps them consistent with the averaged weights.
    Counters and other buffers stay the trained model's.

    Where the average is used:

    - validation during ``fit`` runs on the averaged weights (swapped in for the validation
      epoch and back after it), so ``val/`` metrics, checkpoint selection, early stopping and
      plateau schedulers judge the average;
    - checkpoints hold the averages in ``state_dict``, so ``test``, ``predict``, export and
      ``EmotionClassifier.load_from_checkpoint`` use them with nothing else to do; the trained
      weights go under ``checkpoint["trained_state_dict"]``, and a fit resumed from the
      checkpoint goes on from them with the average restored;
    - after ``fit`` the model in memory holds the averages.

    With MTS layers in ``kernel_sharing="average"``/``"average_updates"`` the base kernels only
    hold a step's update once ``KernelAveraging`` has folded the branch updates in, so this
    callback must come after it in the trainer's callbacks (refused otherwise): it averages
    the already averaged kernels. (The branch kernels are not in the ``state_dict``: every
    forward rebuilds them from the base.)

    Args:
        half_life_epochs: epochs after which a step's weights count half as much in the
            average; > 0. Around 1-2 smooths out epoch-to-epoch swings.

    Attributes:
        decay: the per-step decay (set at train start).
        num_updates: updates of the average so far.
    """

    def __init__(self, half_life_epochs: float = 1.0) -> None:
        if (
            isinstance(half_life_epochs, bool)
            or not isinstance(half_life_epochs, (int, float))
            or not 0 < half_life_epochs < math.inf
        ):
            raise ValueError(
                f"half_life_epochs must be a positive number, got {half_life_epochs!r}"
            )
        self.half_life_epochs = float(half_life_epochs)
        self.decay: float | None = None
        self.num_updates = 0
        self._average: dict[str, Tensor] | None = None
        self._held: dict[str, Tensor] | None = None  # the trained weights while averages are in
        self._last_global_step: int | None = None

    # ------------------------------------------------------------------ set-up
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        callbacks = trainer.callbacks
        mine = callbacks.index(self)
        if any(isinstance(cb, KernelAveraging) for cb in callbacks[mine + 1 :]):
            raise MisconfigurationException(
                "EMAWeights must come after KernelAveraging in the trainer's callbacks (it "
                "averages the MTS kernels after KernelAveraging has folded each step in); "
                "move it below"
            )
        self._average, self._held, self.num_updates = None, None, 0

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        steps = _steps_per_epoch(trainer)
        self.decay = 0.5 ** (1.0 / (self.half_life_epochs * steps))
        self._last_global_step = trainer.global_step
        if self._average is None:  # not restored from a checkpoint
            self._average = _copy(pl_module, averaged_names(pl_module))

    # ------------------------------------------------------------------ averaging
    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        advanced = self._last_global_step is not None and step > self._last_global_step
        self._last_global_step = step
        if not advanced or self._average is None:
            return
        weight = 1.0 - ema_decay(self.decay, self.num_updates)
        live = pl_module.state_dict()
        with torch.no_grad():
            for name, average in self._average.items():
                average.lerp_(live[name].to(average.dtype), weight)
        self.num_updates += 1

    # ------------------------------------------------------------------ where it is used
    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and self._average is not None and self._held is None:
            self._swap_in(pl_module)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and self._held is not None:
            self._swap_out(pl_module)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._average is not None and self._held is None:
            self._swap_in(pl_module)

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._average is None:
            return
        state = checkpoint["state_dict"]
        if self._held is not None:  # the averages are in the model, hence in `state`
            trained = {k: v.detach().clone() for k, v in self._held.items()}
        else:
            trained = {k: state[k].detach().clone() for k in self._average}
            state.update({k: v.detach().clone() for k, v in self._average.items()})
        checkpoint[TRAINED_STATE_KEY] = trained

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Evaluation and prediction take the averages from `state_dict` as any weights; only a
        # resumed fit goes on from the trained ones.
        trained = checkpoint.get(TRAINED_STATE_KEY)
        if trained is None or trainer.state.fn != "fit":
            return  # without an average, a fit starts one from the weights at train start
        live = pl_module.state_dict()
        self._average = {k: live[k].detach().clone() for k in trained}
        with torch.no_grad():
            for name, value in trained.items():
                live[name].copy_(value)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_updates = int(state_dict["num_updates"])

    # ------------------------------------------------------------------ swapping
    def _swap_in(self, pl_module: pl.LightningModule) -> None:
        """Put the averages into the model, holding the trained weights aside."""
        live = pl_module.state_dict()
        self._held = {k: live[k].detach().clone() for k in self._average}
        with torch.no_grad():
            for name, average in self._average.items():
                live[name].copy_(average)

    def _swap_out(self, pl_module: pl.LightningModule) -> None:
        """Give the model its trained weights back."""
        live = pl_module.state_dict()
        with torch.no_grad():
            for name, value in self._held.items():
                live[name].copy_(value)
        self._held = None


def _copy(module: nn.Module, names: list[str]) -> dict[str, Tensor]:
    state = module.state_dict()
    return {name: state[name].detach().clone() for name in names}


def _steps_per_epoch(trainer: pl.Trainer) -> int:
    """Optimizer steps in one training epoch."""
    batches = trainer.num_training_batches
    if not math.isfinite(batches) or batches < 1:
        raise MisconfigurationException(
            "EMAWeights needs a known number of training batches per epoch (its half-life is in "
            f"epochs), got {batches}; give the train loader a length or set limit_train_batches"
        )
    return max(1, math.ceil(int(batches) / trainer.accumulate_grad_batches))
