"""Alignment statistics: w_gg and w_g+ (MeasureIA), the 3-D ED and EE correlations,
misalignment angles, and the Samuroff et al. (2021) TNG measurement.

**w_gg, w_g+** (:func:`projected_correlations`): MeasureIA's ``MeasureIABox`` (periodic
box, analytic randoms, ``n_pi`` line-of-sight bins over ±Π_max, jackknife over
``jackknife`` cubic sub-boxes). Shapes enter as the projected major-axis direction and
axis ratio q₂d derived from (e1, e2) (:mod:`galforge.alignment.shapes`: |e| =
(1 − q₂d²)/(1 + q₂d²), position angle ½ atan2(e2, e1) from u), i.e. MeasureIA's
``distortion`` ellipticity; e+ > 0 for radial alignment; the shear responsivity 2R off
by default (the mock truth's convention) — ``stats.responsivity`` turns it on. A shape
galaxy is not paired with itself (``num_overlap = 0``: RR = N_S N_D / V · π Δr_p² · 2Π_max,
the halotools convention and the mock truth's).

**ED, EE** (:func:`ed_ee`): ``ED(r) = ⟨|â_i · r̂_ij|²⟩ − 1/3`` over shape galaxies i and
density galaxies j at 3-D separation r, ``EE(r) = ⟨|â_i · â_j|²⟩ − 1/3`` over pairs of
shape galaxies (â: the 3-D major axis), pairs found with a periodic
``scipy.spatial.cKDTree`` (no field library computes these orientation correlations of
a box); jackknife errors by dropping the shape galaxies of one sub-box at a time.

**Misalignments** (:func:`misalignments`): the angle (axial, 0-90°) between each
galaxy's stellar major axis and its DM major axis, its tidal field's stretching axis
(λ₃) at each smoothing, and, for satellites, its central's major axis and the direction
to its central.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from galforge.alignment.shapes import axis_angle_deg
from galforge.io import InputError

__all__ = ["projected_correlations", "brute_force_wgp", "ed_ee", "misalignments",
           "read_samuroff", "jackknife_regions", "SAMUROFF_LABEL",
           "SAMUROFF_FILE", "find_samuroff"]

#: The measurement's own simulation and sample (Samuroff, Mandelbaum & Blazek 2021, MNRAS,
#: arXiv:2009.10735; the file is hydro_ias's data/2pt/fits/2pt_tng_fidcovw_iteration4.fits,
#: whose config/tng_cov.yaml reads TNG300-1 non-reduced galaxy shapes at snapshots 99, 78, 62,
#: 50 = z 0, 0.3, 0.625, 1.0; its postprocessing compares MassiveBlack-II and Illustris
#: "_w_" weighted samples with this unweighted TNG file, and its plotting script takes the
#: errors as this reader does, sqrt of COVMAT's diagonal). Errors: the paper's analytic
#: covariance (its abstract).
SAMUROFF_LABEL = ("Samuroff et al. (2021): TNG300-1, z = 0, their fiducial TNG sample "
                  "(non-reduced stellar shapes; analytic errors)")


def _direction(e1: np.ndarray, e2: np.ndarray, los: int) -> tuple[np.ndarray, np.ndarray]:
    """MeasureIA's projected axis direction (in its non-LOS columns' order) and q₂d."""
    e = np.clip(np.hypot(e1, e2), 0.0, 1.0 - 1e-12)
    theta = 0.5 * np.arctan2(e2, e1)
    d = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    if los == 1:  # ours (u, v) = (z, x); MeasureIA's columns are (x, z)
        d = d[:, ::-1]
    return d, np.sqrt((1.0 - e) / (1.0 + e))


def projected_correlations(dens_pos: np.ndarray, shape_pos: np.ndarray, e1: np.ndarray,
                           e2: np.ndarray, *, box: float, rp_edges: np.ndarray, pi_max: float,
                           n_pi: int, los: int = 2, jackknife: int = 27,
                           responsivity: bool = False, corr: str = "both") -> dict[str, np.ndarray]:
    """w_gg and w_g+ [h⁻¹Mpc] with jackknife errors, by MeasureIA (log r_p bins ``rp_edges``)."""
    import h5py
    import measureia

    rp_edges = np.asarray(rp_edges, float)
    ratio = np.diff(np.log(rp_edges))
    if not np.allclose(ratio, ratio[0]):
        raise ValueError("rp_edges must be logarithmically spaced (MeasureIA's log binning)")
    direction, q2d = _direction(np.asarray(e1, float), np.asarray(e2, float), los)
    data = {"Position": np.mod(np.asarray(dens_pos, float), box),
            "Position_shape_sample": np.mod(np.asarray(shape_pos, float), box),
            "Axis_Direction": direction, "q": q2d, "LOS": los}
    with tempfile.TemporaryDirectory(prefix="galforge-measureia-") as tmp:
        out = Path(tmp) / "w.h5"
        m = measureia.MeasureIABox(data, str(out), boxsize=box,
                                   separation_limits=[rp_edges[0], rp_edges[-1]],
                                   num_bins_r=len(rp_edges) - 1, num_bins_pi=n_pi,
                                   pi_max=pi_max, num_overlap=0, periodicity=True)
        m.measure_xi_w("w", corr, num_jk=jackknife, temp_file_path=tmp,
                       responsivity=responsivity)
        res: dict[str, np.ndarray] = {"rp_edges": rp_edges,
                                      "rp": np.sqrt(rp_edges[1:] * rp_edges[:-1])}
        with h5py.File(out, "r") as f:
            for name, key in (("wgp", "w_g_plus"), ("wgg", "w_gg")):
                if key not in f:
                    continue
                res[name] = f[f"{key}/w"][()]
                if jackknife:
                    res[f"{name}_err"] = f[f"{key}/w_jackknife_{jackknife}"][()]
                    res[f"{name}_cov"] = f[f"{key}/w_jackknife_cov_{jackknife}"][()]
    return res


def brute_force_wgp(dens_pos: np.ndarray, shape_pos: np.ndarray, e1: np.ndarray,
                    e2: np.ndarray, *, box: float, rp_edges: np.ndarray, pi_max: float,
                    los: int = 2) -> np.ndarray:
    """w_g+ by an explicit sum over every shape-density pair (small catalogs; tests)."""
    from galforge.alignment.shapes import PLANES

    u, v = PLANES["xyz"[los]]
    d = np.asarray(dens_pos, float)[None, :, :] - np.asarray(shape_pos, float)[:, None, :]
    d -= box * np.rint(d / box)
    rp = np.hypot(d[..., u], d[..., v])
    keep = (np.abs(d[..., los]) < pi_max) & (rp > 0)
    phi2 = 2.0 * np.arctan2(d[..., v], d[..., u])
    eplus = np.asarray(e1)[:, None] * np.cos(phi2) + np.asarray(e2)[:, None] * np.sin(phi2)
    b = np.searchsorted(rp_edges, rp, side="right") - 1
    keep &= (b >= 0) & (b < len(rp_edges) - 1)
    s = np.bincount(b[keep], weights=eplus[keep], minlength=len(rp_edges) - 1)
    # random pairs per unit line-of-sight length: w = Σ e+ / (N_S N_D / V · π Δr_p²)
    return s / (len(shape_pos) * len(dens_pos) / box**3 * math.pi
                * np.diff(np.asarray(rp_edges, float) ** 2))


def jackknife_regions(pos: np.ndarray, box: float, n: int) -> np.ndarray:
    """The index of the cubic sub-box (of ``n`` = k³) holding each position."""
    k = round(n ** (1 / 3))
    if k**3 != n:
        raise ValueError(f"jackknife = {n}: must be a cube number")
    c = np.clip((np.mod(pos, box) / box * k).astype(int), 0, k - 1)
    return (c[:, 0] * k + c[:, 1]) * k + c[:, 2]


def _jackknife(num: np.ndarray, den: np.ndarray, region: np.ndarray, n: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Ratio Σnum/Σden (per bin) and its delete-one-region jackknife error."""
    tot = num.sum(0) / np.where(den.sum(0) > 0, den.sum(0), np.nan)
    reps = np.empty((n, num.shape[1]))
    for k in range(n):
        keep = region != k
        dk = den[keep].sum(0)
        reps[k] = num[keep].sum(0) / np.where(dk > 0, dk, np.nan)
    err = np.sqrt((n - 1) / n * np.nansum((reps - np.nanmean(reps, 0)) ** 2, axis=0))
    return tot, err


def ed_ee(shape_pos: np.ndarray, shape_axes: np.ndarray, dens_pos: np.ndarray, *, box: float,
          r_edges: np.ndarray, jackknife: int = 27) -> dict[str, np.ndarray]:
    """ED(r) and EE(r) with jackknife errors (3-D separations, periodic box)."""
    from scipy.spatial import cKDTree

    r_edges = np.asarray(r_edges, float)
    nb = len(r_edges) - 1
    sp, dp = np.mod(shape_pos, box), np.mod(dens_pos, box)
    a = shape_axes / np.linalg.norm(shape_axes, axis=1, keepdims=True)
    region = jackknife_regions(sp, box, jackknife)
    out: dict[str, np.ndarray] = {"r_edges": r_edges, "r": np.sqrt(r_edges[1:] * r_edges[:-1])}
    for name, other in (("ed", dp), ("ee", sp)):
        pairs = cKDTree(sp, boxsize=box).sparse_distance_matrix(
            cKDTree(other, boxsize=box), r_edges[-1], output_type="ndarray")
        i, j = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
        d = other[j] - sp[i]
        d -= box * np.rint(d / box)
        r = np.linalg.norm(d, axis=1)
        b = np.searchsorted(r_edges, r, side="right") - 1
        keep = (r > 0) & (b >= 0) & (b < nb)
        i, j, b, d, r = i[keep], j[keep], b[keep], d[keep], r[keep]
        if name == "ed":
            c2 = (np.einsum("ni,ni->n", a[i], d) / r) ** 2
        else:
            c2 = np.einsum("ni,ni->n", a[i], a[j]) ** 2
        flat = i * nb + b
        num = np.bincount(flat, weights=c2 - 1.0 / 3.0, minlength=len(sp) * nb).reshape(-1, nb)
        den = np.bincount(flat, minlength=len(sp) * nb).reshape(-1, nb).astype(float)
        out[name], out[f"{name}_err"] = _jackknife(num, den, region, jackknife)
        out[f"{name}_pairs"] = den.sum(0)
    return out


def misalignments(cols: dict[str, np.ndarray], box: float, method: str = "simple"
                  ) -> dict[str, np.ndarray]:
    """Per galaxy: misalignment angles [deg] of the stellar major axis (see the module doc)."""
    major = cols[f"star_axes_{method}"][:, :, 0]
    out: dict[str, np.ndarray] = {
        "subhalo_id": cols["subhalo_id"], "central": cols["central"],
        "log_mstar": cols["log_mstar"],
        "angle_dm": axis_angle_deg(major, cols[f"dm_axes_{method}"][:, :, 0]),
    }
    for k in range(cols["tidal_axes"].shape[1]):
        out[f"angle_tidal_{k}"] = axis_angle_deg(major, cols["tidal_axes"][:, k, :, 2])
    # the central of each galaxy's group (when it is in the catalog)
    cen_row = {int(g): r for r, g in enumerate(cols["group"]) if cols["central"][r]}
    row = np.array([cen_row.get(int(g), -1) for g in cols["group"]])
    sat = ~cols["central"].astype(bool) & (row >= 0)
    ang_c = np.full(len(row), np.nan)
    ang_r = np.full(len(row), np.nan)
    if sat.any():
        ang_c[sat] = axis_angle_deg(major[sat], major[row[sat]])
        d = cols["pos"][row[sat]] - cols["pos"][sat]
        d -= box * np.rint(d / box)
        ang_r[sat] = axis_angle_deg(major[sat], d)
    out["angle_central"] = ang_c
    out["angle_radial"] = ang_r
    return out


#: The Samuroff et al. (2021) file's path under a shared-data or cache folder.
SAMUROFF_FILE = "ia/2pt_tng_fidcovw_iteration4.fits"


def find_samuroff(*folders: str | Path | None) -> Path | None:
    """The Samuroff et al. (2021) 2-point file where this machine has it: under
    ``$GALFORGE_SHARED_DATA``, then each of ``folders`` in turn (:data:`SAMUROFF_FILE`
    below each); None when none has it (the workflow then draws and tables ours alone)."""
    import os

    for base in (os.environ.get("GALFORGE_SHARED_DATA"), *folders):
        if base and (Path(base) / SAMUROFF_FILE).is_file():
            return (Path(base) / SAMUROFF_FILE).resolve()
    return None


def read_samuroff(path: str | Path, snapshot: int = 99) -> dict[str, np.ndarray]:
    """w_g+ and w_gg with their errors (the covariance's diagonal) of one snapshot from the
    Samuroff et al. (2021) 2-point file (HDUs wgp, wpp, wgg; BIN k = the header's SNAPSHOT_k)."""
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: Samuroff et al. 2-point file not found")
    try:
        with fits.open(path) as hdus:
            h = {e.name.upper(): e for e in hdus}
            for need in ("WGP", "WGG", "COVMAT"):
                if need not in h:
                    raise InputError(f"{path}: HDU {need} missing (not the hydro_ias 2-point file)")
            hdr = h["WGP"].header
            snaps = {int(hdr[k]): int(k.split("_")[1]) for k in hdr if k.startswith("SNAPSHOT_")}
            if snapshot not in snaps:
                raise InputError(f"{path}: no snapshot {snapshot} (has {sorted(snaps)})")
            cov_hdr = h["COVMAT"].header
            starts = {cov_hdr[f"NAME_{k}"].strip().upper(): int(cov_hdr[f"STRT_{k}"])
                      for k in range(8) if f"NAME_{k}" in cov_hdr}
            sig = np.sqrt(np.diag(h["COVMAT"].data))
            out: dict[str, np.ndarray] = {}
            for name in ("WGP", "WGG"):
                d = h[name].data
                rows = np.flatnonzero(d["BIN"] == snaps[snapshot])
                out["rp"] = np.asarray(d["SEP"][rows], float)
                out[name.lower()] = np.asarray(d["VALUE"][rows], float)
                out[f"{name.lower()}_err"] = sig[starts[name] + rows]
    except OSError as exc:
        raise InputError(f"{path}: not a readable FITS file ({exc})") from None
    return out


def summary(mis: dict[str, np.ndarray], smoothing: Any) -> dict[str, Any]:
    """Mean cos² of each misalignment angle, for centrals and satellites."""
    out: dict[str, Any] = {}
    cen = mis["central"].astype(bool)
    names = ["angle_dm", "angle_central", "angle_radial"] + \
        [f"angle_tidal_{k}" for k in range(len(smoothing))]
    for name in names:
        for who, sel in (("centrals", cen), ("satellites", ~cen)):
            v = mis[name][sel]
            v = v[np.isfinite(v)]
            if len(v):
                out[f"{name}_{who}_mean_cos2"] = float(np.mean(np.cos(np.radians(v)) ** 2))
    return out
