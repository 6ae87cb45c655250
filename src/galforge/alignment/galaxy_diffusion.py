"""The GNN-conditioned score model of galaxy orientations on SO(3) (Jagvaral et al., ML4PS
2022; AAAI 2024), on the FoF-group graphs of :mod:`galforge.alignment.graphs`.

* **Data**: each galaxy's frame R (columns: major, intermediate, minor axis). The
  ellipsoid is symmetric under the sign flips of two axes (its D2 group), so R and
  R·diag(±1, ±1, ±1) (det +1) are the same galaxy: training frames get a uniformly drawn
  flip each time (the learned density is D2-symmetric).
* **Condition**: a message-passing GNN (:class:`galforge.alignment.gan._GNN`) over the
  invariant node inputs (the scalar features and the ``(v_k · v_l)²`` of the node's
  directions, edge lengths) gives an embedding h per galaxy.
* **Score network**: an MLP of h, log σ and the node's directions in the noisy frame, as
  the sign-free ``(Rᵀv_k)(Rᵀv_k)ᵀ`` (6 components each), giving the score in the Lie
  algebra of the right perturbation (R̃ = R exp(ω)), i.e. in the body frame, over σ (as
  :class:`galforge.alignment.diffusion.ScoreNet`). Its inputs are invariant under a
  global rotation, so the model is rotation-equivariant.
* **Training**: the seed's denoising score matching (:func:`galforge.alignment.diffusion.
  noise`: |ε| with ε ~ N(0, σ_ε²), loss weighted by |ε|, the IGSO(3) kernel's score) on
  the shared trainer, one loss per batch of graphs (:func:`dsm_graph_loss`), each galaxy
  noised ``repeats`` times (the encoder runs once: the kernel's noise dominates the
  loss's variance, the orientations' dependence on the graph is a weak signal).
* **Sampling** (:func:`sample_frames`): the reverse geodesic random walk of
  :func:`galforge.alignment.diffusion.reverse_sample`, every galaxy of the batch at once.

The axis ratios are not diffused: the generated catalog draws q and s/q from their
training marginals, independently of the graph (so its axis-ratio check tests only the
marginals).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from galforge.alignment.diffusion import igso3_table, noise, reverse_sample
from galforge.alignment.gan import _GNN, _directions, _pair_invariants
from galforge.train.checkpoint import record_init_kwargs

__all__ = ["GalaxyScoreModel", "dsm_graph_loss", "sample_frames", "D2_FLIPS"]

#: The ellipsoid's symmetry: the identity and the three sign flips of two axes.
D2_FLIPS = np.array([np.diag(d) for d in ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1])],
                    dtype=np.float64)

_IU, _JU = torch.triu_indices(3, 3)


@record_init_kwargs
class GalaxyScoreModel(nn.Module):
    """GNN encoder and conditional score MLP (see the module docstring)."""

    def __init__(self, n_scalar: int, n_vec: int, hidden: int = 64, layers: int = 3,
                 score_hidden: int = 128, score_layers: int = 3, sigma_min: float = 0.02,
                 sigma_max: float = 3.0, sigma_eps: float = 1.0, repeats: int = 1) -> None:
        super().__init__()
        if n_vec % 3:
            raise ValueError(f"n_vec = {n_vec}: the vector features are 3-vectors")
        k = n_vec // 3
        self.k, self.sigma_min, self.sigma_max = k, sigma_min, sigma_max
        self.sigma_eps, self.repeats = sigma_eps, repeats
        self.encoder = _GNN(n_scalar + k * (k - 1) // 2, hidden, layers, edge_dim=1)
        dims = [hidden + 1 + 6 * k] + [score_hidden] * score_layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b), nn.SiLU()]
        self.score_mlp = nn.Sequential(*mods, nn.Linear(score_hidden, 3))

    def embed(self, batch: Any) -> torch.Tensor:
        """The node embeddings h (n, hidden)."""
        v = _directions(batch.vec)
        return self.encoder(torch.cat([batch.x, _pair_invariants(v)], dim=1), batch.edge_index,
                            batch.edge_attr[:, 3:4])

    def score(self, r: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Body-frame score (n, 3) at frames r (n, 3, 3); ``cond`` = [h, vec] per node."""
        h, vec = cond[:, :-3 * self.k], cond[:, -3 * self.k:]
        local = torch.einsum("nij,nki->nkj", r, vec.reshape(len(r), self.k, 3))  # Rᵀ v_k
        outer = (local[:, :, _IU] * local[:, :, _JU]).reshape(len(r), -1)
        x = torch.cat([h, torch.log(sigma).unsqueeze(1), outer], dim=1)
        return self.score_mlp(x) / sigma.unsqueeze(1)

    def forward(self, r: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None
                ) -> torch.Tensor:
        """:meth:`score` (the signature :func:`~galforge.alignment.diffusion.reverse_sample`
        calls)."""
        if cond is None:
            raise ValueError("the galaxy score model needs its condition")
        return self.score(r, sigma, cond)

    def condition(self, batch: Any) -> torch.Tensor:
        return torch.cat([self.embed(batch), batch.vec], dim=1)


def dsm_graph_loss(model: GalaxyScoreModel, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """|ε|-weighted denoising score matching of a batch of graphs' frames (the shared
    trainer's ``loss_fn``); the noise seeded from torch's generator (seeded by the trainer)."""
    table = igso3_table(model.sigma_min, model.sigma_max)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
    frames = np.tile(batch.frame.detach().cpu().numpy().astype(np.float64),
                     (model.repeats, 1, 1))
    frames = frames @ D2_FLIPS[rng.integers(0, 4, len(frames))]
    b = noise(frames, table, model.sigma_eps, rng)
    dev = batch.x.device
    cond = model.condition(batch).repeat(model.repeats, 1)
    s = model.score(b.noisy.to(dev), b.sigma.to(dev), cond)
    loss = (b.weight.to(dev) * ((s - b.target.to(dev)) ** 2).sum(1)).mean()
    return loss, {}


@torch.no_grad()
def sample_frames(model: GalaxyScoreModel, batch: Any, steps: int, seed: int) -> np.ndarray:
    """One frame (n, 3, 3) per node of ``batch`` by the reverse random walk."""
    table = igso3_table(model.sigma_min, model.sigma_max)
    cond = model.condition(batch)
    return reverse_sample(model, cond.size(0), table, steps, seed, cond=cond)
