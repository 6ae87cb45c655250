"""Pieces every variational autoencoder of galforge shares.

* :func:`reparameterize` - ``z = μ + σ ε`` (Kingma & Welling 2014), the draw of
  the training-mode forward pass;
* :func:`kl_to_standard_normal` - the element-wise KL of a diagonal Gaussian
  posterior to the N(0, 1) prior;
* :func:`eval_mode` - a context manager for inference passes that restores the
  previous train/eval mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["eval_mode", "kl_to_standard_normal", "reparameterize"]


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """One draw ``μ + exp(½ log σ²) · ε``, ``ε ~ N(0, I)`` from the global torch RNG."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """Element-wise KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block, the previous mode restored afterwards."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)
