"""The conditional spline flow: the zuko-style battery, the numerics, the density in
physical units and chunked sampling."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from nflows.transforms.lu import LULinear
from nflows.transforms.splines.rational_quadratic import (
    rational_quadratic_spline,
    unconstrained_rational_quadratic_spline,
)
from torch.nn import functional as F

from galforge.edf.flow import CONDITIONS, FEATURES, EdfFlow, PermutedLULinear, rq_spline
from galforge.edf.presets import PRESETS
from galforge.edf.settings import EdfModelSettings

PAPER = EdfModelSettings.from_dict(PRESETS["paper"]["model"])


def _perturbed(model: EdfFlow, scale: float = 0.1, seed: int = 0) -> EdfFlow:
    """Move the weights away from their start (a trained flow is not near the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _small(dtype: torch.dtype = torch.float64, **kw) -> EdfFlow:
    torch.manual_seed(0)
    return _perturbed(EdfFlow(n_layers=3, hidden=32, mlp_layers=3, bins=6, **kw).to(dtype))


def test_the_paper_preset_has_the_seeds_size_less_the_lu_storage():
    model = PAPER.build()
    # GalacticFlow's code: 2,939,188; its 1x1 convolution stores full 10x10 L and U and the
    # diagonal (210 a layer), nflows' LULinear 45 + 45 + 10 entries and a bias (110)
    assert model.n_parameters() == 2_939_188 - 14 * (210 - 110) == 2_937_788
    assert PAPER.n_layers == 14 and PAPER.bins == 10 and PAPER.tail_bound == 3.0
    assert PAPER.hidden == 128 and PAPER.mlp_layers == 4 and PAPER.negative_slope == 0.2


def test_round_trip_paper_preset_float32():
    torch.manual_seed(1)
    model = _perturbed(PAPER.build(), 0.02).eval()
    x = torch.randn(2000, 10) * 1.5
    c = torch.randn(2000, 4)
    with torch.no_grad():
        z, ld = model.transform(x, context=c)
        back, ld_inv = model.transform.inverse(z, context=c)
    assert (back - x).abs().max() < 1e-4
    assert (ld + ld_inv).abs().max() < 1e-3


def test_round_trip_and_logdet_against_autograd_slogdet():
    model = _small()
    x = torch.randn(16, 10, dtype=torch.float64) * 2.0  # many inputs beyond the tails too
    c = torch.randn(16, 4, dtype=torch.float64)
    z, ld = model.transform(x, context=c)
    back, _ = model.transform.inverse(z, context=c)
    assert (back - x).abs().max() < 1e-10
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(
            lambda v, i=i: model.transform(v[None], context=c[i:i + 1])[0][0], x[i])
        assert abs(float(torch.linalg.slogdet(jac)[1]) - float(ld[i].detach())) < 1e-3


def test_every_parameter_gets_a_gradient():
    model = _small(torch.float32)
    x, c = torch.randn(256, 10), torch.randn(256, 4)
    (-model(x, c).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_the_spline_matches_nflows_and_inverts_itself():
    g = torch.Generator().manual_seed(2)
    m, k = 5000, 10
    x = torch.randn(m, generator=g, dtype=torch.float64) * 2.5
    w, h = (torch.randn(k, m, generator=g, dtype=torch.float64) * 2 for _ in range(2))
    d = torch.randn(k - 1, m, generator=g, dtype=torch.float64) * 2
    y, lad = rq_spline(x, w, h, d, inverse=False, tail_bound=3.0)
    y_nf, lad_nf = unconstrained_rational_quadratic_spline(
        x, w.T, h.T, d.T, inverse=False, tails="linear", tail_bound=3.0)
    assert torch.allclose(y, y_nf, atol=1e-12) and torch.allclose(lad, lad_nf, atol=1e-10)
    back, lad_inv = rq_spline(y, w, h, d, inverse=True, tail_bound=3.0)
    assert torch.allclose(back, x, atol=1e-10) and torch.allclose(lad_inv, -lad, atol=1e-10)
    outside = x.abs() > 3.0
    assert outside.any() and torch.equal(y[outside], x[outside]) and (lad[outside] == 0).all()


def test_the_inverse_survives_inputs_where_nflows_asserts():
    """nflows issue #87: float32 inputs at a knot give a negative discriminant."""
    g = torch.Generator().manual_seed(0)
    m, k = 5000, 10
    uw, uh = (torch.randn(m, k, generator=g) * 4 for _ in range(2))
    ud = torch.randn(m, k - 1, generator=g) * 4
    hts = 1e-3 + (1 - 1e-3 * k) * F.softmax(uh, -1)
    knots = 2 * F.pad(torch.cumsum(hts, -1), (1, 0)) - 1  # nflows' knots on [-1, 1]
    y = knots.gather(-1, torch.randint(0, k + 1, (m, 1), generator=g))[:, 0]
    y = (y + (torch.rand(m, generator=g) - 0.5) * 1e-6).clamp(-1, 1)
    end = math.log(math.expm1(1 - 1e-3))  # derivative 1 at both ends, as ours
    with pytest.raises(AssertionError):
        rational_quadratic_spline(y, uw, uh, F.pad(ud, (1, 1), value=end), inverse=True,
                                  left=-1.0, right=1.0, bottom=-1.0, top=1.0)
    x, lad = rq_spline(3 * y, uw.T.contiguous(), uh.T.contiguous(), ud.T.contiguous(),
                       inverse=True, tail_bound=3.0)
    assert torch.isfinite(x).all() and torch.isfinite(lad).all()
    again, _ = rq_spline(x, uw.T.contiguous(), uh.T.contiguous(), ud.T.contiguous(),
                         inverse=False, tail_bound=3.0)
    err = (again - 3 * y).abs()
    # float32 on these extreme splines (bins of width 0.006, slopes from 1e-3 to 1e2)
    assert err.median() < 1e-6 and err.max() < 1e-2


def test_the_lu_inverse_needs_no_deprecated_triangular_solve():
    torch.manual_seed(3)
    lu = PermutedLULinear(10)
    x = torch.randn(50, 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y, ld = lu(x)
        back, ld_inv = lu.inverse(y)
        lu.weight_inverse()
    assert not [w for w in caught if "triangular_solve" in str(w.message)]
    assert (back - x).abs().max() < 1e-5 and (ld + ld_inv).abs().max() < 1e-5
    w = lu.weight()
    assert torch.allclose(w @ w.T, torch.eye(10), atol=1e-5), "starts orthogonal"
    assert torch.allclose(F.linear(x, w, lu.bias), y, atol=1e-5)
    with warnings.catch_warnings(record=True) as caught:  # the stock class does warn
        warnings.simplefilter("always")
        LULinear(10).inverse(x)
    assert [w for w in caught if "triangular_solve" in str(w.message)]


def test_a_shared_context_row_broadcasts():
    model = _small(torch.float32).eval()
    x = torch.randn(64, 10)
    c = torch.randn(1, 4)
    with torch.no_grad():
        assert torch.allclose(model(x, c), model(x, c.expand(64, 4)), atol=1e-5)


def _scaled_flow() -> EdfFlow:
    model = _small(torch.float32)
    model.set_scaling(np.arange(10) * 0.1, np.linspace(0.5, 3.0, 10), [10.0, 5.0, 1.0, 0.01],
                      [0.5, 2.0, 0.5, 0.005])
    return model.eval()


def _stars(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 10))
    s[:, FEATURES.index("Z")] = 10 ** rng.normal(-2.3, 0.3, n)
    return s


def test_the_physical_density_includes_both_jacobians():
    model = _scaled_flow()
    stars = _stars(200)
    cond = np.array([3e10, 6.0, 1.0, 0.012])
    lp = model.log_prob(stars, cond)
    # by hand: x = (t(stars) - mu) / sigma with t = log10 on Z
    t = stars.copy()
    iz = FEATURES.index("Z")
    t[:, iz] = np.log10(t[:, iz])
    mu, sd = model.feature_mean.double().numpy(), model.feature_std.double().numpy()
    c = np.array([np.log10(3e10), 6.0, 1.0, 0.012])
    cs = (c - model.condition_mean.double().numpy()) / model.condition_std.double().numpy()
    with torch.no_grad():
        lp_std = model(torch.tensor((t - mu) / sd, dtype=torch.float32),
                       torch.tensor(cs[None], dtype=torch.float32)).double().numpy()
    jac = -np.log(sd).sum() - np.log(stars[:, iz] * math.log(10))
    np.testing.assert_allclose(lp.detach().numpy(), lp_std + jac, rtol=1e-6, atol=1e-5)
    # and the Jacobian term is autograd's of the standardisation
    s0 = torch.tensor(stars[0], dtype=torch.float64, requires_grad=True)
    j = torch.autograd.functional.jacobian(lambda v: model.standardise(v[None])[0][0].double(), s0)
    assert float(torch.linalg.slogdet(j)[1]) == pytest.approx(jac[0], abs=1e-5)


def test_the_physical_density_integrates_to_one_in_one_dimension():
    """Along one feature the conditional density in physical units integrates to the
    marginal: check the log10 Jacobian on Z by quadrature against the standardised axis."""
    model = _scaled_flow()
    iz = FEATURES.index("Z")
    base = _stars(1, 5)[0]
    zs = np.logspace(-5, 1, 20_001)
    stars = np.repeat(base[None], len(zs), 0)
    stars[:, iz] = zs
    cond = np.array([3e10, 6.0, 1.0, 0.012])
    p_phys = np.exp(model.log_prob(stars, cond).detach().numpy())
    x, _ = model.standardise(stars)
    p_std = np.exp(model(x, model.standardise_conditions(cond)).double().detach().numpy())
    # ∫ p_phys dZ = ∫ p_std dx_Z / Π_{other} σ (x_Z = (log10 Z - μ) / σ_Z)
    sd = model.feature_std.double().numpy()
    lhs = np.trapezoid(p_phys, zs)
    rhs = np.trapezoid(p_std, x[:, iz].double().numpy()) / np.prod(np.delete(sd, iz))
    assert lhs == pytest.approx(rhs, rel=1e-3)


def test_chunked_sampling_does_not_depend_on_the_devices():
    model = _scaled_flow()
    cond = [3e10, 6.0, 1.0, 0.012]
    a = model.sample(1000, cond, seed=4, chunk=300)
    b = model.sample(1000, cond, seed=4, chunk=300, devices=["cpu", "cpu"])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1000, 10) and np.isfinite(a).all()
    assert (a[:, FEATURES.index("Z")] > 0).all()  # log10 undone
    assert not np.array_equal(a, model.sample(1000, cond, seed=5, chunk=300))
    given = np.array(cond)
    model.log_prob(_stars(3), given)
    np.testing.assert_array_equal(given, cond)  # the caller's conditions are left alone
    with pytest.raises(ValueError, match="must hold 4 values"):
        model.sample(10, [1.0, 2.0])
    with pytest.raises(ValueError, match="must be positive"):
        model.sample(10, [-1.0, 2.0, 1.0, 0.01])


def test_sampling_stays_finite_far_in_the_tails():
    torch.manual_seed(6)
    model = _perturbed(PAPER.build(), 0.02).eval()
    z = torch.randn(20_000, 10) * 3  # many points beyond the tail bound
    with torch.no_grad():
        x, _ = model.transform.inverse(z, context=torch.randn(1, 4) * 2)
    assert torch.isfinite(x).all()


#: Stars drawn from the paper-preset flow in the test below. The issue asks for 1e6; on
#: 2 shared CPU cores 1e6 took over 10 minutes inside the CI run, so the default run draws
#: 2e5 (still several 16,384-row chunks) and the 1e6 draw is the benchmark's
#: (tests/benchmarks/), where its time is printed.
N_PAPER_SAMPLES = 200_000


@pytest.mark.slow
def test_many_samples_of_the_paper_preset_hold_no_nan_or_inf():
    torch.manual_seed(7)
    model = _perturbed(PAPER.build(), 0.02)
    model.set_scaling(np.zeros(10), np.ones(10), np.zeros(4), np.ones(4))
    stars = model.sample(N_PAPER_SAMPLES, [1e10, 5.0, 1.0, 0.01], seed=1)
    assert stars.shape == (N_PAPER_SAMPLES, 10) and np.isfinite(stars).all()


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(ValueError, match="log_features"):
        EdfFlow(log_features=("mass",))
    with pytest.raises(ValueError, match="must be > 0"):
        EdfFlow(bins=0)
    assert EdfFlow(n_layers=1, hidden=4, mlp_layers=1).condition_names == CONDITIONS
