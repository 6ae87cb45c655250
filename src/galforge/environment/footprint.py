"""Survey footprint and the selection of targets whose map lies inside it.

The footprint is a HEALPix (RING ordering) boolean map, either derived from
the catalogue itself (pixel occupancy, :meth:`Footprint.from_catalog`) or read
from a HEALPix mask FITS file (nonzero = inside, :meth:`Footprint.from_mask`).

:func:`select_targets` applies two cuts, in this order:

1. **redshift edge** — the target's velocity window
   ``[z_t − Δz, z_t + Δz]``, ``Δz = Δv (1 + z_t)/c``, must lie inside the
   catalogue's redshift selection ``[zmin, zmax]``;
2. **footprint** — the whole ``L × L`` square around the target must be inside
   the footprint: a grid of sample points covering the square (edges included,
   spacing at most half the HEALPix pixel size at the target's distance) is
   mapped back to the sky with the inverse gnomonic projection at ``D_t`` and
   every sample's pixel must be inside.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np

from galforge.cosmology import C_KMS, Cosmology
from galforge.environment.maps import MapSettings
from galforge.environment.settings import DEFAULT_NSIDE, FootprintSettings
from galforge.io import InputError, atomic_path

logger = logging.getLogger("galforge.environment")

#: Default HEALPix resolution of a catalogue-derived footprint: nside 64 has
#: 0.92° pixels (0.84 deg²), i.e. ~10-15 galaxies a pixel for SDSS DR7
#: volume-limited samples (8-16 galaxies/deg²), fine enough to follow the
#: survey edges and the larger holes, coarse enough that voids rarely empty a pixel.

#: Upper bound on sample points processed at once by :func:`select_targets`.
_MAX_POINTS = 1 << 21


def _radec_arrays(ra: Any, dec: Any) -> tuple[np.ndarray, np.ndarray]:
    ra_ = np.asarray(ra, dtype=np.float64).ravel()
    dec_ = np.asarray(dec, dtype=np.float64).ravel()
    if ra_.size != dec_.size:
        raise InputError(f"ra and dec lengths differ: {ra_.size} != {dec_.size}")
    for name, arr in (("ra", ra_), ("dec", dec_)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"row {i}: non-finite {name} = {arr[i]!r}")
    bad = np.abs(dec_) > 90
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"row {i}: dec = {dec_[i]!r} outside [-90, 90]")
    return ra_, dec_


@dataclass(frozen=True, eq=False)
class Footprint:
    """A HEALPix footprint: ``inside[pix]`` is True for pixels in the survey (RING order)."""

    nside: int
    inside: np.ndarray

    def __post_init__(self) -> None:
        if not hp.isnsideok(self.nside, nest=True):
            raise InputError(f"invalid HEALPix nside {self.nside!r} (a power of two)")
        inside = np.asarray(self.inside, dtype=bool)
        if inside.shape != (hp.nside2npix(self.nside),):
            raise InputError(
                f"footprint map has {inside.size} pixels, nside {self.nside} needs "
                f"{hp.nside2npix(self.nside)}"
            )
        object.__setattr__(self, "inside", inside)

    @classmethod
    def from_catalog(
        cls,
        ra: Any,
        dec: Any,
        nside: int = DEFAULT_NSIDE,
        min_count: int = 1,
        fill_holes: bool = True,
    ) -> Footprint:
        """Footprint = pixels holding at least ``min_count`` galaxies.

        With ``fill_holes``, an under-filled pixel whose 8 neighbours are all
        inside is added (one pass), so isolated Poisson/void gaps in the
        interior do not punch false holes; real holes larger than one pixel stay.
        """
        if not hp.isnsideok(nside, nest=True):
            raise InputError(f"invalid HEALPix nside {nside!r} (a power of two)")
        if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
            raise InputError(f"min_count must be an integer >= 1, got {min_count!r}")
        ra_, dec_ = _radec_arrays(ra, dec)
        if ra_.size == 0:
            raise InputError("empty catalogue: cannot derive a footprint")
        npix = hp.nside2npix(nside)
        counts = np.bincount(hp.ang2pix(nside, ra_, dec_, lonlat=True), minlength=npix)
        inside = counts >= min_count
        n_filled = 0
        if fill_holes:
            neigh = hp.get_all_neighbours(nside, np.arange(npix))  # (8, npix), -1 = none
            all_in = np.where(neigh >= 0, inside[np.maximum(neigh, 0)], False).all(axis=0)
            fill = ~inside & all_in
            n_filled = int(fill.sum())
            inside = inside | fill
        fp = cls(nside=nside, inside=inside)
        logger.info(
            "footprint from %d galaxies: nside %d, %d pixels inside (%.0f deg^2), %d holes filled",
            ra_.size, nside, int(inside.sum()), fp.area_deg2, n_filled,
        )
        return fp

    @classmethod
    def from_mask(cls, path: str | Path) -> Footprint:
        """Read a HEALPix mask FITS file (any ordering); nonzero finite, non-UNSEEN = inside."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: footprint mask file not found")
        try:
            m = hp.read_map(str(path), nest=False, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - report any reader failure as bad input
            raise InputError(f"{path}: not a readable HEALPix map ({exc})") from exc
        m = np.asarray(m)
        inside = np.isfinite(m) & (m != 0) & (m != hp.UNSEEN)
        return cls(nside=hp.npix2nside(m.size), inside=inside)

    def write(self, path: str | Path) -> None:
        """Write the footprint as a HEALPix FITS mask (1 inside, 0 outside), atomically."""
        with atomic_path(path) as tmp:
            hp.write_map(str(tmp), self.inside.astype(np.int16), dtype=np.int16, overwrite=True)

    @property
    def area_deg2(self) -> float:
        return float(self.inside.sum()) * hp.nside2pixarea(self.nside, degrees=True)

    @property
    def resolution_rad(self) -> float:
        """HEALPix pixel size (square root of the pixel area), radians."""
        return float(hp.nside2resol(self.nside))

    def contains(self, ra: Any, dec: Any) -> np.ndarray:
        """Whether each (ra, dec) in degrees falls in an inside pixel."""
        ra_, dec_ = _radec_arrays(ra, dec)
        return self.inside[hp.ang2pix(self.nside, ra_, dec_, lonlat=True)]

    def contains_vec(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Whether each direction vector (need not be normalised) is inside."""
        return self.inside[hp.vec2pix(self.nside, x, y, z)]


def build_footprint(settings: FootprintSettings, ra: Any, dec: Any) -> Footprint:
    """The footprint the settings describe: the mask file if given, else catalogue occupancy."""
    if settings.mask is not None:
        return Footprint.from_mask(settings.mask)
    return Footprint.from_catalog(
        ra, dec, nside=settings.nside, min_count=settings.min_count, fill_holes=settings.fill_holes
    )


def _square_inside(
    ra: np.ndarray,
    dec: np.ndarray,
    dist: np.ndarray,
    footprint: Footprint,
    size_mpc: float,
) -> np.ndarray:
    """True where the whole gnomonic square of side ``size_mpc`` at ``dist`` is inside."""
    n_t = ra.size
    ok = np.zeros(n_t, dtype=bool)
    if n_t == 0:
        return ok
    spacing = 0.5 * footprint.resolution_rad * dist  # h^-1 Mpc at the target
    nside_pts = np.ceil(size_mpc / spacing).astype(np.int64) + 1  # points a side
    a = np.radians(ra)
    d = np.radians(dec)
    sa, ca, sd, cd = np.sin(a), np.cos(a), np.sin(d), np.cos(d)
    # target, east and north unit vectors
    t_vec = np.stack([cd * ca, cd * sa, sd], axis=1)
    e_vec = np.stack([-sa, ca, np.zeros_like(sa)], axis=1)
    n_vec = np.stack([-sd * ca, -sd * sa, cd], axis=1)
    for m in np.unique(nside_pts):
        group = np.flatnonzero(nside_pts == m)
        grid = np.linspace(-0.5 * size_mpc, 0.5 * size_mpc, int(m))
        gx, gy = (g.ravel() for g in np.meshgrid(grid, grid))
        per = max(1, _MAX_POINTS // gx.size)
        for s in range(0, group.size, per):
            g = group[s : s + per]
            xi = gx[None, :] / dist[g, None]
            eta = gy[None, :] / dist[g, None]
            # inverse gnomonic: direction t̂ + ξ ê + η n̂ (healpy normalises)
            vx = t_vec[g, 0, None] + xi * e_vec[g, 0, None] + eta * n_vec[g, 0, None]
            vy = t_vec[g, 1, None] + xi * e_vec[g, 1, None] + eta * n_vec[g, 1, None]
            vz = t_vec[g, 2, None] + eta * n_vec[g, 2, None]
            inside = footprint.contains_vec(vx.ravel(), vy.ravel(), vz.ravel())
            ok[g] = inside.reshape(g.size, gx.size).all(axis=1)
    return ok


def select_targets(
    ra: Any,
    dec: Any,
    z: Any,
    footprint: Footprint,
    settings: MapSettings | None = None,
    cosmology: Cosmology | None = None,
    zmin: float = 0.0,
    zmax: float = math.inf,
    candidates: Any = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Targets whose velocity window and whole map square lie inside the survey.

    Parameters
    ----------
    ra, dec, z:
        Catalogue positions (degrees) and redshifts.
    footprint:
        The survey footprint.
    settings:
        Map settings (square side ``size_mpc`` and ``dv_kms``).
    zmin, zmax:
        The catalogue's redshift selection.
    candidates:
        Optional boolean mask of the rows to consider (e.g. the target redshift
        range); rows outside it are never selected and not counted as removed.

    Returns
    -------
    mask:
        Boolean mask over all rows.
    report:
        ``{"n_candidates", "removed_redshift_edge", "removed_footprint", "kept"}``
        (cuts in that order; ``n_candidates = removed_redshift_edge +
        removed_footprint + kept``).
    """
    settings = settings or MapSettings()
    cosmology = cosmology or Cosmology()
    ra_, dec_ = _radec_arrays(ra, dec)
    z_ = np.asarray(z, dtype=np.float64).ravel()
    if z_.size != ra_.size:
        raise InputError(f"z length {z_.size} differs from ra/dec length {ra_.size}")
    if ra_.size == 0:
        raise InputError("empty catalogue: no targets to select")
    bad = ~np.isfinite(z_) | (z_ <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"row {i}: z = {z_[i]!r} must be finite and > 0")
    if not (zmin < zmax):
        raise InputError(f"zmin ({zmin}) must be below zmax ({zmax})")
    if candidates is None:
        cand = np.ones(ra_.size, dtype=bool)
    else:
        cand = np.asarray(candidates)
        if cand.dtype != bool or cand.shape != ra_.shape:
            raise InputError(f"candidates must be a boolean mask of shape {ra_.shape}")
    dz = settings.dv_kms * (1.0 + z_) / C_KMS
    z_ok = (z_ - dz >= zmin) & (z_ + dz <= zmax)
    stage1 = cand & z_ok
    rows = np.flatnonzero(stage1)
    dist = np.asarray(cosmology.comoving_distance(z_[rows]), dtype=np.float64)
    fp_ok = _square_inside(ra_[rows], dec_[rows], dist, footprint, settings.size_mpc)
    mask = np.zeros(ra_.size, dtype=bool)
    mask[rows[fp_ok]] = True
    report = {
        "n_candidates": int(cand.sum()),
        "removed_redshift_edge": int((cand & ~z_ok).sum()),
        "removed_footprint": int((~fp_ok).sum()),
        "kept": int(mask.sum()),
    }
    logger.info(
        "select_targets: %d candidates; redshift edge removed %d; footprint removed %d; kept %d",
        report["n_candidates"], report["removed_redshift_edge"], report["removed_footprint"],
        report["kept"],
    )
    return mask, report
