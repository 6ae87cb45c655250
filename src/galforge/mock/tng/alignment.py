"""The projected shape–density correlation w_g+(r_p) of the mock's planted alignment.

Conventions (stated once, used by the truth file): the line of sight is the box's z
axis; a galaxy's projected ellipticity is that of its stellar ellipsoid's second-moment
tensor ``I = R diag(1, q², s²) Rᵀ`` (R: its frame, columns major, intermediate, minor)
projected on the x-y plane, ``e1 = (Ixx − Iyy)/(Ixx + Iyy)``, ``e2 = 2 Ixy/(Ixx + Iyy)``
(so |e| = (1 − q₂d²)/(1 + q₂d²)); for a shape galaxy i and a density galaxy j at
projected angle φ (of the separation from i to j), ``e+ = e1 cos 2φ + e2 sin 2φ``,
positive when i's major axis points at j (radial alignment).

    w_g+(r_p) = Σ_{pairs, |Π| < Π_max, r_p bin} e+  /  (N_S N_D / V · π (r₂² − r₁²))

in h⁻¹Mpc: the natural estimator in the periodic box with analytic random pairs (the
pair count a uniform density sample would give), summed over the line-of-sight depth.

The pairs are counted once: ``C[i, b] = Σ_j cos 2φ_ij`` and ``S[i, b] = Σ_j sin 2φ_ij``
per shape galaxy and bin, so that any set of orientations gives
``w_g+(b) = Σ_i (e1_i C_ib + e2_i S_ib) / RR_b``. The expected w_g+ of the planted
model averages many Monte-Carlo realisations of the orientations (haloes about the
tidal field, centrals about their halo, satellites towards their central), positions,
shapes and the tidal field held as planted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from galforge.mock.tng.model import Universe, dimroth_watson, frames_about

__all__ = ["PairSums", "expected_wgp", "pair_sums", "projected_ellipticity", "wgp"]


def projected_ellipticity(frame: np.ndarray, q: np.ndarray, s: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(e1, e2) of ellipsoids (frames (n, 3, 3), axis ratios q, s) seen along z."""
    lam = np.stack([np.ones_like(q), q * q, s * s], axis=1)
    inertia = np.einsum("nij,nj,nkj->nik", frame, lam, frame)
    ixx, iyy, ixy = inertia[:, 0, 0], inertia[:, 1, 1], inertia[:, 0, 1]
    return (ixx - iyy) / (ixx + iyy), 2.0 * ixy / (ixx + iyy)


@dataclass
class PairSums:
    """Pair sums of a shape sample against a density sample, per r_p bin."""

    rp_edges: np.ndarray  # h^-1 Mpc
    cos2: np.ndarray  # (n_shape, n_bins)
    sin2: np.ndarray
    rr: np.ndarray  # expected random pairs per bin (n_bins,)
    n_pairs: np.ndarray  # pairs per bin

    @property
    def rp_centres(self) -> np.ndarray:
        return np.sqrt(self.rp_edges[1:] * self.rp_edges[:-1])


def pair_sums(shape_pos: np.ndarray, dens_pos: np.ndarray, box: float, rp_edges: np.ndarray,
              pi_max: float, shape_ids: np.ndarray | None = None,
              dens_ids: np.ndarray | None = None, chunk: int = 2000) -> PairSums:
    """Count shape–density pairs in the periodic ``box`` (positions in h⁻¹Mpc).

    A galaxy in both samples (same id) is not paired with itself.
    """
    rp_edges = np.asarray(rp_edges, dtype=float)
    nb = len(rp_edges) - 1
    n_s = len(shape_pos)
    cos2, sin2 = np.zeros((n_s, nb)), np.zeros((n_s, nb))
    n_pairs = np.zeros(nb, dtype=np.int64)
    tree_d = cKDTree(np.mod(dens_pos, box), boxsize=box)
    rmax = math.hypot(rp_edges[-1], pi_max)
    for lo in range(0, n_s, chunk):
        sp = np.mod(shape_pos[lo: lo + chunk], box)
        tree_s = cKDTree(sp, boxsize=box)
        pairs = tree_s.sparse_distance_matrix(tree_d, rmax, output_type="ndarray")
        i, j = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
        d = dens_pos[j] - sp[i]
        d -= box * np.rint(d / box)
        rp = np.hypot(d[:, 0], d[:, 1])
        keep = (np.abs(d[:, 2]) < pi_max) & (rp >= rp_edges[0]) & (rp < rp_edges[-1])
        if shape_ids is not None and dens_ids is not None:
            keep &= shape_ids[lo + i] != dens_ids[j]
        i, d, rp = i[keep], d[keep], rp[keep]
        b = np.searchsorted(rp_edges, rp, side="right") - 1
        phi2 = 2.0 * np.arctan2(d[:, 1], d[:, 0])
        flat = (i * nb + b)
        size = len(sp) * nb
        cos2[lo: lo + len(sp)] = np.bincount(flat, weights=np.cos(phi2), minlength=size
                                             ).reshape(len(sp), nb)
        sin2[lo: lo + len(sp)] = np.bincount(flat, weights=np.sin(phi2), minlength=size
                                             ).reshape(len(sp), nb)
        n_pairs += np.bincount(b, minlength=nb)
    area = math.pi * (rp_edges[1:] ** 2 - rp_edges[:-1] ** 2)
    rr = n_s * len(dens_pos) / box**3 * area
    return PairSums(rp_edges=rp_edges, cos2=cos2, sin2=sin2, rr=rr, n_pairs=n_pairs)


def wgp(pairs: PairSums, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """w_g+ per r_p bin [h⁻¹Mpc] of the shape sample's ellipticities (e1, e2)."""
    return (e1 @ pairs.cos2 + e2 @ pairs.sin2) / pairs.rr


def redraw_frames(u: Universe, rng: np.random.Generator) -> np.ndarray:
    """One Monte-Carlo realisation of every galaxy's frame under the planted model."""
    halo_major = dimroth_watson(u.halo_tidal_axis, u.kappa_halo, rng)
    ref = u.gal_ref_axis.copy()
    cen = u.gal_central
    ref[cen] = halo_major[u.gal_halo[cen]]
    return frames_about(dimroth_watson(ref, u.gal_kappa, rng), rng)


def expected_wgp(u: Universe, shape: np.ndarray, dens: np.ndarray, pairs: PairSums,
                 realisations: int, seed: int) -> dict[str, np.ndarray]:
    """Mean, standard error and scatter of w_g+ over Monte-Carlo orientation realisations,
    and the w_g+ of the orientations written (``realised``)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 14, 3]))
    runs = np.empty((realisations, len(pairs.rr)))
    for k in range(realisations):
        frame = redraw_frames(u, rng)[shape]
        runs[k] = wgp(pairs, *projected_ellipticity(frame, u.gal_q[shape], u.gal_s[shape]))
    e1, e2 = projected_ellipticity(u.gal_frame[shape], u.gal_q[shape], u.gal_s[shape])
    std = runs.std(axis=0, ddof=1)
    return {"expected": runs.mean(axis=0), "expected_sem": std / math.sqrt(realisations),
            "realisation_std": std, "realised": wgp(pairs, e1, e2)}
