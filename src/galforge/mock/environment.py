"""Mock SDSS DR7 galaxy catalogue for the environment study, with planted truth.

:func:`write_environment_mock` writes (a) a FITS catalogue in the archive's own
layout (HDU 1, exactly the columns of
:data:`galforge.archives.formats.SDSS_GALAXY_COLUMNS` followed by
:data:`~galforge.archives.formats.SDSS_PROPERTY_COLUMNS`), so the pipeline
ingests mock and real files through one path, and (b) a Parquet *truth* table
keyed by ``objID``. Everything is drawn from one ``numpy.random.Generator``
seeded once: the same seed and settings give byte-identical files.

Every number below is a field of :class:`MockEnvironmentSettings` (default in
brackets); distances are comoving h⁻¹Mpc, absolute magnitudes ``M_r - 5 log10 h``.

Density field (:mod:`galforge.mock.lognormal`)
    * The observer sits at the origin of equatorial Cartesian coordinates
      (x towards RA = 0, Dec = 0; z towards the north pole). The survey volume
      is the RA/Dec rectangle ``[ra_min, ra_max] × [dec_min, dec_max]`` between
      ``χ(z_min) - Δ`` and ``χ(z_max) + Δ`` with ``Δ = rsd_margin_kms / 100``
      h⁻¹Mpc (room for peculiar velocities); a periodic box enclosing it with
      ``box_padding`` [30] on every side is gridded with cubic cells of
      ``cell_size``.
    * The *target* galaxy power spectrum is linear ΛCDM: the Eisenstein & Hu
      (1998) no-wiggle transfer function with ``Ω_m`` from the cosmology,
      ``omega_b`` [0.048], ``h_shape`` [0.7], ``n_s`` [0.96], ``P ∝ k^n_s T²``,
      normalised to ``sigma8_gal`` [0.95] (top hat of 8 h⁻¹Mpc).
    * Lognormal field (Coles & Jones 1991): a Gaussian field ``G`` whose power
      is chosen so that ``δ_LN = exp(G - σ_G²/2) - 1`` has exactly the target
      power on the grid (``ξ_G = ln(1 + ξ_target)``; the tiny negative ``P_G``
      at high k are zeroed, reported as ``pk_clipped_fraction``).
    * Galaxies: Poisson counts with mean ``n̄ V_cell (1 + δ_LN)`` per cell,
      positions uniform inside the cell, kept inside the survey volume.
      ``n̄`` is the Schechter integral to ``mag_faint`` (or ``nbar``).

Redshift-space distortions
    * Linear theory from the Gaussian field divided by the galaxy bias
      ``b = sigma8_gal / sigma8_matter`` [0.95 / 0.8]:
      ``v(k) = i a H f k / k² G(k) / b``, ``f = Ω_m(z)^growth_index`` [0.55],
      with ``a``, ``H``, ``f`` evaluated at each galaxy's cosmological redshift
      (the field itself is one z = 0 snapshot, no light-cone growth).
    * Fingers of God: a Gaussian random LOS velocity of dispersion
      ``σ_v = fog_sigma0 (1 + δ_s)^fog_density_power`` [150 km/s, 0.5], capped
      at ``fog_sigma_max`` [1000 km/s], with ``δ_s`` the true local density below.
    * ``1 + z_rsd = (1 + z_cos)(1 + v_los / c)``; then a redshift error
      ``zErr = redshift_error_kms / c (1 + z) e^{0.2 N(0,1)}`` [30 km/s] and
      ``z = z_rsd + N(0, zErr)``. Galaxies with ``z_min ≤ z ≤ z_max`` are written.

True local density
    ``δ_s``: the real-space lognormal field smoothed with a 3-D Gaussian of
    dispersion ``smoothing_radius`` [2 h⁻¹Mpc], trilinearly interpolated to the
    galaxy; ``log1p_delta_true = log10(1 + δ_s)`` (floored at 1 + δ_s = 1e-4).
    The galaxy properties below depend on this *local* density.
    ``log1p_delta_map``: the same field smoothed with ``map_smoothing_radius``
    [5 h⁻¹Mpc], the scale that a 10 h⁻¹Mpc × ±1000 km/s neighbour map
    integrates over (a Gaussian of dispersion R has the effective volume
    (2π)^{3/2} R³ ≈ 2.0 × 10³ h⁻³Mpc³ at R = 5, the volume of the map's
    10 × 10 × ~20 h⁻³Mpc³ cylinder): the truth against which the environment
    model's latents are checked. (On the demo mock, the maps' total counts have
    Spearman ρ = 0.92 with it, and 0.78 with the 2 h⁻¹Mpc density.)

Planted anisotropy (what the maps' total count does not carry)
    ``field_dipole_cos``, ``field_dipole_sin``, ``field_quad_cos``,
    ``field_quad_sin``: :func:`azimuthal_moments` of the true density about each
    galaxy, the same definition the environment study applies to its maps. The
    real-space field smoothed with ``smoothing_radius`` is projected along the line
    of sight over the map's velocity window, ``±map_dv_kms (1 + z)/H(z)`` in comoving
    distance about the galaxy's true position, on the disc of radius
    ``map_size_mpc / 2`` in the tangent plane (x east, y north, as the maps), sampled
    at :data:`FIELD_MOMENT_SAMPLES` ring × angle × line-of-sight midpoints (4 × 12 × 8;
    finer sampling, 5 × 16 × 9, changes no value by more than 0.003 on the demo
    mock). Written only when ``map_size_mpc`` and ``map_dv_kms`` are set (the
    environment study ties them to ``environment.maps``); they take no random numbers,
    so the catalogue does not change with them. By symmetry the map's count is blind
    to them (demo mock, seed 42: |ρ| ≤ 0.105 with each), while the maps' own measured
    moments track them (ρ = 0.80, 0.78, 0.59, 0.57) and so can an encoder of the maps.

Luminosities (Blanton et al. 2003, ApJ 592, 819, ``^{0.1}r``: applied here to
z = 0 r-band magnitudes, no evolution)
    Schechter ``φ* = phi_star`` [1.49e-2 h³Mpc⁻³], ``M* = m_star`` [-20.44],
    ``α = alpha`` [-1.05], truncated at ``mag_faint`` [-17.0]. Luminosity
    segregation: each galaxy's characteristic magnitude is
    ``M*_i = M* - lum_seg_slope (log1p_delta_true - lum_seg_pivot)`` [0.3 mag/dex,
    pivot 0.3 ≈ the galaxy-weighted mean], so galaxies in denser regions are
    brighter. The number per cell does not depend on luminosity, so the global
    luminosity function is a mixture of Schechter functions close to the input.

Quenching, colours, stellar masses, star formation (all true, then observed)
    * Reference mass (fixes the circularity colour ↔ mass):
      ``log M_ref = 0.4 (msun_r - M_r) - 2 log10(hubble_h) + ml_a + ml_b · 0.6
      + mass_imf_offset`` (the Bell et al. 2003 mass at g - r = 0.6).
    * Quenched probability ``f_q = logistic(q_alpha (log1p_delta_true - q_x0)
      + q_beta (log M_ref - q_mass_pivot))`` [2.0 /dex, 0.3, 2.0 /dex, 10.5];
      ``quenched ~ Bernoulli(f_q)``.
    * Observed (extinction-corrected) ``g - r``: quenched ~ N(red_color_mean,
      red_color_sigma) [0.75, 0.05], star-forming ~ N(blue_color_mean,
      blue_color_sigma) [0.45, 0.10], clipped to [-0.2, 1.3]; the same colour
      is used as rest-frame colour for M/L (no colour k-correction).
    * Stellar mass (Bell et al. 2003): ``log M* = 0.4 (msun_r - M_r)
      - 2 log10(hubble_h) + ml_a + ml_b (g - r) + mass_imf_offset`` with
      ``ml_a = -0.306``, ``ml_b = 1.097``, ``msun_r = 4.65`` (Willmer 2018),
      ``hubble_h = 0.7`` (h-scaled luminosity → M_sun), ``mass_imf_offset =
      -0.15`` (diet Salpeter → Kroupa, as in MPA-JHU).
    * ``log sSFR``: star-forming ``ms_norm + ms_slope (log M* - 10) +
      N(0, ms_scatter)`` [-10.0, -0.3, 0.3]; quenched ``N(quenched_ssfr,
      quenched_scatter)`` [-12.0, 0.4]. ``log SFR = log sSFR + log M*``.
    * Written MPA-JHU columns: ``lgm_tot_p50 = log M* + N(0, mass_noise_dex)``
      [0.1], ``sfr_tot_p50 = log SFR + N(0, sfr_noise_dex)`` [0.1],
      ``specsfr_tot_p50 = sfr_tot_p50 - lgm_tot_p50``; a random
      ``property_missing_fraction`` [0.01] of rows get -9999 in all three
      (SDSS_MISSING), like galaxies without an MPA-JHU match.
    * Planted signs: denser → brighter and more massive, redder, lower sSFR.

Photometry
    * Galactic extinction from a smooth made-up dust map
      ``A_r = extinction_r_min + (extinction_r_max - extinction_r_min) s``,
      ``s = ½(1 + cos 3δ)(0.8 + 0.2 sin 2α)`` [0.02, 0.20] (dustier towards the
      equator), ``A_g = extinction_g_over_r · A_r`` [3.793/2.751, SFD98 ratio].
    * The apparent magnitude is computed at the *observed* redshift with
      :func:`galforge.photometry.apparent_mag_r` (so the pipeline's
      ``absolute_mag_r`` recovers the true ``M_r`` up to photometric noise; the
      peculiar-velocity error on distances is deliberately not modelled):
      ``m_r0 = M_r + DM(z) + K_r(z, g - r)``;
      ``petroMag_r = m_r0 + A_r + ε₁``, ``modelMag_r = m_r0 + A_r + ε₂``,
      ``modelMag_g = m_r0 + (g - r) + A_g + ε₃``, ``ε ~ N(0, photometric_noise)``
      [0.02 mag] independent.
    * SDSS main-sample flux limit (Strauss et al. 2002): the extinction-corrected
      Petrosian magnitude ``petroMag_r - extinction_r ≤ flux_limit`` [17.77],
      applied to the written float32 values.

Identifiers
    Spectroscopic keys are made up (:func:`_assign_plates`): ~2.5° sky tiles
    stand in for plates of 640 fibres, each plate with a random DR7-era MJD;
    ``specObjID`` packs them as in DR7 (``plate << 48 | mjd << 32 |
    fiberID << 22``), so it is unique; rows are sorted by ``specObjID`` (as the
    archive client writes them). ``objID`` values are unique int64 near
    5877220000000000000 with random gaps, in random order.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from galforge.archives.formats import SDSS_GALAXY_COLUMNS, SDSS_MISSING, SDSS_PROPERTY_COLUMNS
from galforge.cosmology import C_KMS, Cosmology
from galforge.io import atomic_path
from galforge.mock import lognormal as ln
from galforge.mock.settings import MockEnvironmentSettings
from galforge.photometry import absolute_mag_r, apparent_mag_r

log = logging.getLogger("galforge.mock")

__all__ = [
    "MOMENT_NAMES",
    "MockEnvironmentSettings",
    "VOLUME_LIMIT",
    "azimuthal_moments",
    "field_moments",
    "generate_environment_mock",
    "write_environment_mock",
    "schechter_density",
    "dust_map_r",
]

#: The environment study's volume limit (z_lo, z_hi, M_r - 5 log h upper limit), for summaries.
VOLUME_LIMIT = (0.02, 0.07, -18.95)

_OBJID_BASE = 587_722_000_000_000_000


# --------------------------------------------------------------------------------------
# Physics helpers
# --------------------------------------------------------------------------------------


def _schechter_mag(m: np.ndarray, m_star: float, alpha: float) -> np.ndarray:
    """Schechter function per magnitude with φ* = 1."""
    x = 10.0 ** (0.4 * (m_star - m))
    return 0.4 * math.log(10.0) * x ** (alpha + 1.0) * np.exp(-x)


def schechter_density(phi_star: float, m_star: float, alpha: float, mag_faint: float) -> float:
    """Number density brighter than ``mag_faint`` (h³Mpc⁻³) of a Schechter function."""
    m = np.linspace(m_star - 8.0, mag_faint, 20001)
    return float(phi_star * np.trapezoid(_schechter_mag(m, m_star, alpha), m))


def _draw_schechter(
    rng: np.random.Generator, m_star_i: np.ndarray, alpha: float, mag_faint: float
) -> np.ndarray:
    """Magnitudes from Schechter functions with per-object M* truncated at ``mag_faint``.

    Inverse CDF in ``x = M - M*`` on a fine table (|error| < 1e-3 mag).
    """
    x = np.linspace(-8.0, 12.0, 40001)
    pdf = _schechter_mag(x, 0.0, alpha)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(x))])
    xf = mag_faint - m_star_i
    cmax = np.interp(xf, x, cdf)
    u = rng.random(len(m_star_i)) * cmax
    return m_star_i + np.interp(u, cdf, x)


def dust_map_r(
    ra: np.ndarray, dec: np.ndarray, a_min: float = 0.02, a_max: float = 0.2
) -> np.ndarray:
    """Made-up smooth Galactic extinction A_r (mag): dustier towards Dec = 0."""
    ra_r = np.radians(np.asarray(ra, dtype=float))
    dec_r = np.radians(np.asarray(dec, dtype=float))
    s = 0.5 * (1.0 + np.cos(3.0 * dec_r)) * (0.8 + 0.2 * np.sin(2.0 * ra_r))
    return a_min + (a_max - a_min) * s


#: The azimuthal moments of :func:`azimuthal_moments`, in order: dipole (cos θ, sin θ)
#: and quadrupole (cos 2θ, sin 2θ), θ the position angle from east (x) towards north (y).
MOMENT_NAMES: tuple[str, ...] = ("dipole_cos", "dipole_sin", "quad_cos", "quad_sin")


def azimuthal_moments(weights: Any, x: Any, y: Any) -> np.ndarray:
    """Normalised azimuthal moments of ``weights`` at offsets ``(x, y)`` about the origin.

    The one definition shared by the environment study's neighbour-count maps
    (:func:`galforge.environment.anisotropy.map_moments`) and this mock's planted
    truth (:func:`field_moments`): with ``θ = atan2(y, x)`` (x east, y north),

        (Σ w cos θ, Σ w sin θ, Σ w cos 2θ, Σ w sin 2θ) / Σ w,

    the dipole and quadrupole of :data:`MOMENT_NAMES`. Dividing by the total makes them
    shape and orientation, not amplitude: scaling the weights leaves them unchanged,
    each lies in [-1, 1], and all four are 0 for weights symmetric under a 90° rotation.
    A point at the origin (the target itself) has no angle and is left out of both
    sums. ``weights``: shape ``(..., P)``, non-negative; ``x``, ``y``: shape ``(P,)``.
    Returns shape ``(..., 4)``; NaN where the weights (off the origin) sum to 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or w.shape[-1:] != x.shape:
        raise ValueError(f"weights {w.shape} and offsets {x.shape}, {y.shape} do not match")
    r2 = x * x + y * y
    off = r2 > 0
    r = np.sqrt(r2, where=off, out=np.ones_like(r2))
    basis = np.stack([off * 1.0, x / r, y / r, (x * x - y * y) / r**2, 2 * x * y / r**2],
                     axis=1) * off[:, None]
    sums = w @ basis
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[..., :1] > 0, sums[..., 1:] / sums[..., :1], np.nan)


def _tangent_basis(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors at each position: the line of sight, local east (RA increasing), north."""
    chi = np.sqrt(np.sum(pos * pos, axis=1))
    t = pos / chi[:, None]
    rho = np.maximum(np.hypot(pos[:, 0], pos[:, 1]), 1e-30)
    e = np.stack([-pos[:, 1] / rho, pos[:, 0] / rho, np.zeros(len(pos))], axis=1)
    return t, e, np.cross(t, e)


#: Sampling of the cylinder of :func:`field_moments`: rings, position angles and
#: line-of-sight points (a 2 h⁻¹Mpc-smoothed field is sampled every ≲ 2.6 h⁻¹Mpc;
#: 5 × 16 × 9 points change no moment by more than 0.003 on the demo mock, at twice
#: the cost: 4.7 s instead of 2.1 s for its 19.5k galaxies, 2 shared cores).
FIELD_MOMENT_SAMPLES = (4, 12, 8)


def field_moments(
    field: np.ndarray, grid: ln.BoxGrid, pos: np.ndarray, *, radius: float,
    half_depth: np.ndarray, samples: tuple[int, int, int] = FIELD_MOMENT_SAMPLES,
    chunk: int = 2048,
) -> np.ndarray:
    """:func:`azimuthal_moments` of the continuous density ``1 + field`` about each position.

    The field is projected along the line of sight over ``±half_depth`` (per position,
    h⁻¹Mpc) on the disc of ``radius`` in the tangent plane (x east, y north, as the
    maps), sampled on ``samples = (rings, angles, line-of-sight points)`` midpoints with
    trilinear interpolation, each ring weighted by its area. Returns shape ``(n, 4)``.
    """
    n_r, n_t, n_l = samples
    r = (np.arange(n_r) + 0.5) * radius / n_r
    th = (np.arange(n_t) + 0.5) * 2.0 * np.pi / n_t
    rr, tt = np.meshgrid(r, th, indexing="ij")
    px, py = (rr * np.cos(tt)).ravel(), (rr * np.sin(tt)).ravel()
    area = rr.ravel()
    s = (np.arange(n_l) + 0.5) / n_l * 2.0 - 1.0
    out = np.empty((len(pos), len(MOMENT_NAMES)))
    for a in range(0, len(pos), chunk):
        p = pos[a : a + chunk]
        t, e, nv = _tangent_basis(p)
        los = s[None, :, None] * np.asarray(half_depth)[a : a + chunk, None, None] * t[:, None]
        plane = px[:, None] * e[:, None] + py[:, None] * nv[:, None]  # (m, P, 3)
        pts = p[:, None, None] + los[:, :, None] + plane[:, None]  # (m, L, P, 3)
        rho = ln.trilinear(field, grid, pts.reshape(-1, 3)).reshape(len(p), n_l, -1)
        proj = np.maximum(1.0 + rho, 0.0).sum(axis=1)
        out[a : a + chunk] = azimuthal_moments(proj * area, px, py)
    return out


def _sky_to_cart(ra: np.ndarray, dec: np.ndarray, chi: np.ndarray) -> np.ndarray:
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    cd = np.cos(dec_r)
    return np.stack(
        [chi * cd * np.cos(ra_r), chi * cd * np.sin(ra_r), chi * np.sin(dec_r)], axis=-1
    )


def _cart_to_sky(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chi = np.sqrt(np.sum(pos * pos, axis=-1))
    ra = np.degrees(np.arctan2(pos[..., 1], pos[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(pos[..., 2] / np.maximum(chi, 1e-30), -1.0, 1.0)))
    return ra, dec, chi


def _survey_grid(s: MockEnvironmentSettings, chi_lo: float, chi_hi: float) -> ln.BoxGrid:
    ra = np.linspace(s.ra_min, s.ra_max, 721)
    dec = np.linspace(s.dec_min, s.dec_max, 361)
    rr, dd = np.meshgrid(ra, dec, indexing="ij")
    pts = np.concatenate(
        [_sky_to_cart(rr, dd, np.full_like(rr, c)).reshape(-1, 3) for c in (chi_lo, chi_hi)]
    )
    pts = np.concatenate([pts, np.zeros((1, 3))]) if chi_lo <= 0 else pts
    return ln.grid_enclosing(pts.min(axis=0), pts.max(axis=0), s.cell_size, s.box_padding)


def _candidate_cells(
    grid: ln.BoxGrid, s: MockEnvironmentSettings, chi_lo: float, chi_hi: float
) -> np.ndarray:
    """Flat indices of the cells that may hold a point of the survey volume (generous)."""
    half = 0.5 * math.sqrt(3.0) * grid.cell
    nx, ny, nz = grid.shape
    org = np.asarray(grid.origin)
    y = org[1] + (np.arange(ny) + 0.5) * grid.cell
    z = org[2] + (np.arange(nz) + 0.5) * grid.cell
    yy, zz = np.meshgrid(y, z, indexing="ij")
    out = []
    for i in range(nx):
        x = org[0] + (i + 0.5) * grid.cell
        pts = np.stack([np.full_like(yy, x), yy, zz], axis=-1)
        ra, dec, chi = _cart_to_sky(pts)
        ok = (chi >= chi_lo - half) & (chi <= chi_hi + half)
        ang = np.degrees(np.arcsin(np.clip(half / np.maximum(chi, 1e-9), 0.0, 1.0)))
        ang = np.where(chi <= half, 180.0, ang)
        ok &= (dec >= s.dec_min - ang) & (dec <= s.dec_max + ang)
        cosd = np.cos(np.radians(np.minimum(np.abs(dec) + ang, 89.9)))
        ra_m = np.minimum(ang / np.maximum(cosd, 1e-3), 180.0)
        d_lo = (ra - (s.ra_min - ra_m) + 360.0) % 360.0
        width = s.ra_max - s.ra_min + 2 * ra_m
        ok &= (d_lo <= width) | (width >= 360.0)
        idx = np.flatnonzero(ok.ravel())
        if idx.size:
            out.append(i * ny * nz + idx)
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def _in_region(ra: np.ndarray, dec: np.ndarray, s: MockEnvironmentSettings) -> np.ndarray:
    return (ra >= s.ra_min) & (ra <= s.ra_max) & (dec >= s.dec_min) & (dec <= s.dec_max)


#: numpy dtype of each FITS binary-table format letter used by the archive layouts.
_FITS_DTYPES = {
    "K": np.int64,
    "J": np.int32,
    "I": np.int16,
    "D": np.float64,
    "E": np.float32,
    "L": np.bool_,
}


def _archive_columns() -> dict[str, tuple[str, str, str]]:
    return {**SDSS_GALAXY_COLUMNS, **SDSS_PROPERTY_COLUMNS}


def _archive_layout(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``values`` reordered and cast to exactly the archive's columns and FITS dtypes."""
    columns = _archive_columns()
    missing = [name for name in columns if name not in values]
    if missing:
        raise RuntimeError(
            f"the environment mock does not fill archive column(s) {missing}: "
            "galforge.archives.formats changed; update galforge.mock.environment"
        )
    out = {}
    for name, (fmt, _unit, _desc) in columns.items():
        dtype = _FITS_DTYPES.get(fmt)
        if dtype is None:
            raise RuntimeError(f"unsupported FITS format {fmt!r} of archive column {name!r}")
        out[name] = np.ascontiguousarray(values[name], dtype=dtype)
    return out


#: Side of the square sky tiles standing in for SDSS plates (deg; a plate is 3 deg across).
PLATE_TILE_DEG = 2.5
#: Fibres per SDSS plate.
FIBERS_PER_PLATE = 640
_FIRST_PLATE = 266
_MJD_RANGE = (51578, 54663)  # DR7 spectroscopic MJDs


def _assign_plates(
    rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray, s: MockEnvironmentSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Made-up spectroscopic keys (plate, mjd, fiberID), unique per galaxy.

    The region is cut into ~``PLATE_TILE_DEG`` square tiles (Dec bands, RA
    steps widened by 1/cos Dec); each tile's galaxies, in random order, fill
    plates of ``FIBERS_PER_PLATE`` fibres (numbered from ``_FIRST_PLATE`` in
    tile order), each plate with one random DR7-era MJD and distinct random
    fibres. Fibre collisions are not modelled.
    """
    n = len(ra)
    band = np.floor((dec - s.dec_min) / PLATE_TILE_DEG).astype(np.int64)
    dec_c = s.dec_min + (band + 0.5) * PLATE_TILE_DEG
    width = PLATE_TILE_DEG / np.maximum(np.cos(np.radians(np.clip(dec_c, -89.0, 89.0))), 0.05)
    step = np.floor((ra - s.ra_min) / width).astype(np.int64)
    tile = band * 100_000 + step
    perm = rng.permutation(n)
    order = perm[np.argsort(tile[perm], kind="stable")]
    plate = np.empty(n, dtype=np.int32)
    mjd = np.empty(n, dtype=np.int32)
    fiber = np.empty(n, dtype=np.int32)
    tiles, starts = np.unique(tile[order], return_index=True)
    bounds = list(starts) + [n]
    next_plate = _FIRST_PLATE
    for t in range(len(tiles)):
        members = order[bounds[t] : bounds[t + 1]]
        for c in range(0, len(members), FIBERS_PER_PLATE):
            chunk = members[c : c + FIBERS_PER_PLATE]
            plate[chunk] = next_plate
            mjd[chunk] = rng.integers(_MJD_RANGE[0], _MJD_RANGE[1] + 1)
            fiber[chunk] = rng.permutation(FIBERS_PER_PLATE)[: len(chunk)] + 1
            next_plate += 1
    return plate, mjd, fiber


def _logistic(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


# --------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------


def generate_environment_mock(
    settings: MockEnvironmentSettings, cosmology: Cosmology, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Draw the mock: ``(catalog columns, truth columns, summary)`` (nothing written).

    The catalog dict has exactly the archive columns, in order, with the FITS
    dtypes; the truth dict is keyed by ``objID`` (same row order).
    """
    s = settings
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    margin = s.rsd_margin_kms / 100.0
    chi_lo = max(float(cosmology.comoving_distance(s.z_min)) - margin, 0.5)
    chi_hi = float(cosmology.comoving_distance(s.z_max)) + margin
    grid = _survey_grid(s, chi_lo, chi_hi)
    if grid.n_cells > s.max_cells:
        raise ValueError(
            f"mock environment grid {grid.shape} has {grid.n_cells:.3g} cells > max_cells "
            f"{s.max_cells:.3g}: raise 'cell_size' or shrink the sky region"
        )
    log.info(
        "environment mock: grid %s cells of %.2f h^-1 Mpc (box %s h^-1 Mpc)",
        grid.shape,
        grid.cell,
        np.round(grid.lengths, 1).tolist(),
    )

    # --- density field -------------------------------------------------------------
    target = ln.LinearPower(
        Om0=cosmology.Om0, Ob0=s.omega_b, h=s.h_shape, n_s=s.n_s, sigma8=s.sigma8_gal
    )
    pk_target = ln.power_on_grid(grid, target)
    pk_gauss, clipped = ln.gaussian_power_for(grid, pk_target)
    var_target = ln.field_variance(grid, pk_target)
    del pk_target
    var_g = ln.field_variance(grid, pk_gauss)
    k2 = grid.kmag() ** 2
    k2[0, 0, 0] = np.inf
    var_psi = float(np.sum(pk_gauss / k2 * grid.half_weights(), dtype=np.float64) / grid.volume)
    del k2
    g, gk = ln.gaussian_field(grid, pk_gauss, rng)
    del pk_gauss
    delta = ln.lognormal(g, var_g)
    del g
    log.info(
        "environment mock: sigma_G^2 = %.3f, cell variance of delta_LN = %.3f (target %.3f)",
        var_g,
        float(np.var(delta, dtype=np.float64)),
        var_target,
    )

    # --- galaxies --------------------------------------------------------------------
    nbar = (
        s.nbar
        if s.nbar is not None
        else schechter_density(s.phi_star, s.m_star, s.alpha, s.mag_faint)
    )
    cells = _candidate_cells(grid, s, chi_lo, chi_hi)
    pos, _ = ln.poisson_sample(delta, grid, nbar, rng, cells)
    n_box = len(pos)
    ra, dec, chi = _cart_to_sky(pos)
    keep = (chi >= chi_lo) & (chi <= chi_hi) & _in_region(ra, dec, s)
    pos, ra, dec, chi = pos[keep], ra[keep], dec[keep], chi[keep]
    n_volume = len(pos)
    log.info(
        "environment mock: n̄ = %.4g h^3 Mpc^-3, %d galaxies in the survey volume", nbar, n_volume
    )

    # true local density
    smooth_local = ln.smooth_gaussian(delta, grid, s.smoothing_radius)
    one_plus = np.maximum(1.0 + ln.trilinear(smooth_local, grid, pos), 1e-4)
    log1p_delta = np.log10(one_plus)
    smooth = ln.smooth_gaussian(delta, grid, s.map_smoothing_radius)
    del delta
    log1p_delta_map = np.log10(np.maximum(1.0 + ln.trilinear(smooth, grid, pos), 1e-4))
    del smooth

    # linear velocities
    bias = s.sigma8_gal / s.sigma8_matter
    psi = []
    kx_psi = ln.linear_displacement(gk, grid)
    del gk
    for comp in kx_psi:
        psi.append(ln.trilinear(comp, grid, pos))
    del kx_psi
    psi = np.stack(psi, axis=1)
    z_cos = cosmology.z_at_distance(chi)
    hz = cosmology.hubble(z_cos)
    om_z = cosmology.Om0 * (1.0 + z_cos) ** 3 / (hz / 100.0) ** 2
    fac = hz * om_z**s.growth_index / (1.0 + z_cos) / bias
    v_lin = psi * fac[:, None]
    rhat = pos / chi[:, None]
    v_los_lin = np.sum(v_lin * rhat, axis=1)
    sigma_fog = np.minimum(s.fog_sigma0 * one_plus**s.fog_density_power, s.fog_sigma_max)
    v_fog = rng.standard_normal(len(pos)) * sigma_fog
    v_los = v_los_lin + v_fog
    z_rsd = (1.0 + z_cos) * (1.0 + v_los / C_KMS) - 1.0
    z_err = (
        (s.redshift_error_kms / C_KMS) * (1.0 + z_rsd) * np.exp(0.2 * rng.standard_normal(len(pos)))
    )
    z_obs = z_rsd + rng.standard_normal(len(pos)) * z_err

    # luminosities, quenching, colours, masses, SFRs
    m_star_i = s.m_star - s.lum_seg_slope * (log1p_delta - s.lum_seg_pivot)
    mag_abs = _draw_schechter(rng, m_star_i, s.alpha, s.mag_faint)
    lum = 0.4 * (s.msun_r - mag_abs) - 2.0 * math.log10(s.hubble_h) + s.mass_imf_offset
    log_m_ref = lum + s.ml_a + s.ml_b * 0.6
    p_q = _logistic(s.q_alpha * (log1p_delta - s.q_x0) + s.q_beta * (log_m_ref - s.q_mass_pivot))
    quenched = rng.random(len(pos)) < p_q
    g_r = np.where(
        quenched,
        s.red_color_mean + s.red_color_sigma * rng.standard_normal(len(pos)),
        s.blue_color_mean + s.blue_color_sigma * rng.standard_normal(len(pos)),
    )
    g_r = np.clip(g_r, -0.2, 1.3)
    log_mstar = lum + s.ml_a + s.ml_b * g_r
    ms = s.ms_norm + s.ms_slope * (log_mstar - 10.0) + s.ms_scatter * rng.standard_normal(len(pos))
    qs = s.quenched_ssfr + s.quenched_scatter * rng.standard_normal(len(pos))
    log_ssfr = np.where(quenched, qs, ms)
    log_sfr = log_ssfr + log_mstar
    lgm_obs = log_mstar + s.mass_noise_dex * rng.standard_normal(len(pos))
    sfr_obs = log_sfr + s.sfr_noise_dex * rng.standard_normal(len(pos))
    missing = rng.random(len(pos)) < s.property_missing_fraction

    # photometry
    a_r = dust_map_r(ra, dec, s.extinction_r_min, s.extinction_r_max)
    a_g = s.extinction_g_over_r * a_r
    eps = s.photometric_noise * rng.standard_normal((len(pos), 3))
    in_z = (z_obs >= s.z_min) & (z_obs <= s.z_max)
    m_r0 = np.full(len(pos), np.inf)
    m_r0[in_z] = apparent_mag_r(mag_abs[in_z], z_obs[in_z], g_r[in_z], cosmology, 0.0)
    petro = (m_r0 + a_r + eps[:, 0]).astype(np.float32)
    model_r = (m_r0 + a_r + eps[:, 1]).astype(np.float32)
    model_g = (m_r0 + g_r + a_g + eps[:, 2]).astype(np.float32)
    a_r32 = a_r.astype(np.float32)
    a_g32 = a_g.astype(np.float32)
    flux_ok = (petro.astype(np.float64) - a_r32.astype(np.float64)) <= s.flux_limit
    sel = in_z & flux_ok
    n_z = int(in_z.sum())

    # rows: spectroscopic keys, then sorted by specObjID like the archive client's files
    rows = np.flatnonzero(sel)
    plate, mjd, fiber = _assign_plates(rng, ra[rows], dec[rows], s)
    spec_id = (
        (plate.astype(np.int64) << 48)
        | (mjd.astype(np.int64) << 32)
        | (fiber.astype(np.int64) << 22)
    )
    order = np.argsort(spec_id, kind="stable")
    rows, plate, mjd, fiber, spec_id = (
        rows[order],
        plate[order],
        mjd[order],
        fiber[order],
        spec_id[order],
    )
    n = len(rows)
    moments = None
    if s.map_size_mpc is not None and s.map_dv_kms is not None:
        t_m = time.perf_counter()
        # the velocity window ±dv at the galaxy, in comoving distance: dv (1 + z) / H(z)
        depth = s.map_dv_kms * (1.0 + z_cos[rows]) / hz[rows]
        moments = field_moments(smooth_local, grid, pos[rows], radius=0.5 * s.map_size_mpc,
                                half_depth=depth, samples=FIELD_MOMENT_SAMPLES)
        log.info("environment mock: planted field moments of %d galaxies (%.1f s)", n,
                 time.perf_counter() - t_m)
    del smooth_local
    obj_id = _OBJID_BASE + np.cumsum(rng.integers(1, 50_000, n, dtype=np.int64))
    obj_id = obj_id[rng.permutation(n)]

    def prop(v: np.ndarray) -> np.ndarray:
        out = v[rows].astype(np.float32)
        out[missing[rows]] = np.float32(SDSS_MISSING)
        return out

    lgm_w = prop(lgm_obs)
    sfr_w = prop(sfr_obs)
    ssfr_w = np.where(missing[rows], np.float32(SDSS_MISSING), sfr_w - lgm_w).astype(np.float32)
    values: dict[str, np.ndarray] = {
        "objID": obj_id,
        "specObjID": spec_id,
        "ra": ra[rows],
        "dec": dec[rows],
        "z": z_obs[rows],
        "zErr": z_err[rows],
        "petroMag_r": petro[rows],
        "modelMag_g": model_g[rows],
        "modelMag_r": model_r[rows],
        "extinction_g": a_g32[rows],
        "extinction_r": a_r32[rows],
        "plate": plate,
        "mjd": mjd,
        "fiberID": fiber,
        "lgm_tot_p50": lgm_w,
        "sfr_tot_p50": sfr_w,
        "specsfr_tot_p50": ssfr_w,
    }
    catalog = _archive_layout(values)
    truth: dict[str, np.ndarray] = {
        "objID": obj_id,
        "pos_x": pos[rows, 0],
        "pos_y": pos[rows, 1],
        "pos_z": pos[rows, 2],
        "chi": chi[rows],
        "z_cos": z_cos[rows],
        "z_rsd": z_rsd[rows],
        "z_obs": z_obs[rows],
        "vx_lin": v_lin[rows, 0],
        "vy_lin": v_lin[rows, 1],
        "vz_lin": v_lin[rows, 2],
        "v_los_lin": v_los_lin[rows],
        "v_los_fog": v_fog[rows],
        "v_los": v_los[rows],
        "sigma_fog": sigma_fog[rows],
        "log1p_delta_true": log1p_delta[rows],
        "log1p_delta_map": log1p_delta_map[rows],
        "Mr_true": mag_abs[rows],
        "g_r_true": g_r[rows],
        "p_quenched": p_q[rows],
        "quenched": quenched[rows],
        "log_mstar_true": log_mstar[rows],
        "log_sfr_true": log_sfr[rows],
        "log_ssfr_true": log_ssfr[rows],
        "property_missing": missing[rows],
    }
    if moments is not None:
        for k, name in enumerate(MOMENT_NAMES):
            truth[f"field_{name}"] = moments[:, k]

    # summary, incl. the pipeline's volume limit applied to the written columns
    zlo, zhi, mlim = VOLUME_LIMIT
    gr_obs = (catalog["modelMag_g"].astype(float) - catalog["extinction_g"]) - (
        catalog["modelMag_r"].astype(float) - catalog["extinction_r"]
    )
    mr_obs = absolute_mag_r(
        catalog["petroMag_r"].astype(float),
        catalog["z"],
        gr_obs,
        cosmology,
        catalog["extinction_r"].astype(float),
    )
    vl = (catalog["z"] > zlo) & (catalog["z"] < zhi) & (mr_obs < mlim)
    summary: dict[str, Any] = {
        "seed": int(seed),
        "grid_shape": list(grid.shape),
        "cell_size": grid.cell,
        "box_lengths": [round(float(x), 3) for x in grid.lengths],
        "n_cells": grid.n_cells,
        "nbar": nbar,
        "bias": bias,
        "sigma2_gauss": var_g,
        "sigma2_target_cell": var_target,
        "pk_clipped_fraction": clipped,
        "sigma_v_lin_1d_expected": float(np.median(fac)) * math.sqrt(var_psi / 3.0)
        if len(fac)
        else None,
        "sigma_v_lin_1d_measured": float(np.std(v_los_lin)) if len(v_los_lin) else None,
        "n_box_galaxies": int(n_box),
        "n_survey_volume": int(n_volume),
        "n_in_z_range": n_z,
        "n_written": int(n),
        "n_volume_limited": int(vl.sum()),
        "quenched_fraction_volume_limited": float(truth["quenched"][vl].mean())
        if vl.any()
        else None,
        "seconds_generate": round(time.perf_counter() - t0, 3),
    }
    log.info(
        "environment mock: %d galaxies written, %d in the volume limit %s",
        n,
        summary["n_volume_limited"],
        VOLUME_LIMIT,
    )
    return catalog, truth, summary


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _header_value(v: Any) -> Any:
    if v is None:
        return "none"
    if isinstance(v, float):
        return float(repr(v)) if math.isfinite(v) else str(v)
    return v


def write_environment_mock(
    settings: MockEnvironmentSettings,
    cosmology: Cosmology,
    seed: int,
    catalog_path: str | Path,
    truth_path: str | Path,
    config_hash: str | None = None,
) -> dict[str, Any]:
    """Generate the mock and write the FITS catalogue and the Parquet truth table atomically.

    Returns a small summary (counts, grid, timings) - see
    :func:`generate_environment_mock`.
    """
    import warnings

    import pandas as pd
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    t0 = time.perf_counter()
    catalog, truth, summary = generate_environment_mock(settings, cosmology, seed)

    columns = _archive_columns()
    cols = [
        fits.Column(name=name, format=fmt, unit=unit or None, array=catalog[name])
        for name, (fmt, unit, _desc) in columns.items()
    ]
    table = fits.BinTableHDU.from_columns(cols, name="GALAXIES")
    for i, (_fmt, _unit, desc) in enumerate(columns.values(), start=1):
        table.header.comments[f"TTYPE{i}"] = desc[:47]
    primary = fits.PrimaryHDU()
    for hdr in (primary.header, table.header):
        hdr["ORIGIN"] = ("galforge mock", "not real SDSS data")
        hdr["MOCK"] = ("environment", "galforge.mock.environment")
        hdr["SEED"] = (int(seed), "numpy Generator seed")
        hdr["COSMO_OM"] = (float(cosmology.Om0), "Omega_m of the flat LCDM background")
        if config_hash is not None:
            hdr["CFGHASH"] = (str(config_hash), "galforge configuration hash")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for key, value in settings.to_dict().items():
            primary.header[f"HIERARCH MOCK {key.upper()}"] = _header_value(value)
    hdul = fits.HDUList([primary, table])
    frame = pd.DataFrame(truth)
    # Both files appear only if both were written (the truth file is renamed first).
    with atomic_path(catalog_path) as tmp_cat, atomic_path(truth_path) as tmp_truth:
        hdul.writeto(tmp_cat, overwrite=True, output_verify="exception")
        frame.to_parquet(tmp_truth, index=False, engine="pyarrow")

    summary["catalog_path"] = str(catalog_path)
    summary["truth_path"] = str(truth_path)
    summary["seconds_total"] = round(time.perf_counter() - t0, 3)
    log.info(
        "environment mock: wrote %s and %s in %.1f s",
        catalog_path,
        truth_path,
        summary["seconds_total"],
    )
    return summary
