"""Small network building blocks shared by the studies' models."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

__all__ = ["ACTIVATION_FACTORIES", "activation"]

#: Activation name → factory of a fresh module (LeakyReLU with slope 0.2).
ACTIVATION_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def activation(name: str, allowed: Iterable[str]) -> nn.Module:
    """A fresh activation module (never shared between layers, as ``shap.DeepExplainer``
    needs); ``allowed`` are the names the calling model offers."""
    allowed = tuple(allowed)
    if name not in allowed or name not in ACTIVATION_FACTORIES:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(allowed)}")
    return ACTIVATION_FACTORIES[name]()
