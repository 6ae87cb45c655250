"""Training settings: one frozen, checked settings class shared by every study.

:class:`TrainSettings` holds every knob of :func:`galforge.train.loop.fit`. It is a
:class:`galforge.settings.Settings`: build it with :meth:`~galforge.settings.Settings.from_dict`,
which rejects unknown keys by name; every field is checked on construction and a bad
value raises :class:`~galforge.settings.SettingsError` (a :class:`ValueError`) naming it.

This module imports neither :mod:`torch` nor the training loop, so a Snakemake
rule or the config validator can check a training section cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from galforge.settings import Settings, SettingsError, choice, flag, integer, number, numbers

__all__ = ["AMP_DTYPES", "OPTIMIZERS", "RESUME_SAFE_FIELDS", "SCHEDULERS", "TrainSettings"]

#: Optimisers :func:`~galforge.train.loop.fit` can build (Kingma & Ba 2015;
#: Loshchilov & Hutter 2019 for the decoupled weight decay of AdamW; Liu et al. 2020 for
#: RAdam, the rectified Adam GalacticFlow trains with).
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "radam")
#: Learning-rate schedules: none, cosine annealing per optimiser step
#: (Loshchilov & Hutter 2017, without restarts), reduce-on-plateau of the
#: validation loss, stepped once per epoch, or exponential decay in steps (a factor
#: ``gamma`` every ``gamma_every`` optimiser steps, every ``gamma_slow_every`` once the
#: rate is at or below ``gamma_slow_below``: GalacticFlow's schedule).
SCHEDULERS: tuple[str, ...] = ("none", "cosine", "plateau", "exponential")
#: Autocast dtypes for mixed precision on CUDA (Micikevicius et al. 2018).
AMP_DTYPES: tuple[str, ...] = ("float16", "bfloat16")

#: Fields that may differ between a checkpoint and the run that resumes it:
#: they change neither the numbers nor the order of the computation.
RESUME_SAFE_FIELDS: frozenset[str] = frozenset({"num_workers", "progress", "checkpoint_every"})


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Every setting of one training run (the ``train`` section of a study).

    ``scheduler="cosine"`` anneals from ``lr`` to ``lr_min`` over
    ``epochs x batches-per-epoch`` optimiser steps; ``"plateau"`` multiplies the rate
    by ``plateau_factor`` after ``plateau_patience`` epochs without a better
    validation loss, never below ``lr_min``. Gradient clipping follows Pascanu et
    al. (2013), early stopping Prechelt (1998). ``amp`` and ``compile`` are ignored,
    with a log line, on CPU.
    """

    epochs: int = integer(10, "Maximum number of passes over the training data.", lo=1)
    batch_size: int = integer(64, "Samples per optimiser step (and per validation batch).",
                              lo=1)
    lr: float = number(1e-3, "Initial learning rate.", lo=0.0, lo_open=True)
    weight_decay: float = number(
        0.0, "L2 penalty (adam) or decoupled weight decay (adamw).", lo=0.0)
    optimizer: str = choice("adam", OPTIMIZERS, "Optimiser (Adam or AdamW).")
    betas: tuple[float, float] = numbers(
        (0.9, 0.999), "The optimiser's (beta1, beta2) moment decay rates (torch's defaults; "
        "a WGAN-GP trains with (0, 0.9)-like values).", lo=0.0, hi=1.0, hi_open=True, length=2)
    scheduler: str = choice("none", SCHEDULERS,
                            "Learning-rate schedule: none, cosine (per step) or plateau "
                            "(per epoch, on the validation loss).")
    lr_min: float = number(0.0, "Floor of both schedules (below lr when one is used).",
                           lo=0.0)
    plateau_factor: float = number(0.5, "Factor of the plateau schedule.", lo=0.0, hi=1.0,
                                   lo_open=True, hi_open=True)
    plateau_patience: int = integer(
        5, "Epochs without a better validation loss before the plateau schedule acts.", lo=0)
    gamma: float = number(0.998, "Factor of the exponential schedule.", lo=0.0, hi=1.0,
                          lo_open=True, hi_open=True)
    gamma_every: int = integer(10, "Optimiser steps between two factors of the exponential "
                               "schedule.", lo=1)
    gamma_slow_every: int = integer(
        120, "Optimiser steps between two factors once the rate is at or below "
        "gamma_slow_below (exponential schedule).", lo=1)
    gamma_slow_below: float = number(
        3e-6, "Rate at or below which the exponential schedule slows down.", lo=0.0)
    grad_clip: float | None = number(
        None, "Clip the global gradient L2 norm to this value (null: no clipping).",
        lo=0.0, lo_open=True, optional=True)
    checkpoint_every: int = integer(
        0, "Also checkpoint every this many optimiser steps (0: at the end of each epoch "
        "and of training only).", lo=0)
    early_stopping_patience: int | None = integer(
        None, "Stop after this many epochs without progress of the validation loss "
        "(null: never).", lo=1, optional=True)
    early_stopping_min_delta: float = number(
        0.0, "Smallest decrease of the validation loss that counts as progress.", lo=0.0)
    restore_best_weights: bool = flag(
        False, "At the end, load the weights of the epoch with the best validation loss.")
    seed: int = integer(0, "Seeds torch, numpy, random and the per-epoch shuffling.", lo=0,
                        hi=2**63 - 1)
    deterministic: bool = flag(
        True, "Deterministic algorithms (warn only) and deterministic cuDNN during the run.")
    drop_last: bool = flag(False, "Drop the last incomplete training batch of each epoch.")
    amp: bool = flag(False, "Mixed precision on CUDA (torch.autocast).")
    amp_dtype: str = choice("float16", AMP_DTYPES,
                            "Autocast dtype (float16 also uses a gradient scaler).")
    compile: bool = flag(False, "torch.compile the model on CUDA.")
    num_workers: int = integer(0, "DataLoader worker processes (0: load in the training "
                               "process).", lo=0)
    devices: int = integer(
        1, "Devices of one training job: more than 1 trains data-parallel (PyTorch DDP), one "
        "process per device started by torchrun, the global batch split between them (GPUs; "
        "without CUDA, CPU processes over gloo); the workflow claims that many gpu resources.",
        lo=1, hi=64)
    progress: bool = flag(True, "Show a tqdm progress bar.")

    def check(self) -> None:
        if self.lr_min >= self.lr and self.scheduler != "none":
            raise SettingsError("lr_min", f"= {self.lr_min} must be below lr = {self.lr}")

    def resume_mismatches(self, other: dict[str, Any]) -> list[str]:
        """Fields (outside :data:`RESUME_SAFE_FIELDS`) where ``other`` differs from ``self``."""
        mine = self.to_dict()
        keys = sorted((set(mine) | set(other)) - RESUME_SAFE_FIELDS)
        return [k for k in keys if mine.get(k) != other.get(k)]
