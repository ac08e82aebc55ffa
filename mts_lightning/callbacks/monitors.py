"""Checkpoints and early stopping are chosen on validation data only."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

_TEST_METRIC = re.compile(r"^test[/_]")


def refuse_test_monitors(callbacks: Iterable[Any], model: Any = None) -> None:
    """Raise ``ValueError`` when a ``ModelCheckpoint`` or ``EarlyStopping`` callback (or the
    model's ``lr_scheduler_monitor``) watches a test metric: choosing a checkpoint, or when to
    stop, on the test split makes the test score an optimistic, invalid estimate."""
    watched = [
        (type(callback).__name__, callback.monitor)
        for callback in callbacks
        if isinstance(callback, (ModelCheckpoint, EarlyStopping))
    ]
    scheduler_monitor = getattr(model, "lr_scheduler_monitor", None)
    if getattr(model, "lr_scheduler_factory", None) is not None and scheduler_monitor:
        watched.append(("the model's lr_scheduler_monitor", scheduler_monitor))
    for owner, monitor in watched:
        if monitor and _TEST_METRIC.match(str(monitor)):
            raise ValueError(
                f"{owner} monitors {monitor!r}, a test metric: checkpoints and early stopping "
                "must be chosen on validation data only; monitor a validation metric instead, "
                f"e.g. {'val/' + str(monitor)[5:]!r}"
            )
