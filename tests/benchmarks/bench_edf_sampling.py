"""Benchmark of the edf flow: sampling a galaxy of 1e6 stars, and training throughput.

Run as a script (``python tests/benchmarks/bench_edf_sampling.py [--n 1000000]``) or under
pytest (``pytest tests/benchmarks/bench_edf_sampling.py``; not collected by default).

In one run, on the same machine and thread count, it samples ``--n`` stars at one condition
vector from

* galforge's paper-preset flow (:class:`galforge.edf.flow.EdfFlow`: 14 layers, K = 10,
  B = 3, 128 x 4 conditioner MLPs with multiplicative conditioning, 2,937,788 parameters),
  through its chunked sampler (chunks of 300,000, ``inference_mode``; the conditioning MLP
  runs once per batch of 16,384 rows on the CPU), and
* the same-size flow assembled from stock nflows classes: ``LULinear`` + two
  ``PiecewiseRationalQuadraticCouplingTransform`` per layer (linear tails, K = 10, B = 3),
  each with a ``ResidualNet`` (width 192, one block) into which the context is concatenated
  (2,940,896 parameters), ``Flow.sample`` in the same chunks under ``inference_mode``;

and prints stars per second and the ratio (the goal is >= 2); the two take their chunks in
turn, so that the load of a shared machine hits both alike. It also times training steps
of 1024 stars (forward, backward, Adam) of both, in turn, and prints the fastest in stars
per second. With CUDA it does the same on the GPU (the seed: 3.5 s per 1e6 stars on an RTX
2080Ti; the goal <= 0.5 s).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

CHUNK = 300_000
CONDITION = (3e10, 6.0, 1.0, 0.012)


def ours() -> torch.nn.Module:
    from galforge.edf.flow import EdfFlow

    torch.manual_seed(0)
    return EdfFlow()


def stock() -> torch.nn.Module:
    """The stock-nflows flow of the same size (context concatenated into the nets)."""
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.nn.nets import ResidualNet
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
    from nflows.transforms.lu import LULinear
    from torch.nn import functional as F

    torch.manual_seed(0)
    half = (torch.arange(10) < 5).int()

    def net(n_in: int, n_out: int) -> ResidualNet:
        return ResidualNet(n_in, n_out, hidden_features=192, context_features=4, num_blocks=1,
                           activation=lambda x: F.leaky_relu(x, 0.2))

    steps = []
    for _ in range(14):
        steps.append(LULinear(10, identity_init=True))
        for mask in (half, 1 - half):
            steps.append(PiecewiseRationalQuadraticCouplingTransform(
                mask, net, num_bins=10, tails="linear", tail_bound=3.0))
    return Flow(CompositeTransform(steps), StandardNormal([10]))


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def sample_times(a: torch.nn.Module, b: torch.nn.Module, n: int,
                 dev: torch.device) -> tuple[float, float]:
    """Seconds to sample ``n`` stars with each flow, chunk by chunk in turn (so that a
    change of the machine's load hits both alike)."""
    a.to(dev).eval()
    b.to(dev).eval()
    ctx = torch.zeros(1, 4, device=dev)
    t_a = t_b = 0.0
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stock LULinear's deprecated torch.triangular_solve
        a.sample(1000, CONDITION)
        b.sample(1000, context=ctx)  # warm up both
        for i in range(0, n, CHUNK):
            k = min(CHUNK, n - i)
            _sync(dev)
            t0 = time.perf_counter()
            out_a = a.sample(k, CONDITION, seed=i, chunk=CHUNK)
            _sync(dev)
            t1 = time.perf_counter()
            out_b = b.sample(k, context=ctx)[0]
            _sync(dev)
            t_a, t_b = t_a + t1 - t0, t_b + time.perf_counter() - t1
            assert out_a.shape == (k, 10) and np.isfinite(out_a).all()
            assert out_b.shape == (k, 10) and bool(torch.isfinite(out_b).all())
    return t_a, t_b


def train_rates(a: torch.nn.Module, b: torch.nn.Module, dev: torch.device,
                steps: int) -> tuple[float, float]:
    """Stars per second of a training step of 1024 stars (forward, backward, Adam): the
    fastest of ``steps`` steps of each, taken in turn."""
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(1024, 10, generator=g).to(dev), torch.randn(1024, 4, generator=g).to(dev)
    losses = {id(a): lambda: -a(x, c).mean(),
              id(b): lambda: -b.log_prob(x, context=c).mean()}
    best = {}
    opts = {id(m): torch.optim.Adam(m.to(dev).train().parameters(), 1e-4) for m in (a, b)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(steps + 1):
            for m in (a, b):
                _sync(dev)
                t0 = time.perf_counter()
                opts[id(m)].zero_grad()
                losses[id(m)]().backward()
                opts[id(m)].step()
                _sync(dev)
                if i:  # the first step warms up
                    best[id(m)] = min(best.get(id(m), 1e9), time.perf_counter() - t0)
    return 1024 / best[id(a)], 1024 / best[id(b)]


def run(n: int, device: str, train_steps: int) -> dict[str, float]:
    dev = torch.device(device)
    a, b = ours(), stock()
    t_a, t_b = sample_times(a, b, n, dev)
    tr_a, tr_b = train_rates(a, b, dev, train_steps)
    res = {"n": n, "params_galforge": n_params(a), "params_stock": n_params(b),
           "sample_s_galforge": t_a, "sample_s_stock": t_b, "sample_ratio": t_b / t_a,
           "train_stars_per_s_galforge": tr_a, "train_stars_per_s_stock": tr_b}
    print(f"[{device}, {torch.get_num_threads()} threads] sampling {n:,} stars: galforge "
          f"{t_a:.2f} s ({n / t_a:,.0f} stars/s), stock nflows {t_b:.2f} s "
          f"({n / t_b:,.0f} stars/s): {t_b / t_a:.2f}x")
    print(f"[{device}] parameters: galforge {res['params_galforge']:,}, stock "
          f"{res['params_stock']:,}; training (batch 1024, best step): galforge {tr_a:,.0f} "
          f"stars/s, stock {tr_b:,.0f} stars/s: {tr_a / tr_b:.2f}x")
    return res


def test_sampling_benchmark():
    res = run(100_000, "cpu", 5)
    assert res["sample_ratio"] > 1.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="stars to sample")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--train-steps", type=int, default=10, help="timed training steps")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args.n, "cpu", args.train_steps)
    if torch.cuda.is_available():
        run(args.n, "cuda", args.train_steps)


if __name__ == "__main__":
    main()
