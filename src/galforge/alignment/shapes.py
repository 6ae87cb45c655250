"""Galaxy shapes from particles: three inertia tensors, axis ratios, axes, projected e1/e2.

For particles at ``x`` (relative to the galaxy's centre) with masses ``m`` inside an
aperture of radius ``r_max`` (the authors: 2 stellar half-mass radii):

* ``simple`` (the authors' choice): ``I_ij = Σ m x_i x_j / Σ m`` within the sphere;
* ``reduced``: ``I_ij = Σ m x_i x_j / r² / Σ m`` within the sphere (biased towards round:
  it weights each particle by its spherical radius);
* ``iterative`` (iterative reduced): weights ``1 / r̃²`` with the ellipsoidal radius
  ``r̃² = x₁² + x₂²/q² + x₃²/s²`` (coordinates along the current axes) and particles
  within the ellipsoid of the current q, s and the aperture sphere's volume
  (``a b c = r_max³``), repeated until q and s change by less than ``rtol`` (relative),
  at most ``max_iter`` times.

Eigenvalues ``λ₁ ≥ λ₂ ≥ λ₃`` give axis lengths ``a, b, c = √λ`` (up to a constant
common to the three), ``q = b/a``, ``s = c/a``; the eigenvectors are the columns of a
right-handed frame ``(major, intermediate, minor)`` (the minor axis is major ×
intermediate; the axes are axial: each is defined up to its sign, the frame up to the
four rotations by π about its axes).

Projected shapes (:func:`projected_e`): the ellipsoid's second-moment tensor
``V diag(a², b², c²) Vᵀ`` projected on the plane (u, v) perpendicular to the line of
sight, with (u, v, los) right-handed (los z: (x, y); x: (y, z); y: (z, x)):
``e1 = (I_uu − I_vv)/(I_uu + I_vv)``, ``e2 = 2 I_uv/(I_uu + I_vv)`` (the "distortion",
|e| = (1 − q₂d²)/(1 + q₂d²)); e1 > 0 along u. This is the mock truth's convention
(:mod:`galforge.mock.tng.alignment`): for a density galaxy at angle φ from u,
``e+ = e1 cos 2φ + e2 sin 2φ`` is positive for radial alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Shape", "half_mass_radius", "inertia_shape", "projected_e", "plane_axes",
           "axis_angle_deg"]

#: (u, v) box axes of the plane of the sky for each line of sight, (u, v, los) right-handed.
PLANES = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}


@dataclass(frozen=True)
class Shape:
    """One inertia-tensor shape; NaN when there were too few particles."""

    q: float
    s: float
    lengths: np.ndarray  # (3,) a >= b >= c (sqrt of the eigenvalues)
    axes: np.ndarray  # (3, 3) columns major, intermediate, minor (right-handed)
    n: int  # particles used (last iteration)
    iterations: int
    converged: bool

    @classmethod
    def empty(cls, n: int = 0) -> Shape:
        return cls(np.nan, np.nan, np.full(3, np.nan), np.full((3, 3), np.nan), n, 0, False)


def half_mass_radius(pos: np.ndarray, mass: np.ndarray) -> float:
    """Radius of the sphere about the origin holding half the mass (NaN when empty)."""
    if len(mass) == 0:
        return float("nan")
    r = np.sqrt(np.einsum("ij,ij->i", pos, pos))
    order = np.argsort(r)
    cum = np.cumsum(mass[order])
    return float(r[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _eig(tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, vec = np.linalg.eigh(tensor)
    lam, vec = lam[::-1], vec[:, ::-1]
    vec = vec * np.where(vec[np.argmax(np.abs(vec), axis=0), range(3)] < 0, -1.0, 1.0)
    vec[:, 2] = np.cross(vec[:, 0], vec[:, 1])
    return np.clip(lam, 0.0, None), vec


def _tensor(x: np.ndarray, m: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    mw = m if w is None else m * w
    return np.einsum("n,ni,nj->ij", mw, x, x) / m.sum()


def inertia_shape(pos: np.ndarray, mass: np.ndarray, method: str = "simple",
                  r_max: float | None = None, *, rtol: float = 0.01, max_iter: int = 10,
                  min_particles: int = 10) -> Shape:
    """Shape of particles at ``pos`` (relative to the centre) with ``mass``.

    ``r_max``: the aperture radius (None: every particle; the iterative method needs it).
    """
    pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
    mass = np.asarray(mass, dtype=np.float64).ravel()
    r2 = np.einsum("ij,ij->i", pos, pos)
    inside = np.ones(len(pos), bool) if r_max is None else r2 < r_max * r_max
    inside &= r2 > 0
    if method in ("simple", "reduced"):
        if inside.sum() < min_particles:
            return Shape.empty(int(inside.sum()))
        x, m = pos[inside], mass[inside]
        lam, vec = _eig(_tensor(x, m, None if method == "simple" else 1.0 / r2[inside]))
        return _shape(lam, vec, len(m), 1, True)
    if method != "iterative":
        raise ValueError(f"shape method {method!r}: one of simple, reduced, iterative")
    if r_max is None:
        raise ValueError("the iterative reduced shape needs an aperture r_max")
    q = s = 1.0
    vec = np.eye(3)
    converged = False
    n = iterations = 0
    while iterations < max_iter:
        iterations += 1
        a = r_max / (q * s) ** (1.0 / 3.0)
        y = pos @ vec
        rt2 = y[:, 0] ** 2 + (y[:, 1] / q) ** 2 + (y[:, 2] / s) ** 2
        sel = (rt2 < a * a) & (rt2 > 0)
        n = int(sel.sum())
        if n < min_particles:
            return Shape.empty(n)
        lam, vec = _eig(_tensor(pos[sel], mass[sel], 1.0 / rt2[sel]))
        if lam[0] <= 0:
            return Shape.empty(n)
        q_new, s_new = np.sqrt(lam[1] / lam[0]), np.sqrt(lam[2] / lam[0])
        converged = abs(q_new - q) <= rtol * q_new and abs(s_new - s) <= rtol * s_new
        q, s = q_new, s_new
        if converged:
            break
    return _shape(lam, vec, n, iterations, converged)


def _shape(lam: np.ndarray, vec: np.ndarray, n: int, iterations: int, converged: bool) -> Shape:
    lengths = np.sqrt(lam)
    if not lengths[0] > 0:
        return Shape.empty(n)
    return Shape(float(lengths[1] / lengths[0]), float(lengths[2] / lengths[0]), lengths, vec,
                 n, iterations, converged)


def plane_axes(line_of_sight: str) -> tuple[int, int]:
    """The (u, v) box axes of the sky plane for a line of sight ``x``, ``y`` or ``z``."""
    if line_of_sight not in PLANES:
        raise ValueError(f"line of sight {line_of_sight!r}: one of x, y, z")
    return PLANES[line_of_sight]


def projected_e(axes: np.ndarray, q: np.ndarray, s: np.ndarray, line_of_sight: str = "z"
                ) -> tuple[np.ndarray, np.ndarray]:
    """(e1, e2) of ellipsoids with frames ``axes`` (n, 3, 3) and axis ratios q, s."""
    u, v = plane_axes(line_of_sight)
    q, s = np.asarray(q, float), np.asarray(s, float)
    lam = np.stack([np.ones_like(q), q * q, s * s], axis=-1)
    i2 = np.einsum("nij,nj,nkj->nik", np.asarray(axes, float), lam, np.asarray(axes, float))
    iuu, ivv, iuv = i2[:, u, u], i2[:, v, v], i2[:, u, v]
    return (iuu - ivv) / (iuu + ivv), 2.0 * iuv / (iuu + ivv)


def axis_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between axial directions (sign-free) in degrees, in [0, 90]."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    c = np.abs(np.sum(a * b, axis=-1)) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(c, 0.0, 1.0)))
