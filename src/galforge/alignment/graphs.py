"""One graph per FoF group: torch-geometric ``Data`` of the catalog's galaxies.

Nodes are the group's galaxies (in the catalog), with

* scalar features (``x``): log M*, log M_dm, log group mass (M200c), the central flag,
  the tidal eigenvalues at every smoothing scale, and log of the distance to the
  central (0 for the central); each column robust-scaled (median, inter-quartile range
  of the whole catalog) and clipped to ±``clip`` (the authors' preprocessing);
* vector features (``vec``, (n, 3 K), K = 2 + n_scales unit axial directions, each with
  a canonical sign: largest component positive): the direction to the central
  (periodic; zero for the central, its distance is the scalar ``log_dist_central``),
  the galaxy's DM major axis (of the catalog's shape method; zero where it has no DM
  shape) and the tidal stretching axis (λ₃ eigenvector) at every scale. Unit
  directions, so the models see them in the one frame they need: as ``v vᵀ`` and
  ``(a · v)²`` (:mod:`galforge.alignment.gan`);
* targets (``y``): the stellar major axis (canonical sign) and the axis ratios q, s of
  the catalog's shape method; ``frame``: the full right-handed frame (for SO(3)).

Edges join galaxies of the same group closer than ``radius`` (h⁻¹Mpc, periodic box;
``scipy.spatial.cKDTree``, both directions, no self-loops): torch-geometric's
``radius_graph`` needs pyg-lib, which does not install here. ``edge_attr`` is the
separation vector / radius and its length / radius. Graphs are batched with
torch-geometric's ``DataLoader``. Galaxies without a shape (too few particles) or
whose group's central is not in the catalog are left out; a group's central is its
node 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GraphSet", "build_graphs", "canonical_sign", "robust_scale", "radius_edges"]


def canonical_sign(v: np.ndarray) -> np.ndarray:
    """Axial vectors (…, 3) with the sign that makes their largest |component| positive."""
    v = np.asarray(v, dtype=np.float64)
    idx = np.argmax(np.abs(v), axis=-1)
    s = np.sign(np.take_along_axis(v, idx[..., None], axis=-1))
    return v * np.where(s == 0, 1.0, s)


def robust_scale(x: np.ndarray, clip: float, centre: np.ndarray | None = None,
                 scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x − median)/IQR per column, clipped to ±clip; returns (scaled, median, IQR)."""
    if centre is None or scale is None:
        centre = np.median(x, axis=0)
        q75, q25 = np.percentile(x, [75, 25], axis=0)
        scale = np.where(q75 - q25 > 0, q75 - q25, 1.0)
    return np.clip((x - centre) / scale, -clip, clip), centre, scale


def radius_edges(pos: np.ndarray, box: float, radius: float) -> np.ndarray:
    """(2, E) directed edges between points closer than ``radius`` (periodic; no self-loops)."""
    from scipy.spatial import cKDTree

    if len(pos) < 2:
        return np.zeros((2, 0), dtype=np.int64)
    pairs = cKDTree(np.mod(pos, box), boxsize=box).query_pairs(radius, output_type="ndarray")
    pairs = pairs.astype(np.int64)
    return np.concatenate([pairs.T, pairs[:, ::-1].T], axis=1)


@dataclass
class GraphSet:
    """The graphs and what rebuilds a catalog from generated node values."""

    graphs: list[Any]  # torch_geometric.data.Data
    rows: list[np.ndarray]  # catalog rows of each graph's nodes
    feature_names: list[str]
    centre: np.ndarray
    scale: np.ndarray


def build_graphs(cols: dict[str, np.ndarray], box: float, *, radius: float, clip: float,
                 method: str = "simple") -> GraphSet:
    """One ``Data`` per FoF group of the catalog (see the module docstring)."""
    import torch
    from torch_geometric.data import Data

    n = len(cols["subhalo_id"])
    frames = cols[f"star_axes_{method}"]
    q, s = cols[f"star_q_{method}"], cols[f"star_s_{method}"]
    ok = np.isfinite(q) & np.isfinite(s) & np.isfinite(frames).all(axis=(1, 2))
    central = cols["central"].astype(bool)
    cen_row = {int(g): r for r in np.flatnonzero(central & ok) for g in [cols["group"][r]]}
    crow = np.array([cen_row.get(int(g), -1) for g in cols["group"]])
    ok &= crow >= 0
    rel = cols["pos"] - cols["pos"][np.maximum(crow, 0)]
    rel -= box * np.rint(rel / box)
    dist = np.linalg.norm(rel, axis=1)
    lam = cols["tidal_lambda"].reshape(n, -1)
    n_scales = cols["tidal_lambda"].shape[1]
    scalars = np.column_stack([
        cols["log_mstar"], cols["log_mdm"], np.log10(np.maximum(cols["group_m200"], 1.0)),
        central.astype(float), lam, np.log10(dist + 1e-3),
    ])
    names = ["log_mstar", "log_mdm", "log_group_m200", "central"] + \
        [f"tidal_lambda{j + 1}_{k}" for k in range(n_scales) for j in range(3)] + \
        ["log_dist_central"]
    x, centre, scale = robust_scale(scalars[ok], clip)
    xs = np.zeros_like(scalars)
    xs[ok] = x
    stretch = canonical_sign(cols["tidal_axes"][:, :, :, 2])  # (n, n_scales, 3)
    to_cen = canonical_sign(-rel / np.where(dist > 0, dist, 1.0)[:, None])
    dm = np.nan_to_num(canonical_sign(cols[f"dm_axes_{method}"][:, :, 0]))
    vec = np.concatenate([to_cen, dm, stretch.reshape(n, -1)], axis=1)
    major = canonical_sign(frames[:, :, 0])
    graphs, rows = [], []
    for g in np.unique(cols["group"][ok]):
        r = np.flatnonzero(ok & (cols["group"] == g))
        r = np.concatenate([r[central[r]], r[~central[r]]])  # the central first
        edges = radius_edges(cols["pos"][r], box, radius)
        d = cols["pos"][r][edges[1]] - cols["pos"][r][edges[0]]
        d -= box * np.rint(d / box)
        eattr = np.column_stack([d / radius, np.linalg.norm(d, axis=1) / radius])
        graphs.append(Data(
            x=torch.tensor(xs[r], dtype=torch.float32),
            vec=torch.tensor(vec[r], dtype=torch.float32),
            y=torch.tensor(np.column_stack([major[r], q[r], s[r]]), dtype=torch.float32),
            frame=torch.tensor(frames[r], dtype=torch.float32),
            edge_index=torch.tensor(edges, dtype=torch.long),
            edge_attr=torch.tensor(eattr.reshape(-1, 4), dtype=torch.float32),
            num_nodes=len(r)))
        rows.append(r)
    return GraphSet(graphs=graphs, rows=rows, feature_names=names, centre=centre, scale=scale)
