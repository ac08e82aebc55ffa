"""The one rule for a run's folder: where ``config.yaml``, ``checkpoints/``, the plots, the
split lists and the predictions of one run go."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl


def run_dir(trainer: pl.Trainer) -> Path:
    """The folder of this run.

    The first logger's ``log_dir`` (CSV, TensorBoard: ``save_dir/name/version_N``); for a
    logger without one (W&B), ``save_dir/name/version`` exactly as ``ModelCheckpoint`` builds
    its ``checkpoints/`` folder, so every file of a run lands beside its checkpoints whatever
    the logger order; the trainer's ``default_root_dir`` without loggers.

    Not a collective: rank zero may call it alone. Under DDP a logger's version is only known
    on rank zero, so code that needs the folder on every rank broadcasts the result.
    """
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    log_dir = getattr(logger, "log_dir", None)
    if log_dir:
        return Path(log_dir)
    save_dir = logger.save_dir or trainer.default_root_dir
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(os.fspath(save_dir), str(logger.name), version)
