"""The conditional VAE of the exsitu study (Angeloudi et al. 2024, their Fig. 1).

* **Condition encoder**: a CNN over the five observable maps and their mask (6 channels):
  one block per ``channels`` entry, each two 3x3 convolutions, the first of stride 2
  (except the first block's). Its feature map at every scale feeds the decoder (U-Net skip
  connections) and its globally pooled deepest features are the **condition embedding**
  (the context of the flow on the latents, :mod:`galforge.exsitu.flow`).
* **Map encoder**: the ex-situ map (1 channel) through the same kind of blocks, each
  scale's output concatenated with the condition features of that scale before the next
  block; pooled, joined with the embedding, to the means and log-variances of
  ``latent_dim`` Gaussians.
* **Decoder**: z to the deepest scale (a linear layer), concatenated with the condition
  features there, then one upsampling block per scale, each concatenated with the
  condition features of its scale; a 1x1 convolution and a sigmoid give a map in [0, 1].
* **Loss** (:func:`cvae_loss`): masked mean squared error over the occupied pixels + beta
  x KL(q(z | x, c) || N(0, I)) summed over latents, both averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from galforge.train.checkpoint import record_init_kwargs
from galforge.train.layers import activation
from galforge.train.vae import kl_to_standard_normal, reparameterize

__all__ = ["ACTIVATIONS", "ExsituCVAE", "cvae_loss"]

ACTIVATIONS = ("silu", "leaky_relu", "relu", "gelu", "elu")


def _block(c_in: int, c_out: int, stride: int, act: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out),
        activation(act, ACTIVATIONS),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), activation(act, ACTIVATIONS))


@record_init_kwargs
class ExsituCVAE(nn.Module):
    """Conditional VAE with U-Net skips from the condition encoder (module docstring)."""

    def __init__(self, npix: int = 128, channels: Sequence[int] = (32, 64, 128, 256),
                 latent_dim: int = 10, in_channels: int = 6, activation: str = "silu") -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        depth = len(chans)
        if npix % 2 ** (depth - 1):
            raise ValueError(f"npix = {npix} must be a multiple of 2**(len(channels) - 1)")
        self.latent_dim, self.npix = int(latent_dim), int(npix)
        self.bottom = npix // 2 ** (depth - 1)
        self.cond = nn.ModuleList(
            _block(in_channels if i == 0 else chans[i - 1], c, 1 if i == 0 else 2, activation)
            for i, c in enumerate(chans))
        self.enc = nn.ModuleList(
            _block(1 if i == 0 else 2 * chans[i - 1], c, 1 if i == 0 else 2, activation)
            for i, c in enumerate(chans))
        self.embed_dim = chans[-1]
        self.to_latent = nn.Linear(2 * chans[-1] + self.embed_dim, 2 * self.latent_dim)
        self.from_latent = nn.Linear(self.latent_dim, chans[-1] * self.bottom**2)
        self.dec_in = _block(2 * chans[-1], chans[-1], 1, activation)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(depth - 1, 0, -1):
            self.up.append(nn.ConvTranspose2d(chans[i], chans[i - 1], 2, stride=2))
            self.dec.append(_block(2 * chans[i - 1], chans[i - 1], 1, activation))
        self.out = nn.Conv2d(chans[0], 1, 1)

    # -- parts ----------------------------------------------------------------------------------
    def condition(self, c: Tensor) -> tuple[list[Tensor], Tensor]:
        """Condition features at every scale and the embedding (pooled deepest features)."""
        feats = []
        h = c
        for block in self.cond:
            h = block(h)
            feats.append(h)
        return feats, feats[-1].mean(dim=(2, 3))

    def encode(self, x: Tensor, feats: list[Tensor], embed: Tensor) -> tuple[Tensor, Tensor]:
        """Means and log-variances of q(z | x, c)."""
        h = x
        for block, f in zip(self.enc, feats, strict=True):
            h = torch.cat([block(h), f], dim=1)
        stats = self.to_latent(torch.cat([h.mean(dim=(2, 3)), embed], dim=1))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: Tensor, feats: list[Tensor]) -> Tensor:
        """A map in [0, 1] ``(B, 1, npix, npix)`` from latents and condition features."""
        h = self.from_latent(z).view(z.shape[0], -1, self.bottom, self.bottom)
        h = self.dec_in(torch.cat([h, feats[-1]], dim=1))
        for up, block, f in zip(self.up, self.dec, feats[-2::-1], strict=True):
            h = block(torch.cat([up(h), f], dim=1))
        return torch.sigmoid(self.out(h))

    def forward(self, c: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats, embed = self.condition(c)
        mu, logvar = self.encode(x, feats, embed)
        return self.decode(reparameterize(mu, logvar), feats), mu, logvar


def cvae_loss(model: ExsituCVAE, batch: Any, beta: float) -> tuple[Tensor, dict[str, float]]:
    """Masked MSE over occupied pixels + beta KL (module docstring)."""
    c, x, m = batch
    recon, mu, logvar = model(c, x)
    n = m.sum(dim=(1, 2, 3)).clamp_min(1.0)
    mse = ((recon.float() - x) ** 2 * m).sum(dim=(1, 2, 3)) / n
    kl = kl_to_standard_normal(mu.float(), logvar.float()).sum(dim=1)
    loss = (mse + beta * kl).mean()
    return loss, {"mse": float(mse.mean().detach()), "kl": float(kl.mean().detach())}
