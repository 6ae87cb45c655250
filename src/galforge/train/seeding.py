"""Seeding and deterministic-algorithm switches for reproducible training.

References
----------
PyTorch documentation, "Reproducibility"
(https://pytorch.org/docs/stable/notes/randomness.html): seed every RNG, use
``torch.use_deterministic_algorithms`` and deterministic cuDNN, and set
``CUBLAS_WORKSPACE_CONFIG`` for deterministic cuBLAS on CUDA >= 10.2.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["seed_everything", "deterministic_mode"]


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, numpy's global RNG and torch (CPU and every CUDA device).

    Call it before building a model so that the initial weights are
    reproducible; :func:`galforge.train.loop.fit` calls it again with
    ``TrainSettings.seed`` at the start of a fresh run.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds code that uses the global state
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool = True) -> Iterator[None]:
    """Deterministic algorithms (``warn_only=True``) and cuDNN inside the block.

    The previous switches are restored on exit. ``CUBLAS_WORKSPACE_CONFIG`` is
    set to ``:4096:8`` when unset (it only takes effect before CUDA initialises,
    so it is left set afterwards).
    """
    if not enabled:
        yield
        return
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic = prev[2]
        torch.backends.cudnn.benchmark = prev[3]
