"""Prediction summaries, the paper's error metric, the baseline, calibration.

**The paper's metric** (:func:`pixel_errors`): the mean, over every occupied pixel of every
test projection pooled, of the absolute difference between the predicted ex-situ fraction
(the mean of the S sampled maps) and the true one; also its median and the mean per true
f_ex bin of the pixel.

**Baseline** (:func:`radial_baseline`): the training projections' mean ex-situ fraction in
rings of the map radius (maps span +-extent_rhalf stellar half-mass radii, so a ring is a
fixed fraction of the half-mass radius): a test pixel is predicted its ring's mean.

**Predictive intervals** (:func:`summarise`): the decoder leans on the condition
encoder's skip connections, so its S sampled maps barely differ (alone they cover ~21 %
of the true pixels at 68 %). The predictive distribution of a pixel is therefore the
decoder's samples plus a stated **aleatoric noise term**: each sample plus Gaussian noise
of one standard deviation sigma (clipped to [0, 1]), sigma fitted per latent source on
the **validation** projections (:func:`fit_noise`: the sigma at which 68 % of the
occupied validation pixels fall inside the central 68 % interval; never the test set).
The mean map (the paper's point prediction) and the integrated f_ex are the decoder's
samples' (the noise is zero-mean and independent between pixels); the spread and the
68 % / 95 % intervals are the noisy samples'.

**Calibration**: the fraction of occupied test pixels whose true value lies inside the
central 68 % / 95 % interval of the S (noisy) samples.

**Integrated f_ex**: the mass-weighted mean of a map over its occupied pixels (mass =
10**log_sigma of the stored map), per sample; its mean over samples is the prediction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from galforge.io import InputError, atomic_path

__all__ = ["FEX_BINS", "add_noise", "fit_noise", "integrated", "pixel_errors", "radial_baseline", "radius_map",
           "read_noise", "read_predictions", "summarise", "write_predictions"]

#: Bins of the true pixel ex-situ fraction for the per-bin errors.
FEX_BINS = (0.0, 0.1, 0.2, 0.4, 0.6, 1.0)
#: Rings of the radial profiles (in units of the map's half side).
N_RINGS = 8
SUMMARY = ("mean", "std", "lo68", "hi68", "lo95", "hi95", "fex_int_mean", "fex_int_std")


def radius_map(npix: int) -> np.ndarray:
    """Pixel-centre radius in units of the map's half side, ``(npix, npix)``."""
    c = (np.arange(npix) + 0.5) / npix * 2.0 - 1.0
    return np.hypot(c[:, None], c[None, :])


def ring_index(npix: int, n_rings: int = N_RINGS) -> np.ndarray:
    return np.minimum((radius_map(npix) * n_rings).astype(int), n_rings - 1)


def integrated(fex_maps: np.ndarray, log_sigma: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mass-weighted f_ex of maps ``(..., H, W)`` over each projection's occupied pixels.

    ``fex_maps`` may carry a sample axis after the projection axis.
    """
    w = np.where(masks, 10.0 ** np.where(masks, log_sigma, 0.0), 0.0)
    if fex_maps.ndim == w.ndim + 1:
        w = w[:, None]
    tot = w.sum(axis=(-2, -1))
    return (fex_maps * w).sum(axis=(-2, -1)) / np.where(tot > 0, tot, 1.0)


def add_noise(samples: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``samples`` plus Gaussian noise of standard deviation ``sigma``, clipped to [0, 1]."""
    if sigma <= 0:
        return samples
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(samples.shape, dtype=np.float32)
    return np.clip(samples + np.float32(sigma) * noise, 0.0, 1.0)


def _inside(samples: np.ndarray, true: np.ndarray, level: float) -> np.ndarray:
    """Whether each ``true`` lies in the central ``level`` interval of its ``samples`` row."""
    q = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return (true >= q[0]) & (true <= q[1])


def fit_noise(samples: np.ndarray, true: np.ndarray, masks: np.ndarray, *, seed: int,
              level: float = 0.68, max_pixels: int = 50_000, tol: float = 1e-4) -> float:
    """The aleatoric sigma at which the central ``level`` interval of the noisy samples
    holds a fraction ``level`` of the true pixels (bisection; module docstring).

    ``samples`` ``(N, S, H, W)`` of the validation projections, ``true`` and ``masks``
    ``(N, H, W)``; at most ``max_pixels`` occupied pixels, drawn with ``seed``. Returns 0
    when the samples alone already cover at least ``level``.
    """
    pix = samples.transpose(0, 2, 3, 1)[masks]
    t = true[masks]
    if not len(t):
        raise ValueError("no occupied pixel to fit the noise on")
    rng = np.random.default_rng(seed)
    if len(t) > max_pixels:
        keep = rng.choice(len(t), max_pixels, replace=False)
        pix, t = pix[keep], t[keep]
    noise = rng.standard_normal(pix.shape, dtype=np.float32)

    def cover(sigma: float) -> float:
        return float(_inside(np.clip(pix + np.float32(sigma) * noise, 0, 1), t, level).mean())

    if cover(0.0) >= level:
        return 0.0
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cover(mid) < level else (lo, mid)
    return 0.5 * (lo + hi)


def summarise(samples: np.ndarray, log_sigma: np.ndarray, masks: np.ndarray, *,
              noise_sigma: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean, spread, 68/95 % intervals per pixel; integrated f_ex mean and spread.

    The mean and the integrated f_ex are the samples'; the spread and the intervals are
    those of the samples plus the aleatoric noise ``noise_sigma`` (module docstring).
    """
    noisy = add_noise(samples, noise_sigma, seed)
    q = np.quantile(noisy, [0.16, 0.84, 0.025, 0.975], axis=1)
    fint = integrated(samples, log_sigma, masks)
    return {"mean": samples.mean(axis=1), "std": noisy.std(axis=1), "lo68": q[0],
            "hi68": q[1], "lo95": q[2], "hi95": q[3], "fex_int_mean": fint.mean(axis=1),
            "fex_int_std": fint.std(axis=1)}


def radial_baseline(train_fex: np.ndarray, train_masks: np.ndarray) -> np.ndarray:
    """Mean training f_ex per ring (:data:`N_RINGS`); rings without pixels get the overall mean."""
    ring = ring_index(train_fex.shape[-1])
    rr = np.broadcast_to(ring, train_fex.shape)[train_masks]
    v = train_fex[train_masks]
    s = np.bincount(rr, weights=v, minlength=N_RINGS)
    n = np.bincount(rr, minlength=N_RINGS)
    overall = float(v.mean()) if v.size else 0.0
    return np.where(n > 0, s / np.maximum(n, 1), overall)


def baseline_maps(profile: np.ndarray, n: int, npix: int) -> np.ndarray:
    return np.broadcast_to(profile[ring_index(npix)], (n, npix, npix))


def pixel_errors(pred: np.ndarray, true: np.ndarray, masks: np.ndarray) -> dict[str, Any]:
    """The paper's metric: mean |pred - true| over occupied pixels (pooled), and more."""
    err = np.abs(pred - true)[masks]
    t = true[masks]
    out: dict[str, Any] = {"mean": float(err.mean()), "median": float(np.median(err)),
                           "n_pixels": int(err.size)}
    for lo, hi in zip(FEX_BINS[:-1], FEX_BINS[1:], strict=True):
        sel = (t >= lo) & ((t < hi) if hi < 1.0 else (t <= hi))
        out[f"mean_fex_{lo:g}_{hi:g}"] = float(err[sel].mean()) if sel.any() else float("nan")
    return out


def coverage(s: Mapping[str, np.ndarray], true: np.ndarray, masks: np.ndarray
             ) -> dict[str, Any]:
    """Fraction of occupied pixels inside the 68 % and 95 % intervals, overall and per ring."""
    ring = np.broadcast_to(ring_index(true.shape[-1]), true.shape)[masks]
    out: dict[str, Any] = {}
    for k, lo, hi in (("68", "lo68", "hi68"), ("95", "lo95", "hi95")):
        inside = ((true >= s[lo]) & (true <= s[hi]))[masks]
        out[f"coverage{k}"] = float(inside.mean())
        out[f"coverage{k}_by_ring"] = [float(inside[ring == r].mean()) if (ring == r).any()
                                       else float("nan") for r in range(N_RINGS)]
    return out


def write_predictions(path: str | os.PathLike[str], rows: np.ndarray,
                      summaries: Mapping[str, Mapping[str, np.ndarray]],
                      attrs: Mapping[str, Any],
                      noise: Mapping[str, float] | None = None) -> None:
    """One group per latent source with the :data:`SUMMARY` arrays (its ``noise_sigma``
    as an attribute); ``rows``: maps-file rows."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("rows", data=np.asarray(rows, np.int64))
        for src, s in summaries.items():
            g = f.create_group(src)
            g.attrs["noise_sigma"] = float((noise or {}).get(src, 0.0))
            for k in SUMMARY:
                g.create_dataset(k, data=np.asarray(s[k], np.float32),
                                 compression="gzip" if np.ndim(s[k]) > 1 else None)
        for k, v in attrs.items():
            f.attrs[k] = v


def read_predictions(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, dict]]:
    """Maps-file rows and, per latent source, the :data:`SUMMARY` arrays."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable predictions file ({exc})") from None
    with f:
        if "rows" not in f:
            raise InputError(f"{path}: no 'rows' dataset (not an exsitu predictions file)")
        return f["rows"][()], {src: {k: f[src][k][()] for k in SUMMARY}
                               for src in f if src != "rows"}


def read_noise(path: str | os.PathLike[str]) -> dict[str, float]:
    """The aleatoric sigma of each latent source of a predictions file (0: none)."""
    with h5py.File(path, "r") as f:
        return {src: float(f[src].attrs.get("noise_sigma", 0.0)) for src in f if src != "rows"}
