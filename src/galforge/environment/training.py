"""Train the environment study's Poisson VAE and extract its ranked latents.

Thin glue between the maps file, :mod:`galforge.environment.model` and the
shared trainer :func:`galforge.train.fit`: a seeded train/validation split of
the maps, a training work folder keyed by the settings (so a killed job resumes
and a changed configuration starts afresh), and the final model file written
atomically for inference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.environment.maps import read_maps_file
from galforge.io import atomic_path

log = logging.getLogger("galforge.environment")


@dataclass(frozen=True)
class SplitSettings:
    """How the maps are split for training (``environment.train_split``)."""

    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < float(self.val_fraction) < 0.5:
            raise ValueError(f"setting 'val_fraction' must lie in (0, 0.5), got {self.val_fraction!r}")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` rows into sorted train and validation indices."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    perm = rng.permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def settings_key(*parts: Any) -> str:
    """Short hash of the settings that determine a training run (its work folder's name)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def train_environment_model(
    maps_path: str | Path,
    model_settings: dict[str, Any],
    train_settings: dict[str, Any],
    *,
    seed: int,
    val_fraction: float,
    out_model: str | Path,
    out_metrics: str | Path,
    workroot: str | Path,
    progress: bool = True,
    run_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the Poisson VAE on the maps; write the final checkpoint and the metrics CSV.

    The work folder ``workroot/<settings hash>/`` keeps the rolling checkpoint
    between a killed job and its rerun (Snakemake removes a failed job's
    declared outputs, so the checkpoint must not be one of them).
    """
    import torch

    from galforge.environment.model import EnvironmentModelSettings, poisson_vae_loss
    from galforge.train import TrainConfig, fit, seed_everything
    from galforge.train.config import RESUME_SAFE_FIELDS

    msettings = EnvironmentModelSettings.from_dict(model_settings)
    if msettings.kl_warmup_epochs:
        raise ValueError(
            "environment.model.kl_warmup_epochs: a KL warm-up is not supported by the training "
            "loop yet; set it to 0"
        )
    tconfig = TrainConfig.from_dict({**train_settings, "seed": seed, "progress": progress})
    maps, ids = read_maps_file(maps_path)
    train_idx, val_idx = split_indices(len(maps), val_fraction, seed)
    x = torch.from_numpy(maps.astype(np.float32)).unsqueeze(1)
    # fields that may change between a kill and the rerun (progress bar, ...) stay out of the key
    resumable = {k: v for k, v in tconfig.to_dict().items() if k not in RESUME_SAFE_FIELDS}
    key = settings_key(msettings.to_dict(), resumable, val_fraction, len(maps),
                       int(ids.sum() % (1 << 62)))
    workdir = Path(workroot) / key
    log.info("training on %d maps (%d validation); work folder %s", len(train_idx), len(val_idx), workdir)

    seed_everything(seed)
    model = msettings.build()

    def loss_fn(m: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return poisson_vae_loss(m, batch, beta=msettings.beta)

    result = fit(
        model, loss_fn, (x[train_idx],), (x[val_idx],), tconfig,
        workdir=workdir, log_dir=workdir, run_config=run_config,
        normalization={"input": "log1p(counts)", "val_fraction": val_fraction},
        model_kwargs=msettings.model_kwargs(),
    )
    with atomic_path(out_model) as tmp:
        shutil.copyfile(result.checkpoint_path, tmp)
    with atomic_path(out_metrics) as tmp:
        shutil.copyfile(result.metrics_path, tmp)
    summary = {
        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
        "epochs": result.epochs_completed, "stop_reason": result.stop_reason,
        "best_val_loss": float(result.best_val_loss), "best_epoch": result.best_epoch,
        "device": str(result.device), "resumed": bool(result.resumed),
    }
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
