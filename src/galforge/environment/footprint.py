"""Survey footprint and the selection of targets whose map lies inside it.

The footprint is a HEALPix (RING ordering) boolean map, either derived from
the catalogue itself (pixel occupancy, :meth:`Footprint.from_catalog`) or read
from a HEALPix mask FITS file (nonzero = inside, :meth:`Footprint.from_mask`).

A catalogue-derived footprint is occupancy at ``nside`` (holes of one pixel
filled) with its edges traced on sub-pixels (``edge_subdivision``): a coarse
pixel the survey edge cuts holds galaxies, so it counts as inside whole, and
at nside 64 (0.92° pixels) a 4°-wide stripe's footprint came out ~1° wider
than the survey. Finer pixels alone follow the edge but hold < 1 galaxy each
(holes everywhere); so the sub-pixel occupancy is *closed* — dilated, then
eroded, by one coarse pixel — which fills every gap narrower than ~2 coarse
pixels while an edge stays where the outermost galaxies are; the result is
intersected with the coarse footprint, so its real holes and ``min_count``
stand.

:func:`select_targets` applies two cuts, in this order:

1. **redshift edge** — the target's velocity window
   ``[z_t − Δz, z_t + Δz]``, ``Δz = Δv (1 + z_t)/c``, must lie inside the
   catalogue's redshift selection ``[zmin, zmax]``;
2. **coverage** — at least ``min_coverage`` of the ``L × L`` square around the
   target must lie inside the footprint, measured on the centres of a
   ``coverage_points × coverage_points`` grid of equal cells over the square,
   mapped back to the sky with the maps' gnomonic projection at ``D_t``
   (:func:`square_coverage`).
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
#: larger holes, coarse enough that voids rarely empty a pixel; the edges are
#: traced on its sub-pixels (``edge_subdivision``).

#: Upper bound on sample points processed at once by :func:`square_coverage`.
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
        edge_subdivision: int = 1,
    ) -> Footprint:
        """Footprint = pixels holding at least ``min_count`` galaxies.

        With ``fill_holes``, an under-filled pixel whose 8 neighbours are all
        inside is added (one pass), so isolated Poisson/void gaps in the
        interior do not punch false holes; real holes larger than one pixel stay.
        With ``edge_subdivision`` s > 1 the footprint has nside ``s·nside``: the
        inside pixels' sub-pixels that lie in the closed sub-pixel occupancy
        (see the module docstring and :func:`_closed_occupancy`).
        """
        if not hp.isnsideok(nside, nest=True):
            raise InputError(f"invalid HEALPix nside {nside!r} (a power of two)")
        if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
            raise InputError(f"min_count must be an integer >= 1, got {min_count!r}")
        if not hp.isnsideok(edge_subdivision * nside, nest=True) or edge_subdivision < 1:
            raise InputError(f"edge_subdivision must be a power of two, got {edge_subdivision!r}")
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
        if edge_subdivision > 1:
            fine = cls(nside=nside * edge_subdivision,
                       inside=_closed_occupancy(ra_, dec_, nside, inside, edge_subdivision))
            logger.info("footprint edges traced at nside %d: %.0f deg^2 inside",
                        fine.nside, fine.area_deg2)
            return fine
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
        ra, dec, nside=settings.nside, min_count=settings.min_count,
        fill_holes=settings.fill_holes, edge_subdivision=settings.edge_subdivision,
    )


def _closed_occupancy(
    ra: np.ndarray, dec: np.ndarray, nside: int, inside: np.ndarray, sub: int
) -> np.ndarray:
    """RING map at ``nside·sub``: sub-pixels of ``inside`` pixels in the closed occupancy.

    The occupancy (≥ 1 galaxy) of the sub-pixels is dilated ``sub`` times, then
    eroded ``sub`` times (8-neighbour steps, i.e. one coarse pixel each way).
    Only the sub-pixels of the inside pixels and of their neighbours are
    processed (a sub-pixel outside that ring counts as empty): dilation reaches
    one coarse pixel, so the inside pixels' sub-pixels come out exact.
    """
    nf = nside * sub
    shift = 2 * int(sub).bit_length() - 2  # log2(sub²)
    cin = np.flatnonzero(inside)
    neigh = hp.get_all_neighbours(nside, cin).ravel()
    ring_c = np.union1d(cin, neigh[neigh >= 0])
    dom = np.sort(((hp.ring2nest(nside, ring_c)[:, None] << shift)
                   + np.arange(sub * sub)[None, :]).ravel())  # NEST sub-pixels
    occ = np.zeros(dom.size, dtype=bool)
    gal = hp.ang2pix(nf, ra, dec, lonlat=True, nest=True)
    pos = np.searchsorted(dom, gal)
    pos_c = np.minimum(pos, dom.size - 1)
    occ[pos_c[dom[pos_c] == gal]] = True
    nb = hp.get_all_neighbours(nf, dom, nest=True)  # (8, n), -1 = none
    loc = np.minimum(np.searchsorted(dom, nb), dom.size - 1)
    in_dom = (nb >= 0) & (dom[loc] == nb)
    absent = nb < 0  # a corner pixel with 7 neighbours: ignored by the erosion
    m = occ
    for _ in range(sub):
        m = m | (m[loc] & in_dom).any(axis=0)
    for _ in range(sub):
        m = m & ((m[loc] & in_dom) | absent).all(axis=0)
    inside_nest = inside[hp.nest2ring(nside, np.arange(inside.size))]
    keep = m & inside_nest[dom >> shift]
    out = np.zeros(hp.nside2npix(nf), dtype=bool)
    out[hp.nest2ring(nf, dom[keep])] = True
    return out


def square_coverage(
    ra: np.ndarray,
    dec: np.ndarray,
    dist: np.ndarray,
    footprint: Footprint,
    size_mpc: float,
    points: int = 16,
) -> np.ndarray:
    """Fraction of each target's ``size_mpc`` square at ``dist`` inside the footprint.

    The square is cut into ``points × points`` equal cells of the tangent plane
    (offsets ``x, y`` in h⁻¹Mpc, as in the maps); each cell centre is mapped back
    to the sky with the inverse of the maps' gnomonic projection, the direction
    ``t̂ + (x/D) ê + (y/D) n̂`` (:mod:`galforge.environment.maps`), and looked up
    in the footprint. Returns the fraction of inside centres, a multiple of
    ``1/points²``.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    dist = np.asarray(dist, dtype=np.float64)
    n_t = ra.size
    cover = np.zeros(n_t, dtype=np.float64)
    if n_t == 0:
        return cover
    grid = (np.arange(points) + 0.5) * (size_mpc / points) - 0.5 * size_mpc
    gx, gy = (g.ravel() for g in np.meshgrid(grid, grid))
    a = np.radians(ra)
    d = np.radians(dec)
    sa, ca, sd, cd = np.sin(a), np.cos(a), np.sin(d), np.cos(d)
    per = max(1, _MAX_POINTS // gx.size)
    for s in range(0, n_t, per):
        g = slice(s, s + per)
        xi = gx[None, :] / dist[g, None]
        eta = gy[None, :] / dist[g, None]
        # t̂ = (cd ca, cd sa, sd), ê = (−sa, ca, 0), n̂ = (−sd ca, −sd sa, cd); healpy normalises
        vx = cd[g, None] * ca[g, None] - xi * sa[g, None] - eta * (sd[g] * ca[g])[:, None]
        vy = cd[g, None] * sa[g, None] + xi * ca[g, None] - eta * (sd[g] * sa[g])[:, None]
        vz = sd[g, None] + eta * cd[g, None]
        inside = footprint.contains_vec(vx.ravel(), vy.ravel(), vz.ravel())
        cover[g] = inside.reshape(-1, gx.size).sum(axis=1) / gx.size
    return cover


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
    coverage: FootprintSettings | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Targets whose velocity window lies inside the survey and map square mostly so.

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
    coverage:
        ``min_coverage`` and ``coverage_points`` of the coverage cut
        (:func:`square_coverage`); default :class:`FootprintSettings`'.

    Returns
    -------
    mask:
        Boolean mask over all rows.
    report:
        ``{"n_candidates", "removed_redshift_edge", "removed_coverage", "kept",
        "min_coverage", "coverage_points"}`` (cuts in that order;
        ``n_candidates = removed_redshift_edge + removed_coverage + kept``).
    """
    settings = settings or MapSettings()
    cosmology = cosmology or Cosmology()
    coverage = coverage or FootprintSettings()
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
    cover = square_coverage(ra_[rows], dec_[rows], dist, footprint, settings.size_mpc,
                            coverage.coverage_points)
    # a hair of slack so that a fraction k/points² equal to the threshold passes
    fp_ok = cover >= coverage.min_coverage - 1e-12
    mask = np.zeros(ra_.size, dtype=bool)
    mask[rows[fp_ok]] = True
    report = {
        "n_candidates": int(cand.sum()),
        "removed_redshift_edge": int((cand & ~z_ok).sum()),
        "removed_coverage": int((~fp_ok).sum()),
        "kept": int(mask.sum()),
        "min_coverage": float(coverage.min_coverage),
        "coverage_points": int(coverage.coverage_points),
    }
    logger.info(
        "select_targets: %d candidates; redshift edge removed %d; coverage < %g removed %d; "
        "kept %d", report["n_candidates"], report["removed_redshift_edge"],
        coverage.min_coverage, report["removed_coverage"], report["kept"],
    )
    return mask, report
