"""VAE and conditional VAE for rest-frame galaxy spectra (the spectra study).

Iwasaki, Cooray & Takeuchi (arXiv:2311.17414) compress SDSS spectra (4000
rest-frame pixels) into a few latents with a convolutional VAE, and with CVAEs
conditioned on galaxy properties (stellar mass, SFR, sSFR, metallicity from
GSWLC / MPA-JHU) measure how much those properties tell about the spectra.
Their appendix describes 1-D convolution blocks with batch normalisation and
dropout, linear blocks, and a transposed-convolution decoder; the layer widths,
kernel sizes and strides below are *our* choice (the published numbers were
not available to us), sized so that a demo model trains in well under a minute
on one CPU thread.

Architecture (:class:`SpectraVAE`)
----------------------------------
* **Input scaling.** The encoder sees ``(x − m) / s`` with ``m``, ``s`` the
  per-pixel mean and standard deviation of the training spectra (buffers set by
  :meth:`SpectraVAE.set_scaling`, saved in the state dict), so emission-line
  pixels and continuum pixels enter on the same footing. The decoder predicts
  the spectrum in the same units: ``x̂ = m + s · h(z, c)``.
* **Encoder.** One block per entry of ``channels``: ``Conv1d(kernel k, stride
  s, padding k // 2) → BatchNorm1d → activation → Dropout`` (4000 → 500 → 125
  → 63 pixels for the demo kernels 9, 5, 5 and strides 8, 4, 2). Flatten; a CVAE concatenates its
  standardised conditions here. Then one ``Linear → activation → Dropout``
  block per entry of ``hidden`` and a last ``Linear`` to ``2 · latent_dim``:
  μ and log σ² (clamped to [:data:`LOGVAR_MIN`, :data:`LOGVAR_MAX`]).
* **Decoder.** ``[z, c]`` (c: the CVAE's standardised conditions) → the linear
  blocks in reverse → ``Linear`` to the encoder's last feature map → activation
  → the mirrored ``ConvTranspose1d(k, s, padding k // 2, output_padding)``
  blocks (``output_padding`` chosen so each block restores the encoder's length
  exactly) with BatchNorm1d, activation and Dropout, the last one to 1 channel
  without activation.
* **Linear shortcuts** (``linear_skip``, default on; our addition): μ also
  receives a fixed linear projection of the scaled spectrum (buffer
  ``enc_proj``) and the decoder output a trained ``Linear(z ⊕ c → npix)``.
  Training starts them at the PCA of the training spectra
  (:meth:`SpectraVAE.init_linear_paths`, called by
  :func:`galforge.spectra.training.train_spectra_model`) with the last layers of
  the non-linear paths zeroed, so an untrained model equals the PCA
  reconstruction and training learns the non-linear part (see below).
* **Conditions** enter as ``(c − c̄) / σ_c`` with the training-set mean and
  standard deviation (buffers set by :meth:`SpectraVAE.set_scaling`): callers pass
  physical values (dex, 12 + log O/H).
* Every activation is its own module instance, and no activation is applied
  functionally in ``forward``: ``shap.DeepExplainer`` rewrites the gradient of
  each nonlinear *module* (DeepLIFT rescale rule, Lundberg & Lee 2017), which
  requires each to be a separate leaf module. The only operations outside
  modules are affine (scaling, concatenation, reshapes), whose gradients are
  already exact DeepLIFT multipliers.

Loss (:func:`spectra_vae_loss`)
-------------------------------
The negative β-ELBO per spectrum, averaged over the batch::

    loss = mean_n [ ½ Σ_p w_np (x_np − x̂_np)² + β Σ_k KL_k ]

``w`` are the inverse-variance weights of the preprocessed file (ivar scaled
by the normalisation², exactly 0 on masked / infilled pixels, which therefore
do not count), ``KL_k = ½ (μ_k² + σ_k² − 1 − log σ_k²)``. This is the Gaussian
negative log-likelihood with known per-pixel variances ``1 / w`` up to the
data-only constant ``−½ Σ log(w / 2π)``. In training mode z is drawn with the
reparameterisation trick (Kingma & Welling 2014); in eval mode z = μ.

Speed (measured, 1 CPU thread, torch 2.13)
------------------------------------------
Demo preset (≈ 0.55 M parameters), 3,400 training + 600 validation spectra ×
4000 px, batch 64, 20 epochs (the ``demo`` entry of
:data:`galforge.spectra.presets.PRESETS` (``train``) then; it now trains 12): 38 s for the whole
``train_spectra_model`` call (reading the file, PCA start, training, writing),
≈ 1.7 s per epoch, on an otherwise idle core; the earlier strides 4, 4, 4 took
50 s for the same fit, channels 4, 8, 16 took 27 s but fitted worse (mean
reduced χ² 1.034 against 1.018 for a 4-factor synthetic set).

Why the linear shortcuts (``linear_skip``)
------------------------------------------
Without them the demo model reached a mean reduced χ² of 1.4–1.9 after 10
epochs on 4-factor synthetic spectra (noise floor 1.0; PCA with 4 components:
1.14); started from the PCA (:meth:`SpectraVAE.init_linear_paths`) it begins at
1.14 and reaches 1.02 in 20 epochs. The encoder's shortcut is a *fixed*
projection: trained with Adam, its 4000-wide weights (≈ 3e-4 each) move by the
learning rate per step and the fit diverged in the first epoch.

References
----------
Iwasaki, D., Cooray, S. & Takeuchi, T. T., "Extracting an Informative Latent
Representation of High-Dimensional Galaxy Spectra", arXiv:2311.17414.
Kingma, D. P. & Welling, M. 2014, "Auto-Encoding Variational Bayes", ICLR.
Sohn, K., Lee, H. & Yan, X. 2015, "Learning Structured Output Representation
using Deep Conditional Generative Models", NeurIPS (CVAE).
Lundberg, S. M. & Lee, S.-I. 2017, "A Unified Approach to Interpreting Model
Predictions", NeurIPS (SHAP, DeepExplainer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from galforge.spectra.model_ids import (  # re-exported: one import for the model side
    CONDITION_SHORT,
    KINDS,
    NPIX,
    canonical_conditions,
    model_id,
    parse_model_id,
)
from galforge.spectra.settings import ACTIVATIONS, SpectraModelSettings
from galforge.train.checkpoint import record_init_kwargs
from galforge.train.layers import activation
from galforge.train.vae import kl_to_standard_normal, reparameterize

__all__ = [
    "ACTIVATIONS",
    "CONDITION_SHORT",
    "KINDS",
    "LOGVAR_MAX",
    "LOGVAR_MIN",
    "NPIX",
    "SpectraModelSettings",
    "SpectraVAE",
    "canonical_conditions",
    "model_id",
    "parse_model_id",
    "spectra_vae_loss",
    "weighted_sq_residuals",
]

#: Initial log-variance of the posterior after :meth:`SpectraVAE.init_linear_paths`
#: (σ ≈ 0.02 in units of the prior: a PCA coefficient of a high-S/N spectrum is that precise).
INIT_LOGVAR = -8.0
#: Hard bounds of the encoder's log-variance.
LOGVAR_MIN = -15.0
LOGVAR_MAX = 10.0


def _activation(name: str) -> nn.Module:
    """A fresh activation module of :data:`ACTIVATIONS` (never shared between layers)."""
    return activation(name, ACTIVATIONS)


def conv_lengths(npix: int, kernel_sizes: Sequence[int], strides: Sequence[int]) -> list[int]:
    """Lengths after each encoder convolution (padding ``k // 2``), input length first."""
    out = [int(npix)]
    for k, s in zip(kernel_sizes, strides, strict=True):
        out.append((out[-1] + 2 * (k // 2) - k) // s + 1)
    return out


@record_init_kwargs
class SpectraVAE(nn.Module):
    """Convolutional VAE (``conditions == []``) or CVAE for 1-D spectra.

    The constructor arguments are the fields of
    :class:`~galforge.spectra.settings.SpectraModelSettings` other than
    ``kind`` and ``beta`` (plain JSON values, recorded in ``init_kwargs`` so a
    checkpoint rebuilds the model). The per-pixel and condition scalings are
    buffers: call :meth:`set_scaling` before training.
    """

    def __init__(
        self,
        latent_dim: int = 4,
        conditions: Sequence[str] = (),
        npix: int = NPIX,
        channels: Sequence[int] = (8, 16, 32),
        kernel_sizes: Sequence[int] = (9, 5, 5),
        strides: Sequence[int] = (8, 4, 2),
        hidden: Sequence[int] = (128, 32),
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        linear_skip: bool = True,
    ) -> None:
        super().__init__()
        conds = list(conditions)
        # the settings validate everything (same rules as the configuration check)
        s = SpectraModelSettings(
            kind="cvae" if conds else "vae", latent_dim=latent_dim, conditions=tuple(conds),
            npix=npix, channels=tuple(channels), kernel_sizes=tuple(kernel_sizes),
            strides=tuple(strides), hidden=tuple(hidden), activation=activation, dropout=dropout,
            linear_skip=linear_skip,
        )
        self.latent_dim = s.latent_dim
        self.conditions: tuple[str, ...] = s.conditions
        self.n_cond = len(s.conditions)
        self.npix = s.npix
        self.kind = s.kind
        lengths = conv_lengths(s.npix, s.kernel_sizes, s.strides)
        self._lengths = lengths
        self._last_c = s.channels[-1]
        flat = s.channels[-1] * lengths[-1]
        p = s.dropout

        self.register_buffer("pix_mean", torch.zeros(s.npix))
        self.register_buffer("pix_scale", torch.ones(s.npix))
        self.register_buffer("cond_mean", torch.zeros(self.n_cond))
        self.register_buffer("cond_scale", torch.ones(self.n_cond))

        enc: list[nn.Module] = []
        cin = 1
        for c, k, st in zip(s.channels, s.kernel_sizes, s.strides, strict=True):
            enc += [nn.Conv1d(cin, c, k, stride=st, padding=k // 2, bias=False),
                    nn.BatchNorm1d(c), _activation(s.activation), nn.Dropout(p)]
            cin = c
        enc.append(nn.Flatten())
        self.encoder_conv = nn.Sequential(*enc)

        lin: list[nn.Module] = []
        width = flat + self.n_cond
        for h in s.hidden:
            lin += [nn.Linear(width, h), _activation(s.activation), nn.Dropout(p)]
            width = h
        lin.append(nn.Linear(width, 2 * self.latent_dim))
        self.encoder_fc = nn.Sequential(*lin)
        # fixed (not trained) linear projection of the scaled spectrum onto the latents
        self.register_buffer("enc_proj", torch.zeros(self.latent_dim, s.npix))

        dec: list[nn.Module] = []
        width = self.latent_dim + self.n_cond
        for h in reversed(s.hidden):
            dec += [nn.Linear(width, h), _activation(s.activation), nn.Dropout(p)]
            width = h
        dec += [nn.Linear(width, flat), _activation(s.activation)]
        self.decoder_fc = nn.Sequential(*dec)

        up: list[nn.Module] = []
        rev_c = list(s.channels[::-1])
        rev_k = list(s.kernel_sizes[::-1])
        rev_s = list(s.strides[::-1])
        rev_len = lengths[::-1]
        for i, (k, st) in enumerate(zip(rev_k, rev_s, strict=True)):
            cin, lin_, lout = rev_c[i], rev_len[i], rev_len[i + 1]
            cout = rev_c[i + 1] if i + 1 < len(rev_c) else 1
            pad = k // 2
            natural = (lin_ - 1) * st - 2 * pad + k
            out_pad = lout - natural
            if not 0 <= out_pad < max(st, 1):  # pragma: no cover - guaranteed by conv arithmetic
                raise RuntimeError(f"cannot invert a convolution of length {lout} → {lin_}")
            last = i == len(rev_k) - 1
            up.append(nn.ConvTranspose1d(cin, cout, k, stride=st, padding=pad,
                                         output_padding=out_pad, bias=last))
            if not last:
                up += [nn.BatchNorm1d(cout), _activation(s.activation), nn.Dropout(p)]
        self.decoder_conv = nn.Sequential(*up)
        self.out = up[-1]
        self.linear_skip = s.linear_skip
        self.decoder_skip = (nn.Linear(self.latent_dim + self.n_cond, s.npix) if s.linear_skip
                             else None)
        if self.decoder_skip is not None:
            nn.init.zeros_(self.decoder_skip.weight)
            nn.init.zeros_(self.decoder_skip.bias)
        with torch.no_grad():  # start near the mean spectrum: x̂ = m + s·(small)
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()

    # -- scalings -------------------------------------------------------------------------
    def set_scaling(
        self,
        pix_mean: Any,
        pix_scale: Any,
        cond_mean: Any = None,
        cond_scale: Any = None,
    ) -> None:
        """Set the per-pixel input/output scaling and the condition standardisation.

        Scales must be positive (zero or non-finite entries are replaced by 1).
        """

        def _vec(v: Any, n: int, name: str, default: float) -> Tensor:
            if v is None:
                return torch.full((n,), default)
            t = torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=torch.float32).reshape(-1)
            if t.numel() != n:
                raise ValueError(f"{name} must have {n} entries, got {t.numel()}")
            return t

        pm = _vec(pix_mean, self.npix, "pix_mean", 0.0)
        ps = _vec(pix_scale, self.npix, "pix_scale", 1.0)
        cm = _vec(cond_mean, self.n_cond, "cond_mean", 0.0)
        cs = _vec(cond_scale, self.n_cond, "cond_scale", 1.0)
        ps = torch.where(torch.isfinite(ps) & (ps > 0), ps, torch.ones_like(ps))
        cs = torch.where(torch.isfinite(cs) & (cs > 0), cs, torch.ones_like(cs))
        pm = torch.where(torch.isfinite(pm), pm, torch.zeros_like(pm))
        with torch.no_grad():
            self.pix_mean.copy_(pm)
            self.pix_scale.copy_(ps)
            self.cond_mean.copy_(cm)
            self.cond_scale.copy_(cs)

    def init_linear_paths(self, components: Any, scales: Any) -> None:
        """Start from PCA: the linear shortcuts become the top principal components.

        ``components`` (latent_dim, npix): orthonormal principal axes of the
        *scaled* training spectra ``(x − m) / s``; ``scales`` (latent_dim,): the
        standard deviation of the spectra along each. The encoder shortcut then
        gives unit-variance latents ``μ_k = (x_s · v_k) / σ_k`` and the decoder
        shortcut ``Σ_k z_k σ_k v_k``; the non-linear paths start at exactly 0
        (their last layers zeroed), so the untrained model *is* the PCA
        reconstruction with ``latent_dim`` components and training learns the
        non-linear corrections. Rows beyond the given components stay 0.
        """
        if self.decoder_skip is None:
            raise ValueError("this model was built with linear_skip=False")
        v = torch.as_tensor(np.asarray(components, dtype=np.float64), dtype=torch.float32)
        sc = torch.as_tensor(np.asarray(scales, dtype=np.float64), dtype=torch.float32).reshape(-1)
        if v.dim() != 2 or v.shape[1] != self.npix or v.shape[0] > self.latent_dim:
            raise ValueError(f"components must be (<= {self.latent_dim}, {self.npix}), got {tuple(v.shape)}")
        if sc.numel() != v.shape[0] or not bool((sc > 0).all()):
            raise ValueError("scales must be positive, one per component")
        k = v.shape[0]
        with torch.no_grad():
            self.enc_proj.zero_()
            self.enc_proj[:k] = v / sc[:, None]
            self.decoder_skip.weight.zero_()
            self.decoder_skip.bias.zero_()
            self.decoder_skip.weight[:, :k] = (v * sc[:, None]).T
            last = self.encoder_fc[-1]
            last.weight.zero_()
            last.bias[: self.latent_dim].zero_()
            last.bias[self.latent_dim :].fill_(INIT_LOGVAR)
            self.out.weight.zero_()
            self.out.bias.zero_()

    # -- helpers --------------------------------------------------------------------------
    def _param(self) -> Tensor:
        return next(self.parameters())

    def _prepare_x(self, x: Any) -> Tensor:
        """(N, npix) or (N, 1, npix) spectra → float (N, npix) on the model's device."""
        x = torch.as_tensor(x)
        if x.dim() == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 2 or x.shape[1] != self.npix:
            raise ValueError(
                f"expected spectra of shape (N, {self.npix}) or (N, 1, {self.npix}), "
                f"got {tuple(x.shape)}"
            )
        p = self._param()
        return x.to(device=p.device, dtype=p.dtype)

    def _prepare_c(self, c: Any, n: int) -> Tensor:
        """Conditions (N, n_cond) in physical units → standardised, or an empty (N, 0)."""
        p = self._param()
        if self.n_cond == 0:
            if c is not None and torch.as_tensor(c).numel() > 0:
                raise ValueError("a plain VAE takes no conditions")
            return torch.zeros(n, 0, device=p.device, dtype=p.dtype)
        if c is None:
            raise ValueError(f"this CVAE needs its conditions {list(self.conditions)}")
        c = torch.as_tensor(c).to(device=p.device, dtype=p.dtype)
        if c.dim() == 1 and self.n_cond == 1:
            c = c[:, None]
        if c.shape != (n, self.n_cond):
            raise ValueError(f"conditions must have shape ({n}, {self.n_cond}), got {tuple(c.shape)}")
        return (c - self.cond_mean) / self.cond_scale

    # -- the model ------------------------------------------------------------------------
    def encode(self, x: Any, c: Any = None) -> tuple[Tensor, Tensor]:
        """Spectra (N, npix) [+ conditions (N, n_cond)] → (μ, log σ²), each (N, latent_dim)."""
        x = self._prepare_x(x)
        cs = self._prepare_c(c, x.shape[0])
        xs = (x - self.pix_mean) / self.pix_scale
        h = self.encoder_conv(xs.unsqueeze(1))
        if self.n_cond:
            h = torch.cat([h, cs], dim=1)
        mu, logvar = self.encoder_fc(h).chunk(2, dim=1)
        if self.linear_skip:
            mu = mu + xs @ self.enc_proj.T
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: Any, c: Any = None) -> Tensor:
        """Latents (N, latent_dim) [+ conditions] → spectra (N, npix) in flux units."""
        p = self._param()
        z = torch.as_tensor(z).to(device=p.device, dtype=p.dtype)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        cs = self._prepare_c(c, z.shape[0])
        h = torch.cat([z, cs], dim=1) if self.n_cond else z
        out = self.decoder_conv(self.decoder_fc(h).view(-1, self._last_c, self._lengths[-1]))[:, 0]
        if self.decoder_skip is not None:
            out = out + self.decoder_skip(h)
        h = out
        return self.pix_mean + self.pix_scale * h

    reparameterize = staticmethod(reparameterize)

    def forward(
        self, x: Any, c: Any = None, sample: bool | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Spectra [+ conditions] → (x̂, μ, log σ²); z sampled when ``sample`` (default: training)."""
        mu, logvar = self.encode(x, c)
        draw = self.training if sample is None else sample
        z = self.reparameterize(mu, logvar) if draw else mu
        return self.decode(z, c), mu, logvar


# -- loss -------------------------------------------------------------------------------------
def weighted_sq_residuals(x: Tensor, xhat: Tensor, w: Tensor) -> Tensor:
    """χ² per spectrum, ``Σ_p w (x − x̂)²``; pixels with ``w == 0`` contribute exactly 0.

    (``torch.where`` keeps a non-finite infilled value from turning ``0 · inf`` into NaN.)
    """
    r = torch.where(w > 0, (x - xhat).square() * w, torch.zeros_like(w))
    return r.sum(dim=1)


def split_batch(model: SpectraVAE, batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(flux, weight[, conditions])`` of a batch, checked against the model."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError("a spectra batch is (flux, weight) or (flux, weight, conditions)")
    x, w = batch[0], batch[1]
    c = batch[2] if len(batch) > 2 else None
    if model.n_cond and c is None:
        raise ValueError(f"this CVAE needs its conditions {list(model.conditions)} in the batch")
    return x, w, c


def spectra_vae_loss(
    model: SpectraVAE, batch: Any, beta: float = 1.0
) -> tuple[Tensor, dict[str, float]]:
    """Negative β-ELBO averaged over the batch, and per-spectrum metrics.

    ``batch`` is ``(flux, weight)`` for a VAE or ``(flux, weight, conditions)``
    for a CVAE (conditions in physical units). Metrics (batch means): ``recon``
    (½ χ²), ``kl`` (summed over latents), ``chi2_nu`` (χ² per weighted pixel).
    """
    x, w, c = split_batch(model, batch)
    x = model._prepare_x(x)
    w = model._prepare_x(w)
    mu, logvar = model.encode(x, c)
    z = model.reparameterize(mu, logvar) if model.training else mu
    xhat = model.decode(z, c)
    chi2 = weighted_sq_residuals(x, xhat, w)
    kl = kl_to_standard_normal(mu, logvar).sum(dim=1)
    loss = (0.5 * chi2 + float(beta) * kl).mean()
    with torch.no_grad():
        npix = (w > 0).sum(dim=1).clamp_min(1)
        metrics = {
            "recon": float(0.5 * chi2.mean()),
            "kl": float(kl.mean()),
            "chi2_nu": float((chi2 / npix).mean()),
        }
    return loss, metrics
