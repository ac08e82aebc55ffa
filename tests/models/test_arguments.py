"""Model arguments checked against the constructor's signature before anything is built: the
types a config can hold, unknown names with a suggestion, every zoo model and its MTS options."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pytest

from mts_lightning.arguments import check_keyword_arguments, describe, matches
from mts_lightning.models import build_model, list_models
from mts_lightning.models.registry import _MODELS, ModelArgumentError, check_model_kwargs


@pytest.mark.parametrize(
    ("annotation", "good", "bad", "words"),
    [
        (int, [0, -3], [1.5, "1", True, None], "int"),
        (float, [0.5, 2], ["0.5", False, [1.0]], "float"),
        (bool, [True, False], [1, "yes"], "bool"),
        (str, ["mts"], [3, ["mts"]], "str"),
        (Literal["mts", "conv"], ["mts", "conv"], ["con", 1, None], "one of 'mts', 'conv'"),
        (Sequence[int], [[16, 32], (1,), []], [5, "abc", [16, 3.5]], "a list of int"),
        (tuple[int, int], [[5, 3], (5, 3)], [[5], [5, 3, 1], "53", [5, "3"]], "[int, int]"),
        (tuple[int, ...], [[1, 2, 3], ()], [[1, "2"]], "a list of int"),
        (Mapping[str, Any], [{}, {"a": [1]}], [[("a", 1)], "a", 3], "a mapping"),
        (Sequence[int] | None, [None, [0, 2]], ["0", [True]], "a list of int or null"),
        (
            Iterable[float | tuple[float, float]],
            [[0.7, [1.4, 1.0]], [2]],
            [[[0.7]], 0.7, ["x"]],
            "a list of float or [float, float]",
        ),
        (Any, [None, object(), "x"], [], "Any"),
    ],
)
def test_values_match_their_annotation(annotation, good, bad, words):
    for value in good:
        assert matches(value, annotation), value
    for value in bad:
        assert not matches(value, annotation), value
    assert describe(annotation) == words


def _takes(width: int, mode: Literal["a", "b"] = "a", *, depth: float = 1.0) -> None:
    """A constructor-like function for the checks."""


def _takes_anything(width: int, **rest: Any) -> None:
    """Extra keywords go to ``rest``."""


def test_unknown_names_are_refused_with_the_closest_one_and_the_known_ones():
    with pytest.raises(ValueError) as info:
        check_keyword_arguments(_takes, {"widht": 3}, "toy")
    assert str(info.value) == (
        "toy takes no argument 'widht' (did you mean 'width'?); it takes width, mode, depth"
    )
    with pytest.raises(ValueError, match=r"^toy takes no argument 'zzz'; it takes width, mode"):
        check_keyword_arguments(_takes, {"zzz": 3}, "toy")
    with pytest.raises(ValueError, match=r"^toy takes no argument 'mode'; it takes depth$"):
        check_keyword_arguments(_takes, {"mode": "a"}, "toy", allowed=["depth"])
    check_keyword_arguments(_takes_anything, {"width": 3, "anything": object()}, "toy")


def test_ill_typed_values_are_refused_naming_the_argument():
    check_keyword_arguments(_takes, {"width": 3, "mode": "b", "depth": 2}, "toy")
    with pytest.raises(ValueError) as info:
        check_keyword_arguments(_takes, {"mode": "c"}, "toy")
    assert str(info.value) == "mode must be one of 'a', 'b' for toy, got 'c'"
    with pytest.raises(ValueError, match=r"^depth must be float for toy, got 'deep'$"):
        check_keyword_arguments(_takes, {"depth": "deep"}, "toy")


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_checks_names_and_types_before_building(name):
    cls = _MODELS[name][0]
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    with pytest.raises(ModelArgumentError) as info:
        build_model(name, num_classes=3, dropuot=0.1)
    assert str(info.value).endswith(f"; it takes {', '.join(known)}")
    assert str(info.value).startswith(f"{name} takes no argument 'dropuot'")
    with pytest.raises(ModelArgumentError, match=rf"^num_classes must be int for {name}, got '3'"):
        check_model_kwargs(name, {"num_classes": "3"})
    with pytest.raises(ModelArgumentError, match=r"^input_shape must be \[int, int, int\]"):
        check_model_kwargs(name, {"num_classes": 3, "input_shape": [1, 64]})


def test_mts_options_are_checked_by_name_and_type():
    check_model_kwargs("compact_cnn", {"num_classes": 3, "mts": {"kernel_sharing": "autograd"}})
    with pytest.raises(ModelArgumentError, match=r"^mts: unknown option\(s\) kernel_sharng;"):
        check_model_kwargs("compact_cnn", {"num_classes": 3, "mts": {"kernel_sharng": "x"}})
    with pytest.raises(
        ModelArgumentError,
        match=r"^mts: training_mode must be str for MultiscaleConv2d, got \[1\]$",
    ):
        check_model_kwargs("resnet18", {"num_classes": 3, "mts": {"training_mode": [1]}})
    with pytest.raises(ModelArgumentError, match=r"^mts must be a mapping or null for alexnet"):
        check_model_kwargs("alexnet", {"num_classes": 3, "mts": [0.7, 1.4]})
    with pytest.raises(ValueError, match=r"^unknown model name 'compact'; known models: alexnet"):
        check_model_kwargs("compact", {})
