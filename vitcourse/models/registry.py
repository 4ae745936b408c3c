"""One way to build a model by name: ``create_model("resnet20", num_classes=10)``."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .._names import unknown_name

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, fn: Callable[..., nn.Module]) -> None:
    """Make the constructor ``fn`` available as ``create_model(name, **kwargs)``. Every model
    module registers its names this way, at the end of the module."""
    if name in _MODELS:
        raise ValueError(f"model name {name!r} is registered twice")
    _MODELS[name] = fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Image models take ``num_classes``, ``in_channels``, ``image_size``."""
    if name not in _MODELS:
        raise KeyError(unknown_name("model", name, _MODELS))
    return _MODELS[name](**kwargs)
