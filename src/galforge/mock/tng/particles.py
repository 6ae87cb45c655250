"""The particles of the mock TNG universe: each galaxy's stars and each halo's dark matter.

:func:`draw_particles` turns a :class:`~galforge.mock.tng.model.Universe` into star and DM
particles at z = 0 (the recipe is in the docstring of :mod:`galforge.mock.tng`): per
galaxy an in-situ disk, an ex-situ spheroid split among its accreted progenitors, and a
few wind particles; per halo a triaxial NFW halo, per satellite a stripped subhalo, the
group's fuzz and DM outside every group. Positions are offsets from the owner's centre
in physical kpc (box frame); :mod:`galforge.mock.tng.snapshot` places them in a snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from galforge.archives.tng_layout import cosmic_time, scale_factor, snapshot_redshift
from galforge.mock.tng.model import G_NEWTON, H, Universe, isotropic, v200_kms
from galforge.mock.tng.settings import MockTNGSettings

__all__ = ["SNAP_SCALE_FACTORS", "DarkMatter", "Progenitors", "Stars", "draw_particles"]

#: Scale factor of each TNG snapshot 0..99 (:func:`~galforge.archives.tng_layout.snapshot_redshift`).
SNAP_SCALE_FACTORS = np.array([1.0 / (1.0 + snapshot_redshift(s)) for s in range(100)])
#: Solar metallicity of TNG (mass fraction).
Z_SUN = 0.0127
#: Earliest star formation in the mock: z = 10.
T_START = float(cosmic_time(1.0 / 11.0))
#: Age of the universe today [Gyr].
T_NOW = float(cosmic_time(1.0))
#: 1 km/s x 1 Gyr in kpc.
KMS_GYR_KPC = 1.0227121650537077


@dataclass
class Progenitors:
    """Accreted progenitors: one per merger that brought ex-situ stars (arrays per progenitor)."""

    gal: np.ndarray  # the galaxy it merged into
    merger_snap: np.ndarray  # first snapshot after the merger (its branch ends one before)
    mass_ratio: np.ndarray  # stellar mass ratio of the merger
    t_infall: np.ndarray  # Gyr
    first_snap: np.ndarray  # earliest formation snapshot of its stars


@dataclass
class Stars:
    """Star (PartType4) particles of every galaxy, wind particles included (arrays per particle)."""

    gal: np.ndarray
    in_situ: np.ndarray  # bool (winds: False)
    wind: np.ndarray  # bool
    prog: np.ndarray  # progenitor index, -1 for in-situ stars and winds
    formed_outside: np.ndarray  # ex-situ star formed outside any galaxy
    formation_a: np.ndarray  # GFM_StellarFormationTime (winds: <= 0)
    snap_form: np.ndarray  # SnapNumAtFormation (winds: -1)
    metallicity: np.ndarray
    mass: np.ndarray  # code units (a multiple of MASS_QUANTUM)
    initial_mass: np.ndarray
    offset: np.ndarray  # (n, 3) kpc from the galaxy centre
    velocity: np.ndarray  # (n, 3) km/s relative to the galaxy
    after_infall: np.ndarray  # int8
    distance_at_formation: np.ndarray
    ids: np.ndarray  # ParticleIDs


@dataclass
class DarkMatter:
    """DM (PartType1) particles (arrays per particle)."""

    halo: np.ndarray  # group, -1 outside every group
    gal: np.ndarray  # subhalo (galaxy index), -1 for fuzz
    offset: np.ndarray  # kpc from the owner (galaxy, or halo for fuzz); box position for outer fuzz
    velocity: np.ndarray  # km/s relative to the owner (absolute for outer fuzz)
    ids: np.ndarray


def _segments(counts: np.ndarray) -> np.ndarray:
    """Owner index of each element for per-owner ``counts``."""
    return np.repeat(np.arange(len(counts)), counts)


def _hernquist_radius(r_half: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Radii of a Hernquist sphere of half-mass radius ``r_half``, truncated at 10 r_half."""
    rs = r_half / (1.0 + math.sqrt(2.0))
    umax = (10.0 * r_half / (10.0 * r_half + rs)) ** 2
    su = np.sqrt(rng.random(len(r_half)) * umax)
    return rs * su / (1.0 - su)


def _progenitors(u: Universe, s: MockTNGSettings, last_merger_snap: int,
                 rng: np.random.Generator) -> tuple[Progenitors, np.ndarray]:
    """The accreted progenitors and the progenitor of each ex-situ particle (galaxy order)."""
    has_ex = u.gal_n_ex > 0
    n_prog = np.where(has_ex, 1 + np.minimum(rng.poisson(2.0 * u.gal_fex_drawn), 3), 0)
    n_prog = np.minimum(n_prog, u.gal_n_ex)
    pgal = _segments(n_prog)
    # split each galaxy's ex-situ particles among its progenitors (Dirichlet weights)
    w = rng.gamma(1.0, 1.0, len(pgal)) + 1e-3
    tot = np.bincount(pgal, weights=w, minlength=u.n_galaxies)
    share = w / tot[pgal] * (u.gal_n_ex[pgal] - n_prog[pgal])
    base = np.floor(share).astype(np.int64)
    left = u.gal_n_ex[pgal] - n_prog[pgal] - np.bincount(pgal, weights=base,
                                                         minlength=u.n_galaxies)[pgal]
    first = np.concatenate([[0], np.cumsum(n_prog)[:-1]])
    rank = np.arange(len(pgal)) - first[pgal]
    counts = 1 + base + (rank < left).astype(np.int64)  # each progenitor brings >= 1 particle
    merger = rng.integers(s.merger_snap_min, last_merger_snap + 1, len(pgal))
    ratio = 10.0 ** rng.uniform(-1.5, 0.0, len(pgal))
    t_inf = cosmic_time(SNAP_SCALE_FACTORS[merger]) - 2.0
    progs = Progenitors(gal=pgal, merger_snap=merger, mass_ratio=ratio, t_infall=t_inf,
                        first_snap=np.zeros(len(pgal), dtype=np.int64))
    return progs, _segments(counts)


def draw_particles(u: Universe, s: MockTNGSettings, seed: int, last_merger_snap: int
                   ) -> tuple[Stars, Progenitors, DarkMatter]:
    """Draw every particle of ``u``; mergers happen at snapshots up to ``last_merger_snap``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 14, 1]))
    stars, progs = _stars(u, s, last_merger_snap, rng)
    dm = _dark_matter(u, rng)
    n_total = len(stars.gal) + len(dm.gal)
    ids = (rng.permutation(n_total).astype(np.uint64) * np.uint64(7) + np.uint64(100_000_000_000))
    stars.ids = ids[: len(stars.gal)]
    dm.ids = ids[len(stars.gal):]
    return stars, progs, dm


def _stars(u: Universe, s: MockTNGSettings, last_merger_snap: int, rng: np.random.Generator
           ) -> tuple[Stars, Progenitors]:
    n_in = u.gal_n_star - u.gal_n_ex
    log_ms = np.log10(u.gal_mstar)
    # --- in-situ disk: exponential surface density (half-mass radius r_in), flattened
    gi = _segments(n_in)
    rd = u.gal_r_in[gi] / 1.6783469900166608  # half-mass radius of R e^{-R/Rd} is 1.678 Rd
    big_r = rng.gamma(2.0, 1.0, len(gi)) * rd
    phi = rng.uniform(0.0, 2.0 * math.pi, len(gi))
    q, sq = u.gal_q[gi], u.gal_s[gi]
    local_in = np.stack([big_r * np.cos(phi), q * big_r * np.sin(phi),
                         sq * math.sqrt(3.0) * rd * rng.standard_normal(len(gi))], axis=1)
    tangent = np.stack([-np.sin(phi), q * np.cos(phi), np.zeros_like(phi)], axis=1)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    vc = u.gal_vc[gi]
    vel_in = (tangent * (vc * big_r / (big_r + 0.5 * rd))[:, None]
              + (s.disk_dispersion * vc)[:, None] * rng.standard_normal((len(gi), 3)))
    # --- ex-situ spheroid: Hernquist (half-mass radius r_ex), flattened the same way
    progs, ex_prog = _progenitors(u, s, last_merger_snap, rng)
    ge = progs.gal[ex_prog]
    r = _hernquist_radius(u.gal_r_ex[ge], rng)
    local_ex = isotropic(len(ge), rng) * r[:, None] * np.stack(
        [np.ones(len(ge)), u.gal_q[ge], u.gal_s[ge]], axis=1)
    vel_ex = (s.exsitu_dispersion * u.gal_vc[ge])[:, None] * rng.standard_normal((len(ge), 3))
    # --- winds: in the disk, moving outwards
    gw = _segments(u.gal_n_wind)
    local_w = isotropic(len(gw), rng) * (u.gal_r_in[gw] * rng.uniform(0.2, 2.0, len(gw)))[:, None]
    vel_w = isotropic(len(gw), rng) * (2.0 * u.gal_vc[gw])[:, None]

    gal = np.concatenate([gi, ge, gw])
    kind = np.concatenate([np.zeros(len(gi), np.int8), np.ones(len(ge), np.int8),
                           np.full(len(gw), 2, np.int8)])
    local = np.concatenate([local_in, local_ex, local_w])
    vloc = np.concatenate([vel_in, vel_ex, vel_w])
    frame = u.gal_frame[gal]
    offset = np.einsum("nij,nj->ni", frame, local)
    velocity = np.einsum("nij,nj->ni", frame, vloc)
    prog = np.concatenate([np.full(len(gi), -1), ex_prog, np.full(len(gw), -1)])

    # --- formation times: in-situ younger, ex-situ formed before its progenitor merged
    t_form = np.empty(len(gal))
    t_form[kind == 0] = T_START + (T_NOW - T_START) * rng.beta(2.5, 1.5, len(gi))
    t_last = cosmic_time(SNAP_SCALE_FACTORS[progs.merger_snap[ex_prog] - 1])
    t_form[kind == 1] = T_START + (t_last - T_START) * rng.beta(2.0, 2.5, len(ge))
    t_form[kind == 2] = T_NOW
    a_form = scale_factor(t_form)
    a_form[kind == 1] = np.minimum(a_form[kind == 1],
                                   SNAP_SCALE_FACTORS[progs.merger_snap[ex_prog] - 1])
    a_form = np.minimum(a_form, 1.0)
    formation = a_form.astype(np.float32)
    # SnapNumAtFormation: the first snapshot at or after formation (of the float32 value)
    snap_form = np.searchsorted(SNAP_SCALE_FACTORS, formation.astype(np.float64) * (1 - 1e-7))
    snap_form = np.minimum(snap_form, 99).astype(np.int16)
    formation[kind == 2] = -rng.uniform(0.5, 1.0, len(gw)).astype(np.float32)
    snap_form[kind == 2] = -1
    first = np.full(len(progs.gal), 99, dtype=np.int64)
    np.minimum.at(first, ex_prog, snap_form[kind == 1].astype(np.int64))
    progs.first_snap = first

    # --- metallicities, masses
    zlog = np.empty(len(gal))
    zlog[kind != 1] = 0.1 + 0.25 * (log_ms[gal[kind != 1]] - 10.0) + 0.15 * rng.standard_normal(
        int((kind != 1).sum()))
    log_prog = log_ms[ge] + np.log10(progs.mass_ratio[ex_prog])
    zlog[kind == 1] = -0.5 + 0.25 * (log_prog - 10.0) + 0.25 * rng.standard_normal(len(ge))
    metallicity = (Z_SUN * 10.0**zlog).astype(np.float32)
    mass = u.gal_mpart[gal]
    age = np.clip(T_NOW - t_form, 0.0, None)
    initial = (mass / (1.0 - (0.2 + 0.25 * age / T_NOW))).astype(np.float32)

    # --- stellar-assembly flags of the ex-situ stars
    outside = np.zeros(len(gal), dtype=bool)
    outside[kind == 1] = rng.random(len(ge)) < s.formed_outside_fraction
    after = np.full(len(gal), -1, dtype=np.int8)
    after[kind == 1] = (t_form[kind == 1] > progs.t_infall[ex_prog]).astype(np.int8)
    after[outside] = -1
    rhalf = np.where(kind == 1, u.gal_r_ex[gal], u.gal_r_in[gal])
    dist = (np.linalg.norm(offset, axis=1) / rhalf).astype(np.float32)
    dist[outside | (kind == 2)] = -1.0
    stars = Stars(gal=gal, in_situ=kind == 0, wind=kind == 2, prog=prog, formed_outside=outside,
                  formation_a=formation, snap_form=snap_form, metallicity=metallicity,
                  mass=mass, initial_mass=initial, offset=offset, velocity=velocity,
                  after_infall=after, distance_at_formation=dist,
                  ids=np.zeros(len(gal), dtype=np.uint64))
    return stars, progs


def _nfw_offsets(n: np.ndarray, r200_kpc: np.ndarray, conc: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    from galforge.mock.tng.model import _nfw_radius

    owner = _segments(n)
    r = _nfw_radius(conc[owner], rng.random(len(owner))) * r200_kpc[owner]
    return isotropic(len(owner), rng) * r[:, None]


def _dark_matter(u: Universe, rng: np.random.Generator) -> DarkMatter:
    r200_kpc = u.halo_r200 / H
    # central subhaloes: triaxial NFW haloes (volume-preserving axis scaling in the halo frame)
    cen = np.flatnonzero(u.gal_central)
    hc = u.gal_halo[cen]
    n_c = u.gal_n_dm[cen]
    off = _nfw_offsets(n_c, r200_kpc[hc], u.halo_conc[hc], rng)
    own_c = np.repeat(hc, n_c)
    scale = np.stack([np.ones(len(hc)), u.halo_q[hc], u.halo_s[hc]], axis=1)
    scale /= np.cbrt(u.halo_q[hc] * u.halo_s[hc])[:, None]
    off_c = np.einsum("nij,nj->ni", u.halo_frame[own_c], off * np.repeat(scale, n_c, axis=0))
    sig_c = np.repeat(v200_kms(u.halo_m200[hc]) / math.sqrt(3.0), n_c)
    vel_c = sig_c[:, None] * rng.standard_normal((len(own_c), 3))
    # satellites: stripped subhaloes, 0.3 of their infall R200, c = 10
    sat = np.flatnonzero(~u.gal_central)
    n_s = u.gal_n_dm[sat]
    r_sat = 0.3 * (3 * u.gal_m_infall[sat] / (4 * math.pi * 200 * 277.536627)) ** (1 / 3) / H
    off_s = _nfw_offsets(n_s, r_sat, np.full(len(sat), 10.0), rng)
    vel_s = np.repeat(0.5 * v200_kms(u.gal_m_infall[sat]) / math.sqrt(3.0), n_s)[:, None] * (
        rng.standard_normal((int(n_s.sum()), 3)))
    # group fuzz: uniform within R200; outer fuzz: uniform in the box
    n_f = u.halo_n_fuzz
    own_f = _segments(n_f)
    rf = r200_kpc[own_f] * np.cbrt(rng.random(len(own_f)))
    off_f = isotropic(len(own_f), rng) * rf[:, None]
    vel_f = np.repeat(v200_kms(u.halo_m200) / math.sqrt(3.0), n_f)[:, None] * rng.standard_normal(
        (len(own_f), 3))
    n_o = u.n_outer_fuzz
    pos_o = rng.random((n_o, 3)) * u.box
    vel_o = 100.0 * rng.standard_normal((n_o, 3))
    gal_c = np.repeat(cen, n_c)
    gal_s = np.repeat(sat, n_s)
    return DarkMatter(
        halo=np.concatenate([u.gal_halo[gal_c], u.gal_halo[gal_s], own_f, np.full(n_o, -1)]),
        gal=np.concatenate([gal_c, gal_s, np.full(len(own_f) + n_o, -1)]),
        offset=np.concatenate([off_c, off_s, off_f, pos_o]),
        velocity=np.concatenate([vel_c, vel_s, vel_f, vel_o]),
        ids=np.zeros(len(own_c) + len(gal_s) + len(own_f) + n_o, dtype=np.uint64),
    )


def nfw_potential(r_kpc: np.ndarray, m200_msun_h: np.ndarray, r200_kpc: np.ndarray,
                  conc: np.ndarray) -> np.ndarray:
    """NFW potential [(km/s)^2] at physical radius ``r_kpc`` of a halo (M200 in Msun/h)."""
    rs = r200_kpc / conc
    x = np.maximum(r_kpc, 1e-3) / rs
    mu_c = np.log1p(conc) - conc / (1.0 + conc)
    return -G_NEWTON * (m200_msun_h / H) / mu_c * np.log1p(x) / np.maximum(r_kpc, 1e-3)


def drift_kpc(velocity: np.ndarray, dt_gyr: float) -> np.ndarray:
    """Displacement [kpc] over ``dt_gyr`` at ``velocity`` [km/s]."""
    return velocity * dt_gyr * KMS_GYR_KPC
