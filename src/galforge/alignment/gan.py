"""The graph WGAN-GP of Jagvaral et al. (2022): galaxy orientations and axis ratios from
their FoF group's graph.

Both networks are rotation-equivariant in the one way that matters here: they see the
node's vector features (unit axial directions v_k, :mod:`galforge.alignment.graphs`)
only through rotation invariants, so neither can learn an alignment with the box axes
and both see the alignment in the frame where it lives.

* **Generator**: a message-passing GNN over invariant node inputs (the scalar features,
  the ``(v_k · v_l)²`` of the node's directions, 32 Gaussian noise values) and the edge
  length. Its head gives per node K log-concentrations g_k and the location of a unit
  Gaussian (s/q is drawn from its training marginal, independent of the graph: a
  location for it too let the game correlate it with q, 0.39 against the data's
  -0.11 on the demo mock, and the s marginal failed its KS test). The major axis is an angular-central-Gaussian draw
  ``a = A n / |A n|``, ``A = I + Σ_k (e^{g_k} − 1) v_k v_kᵀ``, n ~ N(0, I₃): axial and
  sign-free (only ``v_k v_kᵀ``; a and −a equally likely), isotropic where all g_k = 0,
  concentrated about v_k (g_k > 0) or about the plane normal to it (g_k < 0). The axis
  ratios are a conditional Gaussian copula of the training marginals:
  ``q = Q_q(Φ(μ_q + z₁))`` (|μ_q| < 1, a tanh), ``s = q Q_{s/q}(Φ(z₂))`` with Q the
  training set's quantile functions (``q_quantiles``, ``sq_quantiles``; so 0 < s ≤ q ≤
  1); the copula's Gaussians are standardised over the batch (over the whole catalog
  when sampling), so the generated marginals stay the training ones and the game
  learns which galaxies are rounder. The head starts at zero: isotropic orientations and
  the training marginals, from which the adversarial game learns their dependence on
  the graph. Samples are drawn with the exponential moving average of the generator's
  weights (``ema_decay``; Yazıcı et al. 2019), which damps the game's oscillation.
* **Critic**: a GNN over the whole graph whose node inputs are the scalar features, the
  ``(v_k · v_l)²``, the target's ``(a · v_k)²`` (``v_kᵀ M v_k``, M = a aᵀ), q and s,
  and whose edge inputs are the length, ``(a_i · d̂_ij)²``, ``(a_j · d̂_ij)²`` and
  ``(a_i · a_j)²`` (``tr M_i M_j``); mean- and sum-pooled per graph to one score. Targets
  enter as ``target_repr`` (the 6 components of M, q, s), where the gradient penalty
  interpolates.
* **Loss** (Gulrajani et al. 2017): critic ``D(fake) − D(real) + λ (‖∇D(x̂)‖ − 1)²``
  with ``x̂`` a per-graph random interpolation of the real and generated targets;
  generator ``−D(fake)``. Both are minimised in one step of one optimiser over both
  networks (the generator's term reaches the critic through detached weights and the
  critic's term the generator through detached samples, so each network's gradient is
  its own loss's, as with two Adams). The generator's term joins every ``n_critic``-th
  step (the paper's schedule; between them its gradient is zero), after
  ``critic_warmup`` critic-only steps (a random critic's gradient is noise; Arjovsky et
  al. 2017 train the critic longer at the start for the same reason). Adam's β = (0, 0.95)
  as the paper (``gan_train.betas``).

Message passing (:class:`EdgeMLP`): ``m_ij = MLP([h_i, h_j, e_ij])``, mean over the
neighbours, ``h_i ← h_i + MLP([h_i, m_i])``; PyG's ``MessagePassing`` (scatter in
torch, no pyg-lib).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch_geometric.nn import MessagePassing, global_add_pool, global_mean_pool

from galforge.train.checkpoint import record_init_kwargs

__all__ = ["GraphWGAN", "wgan_loss", "target_repr", "NOISE_DIM"]

NOISE_DIM = 32
#: The generator head's outputs are this times a linear layer's of the layer-normalised
#: node states: Adam moves each weight by about the learning rate per step whatever the
#: gradient's size, and an unnormalised, unscaled head (its node states grow to ~100
#: within tens of steps) moves the log-concentrations and copula locations by whole
#: units per step, faster than the critic learns (it starts random).
HEAD_SCALE = 0.2


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
    def __init__(self, n_in: int, hidden: int, layers: int, edge_dim: int) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, hidden)
        self.layers = nn.ModuleList(EdgeMLP(hidden, edge_dim) for _ in range(layers))

    def forward(self, z: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
                ) -> torch.Tensor:
        h = self.inp(z)
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return h


_IU, _JU = torch.triu_indices(3, 3)


def target_repr(y: torch.Tensor) -> torch.Tensor:
    """The sign-free critic input of targets (n, 5) = (a, q, s): a aᵀ (6), q, s."""
    a = y[:, :3] / y[:, :3].norm(dim=1, keepdim=True).clamp_min(1e-8)
    return torch.cat([a[:, _IU] * a[:, _JU], y[:, 3:5]], dim=1)


def _matrix(rep: torch.Tensor) -> torch.Tensor:
    """The symmetric 3×3 matrices of the 6 upper-triangle components of ``rep``."""
    m = rep.new_zeros(rep.size(0), 3, 3)
    m[:, _IU, _JU] = rep[:, :6]
    m[:, _JU, _IU] = rep[:, :6]
    return m


def _directions(vec: torch.Tensor) -> torch.Tensor:
    """Node directions (n, K, 3) of the vector features (n, 3K)."""
    return vec.reshape(vec.size(0), -1, 3)


def _pair_invariants(v: torch.Tensor) -> torch.Tensor:
    """(v_k · v_l)² for k < l of the node directions (n, K, 3)."""
    k = v.size(1)
    i, j = torch.triu_indices(k, k, offset=1)
    return ((v[:, i] * v[:, j]).sum(-1)) ** 2


def _quantile(levels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The piecewise-linear quantile function of equally spaced ``levels`` at u ∈ [0, 1]."""
    x = u.clamp(0.0, 1.0) * (levels.numel() - 1)
    lo = x.floor().long().clamp(max=levels.numel() - 2)
    return levels[lo] + (x - lo) * (levels[lo + 1] - levels[lo])


def _ema_name(name: str) -> str:
    return "ema__" + name.replace(".", "__")


def _default_quantiles() -> list[float]:
    return torch.linspace(0.05, 1.0, 33).tolist()


@record_init_kwargs
class GraphWGAN(nn.Module):
    """Generator and critic (see the module docstring)."""

    def __init__(self, n_scalar: int, n_vec: int, hidden: int = 64, layers: int = 3,
                 gp_weight: float = 10.0, n_critic: int = 5, critic_warmup: int = 0,
                 ema_decay: float = 0.0,
                 q_quantiles: list[float] | None = None,
                 sq_quantiles: list[float] | None = None) -> None:
        super().__init__()
        if n_vec % 3:
            raise ValueError(f"n_vec = {n_vec}: the vector features are 3-vectors")
        self.n_scalar, self.n_vec, self.gp_weight = n_scalar, n_vec, gp_weight
        self.n_critic, self.critic_warmup = n_critic, critic_warmup
        k = n_vec // 3
        n_pairs = k * (k - 1) // 2
        #: training steps taken (checkpointed with the weights): the generator's term
        #: joins the loss every n_critic-th step
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("q_levels", torch.tensor(q_quantiles or _default_quantiles()))
        self.register_buffer("sq_levels", torch.tensor(sq_quantiles or _default_quantiles()))
        self.gen = _GNN(n_scalar + n_pairs + NOISE_DIM, hidden, layers, edge_dim=1)
        self.gen_norm = nn.LayerNorm(hidden)
        self.gen_head = nn.Linear(hidden, k + 1)
        nn.init.zeros_(self.gen_head.weight)
        nn.init.zeros_(self.gen_head.bias)
        #: exponential moving average of the generator's weights (buffers; sampled from)
        self.ema_decay = ema_decay
        for name, p in self._gen_params():
            self.register_buffer(_ema_name(name), p.detach().clone())
        self.critic = _GNN(n_scalar + n_pairs + k + 2, hidden, layers, edge_dim=4)
        n_node = n_scalar + n_pairs + k + 2
        self.critic_head = _mlp(2 * hidden + n_node, hidden, 1)

    #: noise values per node: the GNN's, the direction's 3, the axis ratios' 2
    noise_dim = NOISE_DIM + 5

    def _gen_params(self) -> list[tuple[str, torch.Tensor]]:
        return [(k, p) for k, p in self.named_parameters() if k.startswith("gen")]

    @torch.no_grad()
    def update_ema(self) -> None:
        """One step of the generator weights' moving average (after a generator step)."""
        for name, p in self._gen_params():
            getattr(self, _ema_name(name)).lerp_(p.detach(), 1.0 - self.ema_decay)

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """The generator's weights replaced by their moving average inside the block."""
        saved = {}
        with torch.no_grad():
            for name, p in self._gen_params():
                saved[name] = p.detach().clone()
                p.copy_(getattr(self, _ema_name(name)))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self._gen_params():
                    p.copy_(saved[name])

    def generate(self, batch: Any, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Generated targets (n, 5): unit major axis, q, s (``noise``: (n, noise_dim))."""
        if noise is None:
            noise = torch.randn(batch.x.size(0), self.noise_dim, device=batch.x.device)
        v = _directions(batch.vec)
        length = batch.edge_attr[:, 3:4]
        h = self.gen(torch.cat([batch.x, _pair_invariants(v), noise[:, :NOISE_DIM]], dim=1),
                     batch.edge_index, length)
        out = self.gen_head(self.gen_norm(h)) * HEAD_SCALE
        k = v.size(1)
        g = out[:, :k].clamp(-6.0, 6.0)
        amat = torch.eye(3, device=v.device) + torch.einsum(
            "nk,nki,nkj->nij", torch.expm1(g), v, v)
        a = torch.einsum("nij,nj->ni", amat, noise[:, NOISE_DIM:NOISE_DIM + 3])
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-6)
        z = noise[:, NOISE_DIM + 3:NOISE_DIM + 5].clone()
        z[:, 0] += torch.tanh(out[:, k])
        if z.size(0) > 1:  # standardised over the batch: the marginals stay the training's
            z = (z - z.mean(0)) / z.std(0).clamp_min(1e-6)
        u = torch.special.ndtr(z)
        q = _quantile(self.q_levels, u[:, 0:1])
        s = q * _quantile(self.sq_levels, u[:, 1:2])
        return torch.cat([a, q, s], dim=1)

    def forward(self, batch: Any, rep: torch.Tensor) -> torch.Tensor:
        """The critic's score (:meth:`score`)."""
        return self.score(batch, rep)

    def score(self, batch: Any, rep: torch.Tensor) -> torch.Tensor:
        """Critic score per graph of targets in their critic representation (n, 8)."""
        v = _directions(batch.vec)
        m = _matrix(rep)
        node = torch.cat([batch.x, _pair_invariants(v),
                          torch.einsum("nki,nij,nkj->nk", v, m, v), rep[:, 6:8]], dim=1)
        src, dst = batch.edge_index
        length = batch.edge_attr[:, 3:4]
        d = batch.edge_attr[:, :3] / length.clamp_min(1e-8)
        edge = torch.cat([length, torch.einsum("ei,eij,ej->e", d, m[src], d)[:, None],
                          torch.einsum("ei,eij,ej->e", d, m[dst], d)[:, None],
                          (m[src] * m[dst]).sum((1, 2))[:, None]], dim=1)
        h = self.critic(node, batch.edge_index, edge)
        pooled = torch.cat([global_mean_pool(h, batch.batch), global_add_pool(h, batch.batch)
                            / 10.0, global_mean_pool(node, batch.batch)], dim=1)
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
        if int(model.steps) % model.n_critic or int(model.steps) <= model.critic_warmup:
            gen = gen * 0.0  # a critic-only step
        elif model.ema_decay > 0:
            model.update_ema()  # the weights of the last step (lag one: inside the loss)
    w = float((d_real.mean() - d_fake.mean()).detach())
    return critic + gen, {"wasserstein": w, "gp": float(gp.detach()),
                          "gen": float(gen.detach())}
