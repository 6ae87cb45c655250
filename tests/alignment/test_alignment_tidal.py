"""The tidal tensor against analytic fields; CIC mass conservation; the halo route."""

import numpy as np
import pytest
from scipy.special import erf

from galforge.alignment.tidal import (
    cic_deposit,
    interpolate,
    overdensity,
    tidal_at,
    tidal_tensor,
)


def _grid(mesh, box):
    x = (np.arange(mesh) + 0.5) * box / mesh
    return np.meshgrid(x, x, x, indexing="ij")


def test_plane_wave_is_exact():
    """δ = cos(k·x): T_ij = k_i k_j / k² cos(k·x) exactly on the grid."""
    mesh, box = 32, 10.0
    x, y, z = _grid(mesh, box)
    kvec = 2 * np.pi / box * np.array([1.0, 2.0, 0.0])
    delta = np.cos(kvec[0] * x + kvec[1] * y + kvec[2] * z)
    for (i, j), t in tidal_tensor(delta, box):
        np.testing.assert_allclose(t, kvec[i] * kvec[j] / (kvec @ kvec) * delta, atol=1e-10)


def test_gaussian_overdensity_matches_the_analytic_tensor():
    """δ = exp(-r²/2σ²): φ'(r) = M(<r)/r², T_ij = (φ'' − φ'/r) x̂_i x̂_j + φ'/r δ_ij.

    The periodic images and the mean (k = 0) removed change T by ≈ −δ̄/3 δ_ij and a
    small tidal term; the traceless parts agree to 2 % of the largest at r = 1.5σ-3σ.
    """
    mesh, box, sig = 128, 24.0, 1.0
    x, y, z = _grid(mesh, box)
    c = box / 2
    r2 = (x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2
    delta = np.exp(-0.5 * r2 / sig**2)
    comps = dict(tidal_tensor(delta, box))
    pts = np.array([[1.5, 0, 0], [0, 2.0, 0.5], [1.2, -1.6, 1.0], [0.0, 0.0, -3.0]]) + c
    t = np.zeros((len(pts), 3, 3))
    for (i, j), f in comps.items():
        t[:, i, j] = t[:, j, i] = interpolate(f, pts, box)
    d = pts - c
    r = np.linalg.norm(d, axis=1)
    m = sig**3 * (np.sqrt(np.pi / 2) * erf(r / (np.sqrt(2) * sig))
                  - r / sig * np.exp(-0.5 * r**2 / sig**2))
    dphi = m / r**2
    d2phi = np.exp(-0.5 * r**2 / sig**2) - 2 * dphi / r
    n = d / r[:, None]
    truth = (d2phi - dphi / r)[:, None, None] * n[:, :, None] * n[:, None, :] + \
        (dphi / r)[:, None, None] * np.eye(3)
    def traceless(a):
        return a - np.trace(a, axis1=1, axis2=2)[:, None, None] / 3 * np.eye(3)
    scale = np.abs(traceless(truth)).max()
    np.testing.assert_allclose(traceless(t), traceless(truth), atol=0.02 * scale)
    # eigenvectors: the stretching axis (λ3) is radial around an overdensity
    lam, vec = tidal_at(delta, box, pts, [0.0001])
    cosang = np.abs(np.einsum("ni,ni->n", vec[:, 0, :, 2], n))
    assert np.all(cosang > np.cos(np.radians(2.0)))
    assert np.all(lam[:, 0, 0] >= lam[:, 0, 1]) and np.all(lam[:, 0, 1] >= lam[:, 0, 2])


def test_cic_conserves_mass_and_smoothing_keeps_the_trace():
    rng = np.random.default_rng(0)
    box, mesh = 20.0, 16
    rho = np.zeros((mesh, mesh, mesh))
    w = rng.random(500)
    cic_deposit(rho, rng.random((500, 3)) * box * 1.3 - 2.0, box, w)  # outside: wrapped
    assert rho.sum() == pytest.approx(w.sum())
    delta = overdensity(rho)
    tr = sum(f for (i, j), f in tidal_tensor(delta, box, 1.0) if i == j)
    assert abs(tr.mean()) < 1e-12  # the trace is the smoothed δ, of mean zero
    with pytest.raises(ValueError, match="empty"):
        overdensity(np.zeros((4, 4, 4)))
