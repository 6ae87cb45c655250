"""The SO(3) diffusion parts: exp/log maps, the IGSO(3) table, the reverse sampler with the
exact score, the MMD, and the synthetic benchmark's report."""

import numpy as np
import pytest
import torch
from scipy.stats import kstest
from torch import nn

from galforge.alignment import diffusion as D
from galforge.alignment import igso3
from galforge.alignment.settings import SO3BenchmarkSettings


def test_exp_and_log_maps():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 3))
    v *= (rng.uniform(0.01, 3.0, 50) / np.linalg.norm(v, axis=1))[:, None]
    r = D.so3_exp_torch(torch.tensor(v))
    np.testing.assert_allclose(r.numpy(), igso3.so3_exp(v), atol=1e-12)
    np.testing.assert_allclose(D.rotvec_torch(r).numpy(), v, atol=1e-6)


@pytest.fixture(scope="module")
def table():
    return D.igso3_table(0.02, 3.0)  # the benchmark's defaults: built once


def test_table_samples_and_scores(table):
    rng = np.random.default_rng(1)
    lev = np.full(3000, 60)
    sig = table.sigmas[60]
    ang = table.sample_angles(lev, rng)
    grid, cdf = igso3._cdf_table(sig)
    assert kstest(ang, lambda x: np.interp(x, grid, cdf)).pvalue > 0.01
    w = np.linspace(0.05, 3 * sig, 20)
    np.testing.assert_allclose(table.dlog_at(np.full(20, 60), w), igso3.dlog_density(w, sig),
                               rtol=2e-3, atol=1e-3)
    assert table.sigmas[table.level(np.array([-0.5]))[0]] == pytest.approx(0.5, rel=0.03)


class _Oracle(nn.Module):
    """The exact score of IGSO(3)(I, σ0) noised to σ: IGSO(3)(I, √(σ0² + σ²))."""

    def __init__(self, sigma0):
        super().__init__()
        self.sigma0 = sigma0

    def forward(self, r, sigma, cond=None):
        v = D.rotvec_torch(r.double()).numpy()
        assert torch.all(sigma == sigma[0])  # one noise level per reverse step
        tot = float(np.sqrt(self.sigma0**2 + float(sigma[0]) ** 2))
        return torch.tensor(igso3.score_vector(v, tot), dtype=torch.float32)


def test_reverse_sampler_with_the_exact_score_recovers_the_density(table):
    sigma0 = 0.4
    rots = D.reverse_sample(_Oracle(sigma0), 400, table, 100, seed=3)
    ang = igso3.angle_of(rots)
    grid, cdf = igso3._cdf_table(np.sqrt(sigma0**2 + 0.02**2))
    assert kstest(ang, lambda x: np.interp(x, grid, cdf)).pvalue > 0.01


def test_mmd_separates_densities():
    rng = np.random.default_rng(4)
    a = D.sample_density(D.synthetic_density("blobs2"), 300, rng)
    b = D.sample_density(D.synthetic_density("blobs2"), 300, rng)
    c = D.sample_density(D.synthetic_density("blobs4"), 300, rng)
    assert 0 < D.mmd(a, b) < 0.2 * D.mmd(a, c)
    line = D.synthetic_density("line")
    x = D.sample_density(line, 200, rng)
    assert D.log_density(line, x).mean() > D.log_density(line, c[:200]).mean()


def test_benchmark_report_shape():
    s = SO3BenchmarkSettings.from_dict({"hidden": 16, "layers": 1, "steps": 20,
                                        "reverse_steps": 10, "n_samples": 50})
    r = D.benchmark("blobs2", s, seed=0)
    assert set(r) >= {"mmd", "mmd_noise_floor", "mmd_ratio", "pass", "samples", "truth"}
    assert r["samples"].shape == (50, 3, 3) and r["pass"] == (r["mmd"] <= 2 * r["mmd_noise_floor"])
