"""IGSO(3): normalisation, the small-σ Gaussian limit, sampling (KS), the score (finite
differences)."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import kstest

from galforge.alignment import igso3


@pytest.mark.parametrize("sigma", [0.05, 0.2, 0.7, 1.5, 3.0])
def test_density_normalises_over_so3(sigma):
    total, _ = quad(lambda w: igso3.angle_pdf(np.array([w]), sigma)[0], 0, np.pi, limit=400,
                    points=[min(sigma, 1.0)])
    assert total == pytest.approx(1.0, abs=1e-6)


def test_large_sigma_is_uniform_on_so3():
    w = np.linspace(0.01, np.pi, 50)
    np.testing.assert_allclose(igso3.density(w, 6.0), 1.0, atol=1e-6)


def test_small_sigma_matches_the_gaussian():
    """σ = 0.05: the angle density is the length of N(0, σ² I₃) to 0.5 % of its peak (the
    ε vs √2 ε convention: the other convention is off by a factor 2 in variance)."""
    sigma = 0.05
    w = np.linspace(1e-3, 5 * sigma, 200)
    exact, gauss = igso3.angle_pdf(w, sigma), igso3.gaussian_angle_pdf(w, sigma)
    assert np.abs(exact - gauss).max() < 0.005 * gauss.max()
    other = igso3.gaussian_angle_pdf(w, np.sqrt(2) * sigma)
    assert np.abs(exact - other).max() > 0.2 * gauss.max()


@pytest.mark.parametrize("sigma", [0.1, 0.8, 2.0])
def test_sampled_angles_pass_a_ks_test(sigma):
    rng = np.random.default_rng(7)
    rots = igso3.sample(4000, sigma, rng)
    np.testing.assert_allclose(np.linalg.det(rots), 1.0, atol=1e-9)
    ang = igso3.angle_of(rots)

    def cdf(x):
        return np.array([quad(lambda w: igso3.angle_pdf(np.array([w]), sigma)[0], 0, xi,
                              limit=200)[0] for xi in np.atleast_1d(x)])

    grid = np.linspace(0, np.pi, 400)
    table = cdf(grid)
    p = kstest(ang, lambda x: np.interp(x, grid, table)).pvalue
    assert p > 0.01
    # the axes are isotropic: the mean axis is near zero
    axes = igso3.rotvec_of(rots)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    assert np.abs(axes.mean(0)).max() < 4 / np.sqrt(4000)


@pytest.mark.parametrize("sigma,w_max", [(0.3, 1.2), (1.0, 2.8)])
def test_score_matches_finite_differences(sigma, w_max):
    """Angles up to 4σ (beyond, the density falls below the series' precision)."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(20, 3))
    v *= (rng.uniform(0.1, w_max, 20) / np.linalg.norm(v, axis=1))[:, None]
    score = igso3.score_vector(v, sigma)
    r = igso3.so3_exp(v)
    h = 1e-5
    for k in range(3):
        dk = np.zeros(3)
        dk[k] = h
        plus = igso3.angle_of(r @ igso3.so3_exp(np.tile(dk, (20, 1))))
        minus = igso3.angle_of(r @ igso3.so3_exp(np.tile(-dk, (20, 1))))
        fd = (np.log(igso3.density(plus, sigma)) - np.log(igso3.density(minus, sigma))) / (2 * h)
        np.testing.assert_allclose(score[:, k], fd, rtol=1e-4, atol=1e-6)
    # and the small-σ score is the Gaussian's, −v/σ²
    small = igso3.score_vector(np.array([[0.01, 0.02, -0.01]]), 0.05)
    np.testing.assert_allclose(small, -np.array([[0.01, 0.02, -0.01]]) / 0.05**2, rtol=0.01)
