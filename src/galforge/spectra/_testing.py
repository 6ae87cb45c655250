"""TEST FIXTURES ONLY: synthetic low-rank spectra with a known number of factors.

Nothing in the pipeline uses this module; the tests of the models, the BIC and
the analysis do (it lives in the package so that every test file, and the
acceptance checks of other sessions, can import it).

:func:`make_lowrank_spectra` draws ``n_factors`` independent standard-normal
factors per spectrum and maps them *non-linearly* to a 4000-pixel rest-frame
spectrum on the preprocessed grid (``logspace(log10 3400, log10 8400, 4000)``):

1. ``age``: continuum power-law slope and a 4000 Å break depth;
2. ``sfr``: emission-line strength ``∝ exp(0.8 t)`` (Hα, Hβ, [O II], [N II], [S II], [O III]);
3. ``ion``: [O III]/Hβ up by ``exp(0.7 t)``, [N II]/Hα down by ``exp(−0.5 t)``;
4. ``dust``: Calzetti-like attenuation ``exp(−A k(λ) / k(5500))`` with ``A = 0.3 softplus(t + 1)``;
5. ``balmer``: depth of the Balmer absorption lines;
6. ``nad``: depth of Na D / Mg b absorption.

Factors beyond ``n_factors`` are fixed at 0. Noise is Gaussian with a
per-spectrum S/N drawn uniformly in ``snr`` (per pixel, relative to the local
noiseless flux floor 0.2); a fraction of pixels in short runs is masked
(weight 0, flux replaced by the noiseless value as an infill would).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FACTOR_NAMES",
    "LINES",
    "make_lowrank_spectra",
    "write_preprocessed",
]

#: Factor names in order; the first ``n_factors`` vary.
FACTOR_NAMES: tuple[str, ...] = ("age", "sfr", "ion", "dust", "balmer", "nad")

#: Rest-frame (vacuum-ish) wavelengths of the emission lines used, Å.
LINES: dict[str, float] = {
    "OII": 3728.5, "Hbeta": 4862.7, "OIII_4959": 4960.3, "OIII_5007": 5008.2,
    "NII_6548": 6549.9, "Halpha": 6564.6, "NII_6584": 6585.3, "SII_6717": 6718.3,
    "SII_6731": 6732.7,
}


def _gauss(wave: np.ndarray, centre: float, sigma_aa: float) -> np.ndarray:
    return np.exp(-0.5 * ((wave - centre) / sigma_aa) ** 2)


def make_lowrank_spectra(
    n: int,
    n_factors: int,
    *,
    npix: int = 4000,
    snr: tuple[float, float] = (15.0, 40.0),
    mask_fraction: float = 0.02,
    seed: int = 0,
) -> dict[str, Any]:
    """Synthetic spectra driven by ``n_factors`` (1–6) latent factors.

    Returns a dict with ``wave`` (npix,), ``flux``/``weight`` (n, npix) float32,
    ``mask`` (n, npix) bool, ``factors`` (n, 6) float64 (unused ones 0),
    ``model`` (the noiseless spectra), ``key``/``plate``/``mjd``/``fiber`` and
    ``properties`` (a dict of ``log_mstar``, ``log_sfr``, ``log_ssfr``,
    ``oh_p50`` built from the factors plus scatter).
    """
    if not 1 <= n_factors <= len(FACTOR_NAMES):
        raise ValueError(f"n_factors must be in 1..{len(FACTOR_NAMES)}, got {n_factors}")
    rng = np.random.default_rng(seed)
    wave = np.logspace(np.log10(3400.0), np.log10(8400.0), npix)
    t = np.zeros((n, len(FACTOR_NAMES)))
    t[:, :n_factors] = rng.standard_normal((n, n_factors))
    age, sfr, ion, dust, balmer, nad = t.T

    x = wave[None, :] / 5500.0
    slope = -1.0 + 0.6 * age[:, None]
    cont = x**slope
    brk = 1.0 / (1.0 + np.exp(-(wave - 4000.0) / 30.0))  # 0 blue of 4000 Å, 1 red
    cont = cont * (1.0 - (0.25 + 0.12 * age[:, None]) * (1.0 - brk[None, :]))
    depth_b = 0.15 + 0.07 * balmer[:, None]
    for c in (4102.9, 4341.7, 4862.7, 6564.6):
        cont = cont * (1.0 - depth_b * _gauss(wave, c, 8.0)[None, :])
    depth_n = 0.12 + 0.06 * nad[:, None]
    for c in (5176.0, 5895.0):
        cont = cont * (1.0 - depth_n * _gauss(wave, c, 6.0)[None, :])

    amp = 1.5 * np.exp(0.8 * sfr)[:, None]
    r_oiii = 0.6 * np.exp(0.7 * ion)[:, None]
    r_nii = 0.4 * np.exp(-0.5 * ion)[:, None]
    sig = 2.5  # Å
    lines = (
        1.0 * _gauss(wave, LINES["Halpha"], sig)
        + 0.35 * _gauss(wave, LINES["Hbeta"], sig)
        + 0.8 * _gauss(wave, LINES["OII"], sig)
        + 0.25 * _gauss(wave, LINES["SII_6717"], sig)
        + 0.18 * _gauss(wave, LINES["SII_6731"], sig)
    )[None, :] * amp
    lines = lines + amp * r_oiii * 0.35 * (
        _gauss(wave, LINES["OIII_5007"], sig) + 0.33 * _gauss(wave, LINES["OIII_4959"], sig)
    )[None, :]
    lines = lines + amp * r_nii * (
        _gauss(wave, LINES["NII_6584"], sig) + 0.33 * _gauss(wave, LINES["NII_6548"], sig)
    )[None, :]
    model = cont + lines
    a_v = 0.3 * np.log1p(np.exp(dust + 1.0))[:, None]
    k = (5500.0 / wave) ** 0.9  # Calzetti-like shape, normalised at 5500 Å
    model = model * np.exp(-a_v * k[None, :])
    norm = model[:, (wave > 5400) & (wave < 5600)].mean(axis=1, keepdims=True)
    model = model / norm

    s2n = rng.uniform(snr[0], snr[1], size=(n, 1))
    sigma = np.maximum(model, 0.2) / s2n
    flux = model + sigma * rng.standard_normal(model.shape)
    weight = 1.0 / sigma**2
    mask = np.zeros(model.shape, dtype=bool)
    if mask_fraction > 0:
        n_runs = max(1, int(round(mask_fraction * npix / 10)))
        starts = rng.integers(0, npix - 10, size=(n, n_runs))
        for i in range(n):
            for s0 in starts[i]:
                mask[i, s0 : s0 + 10] = True
    flux = np.where(mask, model, flux)
    weight = np.where(mask, 0.0, weight)

    log_mstar = 10.3 + 0.4 * age - 0.1 * sfr + 0.15 * rng.standard_normal(n)
    log_sfr = 0.2 + 0.5 * sfr - 0.5 * age + 0.15 * rng.standard_normal(n)
    oh = 8.8 - 0.12 * ion + 0.1 * (log_mstar - 10.3) + 0.05 * rng.standard_normal(n)
    plate = 1000 + np.arange(n) // 640
    fiber = 1 + np.arange(n) % 640
    mjd = np.full(n, 52000)
    key = plate.astype(np.int64) * 10**9 + mjd.astype(np.int64) * 10**3 + fiber
    return {
        "wave": wave,
        "flux": flux.astype(np.float32),
        "weight": weight.astype(np.float32),
        "mask": mask,
        "model": model.astype(np.float32),
        "factors": t,
        "key": key.astype(np.int64),
        "plate": plate.astype(np.int32),
        "mjd": mjd.astype(np.int32),
        "fiber": fiber.astype(np.int32),
        "z": rng.uniform(0.01, 0.1, n),
        "properties": {
            "log_mstar": log_mstar,
            "log_sfr": log_sfr,
            "log_ssfr": log_sfr - log_mstar,
            "oh_p50": oh,
        },
    }


def write_preprocessed(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` (from :func:`make_lowrank_spectra`) in the preprocessed-file layout."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["wave"] = data["wave"]
        f["flux"] = data["flux"]
        f["weight"] = data["weight"]
        f["mask"] = data["mask"]
        for name in ("key", "plate", "mjd", "fiber", "z"):
            f[name] = data[name]
        g = f.create_group("properties")
        for name, v in data["properties"].items():
            g[name] = np.asarray(v, dtype=np.float64)
        f.attrs["settings"] = "{}"
    return path
