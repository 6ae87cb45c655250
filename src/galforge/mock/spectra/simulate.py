"""Pixels of the mock spectra, chunk by chunk, and the truth table.

:func:`generate_spectra_mock` draws the whole mock in memory;
``_iter_chunks`` yields it in chunks of :data:`CHUNK` objects (random stream
``[seed, 1, chunk]``), which :func:`galforge.mock.spectra.writers.write_spectra_mock`
writes as it goes, so both give identical spectra.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from galforge.cosmology import C_KMS, Cosmology
from galforge.mock.settings import MockSpectraSettings
from galforge.mock.spectra.catalog import _CLASS_GALAXY, _catalog_noise, _draw_catalog
from galforge.mock.spectra.sky import (
    SKY_LINES,
    _add_lines,
    _bit,
    _Grid,
    _grid,
    _pixel_profile,
)
from galforge.mock.spectra.templates import (
    _BALMER_ABS,
    _C_AA,
    _GAS_STAR_EBV,
    _HA_HB,
    _METAL_ABS,
    _MPC_CM,
    _R_V,
    KMS_PER_PIXEL,
    L_SUN_6200,
    LINES,
    LOG_HALPHA_PER_SFR,
    N_GRID,
    SDSS_DLOGLAM,
    SDSS_LOGLAM0,
    _absorption,
    _planck,
    calzetti_k,
    dn4000,
    line_ratios,
    log_mass_to_light,
    young_fraction,
)

#: Objects per generation chunk (fixed: the random streams are per chunk).
CHUNK = 256

# --------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------


@dataclass
class MockSpectra:
    """Observed mock spectra on the common SDSS grid (rows follow the truth table).

    Pixel arrays have shape ``(n, N_GRID)`` on ``loglam = SDSS_LOGLAM0 +
    SDSS_DLOGLAM * arange(N_GRID)``; a spectrum's file holds only pixels
    ``i_start[k] <= i < i_end[k]`` (outside them ``ivar = 0``).
    ``sky_residual`` is the injected sky-subtraction residual (part of ``flux``,
    not of ``model``, not in any file).
    """

    loglam: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    and_mask: np.ndarray
    or_mask: np.ndarray
    model: np.ndarray
    sky: np.ndarray
    sky_residual: np.ndarray
    wdisp: float
    i_start: np.ndarray
    i_end: np.ndarray

    def __len__(self) -> int:
        return len(self.i_start)

    def coadd(self, k: int) -> dict[str, np.ndarray]:
        """The ``COADD`` columns of spectrum ``k`` exactly as written to its file."""
        sl = slice(int(self.i_start[k]), int(self.i_end[k]))
        n = sl.stop - sl.start
        return {
            "flux": self.flux[k, sl].astype(np.float32),
            "loglam": self.loglam[sl].astype(np.float32),
            "ivar": self.ivar[k, sl].astype(np.float32),
            "and_mask": self.and_mask[k, sl].astype(np.int32),
            "or_mask": self.or_mask[k, sl].astype(np.int32),
            "wdisp": np.full(n, self.wdisp, dtype=np.float32),
            "sky": self.sky[k, sl].astype(np.float32),
            "model": self.model[k, sl].astype(np.float32),
        }


def _rest_galaxy(
    g: _Grid, s: MockSpectraSettings, rows: pd.DataFrame, log1pz: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rest-frame galaxy model on each row's observed pixels (continuum at 6200 Å = 1).

    Returns the model (n, N_GRID) in units of the unattenuated L_λ(6200 Å) per Å
    of *rest* wavelength, and per-row quantities (line fluxes, EW, ratios).
    """
    n = len(rows)
    log_rest = g.loglam[None, :] - log1pz[:, None]
    age = rows["log_age"].to_numpy()
    fy = young_fraction(age)  # fixed age scale a = (log_age - 8.7) / 1.4, whatever the range
    cont = fy[:, None] * g.interp_table(g.t_young, log_rest) + (1.0 - fy[:, None]) * (
        g.interp_table(g.t_old, log_rest)
    )
    a_v = rows["a_v"].to_numpy()
    k_rest = g.interp_table(g.t_k, log_rest)
    model = cont * 10.0 ** (-0.4 * (a_v / _R_V)[:, None] * k_rest)

    # lines, in units of the unattenuated continuum at 6200 Å times Å
    log_ups = log_mass_to_light(age)
    ssfr = 10.0 ** rows["log_ssfr"].to_numpy()
    ha0 = 10.0**LOG_HALPHA_PER_SFR * ssfr * 10.0**log_ups / L_SUN_6200  # EW_0(Hα) [Å]
    ratios = line_ratios(rows["log_u"].to_numpy())
    ebv_gas = a_v / _R_V / _GAS_STAR_EBV
    sigma_pix = math.hypot(s.sigma_gas_kms / KMS_PER_PIXEL, s.wdisp_pix)
    half = max(10, math.ceil(5.0 * sigma_pix))
    dlam_rest = (10.0**log_rest) * (math.log(10.0) * SDSS_DLOGLAM)
    line_flux = {}
    for ln in LINES:
        f = ha0 / _HA_HB * ratios[ln.name] * 10.0 ** (-0.4 * calzetti_k(ln.wavelength) * ebv_gas)
        line_flux[ln.name] = f
        log_c = math.log10(ln.wavelength) + log1pz
        _add_lines(model, log_c, f, sigma_pix, dlam_rest, half)
    # continuum at Hα (attenuated) for the EW
    lh = np.full((n, 1), math.log10(6564.61))
    c_ha = (
        fy[:, None] * g.interp_table(g.t_young, lh)
        + (1 - fy[:, None]) * g.interp_table(g.t_old, lh)
    )[:, 0] * 10.0 ** (-0.4 * a_v / _R_V * calzetti_k(6564.61))
    extra = {
        "ew_halpha": line_flux["Halpha"] / c_ha,
        "balmer_decrement": line_flux["Halpha"] / line_flux["Hbeta"],
        "log_o3hb": ratios["O3"],
        "log_n2ha": ratios["N2"],
        "log_ml": log_ups,
        "young_fraction": fy,
        "halpha_flux_rel": line_flux["Halpha"],
    }
    return model, extra


def _rest_star(g: _Grid, rows: pd.DataFrame, log1pz: np.ndarray) -> np.ndarray:
    lam = 10.0 ** (g.loglam[None, :] - log1pz[:, None])
    out = np.empty_like(lam)
    for k, t in enumerate(rows["t_star"].to_numpy()):
        f = _planck(lam[k], t)
        hot = float(np.clip((t - 5000.0) / 4600.0, 0.0, 1.0))
        feats = tuple((c, ew * hot, sg) for c, ew, sg in _BALMER_ABS) + tuple(
            (c, ew * (1.0 - hot), sg) for c, ew, sg in _METAL_ABS
        )
        out[k] = f * _absorption(lam[k], feats)
    return out


_QSO_LINES = (
    # (vacuum λ, EW rest [Å], FWHM [km/s])
    (2800.32, 50.0, 4000.0),
    (3727.09, 3.0, 500.0),
    (4102.89, 8.0, 4000.0),
    (4341.68, 20.0, 4000.0),
    (4862.68, 70.0, 4000.0),
    (5008.24, 20.0, 500.0),
    (6564.61, 300.0, 4000.0),
)


def _rest_qso(g: _Grid, rows: pd.DataFrame, log1pz: np.ndarray) -> np.ndarray:
    lam = 10.0 ** (g.loglam[None, :] - log1pz[:, None])
    cont = (lam / 5000.0) ** -1.5
    out = cont.copy()
    for c, ew, fwhm in _QSO_LINES:
        sig = c * fwhm / 2.3548 / C_KMS
        out += (
            ew
            * (c / 5000.0) ** -1.5
            * np.exp(-0.5 * ((lam - c) / sig) ** 2)
            / (math.sqrt(2 * math.pi) * sig)
        )
    return out


#: Properties measured on each galaxy's rest-frame template (NaN for stars and QSOs).
_TEMPLATE_DERIVED = ("ew_halpha", "balmer_decrement", "log_o3hb", "log_n2ha", "log_ml",
                     "young_fraction", "halpha_flux_rel", "d4000")


def _simulate_chunk(
    s: MockSpectraSettings,
    rows: pd.DataFrame,
    seed: int,
    chunk_id: int,
    plate_state: dict[int, tuple[float, float, float]],
    cosmo: Cosmology,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Pixels of ``rows`` (one chunk) and per-row derived quantities."""
    g = _grid()
    rng = np.random.default_rng([seed, 1, chunk_id])
    n = len(rows)
    z = rows["z_true"].to_numpy()
    log1pz = np.log10(1.0 + z)
    cls = rows["class"].to_numpy()
    is_gal = cls == _CLASS_GALAXY
    rest = np.zeros((n, N_GRID))
    derived = {k: np.full(n, np.nan) for k in _TEMPLATE_DERIVED}
    if is_gal.any():
        m, extra = _rest_galaxy(g, s, rows[is_gal], log1pz[is_gal])
        rest[is_gal] = m
        for k, v in extra.items():
            derived[k][is_gal] = v
    is_star = cls == "STAR"
    if is_star.any():
        rest[is_star] = _rest_star(g, rows[is_star], log1pz[is_star])
    is_qso = cls == "QSO"
    if is_qso.any():
        rest[is_qso] = _rest_qso(g, rows[is_qso], log1pz[is_qso])

    # scale to the fibre magnitude: <f_nu> over the r filter = 10^(-0.4 (m + 48.6))
    fnu_w = g.rfilt * g.wave**2 / _C_AA
    fnu_mean = (rest @ fnu_w) / g.rfilt.sum() * 1e-17
    target = 10.0 ** (-0.4 * (rows["r_fiber_mag"].to_numpy() + 48.60))
    amp = target / fnu_mean  # observed f_λ [1e-17 cgs] per rest-model unit
    model = rest * amp[:, None]

    # derived physical quantities (galaxies)
    d_l_mpc = (1.0 + z) * cosmo.comoving_distance(np.clip(z, 1e-6, None)) / s.hubble_h
    l6200_fiber = amp * 1e-17 * 4.0 * math.pi * (d_l_mpc * _MPC_CM) ** 2 * (1.0 + z)
    ap = rows["ap_corr_mag"].to_numpy()
    log_l = np.log10(l6200_fiber / L_SUN_6200) + 0.4 * ap
    derived["log_mstar"] = np.where(is_gal, derived["log_ml"] + log_l, np.nan)
    derived["log_sfr"] = derived["log_mstar"] + rows["log_ssfr"].to_numpy()
    derived["oh_p50"] = 8.90 + 0.57 * derived["log_n2ha"]
    if is_gal.any():
        lam_rest = 10.0 ** (g.loglam[None, :] - log1pz[is_gal, None])
        derived["d4000"][is_gal] = dn4000(lam_rest, rest[is_gal])

    # sky, per plate
    plates = rows["plate"].to_numpy()
    sky = np.empty((n, N_GRID))
    bright_ref = np.empty((n, N_GRID))
    noise_s = np.empty(n)
    for p in np.unique(plates):
        f_cont, f_lines = plate_state[int(p)][0], plate_state[int(p)][1]
        sk = f_cont * g.sky_cont + f_lines * g.sky_lines(s.wdisp_pix)
        sel = plates == p
        sky[sel] = sk
        bright_ref[sel] = 1.25 * _running_median(sk, 99)
        noise_s[sel] = plate_state[int(p)][2]

    # sky residuals
    skyres = np.zeros((n, N_GRID))
    if s.sky_residual_frac > 0 or s.sky_shift_pix > 0:
        sky_lam = np.array([sl[0] for sl in SKY_LINES])
        sky_flux = np.array([sl[1] for sl in SKY_LINES])
        f_lines = np.array([plate_state[int(p)][1] for p in plates])
        nl = len(SKY_LINES)
        half = max(8, math.ceil(5.0 * s.wdisp_pix))
        eps = rng.standard_normal((n, nl)) * s.sky_residual_frac
        dpix = rng.standard_normal((n, nl)) * s.sky_shift_pix
        pc = (np.log10(sky_lam) - SDSS_LOGLAM0) / SDSS_DLOGLAM
        for j in range(nl):
            fl = f_lines * sky_flux[j]
            c = np.full(n, pc[j])
            idx0, frac0 = _pixel_profile(c, s.wdisp_pix, half)
            idx1, frac1 = _pixel_profile(c + dpix[:, j], s.wdisp_pix, half)
            for idx, frac, sign in ((idx0, frac0, -1.0), (idx1, frac1, 1.0)):
                ok = (idx >= 0) & (idx < N_GRID)
                idx_c = np.clip(idx, 0, N_GRID - 1)
                amp_l = fl * (1.0 + eps[:, j]) if sign > 0 else fl
                val = np.where(ok, sign * amp_l[:, None] * frac / g.dlam[idx_c], 0.0)
                rr = np.broadcast_to(np.arange(n)[:, None], idx.shape)
                np.add.at(skyres, (rr, idx_c), val)

    # noise
    var = noise_s[:, None] * (g.var_a[None, :] * (np.maximum(model, 0.0) + sky) + g.var_b[None, :])
    sigma = np.sqrt(var)
    flux = model + skyres + sigma * rng.standard_normal((n, N_GRID))
    ivar = 1.0 / var
    and_mask = np.zeros((n, N_GRID), dtype=np.int32)

    bright = (sky > model + 10.0 * sigma) & (sky > bright_ref)
    and_mask[bright] |= _bit("BRIGHTSKY")
    and_mask[np.abs(skyres) > 5.0 * sigma] |= _bit("BADSKYCHI")

    # cosmic rays: isolated 1-2 pixel hits with a spike left in the flux
    n_cr = rng.poisson(s.cosmic_rate * N_GRID, n)
    for k in np.flatnonzero(n_cr):
        pos = rng.integers(0, N_GRID, n_cr[k])
        wide = rng.random(n_cr[k]) < 0.3
        pix = np.concatenate([pos, np.minimum(pos[wide] + 1, N_GRID - 1)])
        flux[k, pix] += (
            np.abs(rng.standard_normal(len(pix))) * 30.0 * sigma[k, pix] + 5 * sigma[k, pix]
        )
        ivar[k, pix] = 0.0
        and_mask[k, pix] |= _bit("FULLREJECT")
    # bad-column runs
    has_chunk = rng.random(n) < s.bad_chunk_fraction
    lengths = rng.integers(5, s.bad_chunk_max_pix + 1, n)
    starts = rng.integers(0, N_GRID, n)
    for k in np.flatnonzero(has_chunk):
        sl = slice(int(starts[k]), int(min(starts[k] + lengths[k], N_GRID)))
        flux[k, sl] = 0.0
        ivar[k, sl] = 0.0
        and_mask[k, sl] |= _bit("NODATA") | _bit("FULLREJECT") | _bit("NEARBADPIXEL")
    or_mask = and_mask.copy()
    extra = rng.random((n, N_GRID)) < s.or_mask_rate
    bits = np.array([_bit("PARTIALREJECT"), _bit("COMBINEREJ"), _bit("SCATTEREDLIGHT")], np.int32)
    or_mask[extra] |= bits[rng.integers(0, 3, int(extra.sum()))]

    # outside each spectrum's range: no data
    cols = np.arange(N_GRID)[None, :]
    inside = (cols >= rows["i_start"].to_numpy()[:, None]) & (
        cols < rows["i_end"].to_numpy()[:, None]
    )
    ivar[~inside] = 0.0

    # per-spectrum summaries
    good = ivar > 0
    snr = np.where(good, flux * np.sqrt(ivar), np.nan)
    in_r = (g.wave > 5600.0) & (g.wave < 6800.0)
    derived["snr_median_r"] = np.nanmedian(snr[:, in_r], axis=1)
    derived["sn_median_all"] = np.nanmedian(snr, axis=1)
    derived["n_bad_pixels"] = np.sum(inside & ~good, axis=1).astype(np.float64)

    arrays = {
        "flux": flux.astype(np.float32),
        "ivar": ivar.astype(np.float32),
        "and_mask": and_mask,
        "or_mask": or_mask,
        "model": model.astype(np.float32),
        "sky": sky.astype(np.float32),
        "sky_residual": skyres.astype(np.float32),
    }
    return arrays, derived


def _running_median(x: np.ndarray, width: int) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(x, size=width, mode="nearest")


def _plate_state(
    s: MockSpectraSettings, seed: int, plates: np.ndarray
) -> dict[int, tuple[float, float, float]]:
    """Per-plate (sky continuum factor, sky line factor, variance factor)."""
    rng = np.random.default_rng([seed, 3])
    out = {}
    for p in np.unique(plates):
        a, b, c = rng.standard_normal(3)
        out[int(p)] = (
            math.exp(s.sky_scatter * a),
            math.exp(s.sky_scatter * b),
            s.noise_scale * math.exp(s.plate_noise_scatter * c),
        )
    return out


def _iter_chunks(
    s: MockSpectraSettings, seed: int, cat: pd.DataFrame, cosmo: Cosmology
) -> Iterator[tuple[slice, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    state = _plate_state(s, seed, cat["plate"].to_numpy())
    for c, start in enumerate(range(0, len(cat), CHUNK)):
        sl = slice(start, min(start + CHUNK, len(cat)))
        arrays, derived = _simulate_chunk(s, cat.iloc[sl], seed, c, state, cosmo)
        yield sl, arrays, derived


#: Derived properties of the truth table, in the order their columns are added.
_TRUTH_DERIVED = (
    "log_mstar",
    "log_sfr",
    "oh_p50",
    "d4000",
    "ew_halpha",
    "balmer_decrement",
    "log_o3hb",
    "log_n2ha",
    "log_ml",
    "young_fraction",
    "snr_median_r",
    "sn_median_all",
    "n_bad_pixels",
)


def _subclass(cls: str, subclass: str, ew_halpha: float) -> str:
    """SDSS-like SUBCLASS: galaxies with EW(Hα) > 10 Å are STARFORMING."""
    if cls == _CLASS_GALAXY:
        return "STARFORMING" if ew_halpha > 10.0 else ""
    return subclass


def _finish_truth(
    s: MockSpectraSettings, cat: pd.DataFrame, derived: dict[str, np.ndarray]
) -> pd.DataFrame:
    truth = cat.copy()
    for k in _TRUTH_DERIVED:
        truth[k] = derived[k]
    truth["subclass"] = [
        _subclass(c, sc, ew)
        for c, sc, ew in zip(truth["class"], truth["subclass"], truth["ew_halpha"], strict=True)
    ]
    truth["path"] = [
        f"spectra/{p:04d}/spec-{p:04d}-{m:05d}-{f:04d}.fits"
        for p, m, f in zip(truth["plate"], truth["mjd"], truth["fiber"], strict=True)
    ]
    truth["n_pix"] = (truth["i_end"] - truth["i_start"]).astype(np.int32)
    truth["wavemin"] = 10.0 ** (SDSS_LOGLAM0 + SDSS_DLOGLAM * truth["i_start"])
    truth["wavemax"] = 10.0 ** (SDSS_LOGLAM0 + SDSS_DLOGLAM * (truth["i_end"] - 1))
    return truth



def generate_spectra_mock(
    settings: MockSpectraSettings, seed: int, cosmology: Cosmology | None = None
) -> tuple[MockSpectra, pd.DataFrame]:
    """Draw the whole mock in memory: ``(spectra, truth)`` (nothing written).

    Memory is about ``36 N_GRID`` bytes per spectrum (0.7 GB for the demo
    preset); :func:`write_spectra_mock` works chunk by chunk instead and writes
    identical spectra.

    Parameters
    ----------
    settings : MockSpectraSettings
    seed : int
        Seed of every random stream.
    cosmology : Cosmology, optional
        Luminosity distances (h-scaled distances divided by ``settings.hubble_h``);
        default flat ΛCDM with ``settings.omega_m``.

    Returns
    -------
    (MockSpectra, pandas.DataFrame)
        The pixel arrays and the truth table (one row per spectrum, same order;
        columns as in ``truth.parquet`` plus the catalogue columns).
    """
    s = settings
    cosmo = cosmology or Cosmology(Om0=s.omega_m)
    cat = _draw_catalog(s, seed, cosmo)
    n = len(cat)
    g = _grid()
    arrs: dict[str, np.ndarray] = {}
    derived: dict[str, np.ndarray] = {}
    for sl, a, d in _iter_chunks(s, seed, cat, cosmo):
        for k, v in a.items():
            if k not in arrs:
                arrs[k] = np.empty((n, N_GRID), dtype=v.dtype)
            arrs[k][sl] = v
        for k, v in d.items():
            derived.setdefault(k, np.full(n, np.nan))[sl] = v
    truth = _assemble_truth(s, seed, cat, derived)
    spectra = MockSpectra(
        loglam=g.loglam.copy(),
        wdisp=s.wdisp_pix,
        i_start=cat["i_start"].to_numpy().copy(),
        i_end=cat["i_end"].to_numpy().copy(),
        **arrs,
    )
    return spectra, truth


def _assemble_truth(
    s: MockSpectraSettings, seed: int, cat: pd.DataFrame, derived: dict[str, np.ndarray]
) -> pd.DataFrame:
    truth = _finish_truth(s, cat, derived)
    truth = pd.concat([truth, _catalog_noise(s, seed, truth)], axis=1)
    truth["selectable"] = _selectable(truth)
    return truth


def _selectable(truth: pd.DataFrame) -> np.ndarray:
    """Rows the contract's default selection keeps (GALAXY, 0 < z < 0.1, ZWARNING 0, GSWLC)."""
    return (
        (truth["class"] == _CLASS_GALAXY)
        & (truth["z"] > 0.0)
        & (truth["z"] < 0.1)
        & (truth["zwarning"] == 0)
        & truth["in_gswlc"]
        & np.isfinite(truth["gswlc_log_sfr"])
        & np.isfinite(truth["gswlc_log_mstar"])
    ).to_numpy()

