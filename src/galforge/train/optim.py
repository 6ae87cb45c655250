"""The optimiser and learning-rate schedule :func:`galforge.train.loop.fit` builds from
:class:`~galforge.train.settings.TrainSettings`.

Adam or AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) over the trainable
parameters; a cosine schedule stepped once per optimiser step down to ``lr_min``
(Loshchilov & Hutter 2017), ``ReduceLROnPlateau`` stepped once per epoch on the
validation loss, or none. Their ``state_dict`` goes into the checkpoint, so a
resumed run continues both where they were.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from galforge.train.settings import TrainSettings

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(model: nn.Module, cfg: TrainSettings) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over the trainable parameters of ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainSettings, n_batches: int) -> Any:
    """``cfg.scheduler`` for ``optimizer`` (``n_batches`` per epoch), or None."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, cfg.epochs * n_batches), eta_min=cfg.lr_min)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.lr_min)
    return None
