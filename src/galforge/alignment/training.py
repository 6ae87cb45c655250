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

__all__ = ["train_gan", "write_generated", "read_generated", "frames_about_axis", "GAN_SALT",
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


def train_gan(catalog_in: str | Path, model_out: str | Path, metrics_out: str | Path,
              generated_out: str | Path, workroot: str | Path, *, graphs: Any, model: Any,
              train: Any, val_fraction: float, seed: int, progress: bool = True,
              run_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train the graph WGAN-GP on the catalog's groups and write a generated catalog."""
    import torch
    from torch_geometric.loader.dataloader import Collater

    from galforge.alignment.catalog import read_catalog
    from galforge.alignment.gan import GraphWGAN, wgan_loss
    from galforge.alignment.graphs import build_graphs
    from galforge.train.job import settings_key
    from galforge.train.loop import fit
    from galforge.train.seeding import seed_everything
    from galforge.train.settings import TrainSettings
    from galforge.train.split import split_indices

    cols, attrs = read_catalog(catalog_in)
    gs = build_graphs(cols, float(attrs["box"]), radius=graphs.radius, clip=graphs.clip,
                      method=attrs["shape_method"])
    n = len(gs.graphs)
    tr, va = split_indices(n, val_fraction, seed, salt=GAN_SALT)
    if len(tr) < 2 or len(va) < 1:
        raise InputError(f"{catalog_in}: {n} groups with shapes: too few to train the GAN")
    tsettings = TrainSettings.from_dict(train.to_dict()).replace(seed=int(seed),
                                                                  progress=bool(progress))
    key = settings_key(model.to_dict(), graphs.to_dict(), tsettings.to_dict(), val_fraction, n,
                       int(cols["subhalo_id"].sum()))
    workdir = Path(workroot) / key
    seed_everything(int(seed))
    n_scalar, n_vec = gs.graphs[0].x.shape[1], gs.graphs[0].vec.shape[1]
    y_tr = np.concatenate([gs.graphs[i].y.numpy() for i in tr]).astype(np.float64)
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    kwargs = {"n_scalar": n_scalar, "n_vec": n_vec, **model.model_kwargs(),
              "q_quantiles": np.quantile(y_tr[:, 3], levels).tolist(),
              "sq_quantiles": np.quantile(y_tr[:, 4] / y_tr[:, 3], levels).tolist()}
    net = GraphWGAN(**kwargs)
    graphs_ds = _dataset_class()
    train_ds = graphs_ds([gs.graphs[i] for i in tr])
    result = fit(net, wgan_loss, train_ds, graphs_ds([gs.graphs[i] for i in va]), tsettings,
                 workdir=workdir, run_config=run_config, model_kwargs=kwargs,
                 normalization={"feature_names": gs.feature_names,
                                "centre": gs.centre.tolist(), "scale": gs.scale.tolist()},
                 collate_fn=Collater(train_ds))
    with atomic_path(model_out) as tmp:
        shutil.copyfile(result.checkpoint_path, tmp)
    with atomic_path(metrics_out) as tmp:
        shutil.copyfile(result.metrics_path, tmp)
    # one generated catalog of every galaxy in a graph (train and validation groups)
    net.eval()
    gen = torch.Generator().manual_seed(int(seed) + 1)
    rows = np.concatenate(gs.rows)
    draws = []
    with torch.no_grad(), net.ema_weights():
        batch = Collater(train_ds)(gs.graphs)
        for _ in range(N_DRAWS):
            noise = torch.randn(batch.x.size(0), net.noise_dim, generator=gen)
            draws.append(net.cpu().generate(batch, noise).numpy().astype(np.float64))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), GAN_SALT, 2]))
    frames = [frames_about_axis(d[:, :3], rng) for d in draws]
    write_generated(generated_out, cols["subhalo_id"][rows], frames[0], draws[0][:, 3],
                    draws[0][:, 4], attrs["line_of_sight"], model="gan",
                    extra_draws=[(f, d[:, 3], d[:, 4]) for f, d in zip(frames[1:], draws[1:],
                                                                       strict=True)])
    return {"n_groups": n, "n_train": len(tr), "n_val": len(va), "n_galaxies": len(rows),
            "epochs": int(result.epochs_completed), "stop_reason": result.stop_reason}


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
