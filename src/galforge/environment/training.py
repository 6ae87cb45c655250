"""Train the environment study's Poisson VAE and extract its ranked latents.

Thin glue between the maps file, :mod:`galforge.environment.model` and the
shared training job :func:`galforge.train.job.run_training_job` (seeded
train/validation split of the maps with :data:`SPLIT_SALT`, a work folder keyed
by the settings so a killed job resumes, the model file written atomically).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
import pandas as pd

from galforge.environment.maps import read_maps_file

if TYPE_CHECKING:  # pragma: no cover
    from galforge.environment.settings import EnvironmentModelSettings
    from galforge.train.job import JobOptions
    from galforge.train.settings import TrainSettings

log = logging.getLogger("galforge.environment")


#: Salt of the environment study's train/validation split stream
#: (:func:`galforge.train.split.split_indices`).
SPLIT_SALT = 0x5EED


def train_environment_model(maps_path: str | Path,
                            model_settings: EnvironmentModelSettings | Mapping[str, Any],
                            train_settings: TrainSettings | Mapping[str, Any], *, seed: int,
                            val_fraction: float, **options: Unpack[JobOptions]) -> dict[str, Any]:
    """Train the Poisson VAE on the maps; write the final checkpoint and the metrics CSV.

    ``options`` (``out_model``, ``out_metrics``, ``workroot``, ``progress``,
    ``run_config``) go to :func:`galforge.train.job.run_training_job`; its work folder
    ``workroot/<settings hash>/`` keeps the rolling checkpoint between a killed job
    and its rerun.
    """
    import torch

    from galforge.environment.model import EnvironmentModelSettings, poisson_vae_loss
    from galforge.train.job import TrainingJob, run_training_job

    msettings = EnvironmentModelSettings.from_dict(model_settings)
    maps, ids = read_maps_file(maps_path)
    x = torch.from_numpy(maps.astype(np.float32)).unsqueeze(1)

    def loss_fn(m: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return poisson_vae_loss(m, batch, beta=msettings.beta)

    job = TrainingJob(
        name="", noun="maps", source=maps_path, n_rows=len(maps),
        rows_checksum=int(ids.sum() % (1 << 62)), model_settings=msettings.to_dict(),
        build_model=lambda rows: msettings.build(), tensors=lambda rows: (x[rows],),
        loss_fn=loss_fn, normalization={"input": "log1p(counts)", "val_fraction": val_fraction},
        model_kwargs=msettings.model_kwargs(),
    )
    done = run_training_job(job, train_settings, seed=seed, val_fraction=val_fraction,
                            salt=SPLIT_SALT, **options)
    summary = done.summary()
    log.info("training done: %s", summary)
    return summary


def ranked_latents(
    model_path: str | Path, maps_path: str | Path, batch_size: int = 512
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Every target's latent means, columns ``z1..zK`` ranked by mean KL (largest first).

    Returns the table (``id`` + ``z<r>`` + ``logvar<r>``), the ranked mean KL per
    dimension, and the ranking (model latent index of each rank).
    """
    from galforge.environment.model import encode_ranked, latent_kl_per_dim, rank_latents
    from galforge.train import load_for_inference

    model, _ = load_for_inference(model_path)
    maps, ids = read_maps_file(maps_path)
    kl = latent_kl_per_dim(model, maps, batch_size=batch_size)
    order = rank_latents(kl)
    mu, logvar = encode_ranked(model, maps, order, batch_size=batch_size)
    cols: dict[str, Any] = {"id": ids}
    for r in range(mu.shape[1]):
        cols[f"z{r + 1}"] = mu[:, r]
    for r in range(mu.shape[1]):
        cols[f"logvar{r + 1}"] = logvar[:, r]
    return pd.DataFrame(cols), kl[order], order
