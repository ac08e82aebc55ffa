"""Keyword arguments checked against a constructor's signature before it runs.

A model, a corpus's options or a group of DataModule settings built from a config receives
plain values (YAML: numbers, strings, lists, mappings). A mistyped name or a value of the
wrong type would otherwise surface as a ``TypeError`` deep inside the constructor; here each
becomes one ``ValueError`` that names the argument, says what the constructor takes and
suggests the closest name. On the ground floor: the zoo (``models``) and the data settings
(``data``) both check with it.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Union

# Parameterised containers a config value can stand for; YAML has lists where Python has tuples.
_LISTS = (list, tuple, abc.Sequence, abc.Iterable, abc.Collection, abc.MutableSequence)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def check_keyword_arguments(
    function: Callable[..., Any],
    kwargs: Mapping[str, Any],
    owner: str,
    allowed: Iterable[str] | None = None,
) -> None:
    """Raise ``ValueError`` for the first of ``kwargs`` that ``function`` does not take (only
    ``allowed`` names count, when given), or whose value does not match the parameter's type
    annotation. ``owner`` names the function in the message (e.g. ``"compact_cnn"``).

    Annotations read: ``bool``, ``int``, ``float`` (ints too), ``str``, ``Literal``, unions and
    ``None``, ``Sequence``/``Iterable``/``list``/``tuple`` (lists or tuples, element types
    checked), ``Mapping``/``dict``, other classes (``isinstance``); anything else is left to
    the function's own checks.
    """
    signature = inspect.signature(function)
    parameters = [
        name
        for name, parameter in signature.parameters.items()
        if name != "self"
        and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    if allowed is not None:
        allowed = set(allowed)
        parameters = [name for name in parameters if name in allowed]
    takes_any = allowed is None and any(
        p.kind is p.VAR_KEYWORD for p in signature.parameters.values()
    )
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation that cannot be resolved: names are still checked
        hints = {}
    for name, value in kwargs.items():
        if name not in parameters:
            if takes_any:
                continue
            close = difflib.get_close_matches(name, parameters, n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"{owner} takes no argument {name!r}{suggestion}; it takes {', '.join(parameters)}"
            )
        if name in hints and not matches(value, hints[name]):
            raise ValueError(f"{name} must be {describe(hints[name])} for {owner}, got {value!r}")


def matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits the type ``annotation`` (see :func:`check_keyword_arguments`)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation in (int, float):
        numbers = (int,) if annotation is int else (int, float)
        return isinstance(value, numbers) and not isinstance(value, bool)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(args)
            and all(matches(v, a) for v, a in zip(value, args, strict=True))
        )
    if origin in _LISTS:
        return isinstance(value, (list, tuple)) and (
            not args or all(matches(v, args[0]) for v in value)
        )
    if origin in _MAPPINGS:
        return isinstance(value, Mapping) and (
            not args or all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
        )
    if origin is None and isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # an annotation not read here (a callable, a protocol): the function checks


def describe(annotation: Any) -> str:
    """``annotation`` in words: ``a list of int``, ``[int, int]``, ``one of 'mts', 'conv'``."""
    if annotation is None or annotation is type(None):
        return "null"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return "[" + ", ".join(describe(arg) for arg in args) + "]"
    if origin in _LISTS:
        return f"a list of {describe(args[0]) if args else 'values'}"
    if origin in _MAPPINGS:
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


D = typing.TypeVar("D")


def build_dataclass(kind: type[D], value: D | Mapping[str, Any], owner: str) -> D:
    """``value`` as the dataclass ``kind``: itself when it is one, else built from a mapping
    whose names and value types are checked first (:func:`check_keyword_arguments`, ``owner``
    naming it in the message); a nested mapping whose field's type is a dataclass is built the
    same way. Raises ``ValueError`` for anything else."""
    if isinstance(value, kind):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{owner} must be a mapping of {kind.__name__}'s fields, got {value!r}")
    hints = typing.get_type_hints(kind)
    built = dict(value)
    for name, item in value.items():
        nested = [
            a for a in typing.get_args(hints.get(name)) or (hints.get(name),) if _is_dataclass(a)
        ]
        if nested and isinstance(item, Mapping):
            built[name] = build_dataclass(nested[0], item, f"{owner}.{name}")
    check_keyword_arguments(kind, built, owner)
    return kind(**built)


def _is_dataclass(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)
