"""Iterative gappy-PCA infill: planted low-rank spectra with random gaps are recovered."""

from __future__ import annotations

import numpy as np
import pytest

from galforge.io import InputError
from galforge.spectra.infill import IterativePCAInfill

SIGMA = 0.01  # per-pixel noise of the planted spectra


def planted(n: int = 240, p: int = 300, rank: int = 4, seed: int = 0):
    """Mean + rank-``rank`` spectra + N(0, SIGMA) noise; gaps in runs of 5-60 pixels.

    Returns truth (noiseless), noisy data, mask.
    """
    rng = np.random.default_rng(seed)
    lam = np.linspace(0.0, 1.0, p)
    basis = np.stack([np.sin((i + 1) * np.pi * lam) + 0.3 * np.cos(3 * (i + 1) * lam)
                      for i in range(rank)])
    amp = np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.03])[:rank]
    truth = 1.0 + 0.5 * lam + (rng.standard_normal((n, rank)) * amp) @ basis
    data = truth + SIGMA * rng.standard_normal((n, p))
    mask = np.zeros((n, p), dtype=bool)
    for i in range(n):
        for _ in range(int(rng.integers(1, 4))):
            a = int(rng.integers(0, p - 30))
            mask[i, a:a + int(rng.integers(5, 60))] = True
    mask[: n // 8, :25] = True  # a blue end missing in some spectra, as in the real data
    return truth, data, mask


def test_recovers_planted_gaps_within_noise():
    """Masked values recovered to RMS < 0.5 sigma, max < 4 sigma of the planted truth."""
    truth, data, mask = planted()
    x = np.where(mask, np.nan, data)  # values under the mask are never read
    model = IterativePCAInfill(n_components=4, n_iter=50, tol=1e-6)
    out = model.fit_transform(x, mask)
    err = (out - truth)[mask]
    assert mask.mean() > 0.05
    assert np.sqrt(np.mean(err**2)) < 0.5 * SIGMA
    assert np.abs(err).max() < 4 * SIGMA
    assert model.converged_
    # a plain column-mean fill is far worse (the test can fail)
    col = np.nanmean(x, axis=0)
    naive = (np.broadcast_to(col, x.shape) - truth)[mask]
    assert np.sqrt(np.mean(naive**2)) > 10 * SIGMA


def test_unmasked_pixels_untouched_and_no_nan():
    truth, data, mask = planted(seed=1)
    x = np.where(mask, np.nan, data)
    out = IterativePCAInfill(4, 30, 1e-5).fit_transform(x, mask)
    np.testing.assert_array_equal(out[~mask], data[~mask])  # bit for bit
    assert np.all(np.isfinite(out))


def test_converges_monotonically():
    """The observed-pixel residual never rises (to 1e-6 relative) from one iteration to the
    next, the change of the filled values falls below tol within the last stage, and the
    residual ends at the noise level."""
    truth, data, mask = planted(seed=2)
    model = IterativePCAInfill(4, 60, 1e-6).fit(np.where(mask, np.nan, data), mask)
    rms = np.array([h["observed_rms"] for h in model.history_])
    last = np.array([h["change"] for h in model.history_ if h["n_components"] == 4])
    assert model.converged_ and last.size > 3
    assert np.all(np.diff(rms) <= 1e-6 * rms[0])
    assert last[-1] < 1e-6 < last[0]
    assert last[-1] < last[last.size // 2] < last[0]
    assert rms[-1] == pytest.approx(SIGMA, rel=0.1)  # ends at the noise level


def test_weighted_fit_and_held_out_spectra():
    """Heteroscedastic noise, inverse-variance weights; eigenspectra from one set fill
    the gaps of another (what merge_and_infill does)."""
    truth, data, mask = planted(n=400, seed=3)
    rng = np.random.default_rng(3)
    sig = SIGMA * rng.uniform(0.5, 2.0, data.shape)
    noisy = truth + sig * rng.standard_normal(data.shape)
    w = 1.0 / sig**2
    x = np.where(mask, np.nan, noisy)
    model = IterativePCAInfill(4, 50, 1e-6, weighted=True).fit(x[:250], mask[:250], w[:250])
    out = model.transform(x[250:], mask[250:], w[250:])
    err = (out - truth[250:])[mask[250:]]
    assert np.sqrt(np.mean(err**2)) < 0.5 * SIGMA


def test_poorly_observed_block_with_spare_components():
    """A 60-pixel block missing in 90 % of the spectra and k = 8 > the planted rank 4 (the
    blue end of the real rest-frame grid): block fills within 1 sigma RMS. Plain EM
    (fill_weight = 1, no prior) stays far off after as many iterations (the reason for the
    scheme, see the module docstring)."""
    truth, data, mask = planted(n=500, p=400, seed=5)
    rng = np.random.default_rng(5)
    mask[:, :60] |= (rng.random(500) < 0.9)[:, None]
    x = np.where(mask, np.nan, data)
    block = np.zeros_like(mask)
    block[:, :60] = True
    sel = mask & block

    def rms(model):
        return float(np.sqrt(np.mean((model.fit_transform(x, mask) - truth)[sel] ** 2)))

    good = rms(IterativePCAInfill(8, 24, 1e-5))
    em = rms(IterativePCAInfill(8, 24, 1e-5, prior=False, fill_weight=1.0))
    assert good < 1.0 * SIGMA
    assert em > 3 * good


def test_never_observed_pixels_take_the_nearest_column_mean():
    truth, data, mask = planted(seed=4)
    mask[:, :10] = True  # no spectrum observes the first 10 pixels
    x = np.where(mask, np.nan, data)
    out = IterativePCAInfill(4, 20, 1e-5).fit_transform(x, mask)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, :10], np.mean(data[:, 10]), atol=5 * SIGMA)


def test_bad_input():
    with pytest.raises(InputError, match="shape"):
        IterativePCAInfill(2).fit(np.zeros((5, 4)), np.zeros((5, 3), bool))
    with pytest.raises(InputError, match="at least"):
        IterativePCAInfill(5).fit(np.zeros((4, 10)), np.zeros((4, 10), bool))
    with pytest.raises(InputError, match="no observed"):
        IterativePCAInfill(2).fit(np.zeros((5, 4)), np.ones((5, 4), bool))
    with pytest.raises(InputError, match="weight"):
        IterativePCAInfill(2, weighted=True).fit(np.zeros((5, 4)), np.zeros((5, 4), bool),
                                                 -np.ones((5, 4)))
    with pytest.raises(RuntimeError, match="before fit"):
        IterativePCAInfill(2).transform(np.zeros((5, 4)), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match="n_components"):
        IterativePCAInfill(0)
