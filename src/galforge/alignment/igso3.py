"""The isotropic Gaussian on SO(3), IGSO(3): density, angle distribution, sampling, score.

Convention (stated once): IGSO(3) with scale σ has, with respect to the normalised Haar
measure of SO(3), the density of the rotation angle ω ∈ [0, π] of ``R``

    f(ω; σ) = Σ_{l≥0} (2l + 1) exp(−l(l + 1) σ²/2) sin((l + ½) ω) / sin(ω/2),

the heat kernel of SO(3) at time σ²/2 (Nikolayev & Savyolov 1970; Leach et al. 2022).
Its axis is uniform and ω has the density ``p(ω) = f(ω; σ) (1 − cos ω)/π`` on [0, π].
For small σ the rotation vector ω n̂ tends to an isotropic Gaussian in R³ with σ² per
component (:func:`gaussian_angle_pdf`, p(ω) → √(2/π) ω²/σ³ exp(−ω²/2σ²)). Papers that
write ``exp(−l(l + 1) ε²)`` (Leach et al.'s ε, the seed's) have rotation vectors of
variance 2ε² per component: their ε is ours divided by √2 (σ = √2 ε).

The score of IGSO(3)(R₀, σ) at R = R₀ exp([ω n̂]×), in the Lie algebra (the right-
perturbation R exp([δ]×), δ ∈ R³) is ``∂ log f/∂ω (ω) · n̂`` (:func:`score_vector`):
the angle is a class function whose gradient is the rotation axis.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["density", "angle_pdf", "dlog_density", "gaussian_angle_pdf", "angle_of",
           "rotvec_of", "sample", "sample_angles", "score_vector", "so3_exp"]

_TOL = 1e-12


def _lmax(sigma: float) -> int:
    """Terms beyond which exp(−l(l+1)σ²/2) < 1e-12 (at most 10,000)."""
    return int(min(10_000, np.ceil(np.sqrt(2.0 * 27.7 / max(sigma, 1e-4) ** 2)) + 2))


def _terms(omega: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    omega = np.asarray(omega, dtype=np.float64)
    ll = np.arange(_lmax(sigma) + 1, dtype=np.float64)
    w = (2 * ll + 1) * np.exp(-ll * (ll + 1) * sigma * sigma / 2.0)
    return omega[..., None], ll, w


def density(omega: np.ndarray, sigma: float) -> np.ndarray:
    """f(ω; σ): the density with respect to the normalised Haar measure."""
    om, ll, w = _terms(omega, sigma)
    half = np.sin(om / 2.0)
    small = np.abs(half) < 1e-8
    ratio = np.where(small, 2 * ll + 1, np.sin((ll + 0.5) * om) / np.where(small, 1.0, half))
    return (w * ratio).sum(-1)


def dlog_density(omega: np.ndarray, sigma: float) -> np.ndarray:
    """∂ log f / ∂ω (0 at ω = 0)."""
    om, ll, w = _terms(omega, sigma)
    s, c = np.sin(om / 2.0), np.cos(om / 2.0)
    small = np.abs(s) < 1e-6
    safe = np.where(small, 1.0, s)
    num = (ll + 0.5) * np.cos((ll + 0.5) * om) * safe - 0.5 * np.sin((ll + 0.5) * om) * c
    d = np.where(small[..., 0], 0.0, (w * num / safe**2).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):  # beyond the series' precision
        return d / density(np.asarray(omega), sigma)


def angle_pdf(omega: np.ndarray, sigma: float) -> np.ndarray:
    """Density of the rotation angle on [0, π]."""
    omega = np.asarray(omega, dtype=np.float64)
    return density(omega, sigma) * (1.0 - np.cos(omega)) / np.pi


def gaussian_angle_pdf(omega: np.ndarray, sigma: float) -> np.ndarray:
    """The small-σ limit: the length of an isotropic N(0, σ² I₃) vector."""
    omega = np.asarray(omega, dtype=np.float64)
    return np.sqrt(2.0 / np.pi) * omega**2 / sigma**3 * np.exp(-0.5 * omega**2 / sigma**2)


@functools.lru_cache(maxsize=256)
def _cdf_table(sigma: float, n: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(0.0, np.pi, n)
    p = np.clip(angle_pdf(grid, sigma), 0.0, None)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(grid))])
    return grid, cdf / cdf[-1]


def sample_angles(n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Rotation angles of IGSO(3)(σ) by inverting the tabulated CDF."""
    grid, cdf = _cdf_table(float(sigma))
    return np.interp(rng.random(n), cdf, grid)


def so3_exp(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 3, 3) of rotation vectors (n, 3) (Rodrigues)."""
    v = np.asarray(rotvec, dtype=np.float64).reshape(-1, 3)
    th = np.linalg.norm(v, axis=1)
    k = v / np.where(th > 0, th, 1.0)[:, None]
    kx = np.zeros((len(v), 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx -= kx.transpose(0, 2, 1)
    s, c = np.sin(th)[:, None, None], np.cos(th)[:, None, None]
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def angle_of(rot: np.ndarray) -> np.ndarray:
    """Rotation angles in [0, π] of matrices (n, 3, 3)."""
    tr = np.trace(np.asarray(rot), axis1=-2, axis2=-1)
    return np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0))


def rotvec_of(rot: np.ndarray) -> np.ndarray:
    """Rotation vectors (n, 3) of matrices (scipy's log map)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(rot)).as_rotvec()


def sample(n: int, sigma: float, rng: np.random.Generator, mean: np.ndarray | None = None
           ) -> np.ndarray:
    """n rotations of IGSO(3)(mean, σ): ``mean @ exp([ω n̂]×)``, n̂ uniform."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    r = so3_exp(axis * sample_angles(n, sigma, rng)[:, None])
    return r if mean is None else np.asarray(mean) @ r


def score_vector(rotvec: np.ndarray, sigma: float) -> np.ndarray:
    """The score of IGSO(3)(I, σ) at exp([v]×) in the Lie algebra (see the module doc)."""
    v = np.asarray(rotvec, dtype=np.float64).reshape(-1, 3)
    om = np.linalg.norm(v, axis=1)
    unit = v / np.where(om > 0, om, 1.0)[:, None]
    return dlog_density(om, sigma)[:, None] * unit
