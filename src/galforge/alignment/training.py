"""Training the alignment models on the shared trainer, and sampling catalogs from them.

:func:`train_gan`: the catalog's FoF-group graphs (:mod:`galforge.alignment.graphs`),
the seeded split of the groups (:func:`galforge.train.split.split_indices`, salt
:data:`GAN_SALT`), :func:`galforge.train.loop.fit` with torch-geometric's collater (the
batching of PyG's ``DataLoader``) in a work folder keyed by the settings (a killed job
resumes), then one generated catalog of every galaxy in a graph
(:func:`write_generated` / :func:`read_generated`), sampled with the moving average of
the generator's weights: the generated major axis, q, s, a full frame (the rotation
about the major axis drawn uniformly: the GAN generates the major axis only), the
projected e1, e2, and the e1, e2 of :data:`N_DRAWS` draws in all (the model's w_g+ is
their mean). The generator's copula gets the training groups' quantiles of q and s/q.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from galforge.io import InputError, atomic_path

__all__ = ["train_gan", "train_diffusion", "write_generated", "read_generated", "frames_about_axis", "GAN_SALT",
           "N_DRAWS"]

#: Salt of the groups' train/validation split.
GAN_SALT = 1601
#: Draws of the generated catalog whose w_g+ is averaged (the first is the catalog's
#: frames, q, s): one draw's w_g+ scatters by several times the simulation's jackknife
#: error at r_p < 1 h^-1 Mpc on the demo mock (randomly oriented catalogs: ±5 h^-1 Mpc at
#: 0.56-1 h^-1 Mpc against an error of 1.1).
N_DRAWS = 5
#: Quantiles of the training axis ratios the generator's copula maps onto.
N_QUANTILES = 129


def _dataset_class() -> type:
    from torch.utils.data import Dataset

    class _Graphs(Dataset):
        """A map-style dataset of a list of graphs."""

        def __init__(self, graphs: list[Any]) -> None:
            self.graphs = graphs

        def __len__(self) -> int:
            return len(self.graphs)

        def __getitem__(self, i: int) -> Any:
            return self.graphs[i]

    return _Graphs


def frames_about_axis(major: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Right-handed frames (n, 3, 3) whose first column is ``major``, turned uniformly about it."""
    a = major / np.linalg.norm(major, axis=1, keepdims=True)
    helper = np.where(np.abs(a[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    b = np.cross(a, helper)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    c = np.cross(a, b)
    t = rng.uniform(0, 2 * np.pi, len(a))[:, None]
    b2 = np.cos(t) * b + np.sin(t) * c
    return np.stack([a, b2, np.cross(a, b2)], axis=2)


def _graphs_and_split(catalog_in: str | Path, graphs: Any, val_fraction: float, seed: int,
                      what: str) -> tuple[Any, Any, Any, np.ndarray, np.ndarray]:
    from galforge.alignment.catalog import read_catalog
    from galforge.alignment.graphs import build_graphs
    from galforge.train.split import split_indices

    cols, attrs = read_catalog(catalog_in)
    gs = build_graphs(cols, float(attrs["box"]), radius=graphs.radius, clip=graphs.clip,
                      method=attrs["shape_method"])
    n = len(gs.graphs)
    tr, va = split_indices(n, val_fraction, seed, salt=GAN_SALT)
    if len(tr) < 2 or len(va) < 1:
        raise InputError(f"{catalog_in}: {n} groups with shapes: too few to train the {what}")
    return cols, attrs, gs, tr, va


def _fit(net: Any, loss_fn: Any, gs: Any, tr: np.ndarray, va: np.ndarray, cols: Any, *,
         kwargs: dict[str, Any], graphs: Any, model: Any, train: Any, val_fraction: float,
         seed: int, progress: bool, workroot: str | Path, model_out: str | Path,
         metrics_out: str | Path, run_config: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """Train ``net`` on the training groups with the shared trainer; copy its checkpoint
    and metrics out; returns (the trainer's result, the collater)."""
    from torch_geometric.loader.dataloader import Collater

    from galforge.train.job import settings_key
    from galforge.train.loop import fit
    from galforge.train.settings import TrainSettings

    tsettings = TrainSettings.from_dict(train.to_dict()).replace(seed=int(seed),
                                                                  progress=bool(progress))
    key = settings_key(model.to_dict(), graphs.to_dict(), tsettings.to_dict(), val_fraction,
                       len(gs.graphs), int(cols["subhalo_id"].sum()))
    graphs_ds = _dataset_class()
    train_ds = graphs_ds([gs.graphs[i] for i in tr])
    collate = Collater(train_ds)
    result = fit(net, loss_fn, train_ds, graphs_ds([gs.graphs[i] for i in va]), tsettings,
                 workdir=Path(workroot) / key, run_config=run_config, model_kwargs=kwargs,
                 normalization={"feature_names": gs.feature_names,
                                "centre": gs.centre.tolist(), "scale": gs.scale.tolist()},
                 collate_fn=collate)
    with atomic_path(model_out) as tmp:
        shutil.copyfile(result.checkpoint_path, tmp)
    with atomic_path(metrics_out) as tmp:
        shutil.copyfile(result.metrics_path, tmp)
    return result, collate


def _axis_ratio_levels(gs: Any, tr: np.ndarray) -> tuple[list[float], list[float]]:
    """Quantiles of the training groups' q and s/q."""
    y = np.concatenate([gs.graphs[i].y.numpy() for i in tr]).astype(np.float64)
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    return np.quantile(y[:, 3], levels).tolist(), np.quantile(y[:, 4] / y[:, 3], levels).tolist()


def _summary(gs: Any, tr: np.ndarray, va: np.ndarray, rows: np.ndarray, result: Any
             ) -> dict[str, Any]:
    return {"n_groups": len(gs.graphs), "n_train": len(tr), "n_val": len(va),
            "n_galaxies": len(rows), "epochs": int(result.epochs_completed),
            "stop_reason": result.stop_reason}


def train_gan(catalog_in: str | Path, model_out: str | Path, metrics_out: str | Path,
              generated_out: str | Path, workroot: str | Path, *, graphs: Any, model: Any,
              train: Any, val_fraction: float, seed: int, progress: bool = True,
              run_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train the graph WGAN-GP on the catalog's groups and write a generated catalog."""
    import torch

    from galforge.alignment.gan import GraphWGAN, wgan_loss
    from galforge.train.seeding import seed_everything

    cols, attrs, gs, tr, va = _graphs_and_split(catalog_in, graphs, val_fraction, seed, "GAN")
    seed_everything(int(seed))
    q_levels, sq_levels = _axis_ratio_levels(gs, tr)
    kwargs = {"n_scalar": gs.graphs[0].x.shape[1], "n_vec": gs.graphs[0].vec.shape[1],
              **model.model_kwargs(), "q_quantiles": q_levels, "sq_quantiles": sq_levels}
    net = GraphWGAN(**kwargs)
    result, collate = _fit(net, wgan_loss, gs, tr, va, cols, kwargs=kwargs, graphs=graphs,
                           model=model, train=train, val_fraction=val_fraction, seed=seed,
                           progress=progress, workroot=workroot, model_out=model_out,
                           metrics_out=metrics_out, run_config=run_config)
    # one generated catalog of every galaxy in a graph (train and validation groups)
    net.eval()
    gen = torch.Generator().manual_seed(int(seed) + 1)
    rows = np.concatenate(gs.rows)
    draws = []
    with torch.no_grad(), net.ema_weights():
        batch = collate(gs.graphs)
        for _ in range(N_DRAWS):
            noise = torch.randn(batch.x.size(0), net.noise_dim, generator=gen)
            draws.append(net.cpu().generate(batch, noise).numpy().astype(np.float64))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), GAN_SALT, 2]))
    frames = [frames_about_axis(d[:, :3], rng) for d in draws]
    write_generated(generated_out, cols["subhalo_id"][rows], frames[0], draws[0][:, 3],
                    draws[0][:, 4], attrs["line_of_sight"], model="gan",
                    extra_draws=[(f, d[:, 3], d[:, 4]) for f, d in zip(frames[1:], draws[1:],
                                                                       strict=True)])
    return _summary(gs, tr, va, rows, result)


def train_diffusion(catalog_in: str | Path, model_out: str | Path, metrics_out: str | Path,
                    generated_out: str | Path, workroot: str | Path, *, graphs: Any,
                    model: Any, train: Any, val_fraction: float, seed: int,
                    progress: bool = True, run_config: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Train the GNN-conditioned SO(3) score model (:mod:`galforge.alignment.
    galaxy_diffusion`) on the catalog's groups and write a generated catalog (frames by
    reverse diffusion; q and s/q drawn from their training marginals)."""
    from galforge.alignment.galaxy_diffusion import (
        GalaxyScoreModel,
        dsm_graph_loss,
        sample_frames,
    )
    from galforge.train.seeding import seed_everything

    cols, attrs, gs, tr, va = _graphs_and_split(catalog_in, graphs, val_fraction, seed,
                                                "diffusion model")
    seed_everything(int(seed))
    kwargs = {"n_scalar": gs.graphs[0].x.shape[1], "n_vec": gs.graphs[0].vec.shape[1],
              **model.model_kwargs()}
    net = GalaxyScoreModel(**kwargs)
    result, collate = _fit(net, dsm_graph_loss, gs, tr, va, cols, kwargs=kwargs,
                           graphs=graphs, model=model, train=train, val_fraction=val_fraction,
                           seed=seed, progress=progress, workroot=workroot,
                           model_out=model_out, metrics_out=metrics_out,
                           run_config=run_config)
    net.eval()
    net.cpu()
    rows = np.concatenate(gs.rows)
    batch = collate(gs.graphs)
    q_levels, sq_levels = _axis_ratio_levels(gs, tr)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), GAN_SALT, 3]))
    draws = []
    for k in range(N_DRAWS):
        frames = sample_frames(net, batch, model.reverse_steps, seed=int(seed) + 1 + k)
        u = rng.random((2, len(rows)))
        q = np.interp(u[0], np.linspace(0, 1, N_QUANTILES), q_levels)
        s = q * np.interp(u[1], np.linspace(0, 1, N_QUANTILES), sq_levels)
        draws.append((frames, q, s))
    write_generated(generated_out, cols["subhalo_id"][rows], *draws[0],
                    attrs["line_of_sight"], model="diffusion", extra_draws=draws[1:])
    return _summary(gs, tr, va, rows, result)


def write_generated(path: str | Path, subhalo_id: np.ndarray, frames: np.ndarray, q: np.ndarray,
                    s: np.ndarray, line_of_sight: str, model: str,
                    extra_draws: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
                    ) -> Path:
    """A generated catalog (HDF5): subhalo ids, frames, q, s and the projected e1, e2; with
    ``extra_draws`` ((frames, q, s) of further samples of the same galaxies) also their
    projected ``e1_draws``, ``e2_draws`` (draws, n): the model's w_g+ is their mean."""
    import h5py

    from galforge.alignment.shapes import projected_e

    e1, e2 = projected_e(frames, q, s, line_of_sight)
    cols = {"subhalo_id": subhalo_id, "frame": frames, "q": q, "s": s, "e1": e1, "e2": e2}
    if extra_draws:
        es = [projected_e(f, dq, ds, line_of_sight) for f, dq, ds in extra_draws]
        cols["e1_draws"] = np.stack([e1] + [e[0] for e in es])
        cols["e2_draws"] = np.stack([e2] + [e[1] for e in es])
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["model"] = model
        f.attrs["line_of_sight"] = line_of_sight
        for name, v in cols.items():
            f.create_dataset(name, data=np.asarray(v))
    return Path(path)


def read_generated(path: str | Path) -> dict[str, Any]:
    """The columns and attributes of a generated catalog."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: generated catalog not found")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("subhalo_id", "frame", "q", "s", "e1", "e2") if k not in f]
        if missing:
            raise InputError(f"{path}: {missing[0]} missing (not a generated catalog)")
        out = {k: f[k][()] for k in f}
        out.update({k: (v.decode() if isinstance(v, bytes) else str(v))
                    for k, v in f.attrs.items()})
    return out
