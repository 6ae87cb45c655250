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
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from galforge.cosmology import Cosmology
from galforge.environment.maps import (
    Catalog,
    MapSettings,
    _as_float,
    _as_int,
    iter_candidate_pairs,
    square_pixels,
)
from galforge.io import InputError, read_parquet, write_parquet

logger = logging.getLogger("galforge.environment")


@dataclass(frozen=True)
class EnvSettings:
    """Settings of the classic environment parameters.

    Parameters
    ----------
    n_neighbours:
        The N of Σ_N (each gives ``d_N``, ``sigma_N``, ``log_sigma_N``).
    radii_mpc:
        Aperture radii (h⁻¹Mpc) of the counts ``n_r<R>``; each <= ``r_max_mpc``.
    r_max_mpc:
        Largest projected search radius (h⁻¹Mpc); farther N-th neighbours give NaN.
    chunk:
        Targets per processing chunk.
    """

    n_neighbours: tuple[int, ...] = (5,)
    radii_mpc: tuple[float, ...] = (1.0, 2.0, 5.0)
    r_max_mpc: float = 10.0
    chunk: int = 2048

    def __post_init__(self) -> None:
        ns = self.n_neighbours
        if isinstance(ns, (int, np.integer)) and not isinstance(ns, bool):
            ns = (ns,)
        if not isinstance(ns, (tuple, list)) or len(ns) == 0:
            raise InputError(f"setting 'n_neighbours' must be a non-empty list, got {ns!r}")
        ns = tuple(_as_int("n_neighbours", v, 1, 10_000) for v in ns)
        object.__setattr__(self, "n_neighbours", ns)
        rs = self.radii_mpc
        if isinstance(rs, (int, float)) and not isinstance(rs, bool):
            rs = (rs,)
        if not isinstance(rs, (tuple, list)):
            raise InputError(f"setting 'radii_mpc' must be a list, got {rs!r}")
        rs = tuple(_as_float("radii_mpc", v) for v in rs)
        object.__setattr__(self, "radii_mpc", rs)
        object.__setattr__(self, "r_max_mpc", _as_float("r_max_mpc", self.r_max_mpc))
        object.__setattr__(self, "chunk", _as_int("chunk", self.chunk, 1, 1 << 20))
        for r in rs:
            if r > self.r_max_mpc:
                raise InputError(
                    f"setting 'radii_mpc' value {r} exceeds 'r_max_mpc' ({self.r_max_mpc})"
                )
        names = [aperture_column(r) for r in rs]
        if len(set(names)) != len(names) or len(set(ns)) != len(ns):
            raise InputError("settings 'radii_mpc' and 'n_neighbours' must not repeat values")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> EnvSettings:
        """Build from a config mapping; unknown keys raise :class:`InputError` naming the key."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise InputError(
                    f"unknown EnvSettings key {key!r} (known: {', '.join(sorted(known))})"
                )
        return cls(**d)


def aperture_column(radius: float) -> str:
    """Column name of the count within ``radius``: 1.0 → ``n_r1``, 0.5 → ``n_r0.5``."""
    return f"n_r{radius:g}"


def compute_envparams(
    ra: Any,
    dec: Any,
    z: Any,
    ids: Any = None,
    targets: Any = None,
    settings: EnvSettings | None = None,
    map_settings: MapSettings | None = None,
    cosmology: Cosmology | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Environment parameters of each target (see the module docstring for columns).

    ``map_settings`` gives the velocity window (``dv_kms``) and the map square
    used for ``n_map``; ``targets`` is a boolean mask or row indices (``None`` =
    every galaxy).
    """
    settings = settings or EnvSettings()
    map_settings = map_settings or MapSettings()
    cat = Catalog.from_arrays(ra, dec, z, ids, cosmology)
    rows = cat.target_rows(targets)
    return envparams_for_catalog(cat, rows, settings, map_settings, progress)


def envparams_for_catalog(
    cat: Catalog,
    rows: np.ndarray,
    settings: EnvSettings,
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

