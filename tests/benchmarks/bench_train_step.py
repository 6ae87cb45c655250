"""Benchmark of one CPU training step of the environment study's demo Poisson VAE: its
channels-last layout against PyTorch's default (contiguous) layout.

Run as a script (``python tests/benchmarks/bench_train_step.py [--repeats 5]``) or under
pytest (``pytest tests/benchmarks/bench_train_step.py``; not collected by default). On the
SAME batch (64 neighbour-count maps of 64 × 64) and the same initial weights, one thread,
it times a forward + backward + Adam step of :class:`galforge.environment.model.PoissonVAE`
(demo preset) as galforge builds it (weights and inputs channels-last) and with the
default layout, prints milliseconds per step and the ratio, and checks that both give the
same gradients from the same weights (to 1e-3 of the largest; the layouts sum in a
different order). The best of ``--repeats`` runs is reported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import copy  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

N_STEPS = 20


def _models() -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    from galforge.environment.model import PoissonVAE
    from galforge.environment.settings import PRESETS

    class ContiguousPoissonVAE(PoissonVAE):
        memory_format = torch.contiguous_format

    torch.manual_seed(0)
    fast = PoissonVAE(**PRESETS["demo"])
    plain = ContiguousPoissonVAE(**PRESETS["demo"])
    plain.load_state_dict(fast.state_dict())
    g = torch.Generator().manual_seed(0)
    maps = torch.poisson(torch.full((64, 1, 64, 64), 0.08), generator=g)
    return fast, plain, maps


def _loss(model: torch.nn.Module, maps: torch.Tensor) -> torch.Tensor:
    from galforge.environment.model import poisson_vae_loss

    return poisson_vae_loss(model, maps)[0]


def _ms_per_step(model: torch.nn.Module, maps: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        torch.manual_seed(1)
        m = copy.deepcopy(model)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)

        def step(m: torch.nn.Module = m, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad()
            _loss(m, maps).backward()
            opt.step()

        step()  # warm-up (allocations, oneDNN primitives)
        t0 = time.perf_counter()
        for _ in range(N_STEPS):
            step()
        best = min(best, (time.perf_counter() - t0) / N_STEPS * 1e3)
    return best


def _gradient_difference(a: torch.nn.Module, b: torch.nn.Module, maps: torch.Tensor) -> float:
    """Largest |grad_a - grad_b| over the largest |grad_a|, from the same weights and the
    same latent draw (weights after several Adam steps are no comparison: its normalised
    steps amplify rounding differences in near-zero gradients)."""
    grads = []
    for m in (a, b):
        m.zero_grad()
        torch.manual_seed(2)
        _loss(m, maps).backward()
        grads.append({k: p.grad.detach().clone() for k, p in m.named_parameters()})
    scale = max(float(g.abs().max()) for g in grads[0].values())
    return max(float((grads[0][k] - grads[1][k]).abs().max()) for k in grads[0]) / scale


def run(repeats: int = 5) -> float:
    torch.set_num_threads(1)
    fast, plain, maps = _models()
    worst = _gradient_difference(fast, plain, maps)
    if worst > 1e-3:
        raise AssertionError(f"the two layouts' gradients disagree by {worst:.2e}")
    t_fast = _ms_per_step(fast, maps, repeats)
    t_plain = _ms_per_step(plain, maps, repeats)
    ratio = t_plain / t_fast
    print(f"environment demo Poisson VAE, batch 64, one thread: default layout {t_plain:.1f} "
          f"ms/step, channels-last {t_fast:.1f} ms/step, ratio {ratio:.2f}x "
          f"(gradients agree to {worst:.1e} of the largest)")
    return ratio


def test_bench_train_step() -> None:
    assert run(repeats=2) > 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    run(ap.parse_args().repeats)
