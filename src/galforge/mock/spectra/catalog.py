"""The per-object draw of the mock spectra (no pixels): classes, redshifts, ids, catalogues.

:func:`_draw_catalog` draws the classes, redshifts, planted parameters,
normalisations and spectrum identifiers (stream ``[seed, 0]``, plates
``[seed, 3]``); :func:`_catalog_noise` which galaxies GSWLC and MPA-JHU list
and their noisy catalogue values (stream ``[seed, 2]``). The truth key is
:func:`galforge.archives.sdss_spectra.spectrum_key`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from galforge.archives.sdss_spectra import spectrum_key
from galforge.cosmology import C_KMS, Cosmology
from galforge.mock.settings import MAX_FIBERS_PER_PLATE, MockSpectraSettings
from galforge.mock.spectra.templates import N_GRID, PLANTED_PARAMETERS

_MJD_RANGE = (51578, 54663)  # DR7 spectroscopic MJDs
# --------------------------------------------------------------------------------------
# Catalogue draw (per object, no pixels)
# --------------------------------------------------------------------------------------


_CLASS_GALAXY = "GALAXY"
_STAR_TYPES = (("A0", 9600.0), ("F5", 6500.0), ("G2", 5800.0), ("K3", 4600.0), ("M0", 3900.0))


def _n_special(frac: float, n: int) -> int:
    return 0 if frac <= 0 else max(1, int(round(frac * n)))


def _volume_weighted_z(
    rng: np.random.Generator, n: int, z_lo: float, z_hi: float, cosmo: Cosmology
) -> np.ndarray:
    z = np.linspace(z_lo, z_hi, 2001)
    chi = cosmo.comoving_distance(z)
    cdf = chi**3 - chi[0] ** 3
    cdf = cdf / cdf[-1]
    return np.interp(rng.random(n), cdf, z)


def _draw_catalog(s: MockSpectraSettings, seed: int, cosmo: Cosmology) -> pd.DataFrame:
    """Per-object draws: class, redshift, planted parameters, normalisation, ids."""
    rng = np.random.default_rng([seed, 0])
    n = s.n_spectra
    n_star = _n_special(s.star_fraction, n)
    n_qso = _n_special(s.qso_fraction, n)
    n_gal = n - n_star - n_qso
    n_high = _n_special(s.highz_fraction, n_gal)
    n_low = n_gal - n_high
    if n_low < 1:
        raise ValueError(f"mock spectra: n_spectra = {n} leaves no galaxy at z < z_max")
    cls = np.array([_CLASS_GALAXY] * n_gal + ["STAR"] * n_star + ["QSO"] * n_qso, dtype=object)
    z = np.empty(n)
    z[:n_low] = _volume_weighted_z(rng, n_low, s.z_min, s.z_max, cosmo)
    z[n_low:n_gal] = _volume_weighted_z(rng, n_high, s.z_max, s.highz_max, cosmo)
    z[n_gal : n_gal + n_star] = rng.normal(0.0, 1e-4, n_star)
    z[n_gal + n_star :] = rng.uniform(0.15, 0.5, n_qso)
    subclass = np.array([""] * n, dtype=object)
    star_type = rng.integers(0, len(_STAR_TYPES), n_star)
    subclass[n_gal : n_gal + n_star] = [_STAR_TYPES[t][0] for t in star_type]
    subclass[n_gal + n_star :] = "BROADLINE"
    t_star = np.full(n, np.nan)
    t_star[n_gal : n_gal + n_star] = [_STAR_TYPES[t][1] for t in star_type]

    planted = {}
    for name in PLANTED_PARAMETERS:
        lo, hi = getattr(s, f"{name}_min"), getattr(s, f"{name}_max")
        v = np.full(n, np.nan)
        v[:n_gal] = lo + (hi - lo) * rng.random(n_gal)  # always drawn: fixing one keeps the rest
        planted[name] = v
    zwarn = np.zeros(n, dtype=np.int32)
    n_zw = _n_special(s.zwarning_fraction, n_gal) if s.zwarning_fraction > 0 else 0
    if n_zw:
        zwarn[rng.choice(n_low, size=min(n_zw, n_low), replace=False)] = 4
    r_fib = np.clip(rng.normal(s.r_fiber_mean, s.r_fiber_sigma, n), s.r_fiber_min, s.r_fiber_max)
    ap_corr = np.clip(rng.normal(s.ap_corr_mean, s.ap_corr_sigma, n), 0.2, 3.0)
    ap_corr[n_gal:] = np.nan

    # plates: random order, filled fibre-block by fibre-block
    order = rng.permutation(n)
    plate = np.empty(n, dtype=np.int32)
    mjd = np.empty(n, dtype=np.int32)
    fiber = np.empty(n, dtype=np.int32)
    plate_offset = np.empty(n, dtype=np.int32)
    for k, c in enumerate(range(0, n, s.fibers_per_plate)):
        chunk = order[c : c + s.fibers_per_plate]
        plate[chunk] = s.first_plate + k
        mjd[chunk] = rng.integers(_MJD_RANGE[0], _MJD_RANGE[1] + 1)
        fiber[chunk] = rng.permutation(MAX_FIBERS_PER_PLATE)[: len(chunk)] + 1
        plate_offset[chunk] = rng.integers(0, s.start_jitter_pix + 1)
    i_start = plate_offset + rng.integers(0, 4, n)
    i_end = N_GRID - rng.integers(0, s.end_jitter_pix + 1, n)
    z_err = (20.0 / C_KMS) * (1.0 + z) * np.exp(0.3 * rng.standard_normal(n))
    z_written = z + rng.standard_normal(n) * (s.redshift_error_kms / C_KMS) * (1.0 + z)

    cat = pd.DataFrame(
        {
            "plate": plate,
            "mjd": mjd,
            "fiber": fiber,
            "class": cls,
            "subclass": subclass,
            "z_true": z,
            "z": z_written,
            "z_err": z_err,
            "zwarning": zwarn,
            **planted,
            "r_fiber_mag": r_fib,
            "ap_corr_mag": ap_corr,
            "t_star": t_star,
            "i_start": i_start.astype(np.int32),
            "i_end": i_end.astype(np.int32),
        }
    )
    cat = cat.sort_values(["plate", "fiber"], kind="stable").reset_index(drop=True)
    cat.insert(0, "key", spectrum_key(cat["plate"], cat["mjd"], cat["fiber"]))
    return cat



def _catalog_noise(s: MockSpectraSettings, seed: int, truth: pd.DataFrame) -> pd.DataFrame:
    """Which galaxies GSWLC / MPA-JHU list and their noisy catalogue values."""
    rng = np.random.default_rng([seed, 2])
    n = len(truth)
    gal = np.flatnonzero((truth["class"] == _CLASS_GALAXY).to_numpy())
    noise = rng.standard_normal((n, 4))

    def pick(frac: float, among: np.ndarray) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        k = min(_n_special(frac, len(among)), len(among))
        out[rng.choice(among, size=k, replace=False)] = True
        return out

    in_gswlc = np.zeros(n, dtype=bool)
    in_gswlc[gal] = True
    in_gswlc &= ~pick(s.gswlc_missing_fraction, gal)
    sfr_missing = pick(s.gswlc_sfr_missing_fraction, np.flatnonzero(in_gswlc))
    oh_missing = pick(s.oh_missing_fraction, gal)
    out = pd.DataFrame(
        {
            "in_gswlc": in_gswlc,
            "gswlc_sfr_missing": sfr_missing,
            "gswlc_log_mstar": truth["log_mstar"].to_numpy() + s.gswlc_mass_noise * noise[:, 0],
            "gswlc_log_sfr": np.where(
                sfr_missing, np.nan, truth["log_sfr"].to_numpy() + s.gswlc_sfr_noise * noise[:, 1]
            ),
            "gswlc_av": np.clip(truth["a_v"].to_numpy() + s.gswlc_av_noise * noise[:, 2], 0, None),
            "mpajhu_oh": np.where(
                oh_missing, np.nan, truth["oh_p50"].to_numpy() + s.oh_noise * noise[:, 3]
            ),
        }
    )
    return out
