"""The graph WGAN-GP of Jagvaral et al. (2022): galaxy orientations and axis ratios from
their FoF group's graph.

* **Generator**: a message-passing GNN from each node's scalar and vector features and
  32 Gaussian noise values to its major axis (an unnormalised 3-vector, normalised;
  axial: only ``a aᵀ`` is used downstream, the sign is free) and axis ratios
  ``q = 0.05 + 0.95 σ(·)``, ``s = q (0.05 + 0.95 σ(·))`` (so 0 < s ≤ q ≤ 1).
* **Critic**: a GNN over the whole graph with each node's features and its (real or
  generated) target, as the sign-free ``a aᵀ`` (6 components), q and s; mean- and
  sum-pooled per graph to one score.
* **Loss** (Gulrajani et al. 2017): critic ``D(fake) − D(real) + λ (‖∇D(x̂)‖ − 1)²``
  with ``x̂`` a per-graph random interpolation of the real and generated targets;
  generator ``−D(fake)``. Both are minimised in one step of one optimiser over both
  networks (the generator's term reaches the critic through detached weights and the
  critic's term the generator through detached samples, so each network's gradient is
  its own loss's, as with two Adams). The generator's term joins every ``n_critic``-th
  step (the paper's schedule; between them its gradient is zero). The shared
  trainer's Adam has β = (0.9, 0.999) (the paper: β = (0, 0.95); the trainer has no β
  setting yet).

Message passing (:class:`EdgeMLP`): ``m_ij = MLP([h_i, h_j, e_ij])``, mean over the
neighbours, ``h_i ← h_i + MLP([h_i, m_i])``; PyG's ``MessagePassing`` (scatter in
torch, no pyg-lib).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.nn import MessagePassing, global_add_pool, global_mean_pool

from galforge.train.checkpoint import record_init_kwargs

__all__ = ["GraphWGAN", "wgan_loss", "target_repr", "NOISE_DIM"]

NOISE_DIM = 32


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class EdgeMLP(MessagePassing):
    """One residual message-passing layer (mean aggregation)."""

    def __init__(self, hidden: int, edge_dim: int = 4) -> None:
        super().__init__(aggr="mean")
        self.msg = _mlp(2 * hidden + edge_dim, hidden, hidden)
        self.upd = _mlp(2 * hidden, hidden, hidden)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
                ) -> torch.Tensor:
        m = self.propagate(edge_index, h=h, e=edge_attr, size=(h.size(0), h.size(0)))
        return h + self.upd(torch.cat([h, m], dim=-1))

    def message(self, h_i: torch.Tensor, h_j: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.msg(torch.cat([h_i, h_j, e], dim=-1))


class _GNN(nn.Module):
    def __init__(self, n_in: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, hidden)
        self.layers = nn.ModuleList(EdgeMLP(hidden) for _ in range(layers))

    def forward(self, z: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
                ) -> torch.Tensor:
        h = self.inp(z)
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return h


def target_repr(y: torch.Tensor) -> torch.Tensor:
    """The sign-free critic input of targets (n, 5) = (a, q, s): a aᵀ (6), q, s."""
    a = y[:, :3] / y[:, :3].norm(dim=1, keepdim=True).clamp_min(1e-8)
    i, j = torch.triu_indices(3, 3)
    return torch.cat([a[:, i] * a[:, j], y[:, 3:5]], dim=1)


@record_init_kwargs
class GraphWGAN(nn.Module):
    """Generator and critic (see the module docstring)."""

    def __init__(self, n_scalar: int, n_vec: int, hidden: int = 64, layers: int = 3,
                 gp_weight: float = 10.0, n_critic: int = 5) -> None:
        super().__init__()
        self.n_scalar, self.n_vec, self.gp_weight = n_scalar, n_vec, gp_weight
        self.n_critic = n_critic
        #: training steps taken (checkpointed with the weights): the generator's term
        #: joins the loss every n_critic-th step
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.gen = _GNN(n_scalar + n_vec + NOISE_DIM, hidden, layers)
        self.gen_head = nn.Linear(hidden, 5)
        self.critic = _GNN(n_scalar + n_vec + 8, hidden, layers)
        self.critic_head = _mlp(2 * hidden, hidden, 1)

    def generate(self, batch: Any, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Generated targets (n, 5): unit major axis, q, s."""
        if noise is None:
            noise = torch.randn(batch.x.size(0), NOISE_DIM, device=batch.x.device)
        h = self.gen(torch.cat([batch.x, batch.vec, noise], dim=1), batch.edge_index,
                     batch.edge_attr)
        out = self.gen_head(h)
        a = out[:, :3] / out[:, :3].norm(dim=1, keepdim=True).clamp_min(1e-6)
        q = 0.05 + 0.95 * torch.sigmoid(out[:, 3:4])
        s = q * (0.05 + 0.95 * torch.sigmoid(out[:, 4:5]))
        return torch.cat([a, q, s], dim=1)

    def forward(self, batch: Any, rep: torch.Tensor) -> torch.Tensor:
        """The critic's score (:meth:`score`)."""
        return self.score(batch, rep)

    def score(self, batch: Any, rep: torch.Tensor) -> torch.Tensor:
        """Critic score per graph of targets in their critic representation (n, 8)."""
        h = self.critic(torch.cat([batch.x, batch.vec, rep], dim=1), batch.edge_index,
                        batch.edge_attr)
        pooled = torch.cat([global_mean_pool(h, batch.batch), global_add_pool(h, batch.batch)
                            / 10.0], dim=1)
        return self.critic_head(pooled).squeeze(-1)


def _score_frozen(model: GraphWGAN, batch: Any, rep: torch.Tensor) -> torch.Tensor:
    """The critic's score with its weights detached (the generator's loss)."""
    from torch.func import functional_call

    params = {k: v.detach() for k, v in model.named_parameters()
              if k.startswith(("critic.", "critic_head."))}
    return functional_call(model, params, (batch, rep), strict=False)


def wgan_loss(model: GraphWGAN, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Critic plus generator loss of one batch of graphs (the shared trainer's loss_fn)."""
    real = target_repr(batch.y)
    fake_y = model.generate(batch)
    fake = target_repr(fake_y)
    d_real = model.score(batch, real)
    d_fake = model.score(batch, fake.detach())
    eps = torch.rand(int(batch.num_graphs), 1, device=real.device)[batch.batch]
    with torch.enable_grad():
        mix = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
        d_mix = model.score(batch, mix)
        grad, = torch.autograd.grad(d_mix.sum(), mix, create_graph=model.training)
    per_graph = torch.zeros(int(batch.num_graphs), device=real.device).index_add_(
        0, batch.batch, (grad**2).sum(dim=1))
    gp = ((per_graph.clamp_min(1e-12).sqrt() - 1.0) ** 2).mean()
    critic = d_fake.mean() - d_real.mean() + model.gp_weight * gp
    gen = -_score_frozen(model, batch, fake).mean()
    if model.training and torch.is_grad_enabled():
        model.steps += 1
        if int(model.steps) % model.n_critic:
            gen = gen * 0.0  # a critic-only step
    w = float((d_real.mean() - d_fake.mean()).detach())
    return critic + gen, {"wasserstein": w, "gp": float(gp.detach()),
                          "gen": float(gen.detach())}
