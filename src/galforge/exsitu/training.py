"""Train the conditional VAE on the maps, and predict with it.

Inputs after storage (:func:`network_inputs`): each observable standardised with the
training projections' occupied-pixel mean and standard deviation (stored in the
checkpoint as its normalisation), empty pixels 0, the mask as a sixth channel; the target
is the stored ex-situ map, already in [0, 1]. The split is the sample's galaxy-wise one
(train / val / test); the fit is the shared :func:`galforge.train.loop.fit`, seeded, in a
work folder keyed by the settings (a killed job resumes).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from galforge.exsitu.maps import MapsFile, read_maps
from galforge.io import InputError, atomic_path

log = logging.getLogger("galforge.exsitu")

__all__ = ["network_inputs", "normalisation", "predict", "train_cvae"]


def normalisation(m: MapsFile, rows: np.ndarray) -> dict[str, list[float]]:
    """Per-observable mean and std over the occupied pixels of ``rows``."""
    mean, std = [], []
    for c in range(5):
        v = m.maps[rows, c][m.masks[rows]]
        mean.append(float(v.mean()) if v.size else 0.0)
        std.append(float(v.std()) if v.size and v.std() > 0 else 1.0)
    return {"mean": mean, "std": std}


def network_inputs(maps: np.ndarray, masks: np.ndarray, norm: dict[str, list[float]]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Condition ``(N, 6, H, W)``, target ``(N, 1, H, W)`` and mask ``(N, 1, H, W)`` arrays."""
    mean = np.asarray(norm["mean"], np.float32)[None, :, None, None]
    std = np.asarray(norm["std"], np.float32)[None, :, None, None]
    m = masks[:, None].astype(np.float32)
    obs = (maps[:, :5] - mean) / std * m
    return (np.concatenate([obs, m], axis=1).astype(np.float32),
            (maps[:, 5:6] * m).astype(np.float32), m)


def train_cvae(maps_path: str | Path, out_model: str | Path, out_metrics: str | Path,
               workroot: str | Path, *, model_settings: Any, train_settings: Any, seed: int,
               progress: bool = True, run_config: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Fit the CVAE on the training projections (validation: the val split)."""
    import torch

    from galforge.exsitu.model import cvae_loss
    from galforge.train.job import settings_key
    from galforge.train.loop import fit
    from galforge.train.seeding import seed_everything

    m = read_maps(maps_path)
    split = m.meta["split"]
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    if len(tr) < 2 or len(va) < 1:
        raise InputError(f"{maps_path}: too few projections to train ({len(tr)} training, "
                         f"{len(va)} validation)")
    norm = normalisation(m, tr)
    c, x, mk = (torch.from_numpy(a) for a in network_inputs(m.maps, m.masks, norm))
    ts = train_settings.replace(seed=int(seed), progress=bool(progress))
    key = settings_key(model_settings.to_dict(), ts.to_dict(), len(m.maps),
                       int(m.meta["subhalo_id"].sum()), norm)
    workdir = Path(workroot) / key
    seed_everything(int(seed))
    model = model_settings.build()
    beta = float(model_settings.beta)
    log.info("training the CVAE on %d projections (%d validation); work folder %s", len(tr),
             len(va), workdir)
    res = fit(model, lambda mod, b: cvae_loss(mod, b, beta), (c[tr], x[tr], mk[tr]),
              (c[va], x[va], mk[va]), ts, workdir=workdir, normalization=norm,
              run_config=run_config, model_kwargs=model_settings.model_kwargs())
    for src, dst in ((res.checkpoint_path, out_model), (res.metrics_path, out_metrics)):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return {"n_train": len(tr), "n_val": len(va), "epochs": res.epochs_completed,
            "best_val_loss": float(res.best_val_loss), "best_epoch": res.best_epoch,
            "checkpoint_epoch": (res.best_epoch if ts.restore_best_weights and res.best_epoch
                                 else res.epochs_completed),
            "device": str(res.device), "stop_reason": res.stop_reason}


def predict(model: Any, norm: dict[str, list[float]], maps: np.ndarray, masks: np.ndarray, *,
            source: str, n_samples: int, seed: int, batch_size: int = 64,
            latent_sampler: Any = None) -> np.ndarray:
    """``n_samples`` predicted ex-situ maps per projection, ``(N, S, H, W)`` float32.

    ``source``: ``"encoder"`` (z ~ q(z | true map, observables): the reconstruction),
    ``"prior"`` (z ~ N(0, I)) or ``"flow"`` (z ~ p(z | observables): ``latent_sampler(embed,
    n, generator)`` returns ``(B, n, latent_dim)``).
    """
    import torch

    from galforge.train.vae import eval_mode

    if source not in ("encoder", "prior", "flow"):
        raise ValueError(f"latent source {source!r}: encoder, prior or flow")
    dev = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    c_all, x_all, _ = network_inputs(maps, masks, norm)
    out = np.empty((len(maps), n_samples, maps.shape[-2], maps.shape[-1]), np.float32)
    with torch.no_grad(), eval_mode(model):
        for lo in range(0, len(maps), batch_size):
            c = torch.from_numpy(c_all[lo: lo + batch_size]).to(dev)
            b = c.shape[0]
            feats, embed = model.condition(c)
            if source == "encoder":
                x = torch.from_numpy(x_all[lo: lo + batch_size]).to(dev)
                mu, logvar = model.encode(x, feats, embed)
                eps = torch.randn((b, n_samples, model.latent_dim), generator=gen).to(dev)
                z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps
            elif source == "prior":
                z = torch.randn((b, n_samples, model.latent_dim), generator=gen).to(dev)
            else:
                z = latent_sampler(embed, n_samples, gen).to(dev)
            rep = [f.repeat_interleave(n_samples, dim=0) for f in feats]
            y = model.decode(z.reshape(b * n_samples, -1), rep)
            out[lo: lo + b] = y.reshape(b, n_samples, *y.shape[-2:]).cpu().numpy()
    return out
