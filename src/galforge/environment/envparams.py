"""Classic environment parameters per target galaxy.

Neighbours are the other galaxies of the catalogue inside the same rest-frame
velocity window as the maps (``c|z_n − z_t|/(1+z_t) <= dv_kms``). Projected
distances are the gnomonic radii at the target's comoving distance,
``r_p = D_t √(ξ² + η²) = D_t tan θ`` (h⁻¹Mpc, comoving), i.e. ``hypot(x, y)``
of the map coordinates (for θ ≲ 5° this equals ``D_t θ`` to < 0.3 %).

Columns of :func:`compute_envparams` (one row per target, in target order):

``id``
    target id;
``d_nn``
    projected distance to the nearest neighbour;
``d_<N>``, ``sigma_<N>``, ``log_sigma_<N>``
    distance to the N-th nearest neighbour, ``Σ_N = N / (π d_N²)``
    (h² Mpc⁻²) and ``log10 Σ_N``, for each N of ``n_neighbours``;
``n_r<R>``
    number of neighbours with ``r_p <= R`` for each aperture radius R
    (``n_r1``, ``n_r2``, ``n_r5`` by default);
``n_map``
    total count of the target's neighbour-count map (same square and
    half-open pixel convention as :mod:`galforge.environment.maps`).

Neighbours are searched only out to ``r_max_mpc``: a distance ``d_N`` (or
``d_nn``) beyond ``r_max_mpc`` — fewer than N neighbours within ``r_max`` —
is **NaN**, and so are the corresponding ``sigma_N`` / ``log_sigma_N``. Two
galaxies at the same position give ``d = 0`` and ``Σ = inf``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np
import pandas as pd

from galforge.cosmology import Cosmology
from galforge.environment.maps import (
    Catalog,
    MapSettings,
    iter_candidate_pairs,
    square_pixels,
)
from galforge.environment.settings import EnvParamsSettings, aperture_column
from galforge.io import read_parquet, write_parquet

logger = logging.getLogger("galforge.environment")



def compute_envparams(
    ra: Any,
    dec: Any,
    z: Any,
    ids: Any = None,
    targets: Any = None,
    settings: EnvParamsSettings | None = None,
    map_settings: MapSettings | None = None,
    cosmology: Cosmology | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Environment parameters of each target (see the module docstring for columns).

    ``map_settings`` gives the velocity window (``dv_kms``) and the map square
    used for ``n_map``; ``targets`` is a boolean mask or row indices (``None`` =
    every galaxy).
    """
    settings = settings or EnvParamsSettings()
    map_settings = map_settings or MapSettings()
    cat = Catalog.from_arrays(ra, dec, z, ids, cosmology)
    rows = cat.target_rows(targets)
    return envparams_for_catalog(cat, rows, settings, map_settings, progress)


def envparams_for_catalog(
    cat: Catalog,
    rows: np.ndarray,
    settings: EnvParamsSettings,
    map_settings: MapSettings,
    progress: bool = False,
) -> pd.DataFrame:
    """As :func:`compute_envparams`, on a prepared :class:`Catalog` and target rows."""
    t0 = time.perf_counter()
    nt = rows.size
    r_max = settings.r_max_mpc
    n_list = settings.n_neighbours
    ranks = sorted(set(n_list) | {1})
    dist = {k: np.full(nt, np.nan) for k in ranks}
    counts = {r: np.zeros(nt, dtype=np.int64) for r in settings.radii_mpc}
    n_map = np.zeros(nt, dtype=np.int64)
    radius = max(r_max, map_settings.half_diagonal_mpc)
    for pc in iter_candidate_pairs(
        cat, rows, radius, map_settings.dv_kms, settings.chunk, progress, "envparams"
    ):
        m = pc.positions.size
        inside, _ = square_pixels(pc.x, pc.y, map_settings)
        n_map[pc.positions] = np.bincount(pc.t[inside], minlength=m)
        rp = np.hypot(pc.x, pc.y)
        sel = rp <= r_max
        t = pc.t[sel]
        rp = rp[sel]
        for r in settings.radii_mpc:
            counts[r][pc.positions] = np.bincount(t[rp <= r], minlength=m)
        order = np.lexsort((rp, t))
        t = t[order]
        rp = rp[order]
        starts = np.concatenate([[0], np.cumsum(np.bincount(t, minlength=m))[:-1]])
        rank = np.arange(t.size) - starts[t] + 1
        for k in ranks:
            hit = rank == k
            dist[k][pc.positions[t[hit]]] = rp[hit]
    data: dict[str, Any] = {"id": cat.ids[rows], "d_nn": dist[1]}
    for k in n_list:
        with np.errstate(divide="ignore"):
            sigma = k / (math.pi * dist[k] ** 2)
            data[f"d_{k}"] = dist[k]
            data[f"sigma_{k}"] = sigma
            data[f"log_sigma_{k}"] = np.log10(sigma)
    for r in settings.radii_mpc:
        data[aperture_column(r)] = counts[r]
    data["n_map"] = n_map
    df = pd.DataFrame(data)
    logger.info(
        "envparams: %d targets, median d_nn %.2f h^-1 Mpc, %d with d_%d > r_max (NaN) (%.1f s)",
        nt, float(np.nanmedian(dist[1])) if np.isfinite(dist[1]).any() else math.nan,
        int(np.isnan(dist[n_list[0]]).sum()), n_list[0], time.perf_counter() - t0,
    )
    return df


def write_envparams(params: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the environment parameters (one row per target, maps-file order) as Parquet."""
    write_parquet(params, path)


def read_envparams(path: str | os.PathLike) -> pd.DataFrame:
    """The environment parameters written by :func:`write_envparams`."""
    return read_parquet(path, "environment parameters", ("id", "n_map"))

