"""train.flows: the conditional flow builders (spline coupling + LU linear; MAF)."""

from __future__ import annotations

import warnings

import pytest
import torch

from galforge.train.checkpoint import load_for_inference
from galforge.train.flows import (
    ConditionalMAF,
    ConditionalSplineFlow,
    conditional_maf,
    conditional_spline_flow,
    flow_nll_loss,
)

BUILDERS = {
    "spline": lambda f, c, **kw: conditional_spline_flow(f, c, **{"hidden": 32, "n_layers": 2,
                                                               **kw}),
    "maf": lambda f, c, **kw: conditional_maf(f, c, **{"hidden": 32, "n_layers": 2, **kw}),
}


@pytest.fixture(autouse=True)
def _one_thread_quiet():
    """One torch thread (tiny networks: threads only contend) and no triangular_solve warning."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():  # LULinear.inverse: torch.triangular_solve is deprecated
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        torch.set_num_threads(threads)


def _data(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x | c ~ N(mean(c), diag(SCALE²)), c ~ U(-1, 1)."""
    c = torch.rand(n, 1, generator=gen) * 2 - 1
    x = _mean(c) + SCALE * torch.randn(n, 2, generator=gen)
    return x, c


SCALE = torch.tensor([0.3, 0.6])


def _mean(c: torch.Tensor) -> torch.Tensor:
    return torch.cat([1.0 + 2.0 * c, -0.5 * c], dim=1)


def _trained_flow(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x, c = _data(2048, gen)
    flow = BUILDERS[kind](2, 1)
    opt = torch.optim.Adam(flow.parameters(), lr=5e-3)
    flow.train()
    for _ in range(300):
        idx = torch.randint(0, len(x), (256,), generator=gen)
        loss, _ = flow_nll_loss(flow, (x[idx], c[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return flow.eval()


@pytest.mark.parametrize("kind", BUILDERS)
def test_log_prob_is_finite_and_per_row(kind):
    torch.manual_seed(0)
    flow = BUILDERS[kind](3, 2)
    x, c = torch.randn(7, 3) * 4, torch.randn(7, 2)
    lp = flow.log_prob(x, context=c)
    assert lp.shape == (7,) and torch.isfinite(lp).all()


@pytest.mark.parametrize("kind", BUILDERS)
def test_sample_shape(kind):
    torch.manual_seed(0)
    flow = BUILDERS[kind](3, 2).eval()
    with torch.no_grad():
        s = flow.sample(5, context=torch.randn(4, 2))
    assert s.shape == (4, 5, 3) and torch.isfinite(s).all()


@pytest.mark.parametrize("kind", BUILDERS)
def test_round_trip(kind):
    torch.manual_seed(0)
    flow = BUILDERS[kind](4, 2)
    flow.train()
    flow.log_prob(torch.randn(64, 4) * 3 + 1, context=torch.randn(64, 2))  # ActNorm init
    flow.eval()
    x, c = torch.randn(32, 4) * 2, torch.randn(32, 2)
    with torch.no_grad():
        z, logdet = flow.to_noise(x, c)
        back = flow.from_noise(z, c)
    assert logdet.shape == (32,)
    assert float((back - x).abs().max()) < 1e-4


@pytest.mark.parametrize("kind", BUILDERS)
def test_fit_recovers_a_conditional_gaussian(kind):
    """300 Adam steps of 256 pairs (1-3 s on one core), seeded; 4000 draws at 3 contexts.

    Tolerance: the mean within 0.1 (a third of the smallest sigma, 0.3), the scale within
    12 %. Reached at these seeds: spline 0.042 / 6.6 %, MAF 0.059 / 3.0 %.
    """
    flow = _trained_flow(kind)
    torch.manual_seed(2)
    ctx = torch.tensor([[-0.5], [0.0], [0.5]])
    with torch.no_grad():
        s = flow.sample(4000, context=ctx)  # (3, 4000, 2)
    torch.testing.assert_close(s.mean(dim=1), _mean(ctx), atol=0.1, rtol=0)
    torch.testing.assert_close(s.std(dim=1), SCALE.expand(3, 2), rtol=0.12, atol=0)


@pytest.mark.parametrize(("cls", "kind"), [(ConditionalSplineFlow, "spline"),
                                           (ConditionalMAF, "maf")])
def test_checkpoint_rebuilds_the_flow(cls, kind, tmp_path):
    from galforge.train.loop import fit
    from galforge.train.settings import TrainSettings

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    x, c = _data(96, gen)
    flow = BUILDERS[kind](2, 1)
    cfg = TrainSettings(epochs=1, batch_size=32, progress=False)
    result = fit(flow, flow_nll_loss, (x[:64], c[:64]), (x[64:], c[64:]), cfg, workdir=tmp_path)
    model, _ = load_for_inference(result.checkpoint_path)
    assert isinstance(model, cls) and model.init_kwargs == flow.init_kwargs
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x, context=c),
                                   result.model.eval().log_prob(x, context=c))


@pytest.mark.parametrize(("builder", "kwargs", "match"), [
    (conditional_spline_flow, {"features": 1, "context": 1}, "features must be an integer >= 2"),
    (conditional_maf, {"features": 2, "context": 0}, "context must be an integer >= 1"),
    (conditional_maf, {"features": 2, "context": 1, "dropout": 1.0}, "dropout"),
    (conditional_spline_flow, {"features": 2, "context": 1, "tail_bound": 0}, "tail_bound"),
])
def test_bad_arguments(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)


def test_shapes_are_checked():
    flow = conditional_maf(2, 1, n_layers=1, hidden=8)
    with pytest.raises(ValueError, match=r"context must be \(3, 1\)"):
        flow.to_noise(torch.zeros(3, 2), torch.zeros(3, 2))
