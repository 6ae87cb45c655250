"""galforge.train: the training machinery every study's model uses.

* :func:`~galforge.train.loop.fit` - seeded, checkpointed, resumable training
  loop with early stopping, metrics CSV and NaN guard;
* :class:`~galforge.train.settings.TrainSettings` - its frozen configuration;
* :func:`~galforge.train.split.split_indices` / :class:`~galforge.train.split.SplitSettings`
  - the seeded train/validation split;
* :func:`~galforge.train.job.run_training_job` - the body of a study's training
  job (split, seeded build, resumable fit, outputs written atomically);
* :mod:`galforge.train.vae` - pieces every VAE shares;
  :mod:`galforge.train.flows` - conditional normalizing flows;
* :func:`~galforge.train.devices.select_device` - one GPU per concurrent job
  (crash-safe ``flock`` claims), CPU fallback;
* :mod:`galforge.train.distributed` - data-parallel training under ``torchrun``
  (``TrainSettings.devices`` > 1);
* :func:`~galforge.train.checkpoint.load_for_inference` - rebuild a trained
  model from its checkpoint alone, without importing the training loop;
* :func:`~galforge.train.seeding.seed_everything`.

Names are imported lazily, so ``import galforge.train.checkpoint`` (inference)
or ``galforge.train.devices`` never pulls in the training loop.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "TrainSettings": "galforge.train.settings",
    "SplitSettings": "galforge.train.split",
    "split_indices": "galforge.train.split",
    "TrainingJob": "galforge.train.job",
    "run_training_job": "galforge.train.job",
    "settings_key": "galforge.train.job",
    "fit": "galforge.train.loop",
    "evaluate": "galforge.train.loop",
    "StepInfo": "galforge.train.loop",
    "TrainResult": "galforge.train.loop",
    "TrainingDivergedError": "galforge.train.loop",
    "CheckpointError": "galforge.train.checkpoint",
    "InferenceMeta": "galforge.train.checkpoint",
    "load_for_inference": "galforge.train.checkpoint",
    "load_checkpoint": "galforge.train.checkpoint",
    "record_init_kwargs": "galforge.train.checkpoint",
    "select_device": "galforge.train.devices",
    "claim_gpu": "galforge.train.devices",
    "seed_everything": "galforge.train.seeding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'galforge.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
