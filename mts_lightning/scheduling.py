"""When a scheduler that watches a validation metric (``ReduceLROnPlateau``) may step.

Lightning steps such a scheduler every ``frequency`` epochs (``interval="epoch"``, counted from
epoch 1) or every ``frequency`` training batches of the epoch (``interval="step"``), and stops
the run when the metric is missing. Validation runs on its own rhythm
(``check_val_every_n_epoch``, ``val_check_interval``). This module picks the frequency that
makes every scheduler step follow a validation, or refuses a rhythm no frequency can follow,
saying how to fix it, before the first training step instead of after a wasted epoch.
"""

from __future__ import annotations

import math

from lightning.fabric.utilities.exceptions import MisconfigurationException


def plateau_frequency(
    *,
    monitor: str,
    interval: str,
    validates: bool,
    check_val_every_n_epoch: int | None,
    val_check_batch: int | float | None,
    num_training_batches: int | float,
    accumulate_grad_batches: int = 1,
) -> int:
    """The ``frequency`` of a plateau scheduler watching the validation metric ``monitor``.

    Args:
        monitor: the watched metric (only used in messages).
        interval: ``"epoch"`` or ``"step"``, the scheduler's interval.
        validates: whether the run validates at all (``trainer.enable_validation``).
        check_val_every_n_epoch: the trainer's setting; None when ``val_check_interval``
            counts batches across epochs.
        val_check_batch: the training batches between validations, as the trainer resolved
            ``val_check_interval`` (``trainer.val_check_batch``); None for a time interval,
            ``inf`` for a training set without length.
        num_training_batches: training batches per epoch (``trainer.num_training_batches``).
        accumulate_grad_batches: batches per optimizer step; step schedulers only step on
            those.

    Raises:
        MisconfigurationException: the scheduler could step without a fresh validation.
    """
    what = f"the lr scheduler watches the validation metric {monitor!r}"
    if not validates:
        raise MisconfigurationException(
            f"{what}, but this run never validates (no validation data, or "
            "limit_val_batches=0): watch a training metric, e.g. "
            "--model.lr_scheduler_monitor train/loss, or give the run validation data"
        )
    if val_check_batch is None:
        raise MisconfigurationException(
            f"{what}, but validation runs on a clock (val_check_interval as a time), which no "
            "scheduler frequency can follow: give --trainer.val_check_interval as a number of "
            "batches or a fraction of an epoch"
        )
    if interval == "epoch":
        if check_val_every_n_epoch is None:
            raise MisconfigurationException(
                f"{what} and steps at epoch ends (--model.lr_scheduler_interval epoch), but "
                "--trainer.check_val_every_n_epoch is null, so validation runs every "
                f"{val_check_batch} training batches counted across epochs, not in step with "
                "epochs: set --trainer.check_val_every_n_epoch N (validation in every N-th "
                "epoch), or step the scheduler with --model.lr_scheduler_interval step"
            )
        # Validation runs at least once in each epoch e with (e + 1) % N == 0, and Lightning
        # steps epoch schedulers after epochs with (e + 1) % frequency == 0.
        return check_val_every_n_epoch
    if interval != "step":
        raise ValueError(f"interval must be 'epoch' or 'step', got {interval!r}")
    if check_val_every_n_epoch is not None and check_val_every_n_epoch > 1:
        raise MisconfigurationException(
            f"{what} and steps every few training batches (--model.lr_scheduler_interval "
            f"step), but validation runs only in every {check_val_every_n_epoch}-th epoch: use "
            "--model.lr_scheduler_interval epoch, or --trainer.check_val_every_n_epoch 1"
        )
    if math.isinf(val_check_batch) or math.isinf(num_training_batches):
        raise MisconfigurationException(
            f"{what} and steps every few training batches (--model.lr_scheduler_interval "
            "step), but the training data has no length, so validation only runs at the end "
            "of an epoch: use --model.lr_scheduler_interval epoch"
        )
    every = int(val_check_batch)
    if check_val_every_n_epoch is None and num_training_batches % every:
        # Validation counts batches across epochs; step schedulers count within the epoch.
        raise MisconfigurationException(
            f"{what} and steps every {every} training batches (--model.lr_scheduler_interval "
            f"step, --trainer.val_check_interval {every}), counted within an epoch of "
            f"{int(num_training_batches)} batches, while validation counts them across "
            f"epochs: use a val_check_interval that divides {int(num_training_batches)}, or "
            "--trainer.check_val_every_n_epoch 1"
        )
    batches = int(num_training_batches)
    # The step after a batch is skipped while gradients accumulate, except on the last batch.
    if any(b % accumulate_grad_batches and b != batches for b in range(every, batches + 1, every)):
        raise MisconfigurationException(
            f"{what} and steps after optimizer steps only, one every "
            f"{accumulate_grad_batches} batches (--trainer.accumulate_grad_batches), but "
            f"validation runs every {every} batches: use a val_check_interval that is a "
            f"multiple of {accumulate_grad_batches}"
        )
    return every
