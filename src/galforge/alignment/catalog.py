"""The alignment catalog: galaxies, their FoF groups, stellar and DM shapes, the tidal field.

From one snapshot of a TNG simulation read through :class:`~galforge.archives.tng_local.LocalTNG`
(a local copy, or the mock TNG universe): subhaloes with log M* > ``log_mstar_min`` and
log M_dm > ``log_mdm_min`` (``SubhaloMassType``, Msun), their FoF group
(``SubhaloGrNr``), central flag (``GroupFirstSub``), group mass (``Group_M_Crit200``
and the FoF ``GroupMass``) and position; the shapes of their star particles (wind
dropped) and DM particles within ``aperture`` stellar half-mass radii
(``SubhaloHalfmassRadType``; the DM: all the subhalo's DM particles unless
``dm_aperture`` is set) by the three tensors of :mod:`galforge.alignment.shapes`;
the tidal eigenvalues and eigenvectors at each galaxy for each smoothing scale
(:mod:`galforge.alignment.tidal`); the projected e1, e2 of the chosen shape along the
line of sight.

The file (:func:`write_catalog` / :func:`read_catalog`) is HDF5, one row per galaxy:
positions in comoving h⁻¹Mpc, masses in Msun, radii in physical kpc, axes as the
columns of right-handed frames in the box frame.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from galforge.alignment.settings import SHAPE_METHODS, CatalogSettings, ShapeSettings, TidalSettings
from galforge.alignment.shapes import axis_angle_deg, inertia_shape, projected_e
from galforge.alignment.tidal import (
    density_from_halos,
    density_from_snapshot,
    overdensity,
    tidal_at,
)
from galforge.io import InputError, atomic_path

__all__ = ["build_catalog", "write_catalog", "read_catalog", "compare_routes", "PARTICLE_FIELDS"]

#: What the catalog reads of each galaxy.
PARTICLE_FIELDS = {"stars": ("Coordinates", "Masses", "GFM_StellarFormationTime"),
                   "dm": ("Coordinates",)}


def select(tng: Any, catalog: CatalogSettings) -> dict[str, np.ndarray]:
    """The selected galaxies' catalog columns (one row per galaxy, ascending subhalo id)."""
    from galforge.archives.tng_local import catalog_physical

    sub = tng.subhalos(["SubhaloMassType", "SubhaloGrNr", "SubhaloPos", "SubhaloHalfmassRadType"])
    grp = tng.halos(["GroupFirstSub", "Group_M_Crit200", "GroupMass", "GroupPos"])
    a, h = tng.a, tng.h
    mtype = catalog_physical("SubhaloMassType", sub["SubhaloMassType"], a, h)
    with np.errstate(divide="ignore"):
        log_ms, log_md = np.log10(mtype[:, 4]), np.log10(mtype[:, 1])
    ids = np.flatnonzero((log_ms > catalog.log_mstar_min) & (log_md > catalog.log_mdm_min))
    if catalog.max_galaxies is not None and len(ids) > catalog.max_galaxies:
        ids = np.sort(ids[np.argsort(-log_ms[ids], kind="stable")[:catalog.max_galaxies]])
    if not len(ids):
        raise InputError(f"{tng.base}: no subhalo of snapshot {tng.snap} has log M* > "
                         f"{catalog.log_mstar_min} and log M_dm > {catalog.log_mdm_min}")
    gr = sub["SubhaloGrNr"][ids].astype(np.int64)
    return {
        "subhalo_id": ids, "group": gr,
        "central": grp["GroupFirstSub"][gr].astype(np.int64) == ids,
        "log_mstar": log_ms[ids], "log_mdm": log_md[ids],
        "group_m200": catalog_physical("Group_M_Crit200", grp["Group_M_Crit200"][gr], a, h),
        "group_mass": catalog_physical("GroupMass", grp["GroupMass"][gr], a, h),
        "pos": sub["SubhaloPos"][ids].astype(np.float64) / 1000.0,
        "group_pos": grp["GroupPos"][gr].astype(np.float64) / 1000.0,
        "r_half_star": catalog_physical("SubhaloHalfmassRadType",
                                        sub["SubhaloHalfmassRadType"][ids, 4], a, h),
    }, grp


def build_catalog(base_path: str | Path, catalog: CatalogSettings, shapes: ShapeSettings,
                  tidal: TidalSettings, *, progress: bool = False) -> tuple[dict[str, np.ndarray],
                                                                            dict[str, Any]]:
    """The catalog's columns and its attributes (box, conventions, route comparison)."""
    from tqdm import tqdm

    from galforge.archives.tng_layout import snapshot_path
    from galforge.archives.tng_local import LocalTNG

    tng = LocalTNG(base_path, catalog.snapshot)
    cols, grp = select(tng, catalog)
    n = len(cols["subhalo_id"])
    box = float(np.ravel(tng.snap_header["BoxSize"])[0]) / 1000.0
    for kind in ("star", "dm"):
        for method in SHAPE_METHODS:
            cols[f"{kind}_q_{method}"] = np.full(n, np.nan)
            cols[f"{kind}_s_{method}"] = np.full(n, np.nan)
            cols[f"{kind}_axes_{method}"] = np.full((n, 3, 3), np.nan)
            cols[f"{kind}_n_{method}"] = np.zeros(n, np.int64)
    row = {int(s): k for k, s in enumerate(cols["subhalo_id"])}
    for gal in tqdm(tng.iter_galaxies(cols["subhalo_id"], PARTICLE_FIELDS, in_situ=False),
                    total=n, desc="shapes", unit="galaxy", disable=not progress):
        k = row[gal.subhalo_id]
        r_half = cols["r_half_star"][k]
        parts = {"star": (gal.stars["Coordinates"], gal.stars["Masses"],
                          shapes.aperture * r_half),
                 "dm": (gal.dm["Coordinates"], gal.dm["Masses"],
                        None if shapes.dm_aperture is None else shapes.dm_aperture * r_half)}
        for kind, (pos, mass, r_max) in parts.items():
            if r_max is None:  # every DM particle: the iterative start sphere holds them all
                r_max_it = 1.000001 * float(np.sqrt(np.einsum("ij,ij->i", pos, pos).max(initial=0.0)))
                r_max = None
            else:
                r_max_it = r_max
            for method in SHAPE_METHODS:
                sh = inertia_shape(pos, mass, method,
                                   r_max_it if method == "iterative" else r_max, rtol=shapes.rtol,
                                   max_iter=shapes.max_iter, min_particles=shapes.min_particles)
                cols[f"{kind}_q_{method}"][k] = sh.q
                cols[f"{kind}_s_{method}"][k] = sh.s
                cols[f"{kind}_axes_{method}"][k] = sh.axes
                cols[f"{kind}_n_{method}"][k] = sh.n
    m = shapes.method
    cols["e1"], cols["e2"] = projected_e(cols[f"star_axes_{m}"], cols[f"star_q_{m}"],
                                         cols[f"star_s_{m}"], catalog.line_of_sight)
    route = tidal.route if tidal.route != "auto" else "particles"
    files = [snapshot_path(tng.base, tng.snap, k) for k in range(tng.n_snapshot_files)]
    dens = {
        "particles": lambda: density_from_snapshot(files, tidal.mesh, box, progress),
        "halos": lambda: density_from_halos(grp["GroupPos"] / 1000.0, grp["GroupMass"],
                                            tidal.mesh, box),
    }
    delta = overdensity(dens[route]())
    cols["tidal_lambda"], cols["tidal_axes"] = tidal_at(delta, box, cols["pos"], tidal.smoothing)
    attrs: dict[str, Any] = {
        "box": box, "h": tng.h, "snapshot": tng.snap, "line_of_sight": catalog.line_of_sight,
        "shape_method": m, "aperture_r_half": shapes.aperture, "smoothing": list(tidal.smoothing),
        "mesh": tidal.mesh, "tidal_route": route, "n_galaxies": n,
        "n_centrals": int(cols["central"].sum()),
    }
    if route == "particles":  # how far the web-API route's halo approximation differs
        other = overdensity(dens["halos"]())
        lam_h, vec_h = tidal_at(other, box, cols["pos"], tidal.smoothing)
        attrs["halo_route"] = compare_routes(cols["tidal_lambda"], cols["tidal_axes"], lam_h,
                                             vec_h, tidal.smoothing)
    return cols, attrs


def compare_routes(lam_p: np.ndarray, vec_p: np.ndarray, lam_h: np.ndarray, vec_h: np.ndarray,
                   smoothing: Any) -> dict[str, Any]:
    """Per smoothing scale: the median angle between the two routes' stretching axes (λ₃)
    and the Spearman correlation of their λ₁ at the galaxies."""
    from scipy.stats import spearmanr

    out = {}
    for k, r in enumerate(smoothing):
        ang = axis_angle_deg(vec_p[:, k, :, 2], vec_h[:, k, :, 2])
        out[f"{r:g}"] = {
            "median_angle_stretch_deg": float(np.median(ang)),
            "spearman_lambda1": float(spearmanr(lam_p[:, k, 0], lam_h[:, k, 0])[0]),
        }
    return out


def write_catalog(path: str | Path, cols: Mapping[str, np.ndarray], attrs: Mapping[str, Any]
                  ) -> Path:
    """Write the catalog (HDF5, datasets under ``galaxies/``, attributes as JSON) atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["attrs"] = json.dumps(attrs, sort_keys=True)
        g = f.create_group("galaxies")
        for name, v in cols.items():
            g.create_dataset(name, data=np.asarray(v))
    return Path(path)


def read_catalog(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The catalog's columns and attributes; InputError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: alignment catalog not found")
    try:
        with h5py.File(path, "r") as f:
            if "galaxies" not in f or "attrs" not in f.attrs:
                raise InputError(f"{path}: not an alignment catalog (no galaxies/ or attrs)")
            cols = {k: v[()] for k, v in f["galaxies"].items()}
            attrs = json.loads(f.attrs["attrs"])
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    for need in ("subhalo_id", "pos", "e1", "e2"):
        if need not in cols:
            raise InputError(f"{path}: column {need!r} missing")
    return cols, attrs
