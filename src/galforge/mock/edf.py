"""NIHAO-like star-particle galaxies for the edf study, with planted truth.

:func:`write_edf_mock` writes one NumPy file per galaxy in the layout of the
authors' Zenodo record (:mod:`galforge.archives.zenodo`: an (11, N) array of x, y,
z [kpc], vx, vy, vz [km/s], Z, [Fe/H], [O/Fe], mass [M_sun], age [Gyr], named
``<prefix>_<id>_<M_dm>.npy``) and a JSON truth file. :func:`draw_galaxy` draws any
galaxy again, independently (``draw`` >= 1; the written file is ``draw`` 0): two such
draws give the noise floor of a two-sample metric. Same seed and settings → the same
files, byte for byte.

Planted galaxy parameters (two, so that the four conditions of the flow vary smoothly
and are correlated but not degenerate): ``log_mdm`` = log10 M_dm [M_sun] and
``t_form`` [Gyr ago], drawn as a Latin hypercube over ``[log_mdm_min, log_mdm_max] x
[t_form_min, t_form_max]`` (each galaxy its own stratum of each). With
``u = log_mdm - 12`` and ``t = t_form - 6``:

* stellar mass ``log10 M* = 10.75 + 1.75 u + 0.10 t`` (the planted total; the
  data's M* is the sum of the particle masses after the cuts);
* disk scale length ``R_d = 2.5 kpc 10^(0.25 (log10 M* - 10.5))``;
* circular speed ``v_c(R) = V_max R / sqrt(R^2 + (0.6 R_d)^2)``,
  ``V_max = 210 km/s 10^(u / 3)``;
* number of particles log-linear in ``log_mdm`` from ``n_stars_min`` to
  ``n_stars_max``; particle mass ``m = m0 (1 - 0.25 age / 13.5) e^{N(0, 0.05)}`` with
  ``m0 = M* / N`` (NIHAO's particles lose mass as they age);
* four components with mass fractions
  ``f_bulge = clip(0.12 + 0.06 u + 0.03 t, 0.03, 0.45)``,
  ``f_halo = clip(0.05 + 0.01 t, 0.02, 0.15)``,
  ``f_thick = clip(0.22 + 0.03 t, 0.05, 0.45)``, the thin disk the rest;
* ages ``13.5 Beta`` with mean ``a`` and concentration ``k`` (raised where needed so that
  both Beta parameters are at least 1.2: no infinite density at age 0): thin disk
  ``a = 0.45 t_form`` (k = 3), thick disk ``t_form + 2.5`` (k = 12), bulge
  ``t_form + 2`` (k = 8), halo 11.5 Gyr (k = 40);
* structure: thin disk ``R ~ Gamma(2, R_d)`` (an exponential disk), heights of an
  isothermal sheet ``ρ ∝ sech²(z / h)`` with ``h = 0.08 R_d (1 + age / 5)``; thick disk
  ``R ~ Gamma(2, 1.2 R_d)``, ``h = 0.35 R_d``; bulge a Plummer
  sphere of scale ``0.25 R_d``; halo a Hernquist sphere of scale ``4 R_d + 3 kpc``;
* kinematics (cylindrical about the spin axis z): thin disk
  ``σ_R = 0.12 V_max (1 + age / 4)^0.4`` (disk heating), ``σ_φ = 0.7 σ_R``,
  ``σ_z = 0.55 σ_R``, ``v_φ ~ N(v_c - 0.5 σ_R² / V_max, σ_φ)``; thick disk
  ``v_φ ~ N(0.75 v_c, 0.21 V_max)``, ``σ_R = 0.3 V_max``, ``σ_z = 0.22 V_max``; bulge
  ``v_φ ~ N(0.15 v_c, 0.45 V_max)`` and ``σ = 0.45 V_max``; halo isotropic
  ``σ = 0.55 V_max``, no rotation;
* chemistry with ``[Fe/H]_0 = -0.35 + 0.3 (log10 M* - 10.5)``: thin disk
  ``[Fe/H]_0 + 0.15 - 0.04 age - 0.08 (R / R_d - 2) + N(0, 0.12)``, thick disk
  ``[Fe/H]_0 - 0.35 - 0.03 age + N(0, 0.2)``, bulge ``[Fe/H]_0 + 0.05 - 0.02 age +
  N(0, 0.25)``, halo ``[Fe/H]_0 - 1.1 + N(0, 0.35)``; ``[O/Fe] = 0.02 + 0.28 /
  (1 + e^{-(age - t_form - 1) / 0.8}) + N(0, 0.04)`` (+0.05 in the halo: the alpha
  knee follows the formation time); ``Z = 0.0134 10^([Fe/H] + log10(0.638
  10^[O/Fe] + 0.362))`` (Salaris et al. 1993 with the solar Z of Asplund et al. 2009);
* outliers: a fraction ``junk_fraction / 2`` of particles is metal-free
  (``[Fe/H] = -10``, ``[O/Fe] = -2``, ``Z = 1e-12``), another ``junk_fraction / 2`` is
  oxygen-poor (``[O/Fe] = -1.5``), and ``n_sparse`` extra galaxies have only
  ``sparse_stars`` particles;
* orientation: the spin axis points in an isotropic random direction (the truth's
  ``spin_axis``, ``inclination_deg`` = its angle from the z axis), with a random
  rotation about it; the centre and the systemic velocity are zero.

Galaxy ids are distinct random integers (so the id order is not the mass order), and
the truth file lists, per galaxy, its file, id, ``log_mdm``, ``t_form``, every derived
quantity above and the number of particles, plus the run's ``seed``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from galforge.archives.zenodo import NIHAO_COLUMNS, npy_name
from galforge.io import atomic_path, write_json
from galforge.mock.edf_settings import MockEdfSettings

__all__ = ["GalaxyTruth", "draw_galaxy", "galaxy_truths", "read_truth", "write_edf_mock"]

log = logging.getLogger("galforge.mock")

#: Salt of the mock's random streams (galaxy parameters and each galaxy's draws).
SALT = 0xEDF
#: Oldest star [Gyr].
AGE_MAX = 13.5
#: Solar metal mass fraction (Asplund et al. 2009).
Z_SUN = 0.0134
COMPONENTS = ("thin", "thick", "bulge", "halo")


@dataclass(frozen=True)
class GalaxyTruth:
    """The planted parameters of one mock galaxy and what follows from them."""

    index: int
    galaxy_id: str
    file: str
    log_mdm: float
    t_form: float
    log_mstar: float
    r_d: float
    v_max: float
    fractions: dict[str, float]
    n_stars: int
    spin_axis: tuple[float, float, float]
    inclination_deg: float
    azimuth_rad: float
    sparse: bool
    junk_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GalaxyTruth:
        d = dict(d)
        d["spin_axis"] = tuple(float(v) for v in d["spin_axis"])
        return cls(**d)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), SALT, *map(int, key)]))


def _fractions(u: float, t: float) -> dict[str, float]:
    bulge = float(np.clip(0.12 + 0.06 * u + 0.03 * t, 0.03, 0.45))
    halo = float(np.clip(0.05 + 0.01 * t, 0.02, 0.15))
    thick = float(np.clip(0.22 + 0.03 * t, 0.05, 0.45))
    return {"thin": 1.0 - bulge - halo - thick, "thick": thick, "bulge": bulge, "halo": halo}


def galaxy_truths(s: MockEdfSettings, seed: int) -> list[GalaxyTruth]:
    """The planted parameters of every galaxy (the sparse ones last), in drawing order."""
    rng = _rng(seed, 0)
    n, n_all = s.n_galaxies, s.n_galaxies + s.n_sparse
    # Latin hypercube: each galaxy its own stratum of log M_dm and of t_form
    q_m = (rng.permutation(n) + rng.uniform(size=n)) / n
    q_t = (rng.permutation(n) + rng.uniform(size=n)) / n
    log_mdm = np.concatenate([s.log_mdm_min + (s.log_mdm_max - s.log_mdm_min) * q_m,
                              np.full(s.n_sparse, s.log_mdm_min)])
    t_form = np.concatenate([s.t_form_min + (s.t_form_max - s.t_form_min) * q_t,
                             rng.uniform(s.t_form_min, s.t_form_max, s.n_sparse)])
    ids = rng.choice(np.arange(1, 3 * n_all + 10), size=n_all, replace=False)
    span = max(s.log_mdm_max - s.log_mdm_min, 1e-12)
    out = []
    for i in range(n_all):
        u, t = float(log_mdm[i] - 12.0), float(t_form[i] - 6.0)
        log_mstar = 10.75 + 1.75 * u + 0.10 * t
        sparse = i >= n
        if sparse:
            n_stars = s.sparse_stars
        else:
            frac = (log_mdm[i] - s.log_mdm_min) / span
            n_stars = int(round(np.exp(np.log(s.n_stars_min)
                                       + frac * np.log(s.n_stars_max / s.n_stars_min))))
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        m_dm = 10.0 ** float(log_mdm[i])
        out.append(GalaxyTruth(
            index=i, galaxy_id=str(int(ids[i])), file=npy_name(s.prefix, int(ids[i]), m_dm),
            log_mdm=float(log_mdm[i]), t_form=float(t_form[i]), log_mstar=float(log_mstar),
            r_d=float(2.5 * 10 ** (0.25 * (log_mstar - 10.5))),
            v_max=float(210.0 * 10 ** (u / 3.0)), fractions=_fractions(u, t),
            n_stars=int(n_stars), spin_axis=(float(axis[0]), float(axis[1]), float(axis[2])),
            inclination_deg=float(np.degrees(np.arccos(np.clip(axis[2], -1.0, 1.0)))),
            azimuth_rad=float(rng.uniform(0, 2 * np.pi)), sparse=bool(sparse),
            junk_fraction=float(s.junk_fraction),
        ))
    return out


def _beta_ages(rng: np.random.Generator, n: int, mean: float, k: float) -> np.ndarray:
    m = float(np.clip(mean / AGE_MAX, 0.03, 0.97))
    k = max(k, 1.2 / m, 1.2 / (1.0 - m))  # both shape parameters >= 1.2: no infinite density
    return AGE_MAX * rng.beta(k * m, k * (1.0 - m), size=n)


def _sech2(rng: np.random.Generator, scale: np.ndarray | float, n: int) -> np.ndarray:
    """Heights of an isothermal sheet, density ∝ sech²(z / scale)."""
    return scale * np.arctanh(rng.uniform(-1 + 1e-12, 1 - 1e-12, n))


def _frame(axis: np.ndarray, azimuth: float) -> np.ndarray:
    """Rotation taking the intrinsic z axis to ``axis`` after a turn of ``azimuth`` about z."""
    c, s = np.cos(azimuth), np.sin(azimuth)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(z, axis)
    sin, cos = np.linalg.norm(v), float(np.dot(z, axis))
    if sin < 1e-12:
        tilt = np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        k = v / sin
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        tilt = np.eye(3) + sin * kx + (1 - cos) * kx @ kx
    return tilt @ turn


def draw_galaxy(g: GalaxyTruth, seed: int, draw: int = 0, n: int | None = None) -> np.ndarray:
    """Star particles of galaxy ``g`` as the (11, N) array of the archive's layout.

    ``draw`` 0 is the written file; every other draw is an independent sample of the same
    galaxy. ``n``: the number of particles (default: the galaxy's).
    """
    rng = _rng(seed, 1, g.index, draw)
    n = g.n_stars if n is None else int(n)
    comp = rng.choice(len(COMPONENTS), size=n, p=[g.fractions[c] for c in COMPONENTS])
    rd, vmax, tf = g.r_d, g.v_max, g.t_form
    age = np.empty(n)
    pos_r, pos_phi, pos_z = np.empty(n), rng.uniform(0, 2 * np.pi, n), np.empty(n)
    v_r, v_phi, v_z = np.empty(n), np.empty(n), np.empty(n)
    feh = np.empty(n)
    feh0 = -0.35 + 0.3 * (g.log_mstar - 10.5)

    def vc(r: np.ndarray) -> np.ndarray:
        return vmax * r / np.sqrt(r * r + (0.6 * rd) ** 2)

    def sphere(m: np.ndarray, r: np.ndarray) -> None:
        cos_t = rng.uniform(-1, 1, m.sum())
        pos_r[m] = r * np.sqrt(1 - cos_t**2)
        pos_z[m] = r * cos_t

    for ci, name in enumerate(COMPONENTS):
        m = comp == ci
        k = int(m.sum())
        if not k:
            continue
        if name == "thin":
            a = _beta_ages(rng, k, 0.45 * tf, 3.0)
            r = rng.gamma(2.0, rd, k)
            pos_r[m], pos_z[m] = r, _sech2(rng, 0.08 * rd * (1 + a / 5.0), k)
            sig_r = 0.12 * vmax * (1 + a / 4.0) ** 0.4
            v_r[m] = rng.normal(0.0, sig_r)
            v_phi[m] = rng.normal(vc(r) - 0.5 * sig_r**2 / vmax, 0.7 * sig_r)
            v_z[m] = rng.normal(0.0, 0.55 * sig_r)
            feh[m] = feh0 + 0.15 - 0.04 * a - 0.08 * (r / rd - 2.0) + rng.normal(0, 0.12, k)
        elif name == "thick":
            a = _beta_ages(rng, k, tf + 2.5, 12.0)
            r = rng.gamma(2.0, 1.2 * rd, k)
            pos_r[m], pos_z[m] = r, _sech2(rng, 0.35 * rd, k)
            v_r[m] = rng.normal(0.0, 0.3 * vmax, k)
            v_phi[m] = rng.normal(0.75 * vc(r), 0.21 * vmax)
            v_z[m] = rng.normal(0.0, 0.22 * vmax, k)
            feh[m] = feh0 - 0.35 - 0.03 * a + rng.normal(0, 0.2, k)
        elif name == "bulge":
            a = _beta_ages(rng, k, tf + 2.0, 8.0)
            u = rng.uniform(1e-6, 1 - 1e-6, k)
            r = 0.25 * rd / np.sqrt(u ** (-2.0 / 3.0) - 1.0)  # Plummer
            sphere(m, r)
            v_r[m] = rng.normal(0.0, 0.45 * vmax, k)
            v_phi[m] = rng.normal(0.15 * vc(r), 0.45 * vmax)
            v_z[m] = rng.normal(0.0, 0.45 * vmax, k)
            feh[m] = feh0 + 0.05 - 0.02 * a + rng.normal(0, 0.25, k)
        else:
            a = _beta_ages(rng, k, 11.5, 40.0)
            u = np.sqrt(rng.uniform(1e-6, 1 - 1e-6, k))
            r = (4.0 * rd + 3.0) * u / (1.0 - u)  # Hernquist
            sphere(m, r)
            v_r[m], v_phi[m], v_z[m] = (rng.normal(0.0, 0.55 * vmax, k) for _ in range(3))
            feh[m] = feh0 - 1.1 + rng.normal(0, 0.35, k)
        age[m] = a
    ofe = (0.02 + 0.28 / (1 + np.exp(-(age - tf - 1.0) / 0.8)) + rng.normal(0, 0.04, n)
           + 0.05 * (comp == COMPONENTS.index("halo")))
    z_metal = Z_SUN * 10 ** (feh + np.log10(0.638 * 10**ofe + 0.362))
    u = rng.uniform(size=n)
    junk, o_poor = u < g.junk_fraction / 2, (u >= g.junk_fraction / 2) & (u < g.junk_fraction)
    feh[junk], ofe[junk], z_metal[junk] = -10.0, -2.0, 1e-12
    ofe[o_poor] = -1.5
    mass = (10**g.log_mstar / n) * (1 - 0.25 * age / AGE_MAX) * np.exp(rng.normal(0, 0.05, n))
    c, s = np.cos(pos_phi), np.sin(pos_phi)
    pos = np.stack([pos_r * c, pos_r * s, pos_z], axis=1)
    vel = np.stack([v_r * c - v_phi * s, v_r * s + v_phi * c, v_z], axis=1)
    rot = _frame(np.asarray(g.spin_axis), g.azimuth_rad)
    pos, vel = pos @ rot.T, vel @ rot.T
    out = np.empty((len(NIHAO_COLUMNS), n))
    out[0:3], out[3:6] = pos.T, vel.T
    out[6], out[7], out[8], out[9], out[10] = z_metal, feh, ofe, mass, age
    return out



def write_edf_mock(s: MockEdfSettings, *, seed: int, folder: str | Path,
                   truth_path: str | Path, config_hash: str = "") -> dict[str, Any]:
    """Write every galaxy's ``.npy`` file into ``folder`` and the truth JSON.

    Returns a summary (galaxies, particles, the folder).
    """
    truths = galaxy_truths(s, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.npy"):
        stale.unlink()
    n_total = 0
    for g in truths:
        arr = draw_galaxy(g, seed)
        n_total += arr.shape[1]
        with atomic_path(folder / g.file) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr)
    truth = {"seed": int(seed), "config_hash": config_hash, "settings": s.to_dict(),
             "galaxies": [g.to_dict() for g in truths]}
    write_json(truth, truth_path)
    summary = {"galaxies": len(truths), "sparse": s.n_sparse, "stars": n_total,
               "folder": str(folder)}
    log.info("edf mock: %s", summary)
    return summary


def read_truth(path: str | Path) -> tuple[int, list[GalaxyTruth]]:
    """The seed and the galaxies of a truth file written by :func:`write_edf_mock`."""
    d = json.loads(Path(path).read_text())
    return int(d["seed"]), [GalaxyTruth.from_dict(g) for g in d["galaxies"]]
