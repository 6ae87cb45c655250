"""The six maps of each projection: five observables and the ex-situ fraction.

Per projection, on ``npix`` x ``npix`` pixels over +-``extent_rhalf`` stellar half-mass
radii (bin edges ``np.linspace(-L, L, npix + 1)``, a particle on the last edge in the last
bin, as ``scipy.stats.binned_statistic_2d``), from the star particles (wind excluded) of
one galaxy, positions relative to SubhaloPos and velocities to the systemic velocity (the
mass-weighted mean velocity of the ``systemic_fraction`` most bound stars):

0. ``log_sigma``: log10 of the stellar mass surface density [Msun kpc^-2];
1. ``v_los``: mass-weighted mean line-of-sight velocity [km/s];
2. ``sigma_los``: mass-weighted line-of-sight velocity dispersion [km/s] (deviations from
   the pixel's mean, summed in a second pass);
3. ``log_z``: log10 of the mass-weighted metallicity in solar units (Z_sun = ``z_sun``);
4. ``age``: mass-weighted lookback time of formation [Gyr];
5. ``f_ex``: the ex-situ stellar-mass fraction (StellarAssembly InSitu = 0).

:func:`raw_maps` computes every map of every view of a galaxy with one ``np.bincount``
per weighted sum (empty pixels NaN). :func:`preprocess` is the authors' preprocessing,
applied **before storage**, in this order: pixels with at most max(``count_percentile``
of the occupied pixels' counts, ``min_count``) particles are empty; v_los clipped to
+-min(|min|, |max|, ``v_clip``), sigma_los to <= ``sigma_max``, log_z to
``log_z_range``; every channel smoothed over the occupied pixels (normalised Gaussian
convolution, sigma ``smooth_sigma`` px); empty pixels filled with 0 and masked
(``mask`` = True where occupied). Scaling to the network's ranges happens **after
storage**, in training. :func:`write_maps` / :func:`read_maps`: the chunked HDF5.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from galforge.archives.tng_galaxy import Galaxy
from galforge.exsitu.settings import MapSettings
from galforge.exsitu.views import projection_basis
from galforge.io import InputError, atomic_path

__all__ = ["CHANNELS", "GalaxyParticles", "MapsFile", "particles_of", "preprocess",
           "project", "raw_maps", "read_maps", "write_maps"]

CHANNELS: tuple[str, ...] = ("log_sigma", "v_los", "sigma_los", "log_z", "age", "f_ex")
#: The observables (model inputs) and the target.
OBSERVABLES, TARGET = CHANNELS[:5], CHANNELS[5]


@dataclass(frozen=True)
class GalaxyParticles:
    """What the maps need of a galaxy's stars (physical units, systemic motion removed)."""

    pos: np.ndarray  # (N, 3) kpc from SubhaloPos
    vel: np.ndarray  # (N, 3) km/s, systemic velocity removed
    mass: np.ndarray  # (N,) Msun
    metallicity: np.ndarray  # (N,) mass fraction
    age: np.ndarray  # (N,) Gyr, lookback time of formation
    ex_situ: np.ndarray  # (N,) 1.0 ex situ, 0.0 in situ (NaN: unknown)


def particles_of(gal: Galaxy, systemic_fraction: float = 0.1) -> GalaxyParticles:
    """A galaxy's star particles, its systemic velocity (most bound stars) removed."""
    s = gal.stars
    missing = [k for k in ("Coordinates", "Velocities", "Masses", "GFM_Metallicity", "Age")
               if k not in s]
    if missing:
        raise InputError(f"snapshot {gal.snapshot} subhalo {gal.subhalo_id}: stars lack "
                         f"{missing[0]} (the maps need it)")
    mass = np.asarray(s["Masses"], dtype=np.float64)
    vel = np.asarray(s["Velocities"], dtype=np.float64)
    if len(mass):
        if "Potential" in s:
            k = max(1, int(np.ceil(systemic_fraction * len(mass))))
            bound = np.argsort(np.asarray(s["Potential"]), kind="stable")[:k]
        else:
            bound = np.arange(len(mass))
        vel = vel - np.average(vel[bound], axis=0, weights=mass[bound])
    ex = (1.0 - np.asarray(s["InSitu"], dtype=np.float64)) if "InSitu" in s else \
        np.full(len(mass), np.nan)
    return GalaxyParticles(np.asarray(s["Coordinates"], dtype=np.float64), vel, mass,
                           np.asarray(s["GFM_Metallicity"], dtype=np.float64),
                           np.asarray(s["Age"], dtype=np.float64), ex)


def project(p: GalaxyParticles, los: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected ``x``, ``y`` [kpc] and line-of-sight velocity [km/s], each ``(V, N)``."""
    basis = projection_basis(los)  # (V, 3, 3)
    xy = np.einsum("vij,nj->vin", basis[:, :2], p.pos)
    vlos = np.einsum("vj,nj->vn", basis[:, 2], p.vel)
    return xy[:, 0], xy[:, 1], vlos


def raw_maps(p: GalaxyParticles, los: np.ndarray, half_size: float, npix: int,
             z_sun: float = 0.0127) -> tuple[np.ndarray, np.ndarray]:
    """Raw maps ``(V, 6, npix, npix)`` (NaN where empty) and particle counts ``(V, npix, npix)``.

    Array axis 1 of a map is x (= r.e1, :func:`~galforge.exsitu.views.projection_basis`),
    axis 2 is y, as ``binned_statistic_2d(x, y, ...)`` returns them.
    """
    x, y, vlos = project(p, los)
    nv = x.shape[0]
    edges = np.linspace(-half_size, half_size, npix + 1)
    ix, iy = _bin(x, edges, npix), _bin(y, edges, npix)
    inside = (ix >= 0) & (iy >= 0)
    flat = (np.arange(nv)[:, None] * npix + ix) * npix + iy
    flat, m = flat[inside], np.broadcast_to(p.mass, x.shape)[inside]
    v = vlos[inside]
    size = nv * npix * npix

    def wsum(w: np.ndarray | None) -> np.ndarray:
        return np.bincount(flat, weights=w, minlength=size).reshape(nv, npix, npix)

    def per_star(q: np.ndarray) -> np.ndarray:
        return np.broadcast_to(q, x.shape)[inside]

    count = wsum(None)
    mass = wsum(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_v = wsum(m * v) / mass
        # two passes (deviations from the pixel's mean): no cancellation, 0 for one star
        var = wsum(m * (v - mean_v.ravel()[flat]) ** 2) / mass
        out = np.stack([
            np.log10(mass / (edges[1] - edges[0]) ** 2),
            mean_v,
            np.sqrt(np.maximum(var, 0.0)),
            np.log10(wsum(m * per_star(p.metallicity)) / mass / z_sun),
            wsum(m * per_star(p.age)) / mass,
            wsum(m * per_star(p.ex_situ)) / mass,
        ], axis=1)
    out[np.broadcast_to((count == 0)[:, None], out.shape)] = np.nan
    return out, count.astype(np.int32)


def _bin(x: np.ndarray, edges: np.ndarray, npix: int) -> np.ndarray:
    """Bin index as binned_statistic_2d assigns it (last edge inclusive); -1 outside."""
    i = np.searchsorted(edges, x, side="right") - 1
    i[x == edges[-1]] = npix - 1
    i[(x < edges[0]) | (x > edges[-1]) | ~np.isfinite(x)] = -1
    return i


def preprocess(raw: np.ndarray, count: np.ndarray, s: MapSettings
               ) -> tuple[np.ndarray, np.ndarray]:
    """The authors' preprocessing of one view's raw maps ``(6, H, W)`` (module docstring).

    Returns the maps (float32, empty pixels 0) and the mask (True = occupied).
    """
    from scipy.ndimage import gaussian_filter

    occupied = count > 0
    thresh = float(s.min_count)
    if s.count_percentile is not None and occupied.any():
        thresh = max(thresh, float(np.percentile(count[occupied], s.count_percentile)))
    mask = (count > thresh) & np.all(np.isfinite(raw[:5]), axis=0)
    maps = np.where(mask, raw, 0.0)
    if mask.any():
        v = maps[1][mask]
        vmax = min(abs(float(v.min())), abs(float(v.max())), s.v_clip)
        maps[1] = np.clip(maps[1], -vmax, vmax)
    maps[2] = np.minimum(maps[2], s.sigma_max)
    maps[3] = np.clip(maps[3], *s.log_z_range)
    if s.smooth_sigma > 0 and mask.any():
        w = gaussian_filter(mask.astype(np.float64), s.smooth_sigma, mode="constant")
        for c in range(maps.shape[0]):
            sm = gaussian_filter(np.where(mask, maps[c], 0.0), s.smooth_sigma, mode="constant")
            maps[c] = np.where(mask, sm / np.where(w > 0, w, 1.0), 0.0)
    maps = np.where(mask, maps, 0.0)
    return np.nan_to_num(maps).astype(np.float32), mask


# ------------------------------------------------------------------------------------------
# The HDF5 file
# ------------------------------------------------------------------------------------------

#: Per-projection columns of the file besides maps and masks.
META = ("galaxy_id", "snapshot", "subhalo_id", "view", "n_views", "fex", "log_mstar",
        "r_half_kpc", "split")


@dataclass
class MapsFile:
    """The maps file read back: arrays per projection and the attributes."""

    maps: np.ndarray  # (N, 6, H, W) float32
    masks: np.ndarray  # (N, H, W) bool
    meta: dict[str, np.ndarray]
    attrs: dict[str, Any]


class MapsWriter:
    """Appends projections to a chunked HDF5 file written atomically (see :func:`write_maps`)."""

    def __init__(self, f: h5py.File, npix: int, s: MapSettings) -> None:
        self.f, self.n = f, 0
        kw: dict[str, Any] = {"compression": s.compression} if s.compression else {}
        if s.compression == "gzip":
            kw["compression_opts"] = 1
        self.maps = f.create_dataset("maps", (0, 6, npix, npix), "f4",
                                     maxshape=(None, 6, npix, npix),
                                     chunks=(s.h5_chunk, 6, npix, npix), **kw)
        self.masks = f.create_dataset("masks", (0, npix, npix), "bool",
                                      maxshape=(None, npix, npix),
                                      chunks=(s.h5_chunk, npix, npix), **kw)
        self.meta: dict[str, list[Any]] = {k: [] for k in META}

    def add(self, maps: np.ndarray, masks: np.ndarray, **meta: Any) -> None:
        k = len(maps)
        for d, a in ((self.maps, maps), (self.masks, masks)):
            d.resize(self.n + k, axis=0)
            d[self.n:] = a
        for name in META:
            self.meta[name] += list(np.broadcast_to(meta[name], (k,)))
        self.n += k

    def close(self, attrs: Mapping[str, Any]) -> None:
        for name, values in self.meta.items():
            arr = np.asarray(values)
            if arr.dtype.kind == "U":
                arr = arr.astype("S")
            self.f.create_dataset(name, data=arr)
        self.f.attrs["channels"] = np.array(CHANNELS, dtype="S")
        for k, v in attrs.items():
            self.f.attrs[k] = v


def write_maps(path: str | os.PathLike[str], projections: Iterable[dict[str, Any]], npix: int,
               s: MapSettings, attrs: Mapping[str, Any]) -> int:
    """Write ``projections`` (dicts: maps, masks and :data:`META` values) to ``path``.

    The file appears only when complete. Returns the number of projections.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        w = MapsWriter(f, npix, s)
        for p in projections:
            w.add(**p)
        w.close(attrs)
        return w.n


def read_maps(path: str | os.PathLike[str], *, maps: bool = True) -> MapsFile:
    """The maps file (``maps=False``: metadata only, empty maps and masks arrays)."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable maps file ({exc})") from None
    with f:
        missing = [k for k in ("maps", "masks", *META) if k not in f]
        if missing:
            raise InputError(f"{path}: no {missing[0]!r} dataset (not an exsitu maps file)")
        meta = {k: f[k][()] for k in META}
        meta["split"] = meta["split"].astype(str)
        return MapsFile(f["maps"][()] if maps else np.zeros((0, 6, 0, 0), "f4"),
                        f["masks"][()] if maps else np.zeros((0, 0, 0), bool), meta,
                        {k: (v.astype(str).tolist() if getattr(v, "dtype", None) is not None
                             and v.dtype.kind == "S" else v) for k, v in f.attrs.items()})
