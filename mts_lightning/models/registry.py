"""Name -> model registry, so that configs and users can pick a model by string."""

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from mts_lightning.arguments import check_keyword_arguments
from mts_lightning.models.layers import check_mts_options, reject_flat_mts_options

M = TypeVar("M", bound=type[nn.Module])

_MODELS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {}


def register_model(name: str, **defaults: Any) -> Callable[[M], M]:
    """Class decorator registering a model under ``name``; ``defaults`` are keyword arguments
    that ``build_model(name)`` passes unless overridden (one class can serve several names)."""

    def decorator(cls: M) -> M:
        if name in _MODELS and _MODELS[name][0].__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name][0]}")
        _MODELS[name] = (cls, defaults)
        return cls

    return decorator


class ModelArgumentError(ValueError):
    """An argument a registered model does not take, or a value of the wrong type for it."""


def check_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` (one line) unless ``name`` is a registered model that takes every
    one of ``kwargs`` with a value of the type its constructor declares, the MTS options in
    ``mts`` included (:class:`ModelArgumentError`, naming the argument); builds nothing."""
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
    reject_flat_mts_options(kwargs)
    try:
        check_keyword_arguments(_MODELS[name][0].__init__, kwargs, name)
        if isinstance(kwargs.get("mts"), Mapping):
            check_mts_options(kwargs["mts"])
    except ValueError as err:
        raise ModelArgumentError(str(err)) from None


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """The model registered as ``name``, e.g. ``build_model("compact_cnn", num_classes=8,
    mts={"kernel_sharing": "autograd"})``; its arguments are checked first
    (:func:`check_model_kwargs`)."""
    check_model_kwargs(name, kwargs)
    cls, defaults = _MODELS[name]
    return cls(**{**defaults, **kwargs})


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)
