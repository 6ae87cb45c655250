"""The optimiser and learning-rate schedule :func:`galforge.train.loop.fit` builds from
:class:`~galforge.train.settings.TrainSettings`.

Adam, AdamW or RAdam (``cfg.betas``; Kingma & Ba 2015; Loshchilov & Hutter 2019; Liu et al. 2020) over
the trainable parameters; a cosine schedule stepped once per optimiser step down to
``lr_min`` (Loshchilov & Hutter 2017), ``ReduceLROnPlateau`` stepped once per epoch on the
validation loss, an exponential decay in steps (:class:`SteppedExponentialLR`, stepped
once per optimiser step), or none. Their ``state_dict`` goes into the checkpoint, so a
resumed run continues both where they were.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from galforge.train.settings import TrainSettings

__all__ = ["STEP_SCHEDULERS", "SteppedExponentialLR", "make_optimizer", "make_scheduler"]

#: Schedules stepped once per optimiser step (the others once per epoch, or never).
STEP_SCHEDULERS: tuple[str, ...] = ("cosine", "exponential")


class SteppedExponentialLR(torch.optim.lr_scheduler.LRScheduler):
    """``lr = max(lr_min, lr0 * gamma^k)``: ``k`` grows by one every ``every`` steps, and
    every ``slow_every`` steps once the rate is at or below ``slow_below``.

    A closed form of the step count (``last_epoch``), so its ``state_dict`` resumes it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, gamma: float, every: int,
                 slow_every: int, slow_below: float, lr_min: float = 0.0) -> None:
        self.gamma, self.every, self.slow_every = float(gamma), int(every), int(slow_every)
        self.slow_below, self.lr_min = float(slow_below), float(lr_min)
        super().__init__(optimizer)

    def _factor(self, lr0: float, step: int) -> float:
        # decays needed before the rate is at or below slow_below
        if lr0 <= self.slow_below:
            fast = 0
        else:
            fast = max(0, math.ceil(math.log(self.slow_below / lr0) / math.log(self.gamma)))
        k = step // self.every
        if k > fast:
            k = fast + (step - fast * self.every) // self.slow_every
        return self.gamma**k

    def get_lr(self) -> list[float]:
        return [max(self.lr_min, base * self._factor(base, self.last_epoch))
                for base in self.base_lrs]


def make_optimizer(model: nn.Module, cfg: TrainSettings) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over the trainable parameters of ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "radam": torch.optim.RAdam}[cfg.optimizer]
    return cls(params, lr=cfg.lr, betas=(float(cfg.betas[0]), float(cfg.betas[1])),
               weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainSettings, n_batches: int) -> Any:
    """``cfg.scheduler`` for ``optimizer`` (``n_batches`` per epoch), or None."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, cfg.epochs * n_batches), eta_min=cfg.lr_min)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.lr_min)
    if cfg.scheduler == "exponential":
        return SteppedExponentialLR(optimizer, cfg.gamma, cfg.gamma_every, cfg.gamma_slow_every,
                                    cfg.gamma_slow_below, cfg.lr_min)
    return None
