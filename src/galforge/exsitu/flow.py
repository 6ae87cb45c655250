"""The conditional MAF on the CVAE's latents: p(z | observables) instead of N(0, I).

Trained (:func:`train_flow`) on the training projections' latent posterior means (the
CVAE's encoder given the true ex-situ map), with the condition encoder's embedding as the
context (standardised with the training projections' mean and std, stored in the flow's
checkpoint); validated on the val projections. At inference (:func:`flow_sampler`) the
latents of a projection are drawn from the flow given its observables alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from galforge.exsitu.maps import read_maps
from galforge.exsitu.training import network_inputs
from galforge.io import InputError, atomic_path

__all__ = ["encode_latents", "flow_sampler", "train_flow"]


def encode_latents(model: Any, norm: dict[str, list[float]], maps: np.ndarray,
                   masks: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means ``(N, latent_dim)`` and condition embeddings ``(N, embed_dim)``."""
    import torch

    from galforge.train.vae import eval_mode

    dev = next(model.parameters()).device
    c_all, x_all, _ = network_inputs(maps, masks, norm)
    mus, embeds = [], []
    with torch.no_grad(), eval_mode(model):
        for lo in range(0, len(maps), batch_size):
            c = torch.from_numpy(c_all[lo: lo + batch_size]).to(dev)
            x = torch.from_numpy(x_all[lo: lo + batch_size]).to(dev)
            feats, embed = model.condition(c)
            mu, _ = model.encode(x, feats, embed)
            mus.append(mu.cpu().numpy())
            embeds.append(embed.cpu().numpy())
    return np.concatenate(mus), np.concatenate(embeds)


def train_flow(cvae_path: str | Path, maps_path: str | Path, out_model: str | Path,
               out_metrics: str | Path, workroot: str | Path, *, flow: Any, train_settings: Any,
               seed: int, progress: bool = True) -> dict[str, Any]:
    """Fit the conditional MAF on the training latents (module docstring)."""
    import torch

    from galforge.train import load_for_inference
    from galforge.train.flows import ConditionalMAF, flow_nll_loss
    from galforge.train.job import settings_key
    from galforge.train.loop import fit
    from galforge.train.seeding import seed_everything

    cvae, meta = load_for_inference(cvae_path)
    m = read_maps(maps_path)
    split = m.meta["split"]
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    if len(tr) < 2 or len(va) < 1:
        raise InputError(f"{maps_path}: too few projections to train the flow")
    mu, embed = encode_latents(cvae, meta.normalization, m.maps, m.masks)
    cmean, cstd = embed[tr].mean(axis=0), embed[tr].std(axis=0) + 1e-6
    ctx = ((embed - cmean) / cstd).astype(np.float32)
    kwargs = {"features": int(mu.shape[1]), "context": int(ctx.shape[1]),
              "n_layers": flow.n_layers, "hidden": flow.hidden, "n_blocks": flow.n_blocks}
    ts = train_settings.replace(seed=int(seed), progress=bool(progress))
    workdir = Path(workroot) / settings_key(kwargs, ts.to_dict(), len(tr),
                                            float(mu[tr].sum()))
    seed_everything(int(seed))
    model = ConditionalMAF(**kwargs)
    x = torch.from_numpy(mu.astype(np.float32))
    c = torch.from_numpy(ctx)
    res = fit(model, flow_nll_loss, (x[tr], c[tr]), (x[va], c[va]), ts, workdir=workdir,
              normalization={"context_mean": cmean.tolist(), "context_std": cstd.tolist()},
              model_kwargs=kwargs)
    for src, dst in ((res.checkpoint_path, out_model), (res.metrics_path, out_metrics)):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return {"n_train": len(tr), "n_val": len(va), "epochs": res.epochs_completed,
            "best_val_nll": float(res.best_val_loss), "best_epoch": res.best_epoch}


def flow_sampler(flow_path: str | Path) -> Any:
    """``sampler(embed, n, generator) -> (B, n, latent_dim)`` from a trained flow."""
    import torch

    from galforge.train import load_for_inference

    flow, meta = load_for_inference(flow_path)
    mean = torch.tensor(meta.normalization["context_mean"], dtype=torch.float32)
    std = torch.tensor(meta.normalization["context_std"], dtype=torch.float32)

    def sample(embed: Any, n: int, generator: Any) -> Any:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        ctx = (embed.cpu().float() - mean) / std
        with torch.no_grad():
            return flow.sample(n, context=ctx)

    return sample
