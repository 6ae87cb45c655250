"""Score-based diffusion on SO(3) (Jagvaral et al., ML4PS 2022; AAAI 2024).

* **Noising**: R̃ = R · IGSO(3)(|ε|), ε ~ N(0, σ_ε²) (:mod:`galforge.alignment.igso3`
  conventions: σ = |ε| is our IGSO(3) scale, rotation vectors of variance σ² per
  component when small). The noise levels are snapped to a fixed log grid of
  :data:`N_LEVELS` scales (:class:`IGSO3Table`: the angle CDFs and the score ∂ log f/∂ω
  tabulated once) between ``sigma_min`` and ``sigma_max``.
* **Score network** (:class:`ScoreNet`): an MLP of the rotation's nine entries, log σ and
  an optional conditioning vector, giving ``out/σ``: the score in the Lie algebra (R³).
* **Loss** (denoising score matching as the seed writes it): ``|ε| ‖s_θ(R̃, |ε|) −
  ∇ log p_{|ε|}(R̃ | R)‖²`` with the IGSO(3) kernel's score ``∂ log f/∂ω (ω) n̂``, n̂ω the
  rotation vector of Rᵀ R̃.
* **Sampling** (:func:`reverse_sample`): from the uniform distribution on SO(3) (σ_max
  large), the reverse variance-exploding SDE as a geodesic random walk,
  ``R ← R exp([Δ s_θ + √Δ z]×)``, Δ = σ_k² − σ_{k+1}², down to σ_min.

The synthetic benchmark (:func:`synthetic_density`): mixtures of 2 and 4 IGSO(3) blobs
and a density along a line of rotations (a one-parameter subgroup, blurred); samples are
scored by their mean log density under the truth and a kernel MMD on SO(3)
(:func:`mmd`, Gaussian kernel of the geodesic angle) against true samples, beside the
noise floor (two true samples of the same size).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from galforge.alignment import igso3
from galforge.train.checkpoint import record_init_kwargs

__all__ = ["IGSO3Table", "ScoreNet", "dsm_loss", "reverse_sample", "synthetic_density",
           "sample_density", "log_density", "noise", "igso3_table",
           "mmd", "N_LEVELS", "so3_exp_torch", "rotvec_torch", "benchmark"]

N_LEVELS = 128
N_OMEGA = 1024


def so3_exp_torch(v: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula for rotation vectors (n, 3) → matrices (n, 3, 3)."""
    th = v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    k = v / th
    zero = torch.zeros_like(k[:, 0])
    kx = torch.stack([torch.stack([zero, -k[:, 2], k[:, 1]], 1),
                      torch.stack([k[:, 2], zero, -k[:, 0]], 1),
                      torch.stack([-k[:, 1], k[:, 0], zero], 1)], 1)
    s, c = torch.sin(th)[..., None], torch.cos(th)[..., None]
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(kx)
    return eye + s * kx + (1 - c) * kx @ kx


def rotvec_torch(r: torch.Tensor) -> torch.Tensor:
    """Rotation vectors of matrices (n, 3, 3) (angles below π − 1e-4; numerically safe)."""
    cos = ((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    th = torch.arccos(cos)
    w = torch.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], 1)
    return w * (th / (2 * torch.sin(th))).unsqueeze(1)


class IGSO3Table:
    """IGSO(3) angle CDFs and scores on a log grid of scales (sampling and DSM targets)."""

    def __init__(self, sigma_min: float = 0.02, sigma_max: float = 3.0) -> None:
        self.sigmas = np.geomspace(sigma_min, sigma_max, N_LEVELS)
        self.omega = np.linspace(0.0, np.pi, N_OMEGA)
        self.cdf = np.empty((N_LEVELS, N_OMEGA))
        self.dlog = np.empty((N_LEVELS, N_OMEGA))
        for k, s in enumerate(self.sigmas):
            p = np.clip(igso3.angle_pdf(self.omega, s), 0, None)
            c = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(self.omega))])
            self.cdf[k] = c / c[-1]
            d = igso3.dlog_density(self.omega, s)
            # beyond the density's precision (p < 1e-10 of its peak): the Gaussian's -ω/σ²
            bad = ~np.isfinite(d) | (p < 1e-10 * p.max())
            self.dlog[k] = np.where(bad, -self.omega / s**2, d)

    def level(self, eps: np.ndarray) -> np.ndarray:
        """Grid index nearest (in log) to |ε| (clamped to the grid)."""
        x = np.log(np.clip(np.abs(eps), self.sigmas[0], self.sigmas[-1]))
        return np.clip(np.rint((x - np.log(self.sigmas[0])) / np.diff(np.log(self.sigmas[:2]))[0]),
                       0, N_LEVELS - 1).astype(int)

    def sample_angles(self, levels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(len(levels))
        rows = self.cdf[levels]
        j = np.clip((rows < u[:, None]).sum(1), 1, N_OMEGA - 1)
        lo, hi = rows[np.arange(len(u)), j - 1], rows[np.arange(len(u)), j]
        f = np.where(hi > lo, (u - lo) / np.where(hi > lo, hi - lo, 1.0), 0.5)
        return self.omega[j - 1] + f * (self.omega[j] - self.omega[j - 1])

    def dlog_at(self, levels: np.ndarray, omega: np.ndarray) -> np.ndarray:
        i = np.clip(omega / np.pi * (N_OMEGA - 1), 0, N_OMEGA - 1 - 1e-9)
        j = i.astype(int)
        f = i - j
        return (1 - f) * self.dlog[levels, j] + f * self.dlog[levels, j + 1]


@functools.cache
def igso3_table(sigma_min: float, sigma_max: float) -> IGSO3Table:
    """The table of these bounds (built once per process)."""
    return IGSO3Table(sigma_min, sigma_max)


@record_init_kwargs
class ScoreNet(nn.Module):
    """MLP score network on SO(3): (R, log σ, condition) → score in R³ (``out/σ``)."""

    def __init__(self, n_cond: int = 0, hidden: int = 128, layers: int = 3) -> None:
        super().__init__()
        dims = [9 + 1 + n_cond] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*mods, nn.Linear(hidden, 3))
        self.n_cond = n_cond

    def forward(self, r: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None
                ) -> torch.Tensor:
        parts = [r.reshape(len(r), 9), torch.log(sigma).unsqueeze(1)]
        if cond is not None:
            parts.append(cond)
        return self.net(torch.cat(parts, 1)) / sigma.unsqueeze(1)


@dataclass
class NoisedBatch:
    noisy: torch.Tensor
    sigma: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor


def noise(clean: np.ndarray, table: IGSO3Table, sigma_eps: float, rng: np.random.Generator
          ) -> NoisedBatch:
    """R̃ = R exp([ω n̂]×) at |ε| snapped to the grid; the kernel's score and |ε|."""
    eps = rng.normal(scale=sigma_eps, size=len(clean))
    lev = table.level(eps)
    om = table.sample_angles(lev, rng)
    axis = rng.normal(size=(len(clean), 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    noisy = clean @ igso3.so3_exp(axis * om[:, None])
    target = table.dlog_at(lev, om)[:, None] * axis
    sig = table.sigmas[lev]
    f = torch.float32
    return NoisedBatch(torch.tensor(noisy, dtype=f), torch.tensor(sig, dtype=f),
                       torch.tensor(target, dtype=f), torch.tensor(sig, dtype=f))


def dsm_loss(net: ScoreNet, b: NoisedBatch, cond: torch.Tensor | None = None) -> torch.Tensor:
    """|ε|-weighted denoising score matching (see the module docstring)."""
    s = net(b.noisy, b.sigma, cond)
    return (b.weight * ((s - b.target) ** 2).sum(1)).mean()


@torch.no_grad()
def reverse_sample(net: ScoreNet, n: int, table: IGSO3Table, steps: int, seed: int,
                   cond: torch.Tensor | None = None) -> np.ndarray:
    """n rotations by the reverse geodesic random walk (uniform start at σ_max)."""
    from scipy.spatial.transform import Rotation

    gen = torch.Generator().manual_seed(seed)
    r = torch.tensor(Rotation.random(n, random_state=seed).as_matrix(), dtype=torch.float32)
    sig = np.geomspace(table.sigmas[-1], table.sigmas[0], steps + 1)
    for k in range(steps):
        s_now, s_next = float(sig[k]), float(sig[k + 1])
        d = s_now**2 - s_next**2
        score = net(r, torch.full((n,), s_now), cond)
        z = torch.randn(n, 3, generator=gen)
        r = r @ so3_exp_torch(d * score + np.sqrt(d) * z)
    # tidy: re-orthonormalise
    u, _, vh = torch.linalg.svd(r)
    return (u @ vh).numpy().astype(np.float64)


def synthetic_density(name: str) -> dict[str, Any]:
    """The seed's test densities: ``blobs2``, ``blobs4`` (IGSO(3) mixtures) and ``line``
    (rotations about one axis by a uniform angle, blurred by IGSO(3)(0.15))."""
    from scipy.spatial.transform import Rotation

    if name in ("blobs2", "blobs4"):
        k = 2 if name == "blobs2" else 4
        means = Rotation.random(k, random_state=11).as_matrix()
        return {"kind": "mixture", "means": means, "sigmas": np.full(k, 0.25)}
    if name == "line":
        axis = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
        t = np.linspace(-np.pi, np.pi, 64, endpoint=False)
        return {"kind": "mixture", "means": igso3.so3_exp(axis[None] * t[:, None]),
                "sigmas": np.full(len(t), 0.15)}
    raise ValueError(f"synthetic density {name!r}: blobs2, blobs4 or line")


def sample_density(d: dict[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """n rotations of a synthetic density."""
    k = rng.integers(0, len(d["means"]), n)
    out = np.empty((n, 3, 3))
    for j in np.unique(k):
        sel = k == j
        out[sel] = igso3.sample(int(sel.sum()), float(d["sigmas"][j]), rng, d["means"][j])
    return out


def log_density(d: dict[str, Any], rots: np.ndarray) -> np.ndarray:
    """log of a synthetic density (w.r.t. the normalised Haar measure) at ``rots``."""
    tot = np.zeros(len(rots))
    for m, s in zip(d["means"], d["sigmas"], strict=True):
        tot += np.clip(igso3.density(igso3.angle_of(m.T @ rots), float(s)), 0, None)
    return np.log(tot / len(d["means"]) + 1e-300)


def mmd(a: np.ndarray, b: np.ndarray, bandwidth: float = 0.3) -> float:
    """Squared MMD (the biased V-statistic, > 0 even between two samples of one density:
    the noise floor) with the kernel exp(−θ²/2h²), θ the geodesic angle."""
    def k(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        tr = np.einsum("nji,mji->nm", x, y)
        th = np.arccos(np.clip((tr - 1) / 2, -1, 1))
        return np.exp(-0.5 * th**2 / bandwidth**2)

    return float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())


def benchmark(name: str, s: Any, seed: int) -> dict[str, Any]:
    """Train an unconditional score network on one synthetic density, sample it, score it.

    ``s``: :class:`~galforge.alignment.settings.SO3BenchmarkSettings`. Fresh samples each
    step, Adam with a cosine schedule (a loop of its own: the data are drawn anew each
    step). Returns the numbers and ``pass`` (MMD within 2x the noise floor).
    """
    d = synthetic_density(name)
    table = igso3_table(s.sigma_min, s.sigma_max)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 16, len(name)]))
    torch.manual_seed(seed)
    net = ScoreNet(hidden=s.hidden, layers=s.layers)
    opt = torch.optim.Adam(net.parameters(), s.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.steps)
    losses = []
    for _ in range(s.steps):
        loss = dsm_loss(net, noise(sample_density(d, s.batch_size, rng), table, s.sigma_eps, rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    gen = reverse_sample(net, s.n_samples, table, s.reverse_steps, seed=seed + 1)
    t1 = sample_density(d, s.n_samples, np.random.default_rng([seed, 1]))
    t2 = sample_density(d, s.n_samples, np.random.default_rng([seed, 2]))
    m, floor = mmd(gen, t1, s.mmd_bandwidth), mmd(t2, t1, s.mmd_bandwidth)
    return {
        "density": name, "mmd": m, "mmd_noise_floor": floor, "mmd_ratio": m / floor,
        "mean_log_density_model": float(log_density(d, gen).mean()),
        "mean_log_density_truth": float(log_density(d, t2).mean()),
        "final_loss": float(np.mean(losses[-50:])), "pass": bool(m <= 2.0 * floor),
        "samples": gen, "truth": t1,
    }
