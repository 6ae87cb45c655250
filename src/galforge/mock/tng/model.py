"""The planted truth of the mock TNG universe: haloes, galaxies, shapes and orientations.

:func:`draw_universe` draws everything that is not a particle (the recipe is in the
docstring of :mod:`galforge.mock.tng`); :mod:`galforge.mock.tng.particles` then draws
the particles of each galaxy and halo. Units: positions ckpc/h in the box at z = 0,
halo masses Msun/h, stellar masses Msun, galaxy sizes physical kpc, velocities km/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from galforge.archives.tng_layout import HEADER_TNG100
from galforge.mock import lognormal as ln
from galforge.mock.tng.settings import MockTNGSettings

__all__ = [
    "G_NEWTON",
    "MASS_QUANTUM",
    "Universe",
    "dimroth_watson",
    "draw_universe",
    "frames_about",
    "sheth_tormen_dndlnm",
    "stellar_to_halo",
]

#: Newton's constant [kpc (km/s)^2 / Msun].
G_NEWTON = 4.30091e-6
#: Critical density today [h^2 Msun / kpc^3].
RHO_CRIT = 277.536627
#: TNG's cosmology (Planck 2015): h, Omega_m, Omega_b, sigma8, n_s.
H = float(HEADER_TNG100["HubbleParam"])  # type: ignore[arg-type]
OMEGA_M = float(HEADER_TNG100["Omega0"])  # type: ignore[arg-type]
OMEGA_B = float(HEADER_TNG100["OmegaBaryon"])  # type: ignore[arg-type]
SIGMA8, N_S = 0.8159, 0.9667
#: Star-particle masses are multiples of this (code units, 1e10 Msun/h = 2^-16 of them),
#: so that every sum of them below 2^24 quanta (256e10 Msun/h) is exact in float32: the
#: stellar-assembly invariants then hold exactly.
MASS_QUANTUM = 2.0**-16
#: M200c of a halo of Sheth-Tormen mass M (whose masses are close to FoF / virial masses).
M200_PER_MST = 0.8
#: Linear growth rate f = Omega_m^0.55 (z = 0).
GROWTH_RATE = OMEGA_M**0.55


# ------------------------------------------------------------------------------------------
# Relations
# ------------------------------------------------------------------------------------------


def sheth_tormen_dndlnm(log_m: np.ndarray) -> np.ndarray:
    """Sheth & Tormen (1999) halo mass function dn/dln M [(h^-1 Mpc)^-3], M in Msun/h.

    ``f(ν) = A sqrt(2a/π) [1 + (aν²)^-p] ν exp(-aν²/2)``, A = 0.3222, a = 0.707,
    p = 0.3, ν = 1.686/σ(M), σ from the Eisenstein & Hu linear spectrum of TNG's
    cosmology (σ8 = 0.8159, n_s = 0.9667).
    """
    power = ln.LinearPower(Om0=OMEGA_M, Ob0=OMEGA_B, h=H, n_s=N_S, sigma8=SIGMA8)
    rho_m = 2.77536627e11 * OMEGA_M  # h^2 Msun / Mpc^3
    log_m = np.asarray(log_m, dtype=float)
    m = 10.0**log_m
    radius = (3.0 * m / (4.0 * math.pi * rho_m)) ** (1.0 / 3.0)
    sigma = np.array([ln.sigma_r(power, float(r)) for r in radius])
    nu = 1.686 / sigma
    a, p, amp = 0.707, 0.3, 0.3222
    f = amp * math.sqrt(2 * a / math.pi) * (1 + (a * nu**2) ** -p) * nu * np.exp(-a * nu**2 / 2)
    dlns = np.gradient(np.log(sigma), log_m * math.log(10.0))
    return f * rho_m / m * np.abs(dlns)


def stellar_to_halo(m_halo_msun: np.ndarray, s: MockTNGSettings) -> np.ndarray:
    """log10 M* [Msun] of the Moster et al. (2013) form at halo mass ``m_halo_msun`` [Msun].

    ``M*/M = 2 N [(M/M1)^-β + (M/M1)^γ]^-1`` with the settings' M1, N, β, γ.
    """
    x = np.asarray(m_halo_msun, dtype=float) / 10.0**s.shmr_log_m1
    ratio = 2.0 * s.shmr_norm / (x**-s.shmr_beta + x**s.shmr_gamma)
    return np.log10(np.asarray(m_halo_msun, dtype=float) * ratio)


def r200_kpc_h(m200: np.ndarray) -> np.ndarray:
    """R200c [kpc/h] of M200c [Msun/h] at z = 0."""
    return (3.0 * np.asarray(m200, dtype=float) / (4.0 * math.pi * 200.0 * RHO_CRIT)) ** (1 / 3)


def concentration(m200: np.ndarray) -> np.ndarray:
    """Duffy et al. (2008) c200c at z = 0: 5.71 (M / 2e12 h^-1 Msun)^-0.084."""
    return 5.71 * (np.asarray(m200, dtype=float) / 2e12) ** -0.084


def v200_kms(m200: np.ndarray) -> np.ndarray:
    """Circular velocity at R200c [km/s]."""
    return np.sqrt(G_NEWTON * np.asarray(m200, dtype=float) / r200_kpc_h(m200))


# ------------------------------------------------------------------------------------------
# Orientations
# ------------------------------------------------------------------------------------------


def dimroth_watson(axis: np.ndarray, kappa: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors (n, 3) from the Dimroth-Watson distribution about ``axis`` (n, 3).

    Density ∝ exp(κ cos²θ) on the sphere (axial: ±v alike), θ the angle to the axis;
    κ = 0 is isotropic. t = |cos θ| is drawn by rejection from the density ∝ exp(κ t)
    on [0, 1] (accepting with probability exp(κ (t² − t)); Best & Fisher 1986), with a
    random sign.
    """
    axis = np.asarray(axis, dtype=float)
    n = len(axis)
    kappa = np.broadcast_to(np.asarray(kappa, dtype=float), (n,)).copy()
    t = rng.random(n)  # kappa ~ 0: uniform
    todo = np.flatnonzero(kappa > 1e-8)
    while todo.size:
        k = kappa[todo]
        u, v = rng.random(todo.size), rng.random(todo.size)
        cand = np.log1p(u * np.expm1(k)) / k
        ok = v <= np.exp(k * (cand * cand - cand))
        t[todo[ok]] = cand[ok]
        todo = todo[~ok]
    t *= np.where(rng.random(n) < 0.5, -1.0, 1.0)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    e1, e2 = _perpendicular_pair(axis)
    st = np.sqrt(np.clip(1.0 - t * t, 0.0, None))
    return (t[:, None] * axis + st[:, None] * (np.cos(phi)[:, None] * e1
                                               + np.sin(phi)[:, None] * e2))


def _perpendicular_pair(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to each unit ``axis`` and to each other."""
    helper = np.where(np.abs(axis[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(axis, e1)
    return e1, e2


def frames_about(major: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Right-handed frames (n, 3, 3) whose first column is ``major``; the other two
    are turned about it by a uniform random angle (columns: major, intermediate, minor)."""
    major = major / np.linalg.norm(major, axis=1, keepdims=True)
    e1, e2 = _perpendicular_pair(major)
    psi = rng.uniform(0.0, 2.0 * math.pi, len(major))
    inter = np.cos(psi)[:, None] * e1 + np.sin(psi)[:, None] * e2
    minor = np.cross(major, inter)
    return np.stack([major, inter, minor], axis=2)


def isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform unit vectors."""
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------
# The universe
# ------------------------------------------------------------------------------------------


@dataclass
class Universe:
    """Everything planted except particles (arrays per halo ``halo_*`` and per galaxy ``gal_*``).

    Galaxies are in generation order: each halo's central, then its satellites. Halo
    frames and galaxy frames are (n, 3, 3) with columns major, intermediate, minor.
    """

    box: float  # ckpc/h
    m_dm: float  # DM particle mass, code units (1e10 Msun/h)
    halo_pos: np.ndarray
    halo_vel: np.ndarray
    halo_m200: np.ndarray  # Msun/h
    halo_r200: np.ndarray  # kpc/h
    halo_conc: np.ndarray
    halo_q: np.ndarray
    halo_s: np.ndarray
    halo_frame: np.ndarray
    halo_tidal_axis: np.ndarray
    halo_n_fuzz: np.ndarray  # DM particles of the group outside its subhaloes
    gal_halo: np.ndarray
    gal_central: np.ndarray
    gal_pos: np.ndarray  # ckpc/h
    gal_vel: np.ndarray  # km/s
    gal_m_infall: np.ndarray  # Msun/h (hosts: M200)
    gal_n_dm: np.ndarray
    gal_log_mstar_drawn: np.ndarray
    gal_n_star: np.ndarray  # non-wind star particles
    gal_n_ex: np.ndarray
    gal_n_wind: np.ndarray
    gal_mpart: np.ndarray  # code units, a multiple of MASS_QUANTUM
    gal_fex_drawn: np.ndarray
    gal_r_in: np.ndarray  # kpc, 3D half-mass radius of the in-situ disk
    gal_r_ex: np.ndarray  # kpc, 3D half-mass radius of the ex-situ spheroid
    gal_vc: np.ndarray  # km/s
    gal_q: np.ndarray
    gal_s: np.ndarray
    gal_frame: np.ndarray
    gal_kappa: np.ndarray
    gal_ref_axis: np.ndarray  # the direction the major axis is aligned about
    n_outer_fuzz: int
    kappa_halo: float = 0.0  # Dimroth-Watson kappa of halo major axes about the tidal axis

    @property
    def n_halos(self) -> int:
        return len(self.halo_m200)

    @property
    def n_galaxies(self) -> int:
        return len(self.gal_halo)

    @property
    def gal_mstar(self) -> np.ndarray:
        """Realised stellar mass of the non-wind star particles [Msun]."""
        return self.gal_n_star * self.gal_mpart * 1e10 / H

    @property
    def gal_fex(self) -> np.ndarray:
        """Realised ex-situ mass fraction (= StellarMassExSitu / StellarMassTotal)."""
        return self.gal_n_ex / self.gal_n_star

    def subset_check(self) -> None:
        """Internal consistency (used by tests)."""
        n = {len(getattr(self, f.name)) for f in fields(self) if f.name.startswith("gal_")}
        assert n == {self.n_galaxies}


def _draw_halo_masses(s: MockTNGSettings, rng: np.random.Generator) -> np.ndarray:
    shift = math.log10(M200_PER_MST)
    log_m = np.linspace(s.log_mhalo_min - shift, s.log_mhalo_max - shift, 160)
    dn = sheth_tormen_dndlnm(log_m) * math.log(10.0)  # per dex
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (dn[1:] + dn[:-1]) * np.diff(log_m))])
    n_mean = cum[-1] * s.box_size**3
    n = int(rng.poisson(n_mean))
    return 10.0 ** np.interp(rng.random(n) * cum[-1], cum, log_m) * M200_PER_MST


def _density_field(s: MockTNGSettings, rng: np.random.Generator
                   ) -> tuple[ln.BoxGrid, np.ndarray, np.ndarray]:
    n = max(8, int(math.ceil(s.box_size / s.cell_size)))
    n += n % 2
    grid = ln.BoxGrid(shape=(n, n, n), cell=s.box_size / n)
    power = ln.LinearPower(Om0=OMEGA_M, Ob0=OMEGA_B, h=H, n_s=N_S, sigma8=SIGMA8)
    pk = ln.power_on_grid(grid, power)
    g, gk = ln.gaussian_field(grid, pk, rng)
    delta = ln.lognormal(g, ln.field_variance(grid, pk))
    return grid, delta, gk


def _tidal_axes_and_velocities(grid: ln.BoxGrid, gk: np.ndarray, pos_mpc: np.ndarray,
                               smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Stretching axis of the linear tidal field and linear velocity at ``pos_mpc`` (h^-1 Mpc)."""
    import scipy.fft as sfft

    kx, ky, kz = grid.kvectors()
    k2 = kx * kx + ky * ky + kz * kz
    smooth = np.exp(-0.5 * smoothing**2 * k2).astype(np.float32)
    k2[0, 0, 0] = 1.0
    gs = gk * smooth
    comps = {}
    kvec = (kx, ky, kz)
    for i in range(3):
        for j in range(i, 3):
            tk = gs * (kvec[i] * kvec[j] / k2).astype(np.complex64)
            comps[i, j] = ln.trilinear(sfft.irfftn(tk, s=grid.shape).astype(np.float32),
                                       grid, pos_mpc)
    tensor = np.empty((len(pos_mpc), 3, 3))
    for (i, j), v in comps.items():
        tensor[:, i, j] = tensor[:, j, i] = v
    _, vecs = np.linalg.eigh(tensor)  # ascending eigenvalues: column 0 stretches most
    axis = vecs[:, :, 0]
    psi = ln.linear_displacement(gs, grid)
    vel = np.stack([ln.trilinear(c, grid, pos_mpc) for c in psi], axis=1) * 100.0 * GROWTH_RATE
    return axis, vel


def _nfw_radius(conc: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Radius / r200 enclosing the fraction ``u`` of an NFW halo's mass within r200."""
    def mu(x: np.ndarray) -> np.ndarray:
        return np.log1p(x) - x / (1.0 + x)

    target = u * mu(conc)
    lo, hi = np.zeros_like(target), np.array(conc, dtype=float, copy=True)
    for _ in range(48):
        mid = 0.5 * (lo + hi)
        below = mu(mid) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi) / conc


def _satellite_mu(s: MockTNGSettings, mu_lo: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Satellite counts per host and their infall mass ratios μ = m_infall / M200."""
    lnmu = np.linspace(math.log(1e-7), 0.0, 2000)
    dens = s.sat_amplitude * np.exp(-s.sat_slope * lnmu) * np.exp(-s.sat_cutoff * np.exp(3 * lnmu))
    above = np.concatenate([np.cumsum((0.5 * (dens[1:] + dens[:-1]) * np.diff(lnmu))[::-1])[::-1],
                            [0.0]])  # N(> mu)
    n_mean = np.interp(np.log(mu_lo), lnmu, above)
    counts = rng.poisson(n_mean)
    host_lo = np.repeat(np.log(mu_lo), counts)
    target = rng.random(counts.sum()) * np.interp(host_lo, lnmu, above)
    mu = np.exp(np.interp(-target, -above, lnmu))  # `above` decreases with mu
    return counts, mu


def _clipped_normal(mean: np.ndarray | float, sigma: float, lo: float, hi: float, n: int,
                    rng: np.random.Generator) -> np.ndarray:
    return np.clip(mean + sigma * rng.standard_normal(n), lo, hi)


def draw_universe(s: MockTNGSettings, seed: int) -> Universe:
    """Draw the haloes and galaxies of the mock universe (no particles).

    The same ``(settings, seed)`` always gives the same universe.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 14]))
    box = s.box_size * 1000.0  # ckpc/h
    m200 = np.sort(_draw_halo_masses(s, rng))[::-1]
    n_h = len(m200)
    if n_h == 0:
        raise ValueError(f"the mock box of {s.box_size} h^-1 Mpc holds no halo above "
                         f"10^{s.log_mhalo_min} Msun/h: enlarge box_size")
    # positions: cells drawn with probability ∝ 1 + δ_LN, uniform inside the cell
    grid, delta, gk = _density_field(s, rng)
    weight = np.clip(1.0 + delta.reshape(-1).astype(np.float64), 0.0, None)
    cells = rng.choice(grid.n_cells, size=n_h, p=weight / weight.sum())
    pos_mpc = grid.cell_centres(cells) + (rng.random((n_h, 3)) - 0.5) * grid.cell
    tidal_axis, lin_vel = _tidal_axes_and_velocities(grid, gk, pos_mpc, s.tidal_smoothing)
    halo_pos = np.mod(pos_mpc * 1000.0, box)
    halo_vel = lin_vel + 50.0 * rng.standard_normal((n_h, 3))
    r200 = r200_kpc_h(m200)
    conc = concentration(m200) * 10.0 ** (0.1 * rng.standard_normal(n_h))
    halo_q = rng.uniform(0.55, 0.9, n_h)
    halo_s = halo_q * rng.uniform(0.6, 0.9, n_h)
    halo_frame = frames_about(dimroth_watson(tidal_axis, s.kappa_halo, rng), rng)

    # centrals and satellites
    log_ms_cen = stellar_to_halo(m200 / H, s) + s.shmr_scatter * rng.standard_normal(n_h)
    grid_m = np.linspace(8.0, 15.5, 600)
    m_at_min = 10.0 ** np.interp(s.log_mstar_min - 2.0 * s.shmr_scatter,
                                 stellar_to_halo(10.0**grid_m / H, s), grid_m)
    mu_lo = np.clip(m_at_min / m200, 1e-7, 0.999)
    n_sat, mu = _satellite_mu(s, mu_lo, rng)
    sat_host = np.repeat(np.arange(n_h), n_sat)
    m_inf = mu * m200[sat_host]
    log_ms_sat = stellar_to_halo(m_inf / H, s) + s.shmr_scatter * rng.standard_normal(len(mu))
    keep = log_ms_sat >= s.log_mstar_min
    sat_host, m_inf, log_ms_sat = sat_host[keep], m_inf[keep], log_ms_sat[keep]
    n_sat = np.bincount(sat_host, minlength=n_h)
    order = np.argsort(sat_host, kind="stable")
    sat_host, m_inf, log_ms_sat = sat_host[order], m_inf[order], log_ms_sat[order]

    # galaxy order: each halo's central, then its satellites
    n_gal = n_h + len(sat_host)
    is_cen = np.zeros(n_gal, dtype=bool)
    first = np.concatenate([[0], np.cumsum(1 + n_sat)[:-1]])
    is_cen[first] = True
    gal_halo = np.repeat(np.arange(n_h), 1 + n_sat)
    sat_slots = np.flatnonzero(~is_cen)
    log_ms = np.empty(n_gal)
    log_ms[first] = log_ms_cen
    log_ms[sat_slots] = log_ms_sat
    log_ms = np.minimum(log_ms, s.log_mstar_max)
    m_infall = np.empty(n_gal)
    m_infall[first] = m200
    m_infall[sat_slots] = m_inf

    # positions and velocities
    gal_pos = halo_pos[gal_halo].copy()
    gal_vel = halo_vel[gal_halo].copy()
    n_s = len(sat_slots)
    host = gal_halo[sat_slots]
    r_sat = _nfw_radius(0.5 * conc[host], rng.random(n_s)) * r200[host]
    gal_pos[sat_slots] = np.mod(gal_pos[sat_slots] + isotropic(n_s, rng) * r_sat[:, None], box)
    gal_vel[sat_slots] += (v200_kms(m200[host]) / math.sqrt(3.0))[:, None] * rng.standard_normal(
        (n_s, 3))

    # dark matter per subhalo (a whole number of particles)
    m_dm = 10.0**s.log_dm_particle_mass / 1e10
    n_group_dm = np.maximum(np.rint(m200 / 1e10 / m_dm).astype(np.int64), 1)
    gal_n_dm = np.zeros(n_gal, dtype=np.int64)
    gal_n_dm[sat_slots] = np.rint(s.sat_dm_retained * m_inf / 1e10 / m_dm).astype(np.int64)
    fuzz = np.rint(s.fuzz_fraction * n_group_dm).astype(np.int64)
    sat_dm = np.bincount(host, weights=gal_n_dm[sat_slots], minlength=n_h).astype(np.int64)
    gal_n_dm[first] = np.maximum(n_group_dm - fuzz - sat_dm, 1)
    n_outer = int(np.rint(s.outer_fuzz_fraction * n_group_dm.sum()))

    # stars: particle numbers and masses (dyadic, see MASS_QUANTUM)
    mstar = 10.0**log_ms
    n_star = np.clip(np.rint(s.stars_at_1e10 * (mstar / 1e10) ** s.stars_slope),
                     s.stars_min, s.stars_max).astype(np.int64)
    mcode = mstar * H / 1e10
    mpart = np.maximum(np.rint(mcode / n_star / MASS_QUANTUM), 1.0) * MASS_QUANTUM
    logit = (s.fex_logit_a + s.fex_logit_b * (log_ms - 10.0)
             + s.fex_logit_scatter * rng.standard_normal(n_gal))
    fex = 1.0 / (1.0 + np.exp(-logit))
    n_ex = np.minimum(np.rint(fex * n_star).astype(np.int64), n_star - 1)
    n_wind = rng.binomial(n_star, s.wind_fraction)

    # sizes and circular velocities
    r_in = 10.0 ** (s.size_log_r0 + s.size_slope * (log_ms - 10.0)
                    + s.size_scatter * rng.standard_normal(n_gal))
    r_ex = s.exsitu_size_ratio * r_in
    vc = 1.2 * v200_kms(m_infall)

    # shapes and planted alignment
    q = _clipped_normal(s.q_mean, s.q_sigma, 0.2, 0.98, n_gal, rng)
    s_ax = q * _clipped_normal(s.s_over_q_mean, s.s_over_q_sigma, 0.2, 0.98, n_gal, rng)
    kappa = np.empty(n_gal)
    kappa[first] = s.kappa_cen_0 + s.kappa_cen_slope * (log_ms[first] - 10.0)
    kappa[sat_slots] = s.kappa_sat_0 + s.kappa_sat_slope * (log_ms[sat_slots] - 10.0)
    kappa = np.clip(kappa, 0.0, 50.0)
    ref = np.empty((n_gal, 3))
    ref[first] = halo_frame[:, :, 0]
    to_cen = _periodic(gal_pos[first][gal_halo[sat_slots]] - gal_pos[sat_slots], box)
    norm = np.linalg.norm(to_cen, axis=1, keepdims=True)
    ref[sat_slots] = np.where(norm > 0, to_cen / np.where(norm > 0, norm, 1.0),
                              isotropic(n_s, rng))
    gal_frame = frames_about(dimroth_watson(ref, kappa, rng), rng)

    return Universe(
        box=box, m_dm=m_dm, halo_pos=halo_pos, halo_vel=halo_vel, halo_m200=m200,
        halo_r200=r200, halo_conc=conc, halo_q=halo_q, halo_s=halo_s, halo_frame=halo_frame,
        halo_tidal_axis=tidal_axis, halo_n_fuzz=fuzz, gal_halo=gal_halo, gal_central=is_cen,
        gal_pos=gal_pos, gal_vel=gal_vel, gal_m_infall=m_infall, gal_n_dm=gal_n_dm,
        gal_log_mstar_drawn=log_ms, gal_n_star=n_star, gal_n_ex=n_ex, gal_n_wind=n_wind,
        gal_mpart=mpart, gal_fex_drawn=fex, gal_r_in=r_in, gal_r_ex=r_ex, gal_vc=vc, gal_q=q,
        gal_s=s_ax, gal_frame=gal_frame, gal_kappa=kappa, gal_ref_axis=ref,
        n_outer_fuzz=n_outer, kappa_halo=s.kappa_halo,
    )


def _periodic(d: np.ndarray, box: float) -> np.ndarray:
    """Separation vectors wrapped to the nearest image."""
    return d - box * np.rint(d / box)
