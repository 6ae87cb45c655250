"""Poisson variational autoencoder for neighbour-count maps (the environment study).

Gim, Moon, Yoon et al. learn a galaxy's environment with a convolutional VAE
trained on 64 × 64 neighbour-count maps (:mod:`galforge.environment.maps`).
This module holds the model, its loss, its settings and the latent-space
analysis helpers (KL ranking of the latents, ranked encodings, traversals).

Model (:class:`PoissonVAE`)
---------------------------
* **What the encoder sees.** ``log1p(counts)``: maps are sparse integer counts
  (total ~5–100 per map, mostly 0 per pixel, a few pixels up to ~10 in groups
  and clusters); ``log1p`` keeps 0 at 0 and compresses the dense pixels. No
  data-dependent normalisation is stored, so a model needs nothing but its
  constructor kwargs and state dict to be rebuilt. The *loss* is always on the
  raw counts.
* **Encoder.** One block per entry of ``channels``: ``Conv2d(kernel 4,
  stride 2, padding 1)`` (halves the side: 64 → 32 → 16 → 8 → 4 for four
  blocks) → normalisation (``norm``: ``"batch"`` or ``"none"``) → activation.
  Flatten → ``Linear(·, hidden)`` → activation → dropout →
  ``Linear(hidden, 2·latent_dim)`` split into μ and log σ².
  ``log σ²`` is hard-clamped to ``[LOGVAR_MIN, LOGVAR_MAX]`` (−15, 10).
* **Decoder.** ``Linear(latent_dim, hidden)`` → act → ``Linear(hidden, C·s²)``
  → act → reshape to the encoder's last feature map → the mirrored
  ``ConvTranspose2d(kernel 4, stride 2, padding 1)`` blocks → a last
  transposed convolution to one channel giving η.
* **Why no GroupNorm / InstanceNorm.** Per-sample normalisation removes each
  map's overall intensity, which is the main environment signal (the number
  of neighbours): in our planted-truth test a GroupNorm model collapsed to
  KL ≈ 0 (Spearman ρ ≈ 0.3 with the planted amplitude) where BatchNorm or no
  normalisation reached ρ ≈ 0.96–0.97 (counting the neighbours within 10 px
  of the clump gives 0.968 on the same maps).
* **Poisson rates.** Log link: ``log ŷ = softclamp(η)``, ``ŷ = exp(log ŷ) > 0``.
  ``softclamp`` is a smooth monotone map of η onto ``(LOG_RATE_MIN,
  LOG_RATE_MAX)`` = (−20, 12), i.e. rates in (2e-9, 1.6e5) counts per pixel:
  ``a = lo + softplus(η − lo)``, ``log ŷ = hi − softplus(hi − a)``, which
  differs from η by less than ``e^{−(η−lo)} + e^{−(hi−η)}`` (< 1e-4 for
  −10 ≤ η ≤ 2). Gradients never vanish (no hard clamp), ``exp`` can never
  overflow, and the loss uses ``log ŷ`` directly, so ``y log ŷ`` is never
  ``0 · (−inf)``. The last bias starts at ``log(init_rate)`` so training
  starts at a sensible mean count per pixel.
* Every activation is its own module instance (hooks / attributions see each
  layer separately).

Loss (:func:`poisson_vae_loss`)
-------------------------------
Per map, ``recon = Σ_pixels (ŷ − y log ŷ)`` (the Poisson negative
log-likelihood without the data-only ``log y!`` term) and
``KL = Σ_k ½ (μ_k² + σ_k² − 1 − log σ_k²)`` = KL(q(z|x) ‖ N(0, I)); the loss is
``mean_batch(recon + β KL)``. The metrics also report
``full_nll = recon + Σ log Γ(y + 1)``, the complete Poisson NLL. In training
mode z is drawn with the reparameterisation trick; in eval mode z = μ
(deterministic validation loss).

Latent ranking
--------------
:func:`latent_kl_per_dim` averages the KL of each latent over the data;
informative latents carry KL, unused ones collapse to the prior (KL ≈ 0).
:func:`rank_latents` orders them by KL, largest first, and
:func:`encode_ranked` returns μ and log σ² of every map in that order.
:func:`traverse` decodes one latent swept over values, the others at 0 or at a
given base point (the paper's Fig. 5).

The analysis helpers (:func:`latent_kl_per_dim`, :func:`rank_latents`,
:func:`encode_ranked`, :func:`traverse`) return NumPy arrays and run without
gradients in eval mode (restoring the previous mode), in batches, so memory is
bounded by one batch whatever the number of maps (NumPy memmaps are fine).

Architecture provenance
-----------------------
Known from the study description: 64 × 64 maps of 10 h⁻¹Mpc, ±1000 km/s,
Poisson likelihood, 128 latents, convolutional VAE (J.-S. Moon's 2022 ASIAA
talk abstract describes a convolutional VAE, there guided by a supervised
quenching classifier, which is not part of this module). The encoder/decoder
widths, kernel sizes, normalisation, activation, hidden width and β of the
paper were not available to us; the ``"paper"`` preset (widths 32-64-128-256,
hidden 512, LeakyReLU, BatchNorm, β = 1) is our choice of a standard DCGAN-like
VAE of that size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "LOGVAR_MAX",
    "LOGVAR_MIN",
    "LOG_RATE_MAX",
    "LOG_RATE_MIN",
    "NORMS",
    "EnvironmentModelSettings",
    "PoissonVAE",
    "encode_ranked",
    "latent_kl_per_dim",
    "maps_from_batch",
    "poisson_vae_loss",
    "rank_latents",
    "traverse",
]

#: Smooth bounds of the decoder's log-rate (per pixel, counts).
LOG_RATE_MIN = -20.0
LOG_RATE_MAX = 12.0
#: Hard bounds of the encoder's log-variance.
LOGVAR_MIN = -15.0
LOGVAR_MAX = 10.0

from galforge.environment.settings import (  # noqa: E402 - torch-free settings
    ACTIVATIONS,
    NORMS,
    EnvironmentModelSettings,
)
from galforge.train.layers import activation  # noqa: E402
from galforge.train.vae import eval_mode, kl_to_standard_normal, reparameterize  # noqa: E402


def _activation(name: str) -> nn.Module:
    """A fresh activation module of :data:`ACTIVATIONS` (never shared between layers)."""
    return activation(name, ACTIVATIONS)


def _norm(name: str, channels: int) -> nn.Module:
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")


def _soft_clamp_log_rate(eta: Tensor) -> Tensor:
    """Smoothly bound ``eta`` to (LOG_RATE_MIN, LOG_RATE_MAX); identity well inside."""
    a = LOG_RATE_MIN + F.softplus(eta - LOG_RATE_MIN)
    return LOG_RATE_MAX - F.softplus(LOG_RATE_MAX - a)


class PoissonVAE(nn.Module):
    """Convolutional VAE whose decoder gives Poisson rates for count maps.

    Parameters (all plain JSON values; ``model.init_kwargs`` holds them, so
    ``PoissonVAE(**model.init_kwargs)`` rebuilds the architecture exactly)

    latent_dim
        Number of Gaussian latents (paper: 128).
    channels
        Widths of the stride-2 convolution blocks, first to last; the map side
        ``npix`` must be divisible by ``2 ** len(channels)``.
    hidden
        Width of the fully connected layer between the convolutions and the
        latents (encoder and decoder).
    npix
        Side of the square maps (64).
    activation
        One of :data:`ACTIVATIONS`.
    norm
        ``"batch"`` (BatchNorm2d after each convolution) or ``"none"``. No
        per-sample normalisation is offered: it would erase the maps' total counts.
    dropout
        Dropout probability after the encoder's hidden layer (0 = none).
    init_rate
        Initial decoder output, counts per pixel (the last bias is ``log init_rate``).
    """

    #: Memory layout of the convolutions' weights and inputs. Channels-last: on CPU
    #: (oneDNN) a demo training step takes ~126 ms instead of ~181 ms with the default
    #: layout (1.3-1.4x, ``tests/benchmarks/bench_train_step.py``). Values agree to
    #: rounding; only the order in memory (and of the sums) differs.
    memory_format: torch.memory_format = torch.channels_last

    def __init__(
        self,
        latent_dim: int = 128,
        channels: Sequence[int] = (32, 64, 128, 256),
        hidden: int = 512,
        npix: int = 64,
        activation: str = "leaky_relu",
        norm: str = "batch",
        dropout: float = 0.0,
        init_rate: float = 0.01,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        if int(hidden) < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        depth = len(channels)
        if int(npix) % (2**depth) or int(npix) < 2**depth:
            raise ValueError(f"npix={npix} is not divisible by 2**len(channels) = {2**depth}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not float(init_rate) > 0.0:
            raise ValueError(f"init_rate must be > 0, got {init_rate}")
        _activation(activation)  # validate early
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")

        self.init_kwargs: dict[str, Any] = {
            "latent_dim": int(latent_dim),
            "channels": channels,
            "hidden": int(hidden),
            "npix": int(npix),
            "activation": str(activation),
            "norm": str(norm),
            "dropout": float(dropout),
            "init_rate": float(init_rate),
        }
        self.latent_dim = int(latent_dim)
        self.npix = int(npix)
        self._side = self.npix // 2**depth
        self._last = channels[-1]
        bias = norm == "none"

        enc: list[nn.Module] = []
        cin = 1
        for c in channels:
            enc += [
                nn.Conv2d(cin, c, 4, stride=2, padding=1, bias=bias),
                _norm(norm, c),
                _activation(activation),
            ]
            cin = c
        enc += [
            nn.Flatten(),
            nn.Linear(self._last * self._side**2, int(hidden)),
            _activation(activation),
            nn.Dropout(float(dropout)),
            nn.Linear(int(hidden), 2 * self.latent_dim),
        ]
        self.encoder = nn.Sequential(*enc)

        self.decoder_fc = nn.Sequential(
            nn.Linear(self.latent_dim, int(hidden)),
            _activation(activation),
            nn.Linear(int(hidden), self._last * self._side**2),
            _activation(activation),
        )
        dec: list[nn.Module] = []
        rev = channels[::-1]
        for cin, cout in zip(rev[:-1], rev[1:], strict=True):
            dec += [
                nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias),
                _norm(norm, cout),
                _activation(activation),
            ]
        self.out = nn.ConvTranspose2d(rev[-1], 1, 4, stride=2, padding=1)
        dec.append(self.out)
        self.decoder_conv = nn.Sequential(*dec)
        with torch.no_grad():
            self.out.weight.mul_(0.1)  # start close to the constant init_rate map
            self.out.bias.fill_(math.log(float(init_rate)))
        self.to(memory_format=self.memory_format)

    # -- helpers ---------------------------------------------------------------------
    def _prepare(self, x: Tensor) -> Tensor:
        """(N, H, W) or (N, 1, H, W) counts → float (N, 1, H, W) on the model's device."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[-2:] != (self.npix, self.npix):
            raise ValueError(
                f"expected maps of shape (N, {self.npix}, {self.npix}) or (N, 1, {self.npix}, {self.npix}), "
                f"got {tuple(x.shape)}"
            )
        p = next(self.parameters())
        return x.to(device=p.device, dtype=p.dtype)

    # -- the model -------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Counts → (μ, log σ²), each (N, latent_dim). The encoder sees ``log1p(counts)``."""
        x = self._prepare(x).contiguous(memory_format=self.memory_format)
        h = self.encoder(torch.log1p(x.clamp_min(0)))
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode_log_rate(self, z: Tensor) -> Tensor:
        """Latents (N, latent_dim) → log Poisson rates (N, 1, npix, npix), bounded smoothly."""
        h = self.decoder_fc(z).view(-1, self._last, self._side, self._side)
        return _soft_clamp_log_rate(self.decoder_conv(h))

    def decode(self, z: Tensor) -> Tensor:
        """Latents (N, latent_dim) → Poisson rates ŷ > 0, (N, 1, npix, npix) (contiguous)."""
        return torch.exp(self.decode_log_rate(z)).contiguous()

    reparameterize = staticmethod(reparameterize)

    def forward(self, x: Tensor, sample: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Counts → (rate, μ, log σ²). z is sampled when ``sample`` (default: training mode), else z = μ."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if (self.training if sample is None else sample) else mu
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Rate maps (n, 1, npix, npix) decoded from z ~ N(0, I), in eval mode, without gradients.

        ``generator`` must live on the model's device (CPU generator for a CPU model).
        """
        p = next(self.parameters())
        z = torch.randn(
            int(n), self.latent_dim, generator=generator, device=p.device, dtype=p.dtype
        )
        with eval_mode(self):
            return self.decode(z)


# -- loss ------------------------------------------------------------------------------
def maps_from_batch(batch: Any) -> Tensor:
    """The maps tensor of a batch: the batch itself or the first element of a tuple/list."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("empty batch")
        batch = batch[0]
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(batch)
    if not isinstance(batch, Tensor):
        raise TypeError(
            f"batch must be a tensor or a tuple whose first element is one, got {type(batch).__name__}"
        )
    return batch


def poisson_vae_loss(
    model: PoissonVAE, batch: Any, beta: float = 1.0
) -> tuple[Tensor, dict[str, float]]:
    """Negative β-ELBO averaged over the batch, and per-map metrics.

    ``loss = mean_n [ Σ_pix (ŷ − y log ŷ) + β Σ_k KL_k ]`` on raw counts ``y``.
    Metrics (per-map means, floats): ``recon`` (the Poisson term above),
    ``kl`` (summed over latents, unweighted), ``full_nll`` (``recon + Σ log y!``,
    the complete Poisson NLL). z is sampled in training mode, z = μ in eval mode.
    ``batch`` is a tensor of maps, (N, 64, 64) or (N, 1, 64, 64), or a tuple
    whose first element is one.
    """
    y = model._prepare(maps_from_batch(batch))
    mu, logvar = model.encode(y)
    z = model.reparameterize(mu, logvar) if model.training else mu
    log_rate = model.decode_log_rate(z)
    recon = (torch.exp(log_rate) - y * log_rate).sum(dim=(1, 2, 3))
    kl = kl_to_standard_normal(mu, logvar).sum(dim=1)
    loss = (recon + float(beta) * kl).mean()
    with torch.no_grad():
        log_fact = torch.lgamma(y + 1.0).sum(dim=(1, 2, 3))
        metrics = {
            "recon": float(recon.mean()),
            "kl": float(kl.mean()),
            "full_nll": float((recon + log_fact).mean()),
        }
    return loss, metrics


# -- latent analysis ---------------------------------------------------------------------
def _iter_maps(data: Any, batch_size: int) -> Iterator[Tensor]:
    """Batches of maps from a tensor / ndarray (sliced) or an iterable of batches (loader)."""
    if isinstance(data, (Tensor, np.ndarray)):
        n = len(data)
        for start in range(0, n, int(batch_size)):
            chunk = data[start : start + int(batch_size)]
            if isinstance(chunk, np.ndarray):
                chunk = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
            yield chunk
    elif isinstance(data, Iterable):
        for batch in data:
            yield maps_from_batch(batch)
    else:
        raise TypeError(f"expected a tensor, an array or a loader, got {type(data).__name__}")


def latent_kl_per_dim(model: PoissonVAE, data: Any, batch_size: int = 1024) -> np.ndarray:
    """Mean over the maps of KL(q(z_k|x) ‖ N(0, 1)) for each latent k: shape (latent_dim,), float64.

    ``data``: maps (tensor or array, (N, H, W) or (N, 1, H, W)) or a loader of batches.
    Eval mode, no gradients, one batch in memory at a time.
    """
    total = torch.zeros(model.latent_dim, dtype=torch.float64)
    n = 0
    with torch.no_grad(), eval_mode(model):
        for x in _iter_maps(data, batch_size):
            mu, logvar = model.encode(x)
            total += kl_to_standard_normal(mu, logvar).double().sum(dim=0).cpu()
            n += mu.shape[0]
    if n == 0:
        raise ValueError("no maps to compute the KL over")
    return (total / n).numpy()


def rank_latents(kl: Any) -> np.ndarray:
    """Latent indices by decreasing mean KL (ties: lower index first), int64."""
    kl = np.asarray(kl.detach().cpu() if isinstance(kl, Tensor) else kl, dtype=np.float64)
    if kl.ndim != 1:
        raise ValueError(f"kl must be 1-D, got shape {kl.shape}")
    return np.argsort(-kl, kind="stable").astype(np.int64)


def encode_ranked(
    model: PoissonVAE, maps: Any, order: Any, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """μ and log σ² of every map, columns in ``order`` (ranked latents first): two (N, K) float32 arrays.

    Eval mode, no gradients, batched (memory: one batch of maps plus the (N, K) outputs).
    """
    order = np.asarray(order.detach().cpu() if isinstance(order, Tensor) else order, dtype=np.int64)
    mus: list[np.ndarray] = []
    logvars: list[np.ndarray] = []
    with torch.no_grad(), eval_mode(model):
        for x in _iter_maps(maps, batch_size):
            mu, logvar = model.encode(x)
            mus.append(mu.float().cpu().numpy()[:, order])
            logvars.append(logvar.float().cpu().numpy()[:, order])
    k = len(order)
    if not mus:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.float32)
    return np.concatenate(mus), np.concatenate(logvars)


def traverse(model: PoissonVAE, latent_index: int, values: Any, base: Any = None) -> np.ndarray:
    """Decoded rate maps (len(values), npix, npix), float32, sweeping latent ``latent_index``.

    The other latents are 0 (the prior mean) or the entries of ``base`` (a
    (latent_dim,) point, e.g. a galaxy's μ). ``latent_index`` indexes the model's
    own latents: pass ``order[r]`` for the r-th ranked one. Eval mode, no gradients.
    """
    p = next(model.parameters())
    vals = torch.as_tensor(
        np.asarray(values, dtype=np.float64).reshape(-1), dtype=p.dtype, device=p.device
    )
    k = model.latent_dim
    if not -k <= int(latent_index) < k:
        raise IndexError(f"latent_index {latent_index} out of range for {k} latents")
    if base is None:
        z0 = torch.zeros(k, dtype=p.dtype, device=p.device)
    else:
        z0 = torch.as_tensor(
            np.asarray(base.detach().cpu() if isinstance(base, Tensor) else base, dtype=np.float64),
            dtype=p.dtype,
            device=p.device,
        ).reshape(-1)
        if z0.numel() != k:
            raise ValueError(f"base must have {k} entries, got {z0.numel()}")
    z = z0.unsqueeze(0).repeat(len(vals), 1)
    z[:, int(latent_index)] = vals
    with torch.no_grad(), eval_mode(model):
        return model.decode(z)[:, 0].float().cpu().numpy()
