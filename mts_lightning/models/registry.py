"""Name -> model registry, so that configs and users can pick a model by string."""

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from mts_lightning.models.layers import reject_flat_mts_options

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


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """The model registered as ``name``, e.g. ``build_model("compact_cnn", num_classes=8,
    mts={"kernel_sharing": "autograd"})``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
    reject_flat_mts_options(kwargs)
    cls, defaults = _MODELS[name]
    return cls(**{**defaults, **kwargs})


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)
