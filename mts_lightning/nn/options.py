"""The options of the MTS layers, defined once: mode names, default factors and their checks.

The 1-D and 2-D layers, the conv factory of the model zoo and the zoo's constructors all
take their defaults and their validation from here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

ScalePair = tuple[float, float]

OUTPUT_TYPES = ("pooled_map", "concat_fmaps", "interleave_chdim")
TRAINING_MODES = ("train_and_eval", "only_eval", "only_train", "only_gradients")
TRAINING_MODE_ALIASES = {"only_gradient": "only_gradients"}
KERNEL_SHARING_MODES = ("average", "average_updates", "autograd")
#: Modes in which branch kernels are parameters that ``update_kernels()`` folds back.
AVERAGING_MODES = ("average", "average_updates")
FMAP_ALIGN_MODES = ("interpolate", "crop")
FUSE_MODES = ("auto", "always", "never")
#: How the branch maps become the pooled output (``merge``): the published maximum first.
MERGE_RULES = ("max", "mean", "logsumexp", "softmax", "attention")
#: The rules that divide the maps by a ``temperature``.
TEMPERATURE_RULES = ("logsumexp", "softmax")

#: The published layer's factors: one branch 0.7 times as long in time, one 1.428 times.
DEFAULT_SCALE_FACTORS: tuple[ScalePair, ...] = ((0.7, 1.0), (1.428, 1.0))
#: The same factors for the 1-D layer, which has no frequency axis.
DEFAULT_SCALE_FACTORS_1D: tuple[float, ...] = tuple(s for s, _ in DEFAULT_SCALE_FACTORS)


def is_number(value: Any) -> bool:
    """A real number, ``bool`` excluded."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_factor(value: Any, entry: Any) -> float:
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"scale_factors: every factor must be a finite number > 0, got {value!r} "
            f"in entry {entry!r}"
        )
    return float(value)


def normalize_scale_factors(
    scale_factors: Any, *, allow_pairs: bool = True
) -> tuple[ScalePair, ...]:
    """Turn user ``scale_factors`` into a tuple of ``(s_time, s_freq)`` pairs.

    A bare number ``s`` means ``(s, 1.0)``; pairs are refused when ``allow_pairs`` is False
    (the 1-D layer has no frequency axis).
    """
    if scale_factors is None or isinstance(scale_factors, (str, bytes)) or is_number(scale_factors):
        raise ValueError(
            "scale_factors must be a list of numbers or (s_time, s_freq) pairs, "
            f"got {scale_factors!r}"
        )
    pairs = []
    for entry in scale_factors:
        if is_number(entry):
            pairs.append((_check_factor(entry, entry), 1.0))
        elif allow_pairs and isinstance(entry, Sequence) and len(entry) == 2:
            pairs.append((_check_factor(entry[0], entry), _check_factor(entry[1], entry)))
        else:
            expected = "a number or an (s_time, s_freq) pair" if allow_pairs else "a number"
            raise ValueError(f"scale_factors: each entry must be {expected}, got {entry!r}")
    return tuple(pairs)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming ``name``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_training_mode(training_mode: Any, output_type: str) -> str:
    """The canonical ``training_mode`` (aliases resolved), checked against ``output_type``."""
    training_mode = TRAINING_MODE_ALIASES.get(training_mode, training_mode)
    check_choice("training_mode", training_mode, TRAINING_MODES)
    if training_mode != "train_and_eval" and output_type != "pooled_map":
        raise ValueError(
            f"training_mode={training_mode!r} needs output_type='pooled_map' (got "
            f"{output_type!r}): other output types change the output shape, which would "
            "then differ between training and evaluation"
        )
    return training_mode


def check_modes(
    output_type: Any, training_mode: Any, kernel_sharing: Any, fmap_align: Any, fuse_branches: Any
) -> tuple[str, str, str, str, str]:
    """The layer's mode options, checked, with ``training_mode``'s alias resolved."""
    return (
        check_choice("output_type", output_type, OUTPUT_TYPES),
        check_training_mode(training_mode, output_type),
        check_choice("kernel_sharing", kernel_sharing, KERNEL_SHARING_MODES),
        check_choice("fmap_align", fmap_align, FMAP_ALIGN_MODES),
        check_choice("fuse_branches", fuse_branches, FUSE_MODES),
    )


def check_merge(
    merge: Any, temperature: Any, learn_temperature: Any, scale_dropout: Any, output_type: str
) -> tuple[str, float, bool, float]:
    """The merge options, checked: ``merge``, ``temperature``, ``learn_temperature``,
    ``scale_dropout``. ``output_type="concat_fmaps"`` merges nothing, so it takes none of
    them."""
    check_choice("merge", merge, MERGE_RULES)
    if not is_number(temperature) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not isinstance(learn_temperature, bool):
        raise ValueError(f"learn_temperature must be True or False, got {learn_temperature!r}")
    if (temperature != 1.0 or learn_temperature) and merge not in TEMPERATURE_RULES:
        rules = " or ".join(map(repr, TEMPERATURE_RULES))
        raise ValueError(
            f"temperature and learn_temperature apply to merge={rules} only; got "
            f"temperature={temperature!r}, learn_temperature={learn_temperature!r} with "
            f"merge={merge!r}"
        )
    if not is_number(scale_dropout) or not 0.0 <= scale_dropout < 1.0:
        raise ValueError(f"scale_dropout must be a probability in [0, 1), got {scale_dropout!r}")
    if output_type == "concat_fmaps" and (merge != "max" or scale_dropout > 0):
        raise ValueError(
            f"merge={merge!r} and scale_dropout={scale_dropout!r} need output_type 'pooled_map' "
            "or 'interleave_chdim': 'concat_fmaps' keeps every branch map and merges none"
        )
    return merge, float(temperature), learn_temperature, float(scale_dropout)


def runs_branches(training_mode: str, training: bool) -> bool:
    """Whether ``training_mode`` runs the stretched branches in training (or evaluation)."""
    if training_mode == "only_eval":
        return not training
    if training_mode == "only_train":
        return training
    return True


def check_penalty(stretch_penalty_lambda: Any, legacy: Any = None) -> float:
    """The stretch penalty, given as ``stretch_penalty_lambda`` or its original spelling
    ``stretch_penality_lambda`` (``legacy``), as a finite float."""
    if legacy is not None:
        if stretch_penalty_lambda not in (0.0, legacy):
            raise ValueError(
                "stretch_penality_lambda is an alias of stretch_penalty_lambda; got both, with "
                f"different values ({legacy!r} and {stretch_penalty_lambda!r})"
            )
        stretch_penalty_lambda = legacy
    if not is_number(stretch_penalty_lambda) or not math.isfinite(stretch_penalty_lambda):
        raise ValueError(
            f"stretch_penalty_lambda must be a finite number, got {stretch_penalty_lambda!r}"
        )
    return float(stretch_penalty_lambda)
