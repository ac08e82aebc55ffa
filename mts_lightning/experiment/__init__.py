"""Experiments: every (variant, fold, seed) of an experiment file as an ordinary fit and tests
of the selected checkpoint, ``results.csv``, statistics and figures.

Run from the command line: ``mts-lightning experiment --config FILE --output_dir DIR``
(:mod:`mts_lightning.experiment.command`).
"""

from mts_lightning.callbacks.monitors import refuse_test_monitors
from mts_lightning.experiment.spec import (
    Condition,
    ExperimentError,
    ExperimentSpec,
    RunKey,
    load_spec,
    tempo_conditions,
)

__all__ = [
    "Condition",
    "ExperimentError",
    "ExperimentSpec",
    "RunKey",
    "load_spec",
    "refuse_test_monitors",
    "tempo_conditions",
]
