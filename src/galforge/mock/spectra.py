"""Mock SDSS galaxy spectra with a small number of planted physical parameters.

:func:`write_spectra_mock` writes, under one root folder,

* ``spectra/<plate:04d>/spec-PLATE-MJD-FIBER.fits``: one file per spectrum in
  the SDSS DR8+ *spec-lite* layout (HDU 0 header with ``PLATEID``, ``MJD``,
  ``FIBERID``; HDU 1 ``COADD`` with ``flux, loglam, ivar, and_mask, or_mask,
  wdisp, sky, model`` and the real files' FITS formats; HDU 2 ``SPECOBJ`` with a
  subset of the real columns, same formats), observed frame, flux in
  1e-17 erg/s/cm²/Å, vacuum wavelengths on the SDSS grid
  ``loglam = 3.5797 + 1e-4 i``;
* ``gswlc.fits``: the galaxies' stellar masses, SFRs and A_V in the GSWLC-X2
  layout (Salim et al. 2016, 2018), written by
  :func:`galforge.archives.gswlc.write_gswlc`;
* ``mpajhu/gal_info_dr7_v5_2.fit.gz`` + ``mpajhu/gal_fiboh_dr7_v5_2.fits.gz``:
  12+log(O/H) in the MPA-JHU DR7 layout (row-aligned files, ``MEDIAN``),
  written by :func:`galforge.archives.sdss.write_mpajhu_oh`;
* ``truth.parquet``: per spectrum the planted parameters, the derived
  properties and a few noiseless measurements (schema metadata
  ``galforge.planted_parameters`` and ``galforge.lines`` hold
  :data:`PLANTED_PARAMETERS` and :data:`LINES` as JSON);
* ``summary.json``: counts, settings, timings.

Every random number comes from ``numpy`` generators seeded from ``seed``
(catalogue ``[seed, 0]``, spectra in fixed chunks of :data:`CHUNK` objects
``[seed, 1, chunk]``, catalogue noise ``[seed, 2]``, plates ``[seed, 3]``), so
the same seed and
settings give the same files whether the spectra are generated at once
(:func:`generate_spectra_mock`) or chunk by chunk while writing.

Planted parameters (``P = 4``; independent, uniform over the ranges of
:class:`MockSpectraSettings`; a range with ``min == max`` fixes that parameter,
so ``P`` = the number of non-degenerate ranges, :attr:`MockSpectraSettings.n_params`)

``log_age`` [8.7, 10.1] (log10 yr, light-weighted age)
    The continuum (and the line EWs through Υ, below). With
    ``a = (log_age - 8.7) / 1.4``, the
    rest-frame continuum is ``C(λ) = f_y Y(λ) + (1 - f_y) O(λ)``, with the light
    fraction at 6200 Å of the young template ``f_y = 0.85 (1 - a)^1.5`` (``a``
    clipped to [0, 1]). ``Y`` (A-star-like) is a 9500 K blackbody with a Balmer
    jump (45 % below 3680 Å) and Balmer absorption lines Hα ... H12 (EW 4-9 Å);
    ``O`` (K-giant-like) is a 4500 K blackbody with a 4000 Å break (35 %), blue
    blanketing (12 % below 4500 Å) and metal absorption (Ca H+K, G band, Mg b,
    Fe 5270/5335, Na D, TiO 7050, Ca triplet, weak Balmer). Both templates are
    normalised to 1 at 6200 Å, features are Gaussians of fixed width in Å
    (:func:`continuum_templates`). The narrow-band 4000 Å break (Balogh et al.
    1999, 3850-3950 / 4000-4100 Å in f_ν) rises monotonically from Dn4000 = 1.13
    at ``a = 0`` to 1.96 at ``a = 1`` (up to 2.05 with A_V = 1). The
    mass-to-light ratio ``log Υ = -0.15 + 0.5 a`` (M_sun per solar r-band L_λ at
    6200 Å). The age scale (8.7, 10.1) is fixed: narrowing the range in the
    settings does not change the templates.
``log_ssfr`` [-11.0, -9.3] (log10 yr⁻¹)
    All nebular lines together: the unattenuated Hα luminosity is
    ``L(Hα) = 10^41.27 SFR`` erg/s (Kennicutt & Evans 2012, Kroupa IMF) and the
    unattenuated stellar continuum at 6200 Å is ``M* / Υ`` solar L_λ(6200) (the
    Sun's AB r magnitude 4.65, Willmer 2018, at 6166 Å gives
    L_sun,λ = :data:`L_SUN_6200` erg/s/Å), so the line-to-continuum ratio is
    ``EW_0(Hα) = 10^41.27 sSFR Υ / L_sun,λ`` Å (2.8-440 Å over the default
    ranges before dust; so at fixed sSFR the EWs also grow ×3 with age through
    Υ). Hβ = Hα/2.86, Hγ = 0.468 Hβ, Hδ = 0.259 Hβ (case B,
    10⁴ K; Osterbrock & Ferland 2006); the metal lines scale with Hβ, Hα.
``log_u`` [-3.6, -2.8] (log10 ionisation parameter)
    Line ratios along the star-forming sequence, with ``x = (log_u + 3.2) / 0.4``:
    ``N2 = log([NII]6585/Hα) = -0.75 - 0.45 x``,
    ``O3 = log([OIII]5008/Hβ) = 0.61 / (N2 - 0.05) + 1.15`` (0.15 dex below the
    Kauffmann et al. 2003 demarcation, so every mock galaxy is star-forming),
    ``log([SII]6718+6733)/Hα = -0.45 - 0.25 x``,
    ``log([OII]3727+3730)/Hβ = 0.40 - 0.10 x``; doublet ratios are fixed:
    [OIII] 5008/4960 = 2.98 and [NII] 6585/6550 = 2.94 (Storey & Zeippen 2000),
    [SII] 6718/6733 = 1.35 and [OII] 3730/3727 = 1.3 (n_e ~ 100 cm⁻³).
    [OIII]/Hβ rises (-0.59 → +0.66 dex) while [NII]/Hα falls (-0.3 → -1.2).
``a_v`` [0, 1] (mag, stellar continuum attenuation)
    Calzetti et al. (2000) curve ``k(λ)`` with ``R_V = 4.05`` on the continuum:
    ``10^(-0.4 a_v k(λ) / R_V)``; the lines see ``E(B-V)_gas = E(B-V)_star / 0.44``
    (Calzetti 2000) through the same curve, so the Balmer decrement
    ``Hα/Hβ = 2.86 · 10^(0.4 (k(Hβ) - k(Hα)) E(B-V)_gas)`` runs from 2.86 to 5.5.

The four are drawn independently (``lo + (hi - lo) u`` with one uniform ``u``
per galaxy and parameter, always drawn, so fixing one parameter leaves every
other draw unchanged). Nothing else shapes the rest-frame spectrum: the gas
velocity dispersion (``sigma_gas_kms``), the instrumental resolution
(``wdisp_pix``, constant in pixels, i.e. in velocity), the templates and the
line-ratio laws are the same for every galaxy. Redshift, fibre magnitude (the
overall normalisation), noise, sky and masks vary, as in real data.

Default line width: ``sigma_gas_kms = 150`` (with the instrument, σ = 164 km/s
= 2.4 pixels). Resampling to a rest-frame grid of nearly the SDSS pixel size
makes the sampled line peaks depend on the sub-pixel phase, i.e. on z: for the
same galaxy at z and at z + 1e-4, the rest-frame normalised spectra (resampled
flux-conservingly to 4000 pixels over 3400-8400 Å) differ by a χ² (S/N 16 per
pixel) with median 2.6 and maximum 780 (strongest lines) at 150 km/s, against a
median of 12 and maximum 3300 at 100 km/s. That z-dependence is a nuisance no
planted parameter explains, so the default takes the broader (still realistic)
lines.

Derived properties (truth table; written with noise into the catalogues)
    * Normalisation: the fibre magnitude ``r_fiber ~ N(r_fiber_mean,
      r_fiber_sigma)`` clipped to [r_fiber_min, r_fiber_max] (AB, synthetic
      r band approximated by a smooth top hat 5500-6900 Å) sets the observed flux;
      the fibre-to-total correction ``ap_corr ~ N(ap_corr_mean, ap_corr_sigma)``
      mag (clipped to [0.2, 3]).
    * ``log_mstar = log Υ + log10(L_6200 / L_sun,λ)``, with ``L_6200`` the total
      (fibre × 10^(0.4 ap_corr)) unattenuated rest-frame L_λ at 6200 Å implied by
      the observed flux and the luminosity distance (flat ΛCDM, ``omega_m``,
      ``hubble_h``).
    * ``log_sfr = log_ssfr + log_mstar``.
    * ``oh_p50 = 8.90 + 0.57 N2`` (Pettini & Pagel 2004 N2 calibration of the
      planted ratio): 8.73 → 8.22 as ``log_u`` rises.
    * Catalogue values: GSWLC ``LOGMSTAR``, ``LOGSFR_SED``, ``AV`` = truth +
      Gaussian noise (``gswlc_mass_noise``, ``gswlc_sfr_noise``,
      ``gswlc_av_noise``); MPA-JHU ``MEDIAN`` = ``oh_p50`` + N(0, ``oh_noise``).
      A fraction ``gswlc_missing_fraction`` of galaxies is absent from GSWLC,
      ``gswlc_sfr_missing_fraction`` has -99 SFR, ``oh_missing_fraction`` has
      -99.9 O/H.

Observation
    * ``z``: galaxies uniform in comoving volume in [z_min, z_max]; a fraction
      ``highz_fraction`` in (z_max, highz_max]; stars (``star_fraction``, class
      STAR, 3900-9600 K blackbodies with Balmer/metal absorption, |cz| ~ 30 km/s)
      and quasars (``qso_fraction``, class QSO, power law f_λ ∝ λ^-1.5 with broad
      Balmer and Mg II lines, 0.15 < z < 0.5): at least one of each when the
      fraction is positive. ``zwarning_fraction`` of the galaxies get
      ``ZWARNING = 4`` (SMALL_DELTA_CHI2). The written ``Z`` is the true redshift
      plus N(0, ``redshift_error_kms``/c (1+z)) (default 0: exact).
    * Grid: pixels ``i_start ... i_end - 1`` of ``loglam = 3.5797 + 1e-4 i``
      (i < :data:`N_GRID`, 3800-9204 Å); ``i_start`` = a per-plate offset
      (0..``start_jitter_pix``) + per-fibre 0..3; ``i_end = N_GRID -`` 0..
      ``end_jitter_pix``.
    * Lines: Gaussians in velocity, ``σ² = sigma_gas_kms² + (69.03 wdisp_pix)²``
      km²/s², integrated over each pixel (erf), vacuum wavelengths (:data:`LINES`).
    * Sky (column ``sky``, already subtracted from ``flux``): a smooth continuum
      (node values read off a median-filtered real SDSS sky spectrum) times a
      per-plate factor ``exp(N(0, sky_scatter))``, plus :data:`SKY_LINES` (Hg,
      [OI] 5579/6302/6366, Na D and OH, vacuum, at the instrumental width).
    * Noise: ``σ² = s_p [a(λ) (max(model, 0) + sky) + b(λ)]`` (fits of
      1/ivar against model + sky on real spectra: ``a`` ≈ 0.03 rising to the
      blue, the dichroic at 6000 Å and the red end, ``b`` a blue read-noise
      term), ``s_p = noise_scale · exp(N(0, plate_noise_scatter))`` per plate;
      ``ivar = 1/σ²``, ``flux = model + sky residual + σ N(0, 1)``.
    * Sky-subtraction residuals at every sky line: ``F_s [(1 + ε) G(λ - δ) - G(λ)]``
      with ``ε ~ N(0, sky_residual_frac)``, ``δ ~ N(0, sky_shift_pix)`` pixels,
      independent per spectrum and line; they are not in ``ivar`` (as in SDSS).
    * Masks (SDSS ``SPPIXMASK`` bit values, :data:`SPPIXMASK`): BRIGHTSKY where
      ``sky > model + 10 σ`` and ``sky > 1.25 median(sky, 99 px)`` (the pipeline's
      definition); BADSKYCHI where the sky residual exceeds 5 σ; cosmic-ray hits
      (``cosmic_rate`` per pixel, 1-2 pixels, a positive spike left in ``flux``,
      ``ivar = 0``, FULLREJECT); with probability ``bad_chunk_fraction`` one
      bad-column run of 5..``bad_chunk_max_pix`` pixels (``flux = 0``,
      ``ivar = 0``, NODATA | FULLREJECT | NEARBADPIXEL). ``or_mask`` = ``and_mask``
      plus random PARTIALREJECT / COMBINEREJ / SCATTEREDLIGHT bits on a fraction
      ``or_mask_rate`` of pixels. Every pixel with ``ivar = 0`` has a mask bit.
    * ``model`` column: the noiseless galaxy spectrum (no sky residual);
      ``wdisp`` column: ``wdisp_pix``.

Truth table (:data:`TRUTH_COLUMNS`; NaN for stars and quasars)
    ``key, plate, mjd, fiber``; ``z`` (as written) and ``z_true``; ``class``,
    ``subclass``, ``zwarning``; the planted ``log_age, log_ssfr, log_u, a_v``;
    the derived ``log_mstar, log_sfr, oh_p50``; from the noiseless rest-frame
    model: ``d4000`` (Dn4000, lines included), ``ew_halpha`` (rest EW [Å] of the
    attenuated Hα over the attenuated continuum at 6564.61 Å),
    ``balmer_decrement`` (attenuated Hα/Hβ), ``log_o3hb`` and ``log_n2ha``
    (intrinsic, before dust), ``log_ml`` (log Υ), ``young_fraction`` (f_y);
    ``r_fiber_mag``, ``ap_corr_mag``; ``snr_median_r`` (median flux·√ivar over
    observed 5600-6800 Å), ``n_bad_pixels`` (ivar = 0 inside the file's range);
    ``in_gswlc``; ``selectable`` (what the contract's default selection keeps:
    GALAXY, 0 < z < 0.1, ZWARNING = 0, in GSWLC with finite M* and SFR);
    ``path`` (relative to the root).

Identifiers
    Spectra in random order fill plates of ``fibers_per_plate`` (≤ 640) distinct
    random fibres 1..640, plates numbered from ``first_plate``, each with one
    random DR7-era MJD. ``SPECOBJID`` packs them as DR8 does (``plate << 50 |
    fiber << 38 | (mjd - 50000) << 24 | 26 << 10``). The truth key is
    ``(plate * 10^5 + mjd) * 10^3 + fiber`` (as ``galforge.archives.sdss``).

Speed (one core of the 2-core development machine): 5000 spectra (0.67 GB of
files) generates in ~5 s and writes in ~7 s (12-22 s in all,
depending on the load); FITS files are written by a small dedicated writer
(:func:`write_spec_lite`, ~0.6 ms per file) because astropy's
``HDUList.writeto`` costs ~16 ms per file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.special import erf

from galforge.archives.sdss_pixmask import PIXMASK_BITS
from galforge.cosmology import C_KMS, Cosmology
from galforge.io import atomic_path

log = logging.getLogger("galforge.mock")

__all__ = [
    "CHUNK",
    "LINES",
    "L_SUN_6200",
    "MockSpectra",
    "MockSpectraSettings",
    "N_GRID",
    "PLANTED_PARAMETERS",
    "PRESETS",
    "SDSS_DLOGLAM",
    "SDSS_LOGLAM0",
    "SKY_LINES",
    "SPPIXMASK",
    "calzetti_k",
    "continuum_templates",
    "dn4000",
    "generate_spectra_mock",
    "line_ratios",
    "log_mass_to_light",
    "settings_for_scale",
    "spectrum_key",
    "write_spec_lite",
    "write_spectra_mock",
    "young_fraction",
]

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

#: log10 wavelength [Å] of pixel 0 of the SDSS spectrograph grid (vacuum).
SDSS_LOGLAM0 = 3.5797
#: log10 wavelength step per SDSS pixel (69.03 km/s).
SDSS_DLOGLAM = 1.0e-4
#: Number of pixels of the common grid (pixel N_GRID - 1 is at 9204 Å).
N_GRID = 3843
#: Velocity width of one SDSS pixel [km/s].
KMS_PER_PIXEL = C_KMS * math.log(10.0) * SDSS_DLOGLAM
#: Objects per generation chunk (fixed: the random streams are per chunk).
CHUNK = 256


class Line(NamedTuple):
    """A nebular emission line: name and vacuum rest wavelength [Å]."""

    name: str
    wavelength: float


#: Nebular emission lines of the galaxy model (vacuum wavelengths, SDSS line list).
LINES: tuple[Line, ...] = (
    Line("[OII]3727", 3727.092),
    Line("[OII]3730", 3729.875),
    Line("Hdelta", 4102.89),
    Line("Hgamma", 4341.68),
    Line("Hbeta", 4862.68),
    Line("[OIII]4960", 4960.295),
    Line("[OIII]5008", 5008.240),
    Line("[NII]6550", 6549.86),
    Line("Halpha", 6564.61),
    Line("[NII]6585", 6585.27),
    Line("[SII]6718", 6718.29),
    Line("[SII]6733", 6732.67),
)
_LINE_INDEX = {ln.name: i for i, ln in enumerate(LINES)}
_ALL_LINES = tuple(ln.name for ln in LINES)

#: The planted parameters: what each one is and what it drives in the spectrum.
#: ``lines`` lists the emission lines (names of :data:`LINES`) whose strength or
#: ratio it sets; ``features`` the continuum features it shapes.
PLANTED_PARAMETERS: dict[str, dict[str, Any]] = {
    "log_age": {
        "description": "log10 light-weighted stellar age [yr]: young/old template mix",
        "unit": "dex(yr)",
        "lines": (),
        "features": (
            "4000 A break (Dn4000 1.13-1.96, 2.05 with dust)",
            "Balmer absorption Halpha..H12",
            "Ca H+K 3934/3970",
            "G band 4306",
            "Mg b 5177",
            "Na D 5896",
            "continuum colour",
            "mass-to-light ratio: log M* and, at fixed sSFR, every line EW (x3 over the range)",
        ),
    },
    "log_ssfr": {
        "description": "log10 specific star-formation rate [1/yr]: all nebular line "
        "strengths relative to the continuum (L(Halpha) = 10^41.27 SFR)",
        "unit": "dex(1/yr)",
        "lines": _ALL_LINES,
        "features": ("emission-line equivalent widths",),
    },
    "log_u": {
        "description": "log10 ionisation parameter: [OIII]/Hbeta up, [NII]/Halpha, "
        "[SII]/Halpha and [OII]/Hbeta down (star-forming sequence)",
        "unit": "dex",
        "lines": (
            "[OIII]4960",
            "[OIII]5008",
            "[NII]6550",
            "[NII]6585",
            "[SII]6718",
            "[SII]6733",
            "[OII]3727",
            "[OII]3730",
        ),
        "features": ("BPT line ratios", "metallicity 12+log(O/H) (PP04 N2)"),
    },
    "a_v": {
        "description": "stellar V-band attenuation [mag], Calzetti (2000); gas "
        "E(B-V) = E(B-V)_star / 0.44",
        "unit": "mag",
        "lines": _ALL_LINES,
        "features": (
            "continuum tilt",
            "Balmer decrement Halpha/Hbeta 2.86-5.5",
            "line attenuation, strongest for [OII]",
        ),
    },
}

#: SDSS spectroscopic pixel-mask bits (``SPPIXMASK``, idlutils ``sdssMaskbits.par``; bits 0-15
#: per fibre, 16-31 per pixel): the archive's table (:data:`galforge.archives.sdss_pixmask.PIXMASK_BITS`).
SPPIXMASK: dict[str, int] = PIXMASK_BITS


def _bit(name: str) -> int:
    return 1 << SPPIXMASK[name]


# fmt: off
#: Night-sky emission lines (observed vacuum wavelength [Å], line flux
#: [1e-17 erg/s/cm²] per fibre), read off a real SDSS sky spectrum (peaks of
#: the sky minus its 101-pixel median, rounded): Hg I 4359/5462, [OI] 5579,
#: Na D, [OI] 6302/6366, O2 and OH bands redwards of 6800 Å.
SKY_LINES: tuple[tuple[float, float], ...] = (
    (4047.6, 50.0), (4359.1, 120.0), (5200.0, 40.0), (5461.3, 105.0),
    (5578.9, 3080.0), (5689.8, 70.0), (5891.6, 230.0), (5897.6, 210.0),
    (6302.0, 770.0), (6365.5, 250.0), (6831.2, 100.0), (6866.0, 105.0),
    (6924.7, 45.0), (6950.2, 55.0), (7242.7, 280.0), (7277.8, 220.0),
    (7286.2, 75.0), (7318.1, 120.0), (7343.4, 165.0), (7370.6, 125.0),
    (7402.9, 65.0), (7526.6, 135.0), (7573.6, 78.0), (7599.8, 90.0),
    (7629.6, 70.0), (7717.9, 350.0), (7751.8, 250.0), (7796.5, 100.0),
    (7823.5, 150.0), (7854.2, 215.0), (7915.9, 330.0), (7923.2, 135.0),
    (7967.1, 190.0), (7994.7, 260.0), (8027.9, 190.0), (8064.9, 77.0),
    (8283.2, 300.0), (8290.9, 325.0), (8300.4, 300.0), (8346.4, 620.0),
    (8354.1, 290.0), (8400.4, 400.0), (8431.4, 475.0), (8466.4, 320.0),
    (8507.5, 165.0), (8629.8, 610.0), (8661.6, 590.0), (8671.6, 425.0),
    (8761.9, 485.0), (8770.0, 600.0), (8780.1, 460.0), (8828.8, 980.0),
    (8838.9, 330.0), (8887.9, 640.0), (8904.3, 215.0), (8920.7, 705.0),
    (8945.4, 165.0), (8959.8, 510.0), (9003.3, 275.0), (9051.1, 160.0),
)
# fmt: on
# fmt: off
#: Sky continuum [1e-17 erg/s/cm²/Å] at observed wavelengths [Å] (median-filtered
#: real SDSS sky, rounded), interpolated linearly.
_SKY_CONT_NODES = (
    (3800.0, 5.5), (3900.0, 5.7), (4500.0, 8.2), (5000.0, 8.1), (5500.0, 8.1),
    (6000.0, 9.5), (6500.0, 7.1), (7000.0, 6.2), (7500.0, 6.5), (8000.0, 8.3),
    (8500.0, 6.0), (9000.0, 6.1), (9300.0, 6.1),
)
# fmt: on

#: Solar r-band L_λ [erg/s/Å]: AB absolute magnitude 4.65 (Willmer 2018) at 6166 Å.
L_SUN_6200 = (
    4.0
    * math.pi
    * (10.0 * 3.0856775814913673e18) ** 2
    * 10.0 ** (-0.4 * (4.65 + 48.60))
    * 2.99792458e18
    / 6166.0**2
)
#: log10 L(Hα)/SFR [erg/s per Msun/yr] (Kennicutt & Evans 2012, Kroupa IMF).
LOG_HALPHA_PER_SFR = 41.27
_MPC_CM = 3.0856775814913673e24
_C_AA = 2.99792458e18  # Å/s
_R_V = 4.05
_GAS_STAR_EBV = 0.44
_HA_HB = 2.86
_RUN2D_CODE = 26
_MJD_RANGE = (51578, 54663)  # DR7 spectroscopic MJDs
_MAX_FIBERS = 640

# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


def _f(
    default: float,
    lo: float,
    hi: float,
    doc: str,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
) -> Any:
    return field(
        default=default,
        metadata={"range": (lo, hi, lo_open, hi_open), "doc": doc, "integer": integer},
    )


@dataclass(frozen=True)
class MockSpectraSettings:
    """Configuration of the mock spectra (see the module docstring for the model).

    Build it with :meth:`from_dict` (rejects unknown keys) or
    :func:`settings_for_scale`; every field is range-checked on construction and
    a bad value raises :class:`ValueError` naming the key.
    """

    n_spectra: int = _f(5000, 10, 1_000_000, "spectra written (all classes)", integer=True)
    star_fraction: float = _f(0.01, 0.0, 0.2, "fraction of stars (class STAR)")
    qso_fraction: float = _f(0.01, 0.0, 0.2, "fraction of quasars (class QSO)")
    highz_fraction: float = _f(0.02, 0.0, 0.3, "fraction of galaxies at z_max < z <= highz_max")
    zwarning_fraction: float = _f(0.005, 0.0, 0.2, "fraction of galaxies with ZWARNING = 4")
    z_min: float = _f(0.01, 0.0, 0.5, "lowest galaxy redshift", lo_open=True)
    z_max: float = _f(0.1, 0.0, 0.5, "highest redshift of the main galaxy sample", lo_open=True)
    highz_max: float = _f(0.15, 0.0, 0.5, "highest redshift of the rejectable galaxies")
    # planted parameters
    log_age_min: float = _f(8.7, 8.0, 10.3, "lower log10 age [yr]")
    log_age_max: float = _f(10.1, 8.0, 10.3, "upper log10 age [yr]")
    log_ssfr_min: float = _f(-11.0, -16.0, -8.0, "lower log10 sSFR [1/yr]")
    log_ssfr_max: float = _f(-9.3, -16.0, -8.0, "upper log10 sSFR [1/yr]")
    log_u_min: float = _f(-3.6, -4.5, -2.0, "lower log10 ionisation parameter")
    log_u_max: float = _f(-2.8, -4.5, -2.0, "upper log10 ionisation parameter")
    a_v_min: float = _f(0.0, 0.0, 3.0, "lower stellar A_V [mag]")
    a_v_max: float = _f(1.0, 0.0, 3.0, "upper stellar A_V [mag]")
    # line widths
    sigma_gas_kms: float = _f(150.0, 10.0, 500.0, "gas velocity dispersion [km/s]")
    wdisp_pix: float = _f(0.95, 0.5, 2.0, "instrumental LSF sigma [pixels of 69 km/s]")
    # normalisation
    r_fiber_mean: float = _f(18.2, 14.0, 22.0, "mean fibre r magnitude (AB)")
    r_fiber_sigma: float = _f(0.5, 0.0, 3.0, "scatter of the fibre r magnitude")
    r_fiber_min: float = _f(16.8, 12.0, 22.0, "brightest fibre r magnitude")
    r_fiber_max: float = _f(19.6, 12.0, 23.0, "faintest fibre r magnitude")
    ap_corr_mean: float = _f(1.3, 0.2, 3.0, "mean fibre-to-total magnitude correction")
    ap_corr_sigma: float = _f(0.3, 0.0, 1.0, "scatter of the aperture correction [mag]")
    omega_m: float = _f(0.3, 0.05, 1.0, "Omega_m of the flat LCDM luminosity distance")
    hubble_h: float = _f(0.7, 0.3, 1.2, "h of the luminosity distance (Mpc = h^-1 Mpc / h)")
    # noise, sky, masks
    noise_scale: float = _f(1.0, 0.0, 100.0, "multiplies the variance model", lo_open=True)
    plate_noise_scatter: float = _f(0.15, 0.0, 1.0, "ln scatter of the variance per plate")
    sky_scatter: float = _f(0.25, 0.0, 2.0, "ln scatter of the sky level per plate")
    sky_residual_frac: float = _f(0.03, 0.0, 1.0, "sky-line residual amplitude (fraction)")
    sky_shift_pix: float = _f(0.05, 0.0, 2.0, "sky-line residual wavelength shift [pixels]")
    cosmic_rate: float = _f(3e-4, 0.0, 0.05, "cosmic-ray hits per pixel")
    bad_chunk_fraction: float = _f(0.1, 0.0, 1.0, "fraction of spectra with a bad-column run")
    bad_chunk_max_pix: int = _f(40, 5, 500, "longest bad-column run [pixels]", integer=True)
    or_mask_rate: float = _f(0.01, 0.0, 0.5, "fraction of pixels with extra or_mask bits")
    start_jitter_pix: int = _f(20, 0, 200, "largest per-plate start offset [px]", integer=True)
    end_jitter_pix: int = _f(8, 0, 200, "largest per-spectrum end trim [px]", integer=True)
    redshift_error_kms: float = _f(0.0, 0.0, 300.0, "noise on the written Z [km/s]")
    # identifiers
    fibers_per_plate: int = _f(640, 1, _MAX_FIBERS, "spectra per plate", integer=True)
    first_plate: int = _f(266, 1, 9000, "number of the first plate", integer=True)
    # catalogues
    gswlc_missing_fraction: float = _f(0.01, 0.0, 0.5, "galaxies absent from GSWLC")
    gswlc_sfr_missing_fraction: float = _f(0.005, 0.0, 0.5, "GSWLC rows with SFR = -99")
    gswlc_mass_noise: float = _f(0.05, 0.0, 1.0, "noise on GSWLC log M* [dex]")
    gswlc_sfr_noise: float = _f(0.1, 0.0, 1.0, "noise on GSWLC log SFR [dex]")
    gswlc_av_noise: float = _f(0.05, 0.0, 1.0, "noise on GSWLC A_V [mag]")
    oh_noise: float = _f(0.03, 0.0, 1.0, "noise on the MPA-JHU 12+log(O/H) [dex]")
    oh_missing_fraction: float = _f(0.01, 0.0, 1.0, "galaxies with O/H = -99.9")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            lo, hi, lo_open, hi_open = f.metadata["range"]
            if isinstance(value, bool) or not isinstance(
                value, int | float | np.integer | np.floating
            ):
                raise ValueError(f"mock spectra setting {f.name!r} must be a number, got {value!r}")
            v = float(value)
            if not math.isfinite(v):
                raise ValueError(f"mock spectra setting {f.name!r} must be finite, got {value!r}")
            if f.metadata["integer"] and v != round(v):
                raise ValueError(
                    f"mock spectra setting {f.name!r} must be an integer, got {value!r}"
                )
            too_low = v <= lo if lo_open else v < lo
            too_high = v >= hi if hi_open else v > hi
            if too_low or too_high:
                lb = "(" if lo_open else "["
                rb = ")" if hi_open else "]"
                raise ValueError(
                    f"mock spectra setting {f.name!r} = {value!r} is outside {lb}{lo}, {hi}{rb}"
                )
            object.__setattr__(self, f.name, int(round(v)) if f.metadata["integer"] else v)
        for a, b in [
            ("log_age_min", "log_age_max"),
            ("log_ssfr_min", "log_ssfr_max"),
            ("log_u_min", "log_u_max"),
            ("a_v_min", "a_v_max"),
        ]:
            if getattr(self, a) > getattr(self, b):
                raise ValueError(
                    f"mock spectra setting {b!r} = {getattr(self, b)} must not be below "
                    f"{a!r} = {getattr(self, a)}"
                )
        for a, b in [("z_min", "z_max"), ("z_max", "highz_max"), ("r_fiber_min", "r_fiber_max")]:
            if not getattr(self, a) < getattr(self, b):
                raise ValueError(
                    f"mock spectra setting {b!r} = {getattr(self, b)} must exceed "
                    f"{a!r} = {getattr(self, a)}"
                )
        if self.star_fraction + self.qso_fraction + self.highz_fraction > 0.5:
            raise ValueError(
                "mock spectra settings 'star_fraction' + 'qso_fraction' + 'highz_fraction' "
                "must not exceed 0.5"
            )

    @property
    def n_params(self) -> int:
        """Number of planted parameters that vary (ranges with max > min)."""
        return len(self.varying_parameters)

    @property
    def varying_parameters(self) -> tuple[str, ...]:
        """Names of the planted parameters whose range is not degenerate."""
        return tuple(
            name
            for name in PLANTED_PARAMETERS
            if getattr(self, f"{name}_max") > getattr(self, f"{name}_min")
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> MockSpectraSettings:
        """Settings from a mapping of overrides; unknown keys raise ValueError naming them."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown mock spectra setting {unknown[0]!r}"
                + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
                + f"; known keys: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> MockSpectraSettings:
        return dataclasses.replace(self, **changes)


#: Scale presets: overrides of the :class:`MockSpectraSettings` defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # 200 spectra on 4 plates of 50 (so that per-plate sharding has something to split)
    "tiny": {"n_spectra": 200, "fibers_per_plate": 50},
    # 3000 spectra on 5 plates (the demo grid of 12 models trains in a few minutes on 2 cores)
    "demo": {"n_spectra": 3000},
    # 30000 spectra on 47 plates
    "paper": {"n_spectra": 30000},
}


def settings_for_scale(scale: str, overrides: dict[str, Any] | None = None) -> MockSpectraSettings:
    """Defaults, then ``PRESETS[scale]``, then ``overrides`` (unknown keys rejected)."""
    if scale not in PRESETS:
        raise ValueError(f"unknown mock scale {scale!r}; choose one of {sorted(PRESETS)}")
    return MockSpectraSettings.from_dict({**PRESETS[scale], **(overrides or {})})


# --------------------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------------------


def calzetti_k(wavelength: np.ndarray | float) -> np.ndarray:
    """Calzetti et al. (2000) starburst attenuation curve ``k(λ) = A_λ / E(B-V)``.

    Parameters
    ----------
    wavelength : array_like
        Rest-frame wavelength [Å]; the 0.12-0.63 µm and 0.63-2.2 µm branches are
        used (extrapolated beyond), ``R_V = 4.05``.
    """
    x = np.asarray(wavelength, dtype=float) / 1.0e4
    blue = 2.659 * (-2.156 + 1.509 / x - 0.198 / x**2 + 0.011 / x**3) + _R_V
    red = 2.659 * (-1.857 + 1.040 / x) + _R_V
    return np.where(x < 0.63, blue, red)


def _planck(wavelength: np.ndarray, temperature: float) -> np.ndarray:
    x = 1.438777e8 / (wavelength * temperature)  # hc/(λ k T), λ in Å
    return 1.0 / (wavelength**5 * np.expm1(x))


def _step(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(t))


def _absorption(
    wavelength: np.ndarray, features: Sequence[tuple[float, float, float]]
) -> np.ndarray:
    """Multiplicative absorption ``max(1 - Σ EW G(λ - λ_c; σ), 0.05)``."""
    tau = np.zeros_like(wavelength)
    for centre, ew, sigma in features:
        tau += (
            ew
            / (math.sqrt(2.0 * math.pi) * sigma)
            * np.exp(-0.5 * ((wavelength - centre) / sigma) ** 2)
        )
    return np.clip(1.0 - tau, 0.05, 1.0)


# fmt: off
# Balmer series (vacuum): Hα ... H12; A-star absorption (EW Å, σ Å)
_BALMER_ABS = (
    (6564.61, 5.0, 14.0), (4862.68, 8.0, 16.0), (4341.68, 8.0, 14.0), (4102.89, 9.0, 14.0),
    (3971.19, 9.0, 13.0), (3890.16, 8.0, 12.0), (3836.47, 7.0, 11.0), (3798.98, 6.0, 10.0),
    (3771.70, 5.0, 9.0), (3751.22, 4.0, 8.0),
)
# fmt: on
# fmt: off
# Old population: Ca H+K, G band, Fe, Mg b, Na D, TiO, Ca triplet, weak Balmer
_METAL_ABS = (
    (3934.78, 7.0, 6.0), (3969.59, 6.0, 6.0), (4305.61, 5.0, 8.0), (4384.0, 2.5, 6.0),
    (4531.0, 2.0, 10.0), (5176.7, 6.0, 10.0), (5270.0, 2.5, 6.0), (5335.0, 2.0, 6.0),
    (5895.6, 4.0, 6.0), (6497.0, 1.0, 6.0), (7050.0, 4.0, 40.0), (8500.4, 1.5, 5.0),
    (8544.4, 3.0, 5.0), (8664.5, 2.5, 5.0), (4102.89, 1.5, 8.0), (4341.68, 2.0, 9.0),
    (4862.68, 2.5, 9.0), (6564.61, 2.0, 9.0),
)
# fmt: on


def continuum_templates(wavelength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The young (``Y``) and old (``O``) rest-frame continuum templates, f_λ.

    Both are normalised to a mean of 1 over 6150-6250 Å (evaluated on a 0.5 Å
    grid), so a mix ``f_y Y + (1 - f_y) O`` is 1 at 6200 Å.

    Parameters
    ----------
    wavelength : array_like
        Rest-frame vacuum wavelength [Å].
    """
    lam = np.asarray(wavelength, dtype=float)
    ref = np.arange(6150.0, 6250.01, 0.5)

    def young(x: np.ndarray) -> np.ndarray:
        f = _planck(x, 9500.0) * (1.0 - 0.45 * _step((3680.0 - x) / 35.0))
        return f * _absorption(x, _BALMER_ABS + ((3934.78, 1.0, 5.0),))

    def old(x: np.ndarray) -> np.ndarray:
        f = _planck(x, 4500.0)
        f = (
            f
            * (1.0 - 0.35 * _step((4000.0 - x) / 20.0))
            * (1.0 - 0.12 * _step((4500.0 - x) / 250.0))
        )
        return f * _absorption(x, _METAL_ABS)

    return young(lam) / young(ref).mean(), old(lam) / old(ref).mean()


def young_fraction(log_age: np.ndarray, age_lo: float = 8.7, age_hi: float = 10.1) -> np.ndarray:
    """Light fraction at 6200 Å of the young template: ``0.85 (1 - a)^1.5``."""
    a = np.clip((np.asarray(log_age, dtype=float) - age_lo) / (age_hi - age_lo), 0.0, 1.0)
    return 0.85 * (1.0 - a) ** 1.5


def log_mass_to_light(log_age: np.ndarray, age_lo: float = 8.7, age_hi: float = 10.1) -> np.ndarray:
    """``log Υ = -0.15 + 0.5 a``: M_sun per solar L_λ(6200 Å), unattenuated."""
    a = np.clip((np.asarray(log_age, dtype=float) - age_lo) / (age_hi - age_lo), 0.0, 1.0)
    return -0.15 + 0.5 * a


def line_ratios(log_u: np.ndarray) -> dict[str, np.ndarray]:
    """Intrinsic line fluxes relative to Hβ for ionisation parameters ``log_u``.

    Returns
    -------
    dict
        One array per :data:`LINES` name, plus ``"N2"`` (log [NII]6585/Hα) and
        ``"O3"`` (log [OIII]5008/Hβ).
    """
    x = (np.asarray(log_u, dtype=float) + 3.2) / 0.4
    n2 = -0.75 - 0.45 * x
    o3 = 0.61 / (n2 - 0.05) + 1.15
    s2 = -0.45 - 0.25 * x
    o2 = 0.40 - 0.10 * x
    ha = np.full_like(x, _HA_HB)
    out = {
        "Hbeta": np.ones_like(x),
        "Halpha": ha,
        "Hgamma": np.full_like(x, 0.468),
        "Hdelta": np.full_like(x, 0.259),
        "[OIII]5008": 10.0**o3,
        "[OIII]4960": 10.0**o3 / 2.98,
        "[NII]6585": ha * 10.0**n2,
        "[NII]6550": ha * 10.0**n2 / 2.94,
        "[SII]6718": ha * 10.0**s2 * 1.35 / 2.35,
        "[SII]6733": ha * 10.0**s2 / 2.35,
        "[OII]3727": 10.0**o2 / 2.3,
        "[OII]3730": 10.0**o2 * 1.3 / 2.3,
        "N2": n2,
        "O3": o3,
    }
    return out


def dn4000(wavelength: np.ndarray, flux: np.ndarray, ivar: np.ndarray | None = None) -> np.ndarray:
    """Narrow 4000 Å break (Balogh et al. 1999): <f_ν>(4000-4100) / <f_ν>(3850-3950).

    Parameters
    ----------
    wavelength : array_like, shape (npix,) or (n, npix)
        Rest-frame wavelength [Å].
    flux : array_like, shape (n, npix) or (npix,)
        f_λ (any units).
    ivar : array_like, optional
        Pixels with ``ivar <= 0`` are left out of the band means.

    Returns
    -------
    numpy.ndarray
        Dn4000 per spectrum (NaN where a band has no usable pixel).
    """
    lam = np.asarray(wavelength, dtype=float)
    f = np.atleast_2d(np.asarray(flux, dtype=float))
    lam2 = np.broadcast_to(lam, f.shape)
    good = np.ones(f.shape, bool) if ivar is None else np.atleast_2d(ivar) > 0
    fnu = f * lam2**2
    blue = (lam2 > 3850.0) & (lam2 < 3950.0) & good
    red = (lam2 > 4000.0) & (lam2 < 4100.0) & good
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.sum(fnu * blue, axis=1) / np.sum(blue, axis=1)
        r = np.sum(fnu * red, axis=1) / np.sum(red, axis=1)
        return r / b


def spectrum_key(plate: Any, mjd: Any, fiber: Any) -> np.ndarray:
    """``(plate * 10^5 + mjd) * 10^3 + fiber`` as int64 (the study's spectrum key)."""
    p = np.asarray(plate, dtype=np.int64)
    m = np.asarray(mjd, dtype=np.int64)
    f = np.asarray(fiber, dtype=np.int64)
    return (p * 10**5 + m) * 10**3 + f


def _r_filter(wavelength: np.ndarray) -> np.ndarray:
    """Smooth top-hat stand-in for the SDSS r response (50 % at 5500 and 6900 Å)."""
    return _step((wavelength - 5500.0) / 60.0) * _step((6900.0 - wavelength) / 60.0)


def _var_a(wavelength: np.ndarray) -> np.ndarray:
    """Variance per unit (model + sky) flux of the noise model (1e-17 units)."""
    lam = wavelength
    return (
        0.030
        + 0.030 * np.exp(-(lam - 3800.0) / 350.0)
        + 0.020 * np.exp(-0.5 * ((lam - 6000.0) / 80.0) ** 2)
        + 0.030 * _step((lam - 8700.0) / 150.0)
    )


def _var_b(wavelength: np.ndarray) -> np.ndarray:
    """Flux-independent variance (read noise, blue throughput) of the noise model."""
    return 6.0 * np.exp(-(wavelength - 3800.0) / 450.0) + 0.05


# --------------------------------------------------------------------------------------
# Observed-frame grid helpers
# --------------------------------------------------------------------------------------


class _Grid:
    """The common observed grid and the fine rest-frame template tables (built once)."""

    def __init__(self) -> None:
        self.loglam = SDSS_LOGLAM0 + SDSS_DLOGLAM * np.arange(N_GRID, dtype=np.float64)
        self.wave = 10.0**self.loglam
        self.var_a = _var_a(self.wave)
        self.var_b = _var_b(self.wave)
        self.rfilt = _r_filter(self.wave)
        # rest-frame tables: log-spaced 2e-5 dex, 3000-9400 Å
        self.t_log0 = math.log10(3000.0)
        self.t_dlog = 2.0e-5
        n_t = int(math.ceil((math.log10(9400.0) - self.t_log0) / self.t_dlog)) + 2
        t_wave = 10.0 ** (self.t_log0 + self.t_dlog * np.arange(n_t))
        self.t_young, self.t_old = continuum_templates(t_wave)
        self.t_k = calzetti_k(t_wave)
        self.n_t = n_t
        nodes = np.array(_SKY_CONT_NODES)
        self.sky_cont = np.interp(self.wave, nodes[:, 0], nodes[:, 1])

    @functools.lru_cache(maxsize=8)  # noqa: B019 (one grid per process)
    def sky_lines(self, wdisp: float) -> np.ndarray:
        """:data:`SKY_LINES` on the observed grid at an LSF sigma of ``wdisp`` pixels."""
        out = np.zeros(N_GRID)
        half = max(8, math.ceil(5.0 * wdisp))
        for lam, flux in SKY_LINES:
            pc = (math.log10(lam) - SDSS_LOGLAM0) / SDSS_DLOGLAM
            idx, frac = _pixel_profile(np.array([pc]), wdisp, half)
            ok = (idx[0] >= 0) & (idx[0] < N_GRID)
            np.add.at(out, idx[0][ok], flux * frac[0][ok] / self.dlam[idx[0][ok]])
        return out

    @property
    def dlam(self) -> np.ndarray:
        """Pixel widths [Å] of the observed grid."""
        return self.wave * math.log(10.0) * SDSS_DLOGLAM

    def interp_table(self, table: np.ndarray, log_rest: np.ndarray) -> np.ndarray:
        """Linear interpolation of a rest-frame table at log10 wavelengths ``log_rest``."""
        pos = (log_rest - self.t_log0) / self.t_dlog
        np.clip(pos, 0.0, self.n_t - 1.000001, out=pos)
        i0 = pos.astype(np.int64)
        w = pos - i0
        return table[i0] * (1.0 - w) + table[i0 + 1] * w


_GRID: _Grid | None = None


def _grid() -> _Grid:
    global _GRID
    if _GRID is None:
        _GRID = _Grid()
    return _GRID


def _pixel_profile(
    centre_pix: np.ndarray, sigma_pix: float | np.ndarray, half_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices and pixel-integrated fractions of Gaussians centred at ``centre_pix``.

    Returns ``(idx, frac)`` of shape ``(n, 2 * half_width + 1)``; pixel ``i``
    spans ``[i - 0.5, i + 0.5]`` in pixel units.
    """
    c = np.asarray(centre_pix, dtype=float)[:, None]
    s = np.broadcast_to(np.asarray(sigma_pix, dtype=float), c.shape[:1])[:, None]
    idx = np.rint(c).astype(np.int64) + np.arange(-half_width, half_width + 1)[None, :]
    z_hi = (idx + 0.5 - c) / (math.sqrt(2.0) * s)
    z_lo = (idx - 0.5 - c) / (math.sqrt(2.0) * s)
    return idx, 0.5 * (erf(z_hi) - erf(z_lo))


def _add_lines(
    out: np.ndarray,
    log_centre: np.ndarray,
    flux: np.ndarray,
    sigma_pix: float | np.ndarray,
    dlam: np.ndarray,
    half_width: int,
) -> None:
    """Add pixel-integrated Gaussian lines (one per row) into ``out`` (n, N_GRID) in place.

    ``flux`` in the units of ``out`` × Å; ``dlam`` are the widths [Å] of the grid
    pixels in the frame of ``out``, shape (n, N_GRID) or (N_GRID,).
    """
    n = out.shape[0]
    pc = (log_centre - SDSS_LOGLAM0) / SDSS_DLOGLAM
    idx, frac = _pixel_profile(pc, sigma_pix, half_width)
    ok = (idx >= 0) & (idx < out.shape[1])
    idx_c = np.clip(idx, 0, out.shape[1] - 1)
    rows = np.broadcast_to(np.arange(n)[:, None], idx.shape)
    width = dlam[idx_c] if dlam.ndim == 1 else dlam[rows, idx_c]
    val = np.where(ok, flux[:, None] * frac / width, 0.0)
    out[rows, idx_c] += val  # indices are distinct within a row


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
        fiber[chunk] = rng.permutation(_MAX_FIBERS)[: len(chunk)] + 1
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
    derived: dict[str, np.ndarray] = {
        k: np.full(n, np.nan)
        for k in (
            "ew_halpha",
            "balmer_decrement",
            "log_o3hb",
            "log_n2ha",
            "log_ml",
            "young_fraction",
            "halpha_flux_rel",
            "d4000",
        )
    }
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


# --------------------------------------------------------------------------------------
# FITS writing
# --------------------------------------------------------------------------------------

_BLOCK = 2880

#: COADD columns (name, FITS format, big-endian numpy dtype), as in real spec-lite files.
COADD_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("flux", "E", ">f4"),
    ("loglam", "E", ">f4"),
    ("ivar", "E", ">f4"),
    ("and_mask", "J", ">i4"),
    ("or_mask", "J", ">i4"),
    ("wdisp", "E", ">f4"),
    ("sky", "E", ">f4"),
    ("model", "E", ">f4"),
)
#: SPECOBJ columns written (a subset of the real 126, with the real formats).
SPECOBJ_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("SPECOBJID", "22A", "S22"),
    ("PLATE", "J", ">i4"),
    ("MJD", "J", ">i4"),
    ("FIBERID", "J", ">i4"),
    ("CLASS", "6A", "S6"),
    ("SUBCLASS", "21A", "S21"),
    ("Z", "E", ">f4"),
    ("Z_ERR", "E", ">f4"),
    ("ZWARNING", "J", ">i4"),
    ("SN_MEDIAN_ALL", "E", ">f4"),
    ("WAVEMIN", "E", ">f4"),
    ("WAVEMAX", "E", ">f4"),
)
_COADD_DTYPE = np.dtype([(n, d) for n, _f, d in COADD_COLUMNS])
_COADD_COMMENT = (b"COMMENT Coadded spectrum".ljust(80),)
_SPECOBJ_DTYPE = np.dtype([(n, d) for n, _f, d in SPECOBJ_COLUMNS])


def _card_value(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return f"{'T' if value else 'F':>20}"
    if isinstance(value, int | np.integer):
        return f"{int(value):>20d}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"FITS header values must be finite, got {v}")
        text = repr(v).upper()
        if "." not in text and "E" not in text:
            text += ".0"
        if len(text) > 20:
            text = f"{v:.14G}"
            if "." not in text and "E" not in text:
                text += ".0"
        return f"{text:>20}"
    text = "'" + str(value).replace("'", "''").ljust(8) + "'"
    return f"{text:<20}"


def _card(key: str, value: Any = None, comment: str = "") -> bytes:
    if key in ("COMMENT", "HISTORY"):
        img = f"{key:<8}{comment}"
    else:
        img = f"{key:<8}= {_card_value(value)}"
        if comment:
            img += f" / {comment}"
    img = img[:80]
    if not img.isascii():
        raise ValueError(f"non-ASCII FITS card {key!r}")
    return img.ljust(80).encode("ascii")


def _header(cards: Sequence[bytes]) -> bytes:
    raw = b"".join(cards) + b"END".ljust(80)
    return raw + b" " * (-len(raw) % _BLOCK)


@functools.lru_cache(maxsize=256)
def _bintable_header(
    columns: tuple[tuple[str, str, str], ...],
    dtype: np.dtype,
    nrows: int,
    extname: str,
    extra: tuple[bytes, ...] = (),
) -> bytes:
    cards = [
        _card("XTENSION", "BINTABLE", "binary table extension"),
        _card("BITPIX", 8, "array data type"),
        _card("NAXIS", 2, "number of array dimensions"),
        _card("NAXIS1", dtype.itemsize, "length of dimension 1"),
        _card("NAXIS2", nrows, "length of dimension 2"),
        _card("PCOUNT", 0, "number of group parameters"),
        _card("GCOUNT", 1, "number of groups"),
        _card("TFIELDS", len(columns), "number of table fields"),
    ]
    for i, (name, fmt, _d) in enumerate(columns, start=1):
        cards.append(_card(f"TTYPE{i}", name))
        cards.append(_card(f"TFORM{i}", fmt))
    cards.append(_card("EXTNAME", extname))
    cards.extend(extra)
    return _header(cards)


def _data_block(arr: np.ndarray) -> bytes:
    raw = arr.tobytes()
    return raw + b"\0" * (-len(raw) % _BLOCK)


def _specobj_id(plate: int, mjd: int, fiber: int) -> str:
    v = (plate << 50) | (fiber << 38) | ((mjd - 50000) << 24) | (_RUN2D_CODE << 10)
    return f"{v:>22d}"


def write_spec_lite(
    dest: str | os.PathLike,
    coadd: dict[str, np.ndarray],
    specobj: dict[str, Any],
    primary: Sequence[tuple[str, Any, str]] = (),
) -> None:
    """Write one spectrum in the SDSS DR8+ spec-lite layout, atomically.

    A minimal FITS writer (headers formatted here, data as big-endian records):
    ~50× faster than building an ``astropy.io.fits.HDUList`` per file; the
    output reads back through astropy with ``output_verify`` clean.

    Parameters
    ----------
    dest : path
        ``.../spec-PLATE-MJD-FIBER.fits``.
    coadd : dict
        The eight :data:`COADD_COLUMNS`, equal-length 1-D arrays.
    specobj : dict
        One value per :data:`SPECOBJ_COLUMNS` name.
    primary : sequence of (key, value, comment)
        Extra primary-header cards (after ``PLATEID``, ``MJD``, ``FIBERID``,
        ``COEFF0``, ``COEFF1``, ``VACUUM``, ``BUNIT``).
    """
    n = len(coadd["flux"])
    rec = np.empty(n, dtype=_COADD_DTYPE)
    for name, _f, _d in COADD_COLUMNS:
        rec[name] = coadd[name]
    so = np.zeros(1, dtype=_SPECOBJ_DTYPE)
    for name, _f, _d in SPECOBJ_COLUMNS:
        so[name] = specobj[name]
    loglam0 = float(np.float64(coadd["loglam"][0]))
    p = [
        _card("SIMPLE", True, "conforms to FITS standard"),
        _card("BITPIX", 8, "array data type"),
        _card("NAXIS", 0, "number of array dimensions"),
        _card("EXTEND", True),
        _card("PLATEID", int(specobj["PLATE"]), "Plate Id"),
        _card("MJD", int(specobj["MJD"]), "MJD of observation"),
        _card("FIBERID", int(specobj["FIBERID"]), "Fiber number (1-640)"),
        _card("COEFF0", round(loglam0, 4), "Central wavelength (log10) of first pixel"),
        _card("COEFF1", SDSS_DLOGLAM, "Log10 dispersion per pixel"),
        _card("VACUUM", True, "Wavelengths are in vacuum"),
        _card("BUNIT", "1E-17 erg/cm^2/s/Ang"),
    ]
    p += [_card(k, v, c) for k, v, c in primary]
    blob = b"".join(
        [
            _header(p),
            _bintable_header(COADD_COLUMNS, _COADD_DTYPE, n, "COADD", _COADD_COMMENT),
            _data_block(rec),
            _bintable_header(SPECOBJ_COLUMNS, _SPECOBJ_DTYPE, 1, "SPECOBJ"),
            _data_block(so),
        ]
    )
    with atomic_path(dest) as tmp:
        tmp.write_bytes(blob)


# --------------------------------------------------------------------------------------
# Catalogue writers
# --------------------------------------------------------------------------------------


def _write_gswlc(truth: pd.DataFrame, dest: Path, s: MockSpectraSettings) -> None:
    """GSWLC-X2 table of the galaxies GSWLC lists (through the archive writer)."""
    from galforge.archives.gswlc import write_gswlc

    rows = truth[truth["in_gswlc"]]
    sfr = rows["gswlc_log_sfr"].to_numpy()
    ok = np.isfinite(sfr)
    write_gswlc(
        {
            "plate": rows["plate"].to_numpy().astype(np.int32),
            "mjd": rows["mjd"].to_numpy().astype(np.int32),
            "fiber": rows["fiber"].to_numpy().astype(np.int32),
            "z": rows["z"].to_numpy(),
            "log_mstar": rows["gswlc_log_mstar"].to_numpy(),
            "log_mstar_err": np.full(len(rows), max(s.gswlc_mass_noise, 0.01)),
            "log_sfr": sfr,  # NaN -> -99
            "log_sfr_err": np.where(ok, max(s.gswlc_sfr_noise, 0.01), np.nan),
            "av": rows["gswlc_av"].to_numpy(),
            "flag_sed": np.where(ok, 0, 1).astype(np.int32),
            "flag_mgs": np.ones(len(rows), dtype=np.int32),
        },
        dest,
    )


def _write_mpajhu(
    truth: pd.DataFrame, info_dest: Path, oh_dest: Path, s: MockSpectraSettings
) -> None:
    """MPA-JHU ``gal_info`` + ``gal_fiboh`` files (row-aligned) of every galaxy."""
    from galforge.archives.sdss import write_mpajhu_oh

    rows = truth[truth["class"] == _CLASS_GALAXY]
    write_mpajhu_oh(
        rows["plate"].to_numpy(),
        rows["mjd"].to_numpy(),
        rows["fiber"].to_numpy(),
        rows["mpajhu_oh"].to_numpy(),  # NaN -> -99.9
        info_dest,
        oh_dest,
        oh_err=max(s.oh_noise, 0.01),
        z=rows["z"].to_numpy(),
    )


def _write_truth(truth: pd.DataFrame, dest: Path, settings: MockSpectraSettings, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(truth, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta.update(
        {
            b"galforge.planted_parameters": json.dumps(PLANTED_PARAMETERS).encode(),
            b"galforge.lines": json.dumps({ln.name: ln.wavelength for ln in LINES}).encode(),
            b"galforge.settings": json.dumps(settings.to_dict()).encode(),
            b"galforge.seed": str(int(seed)).encode(),
        }
    )
    table = table.replace_schema_metadata(meta)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)


# fmt: off
#: Truth-table columns written to ``truth.parquet`` (in this order).
TRUTH_COLUMNS = (
    "key", "plate", "mjd", "fiber", "z", "z_true", "class", "subclass", "zwarning",
    *PLANTED_PARAMETERS,
    "log_mstar", "log_sfr", "oh_p50",
    "d4000", "ew_halpha", "balmer_decrement", "log_o3hb", "log_n2ha", "log_ml",
    "young_fraction", "r_fiber_mag", "ap_corr_mag", "snr_median_r", "n_bad_pixels",
    "in_gswlc", "selectable", "path",
)
# fmt: on


#: Marker file that makes a folder a spectra-mock folder (written before any spectrum).
MOCK_MARKER = ".galforge-spectra-mock"


def _clear_previous_mock(root: Path, keep: set[Path]) -> None:
    """Claim ``root`` for the mock and remove an earlier mock's leftovers.

    An earlier mock (marker present, possibly interrupted) loses its summary and
    the spectra that ``keep`` does not list; a folder with ``spec-*.fits`` files
    and no marker is refused.
    """
    existing = sorted((root / "spectra").glob("*/spec-*.fits")) if root.is_dir() else []
    marker = root / MOCK_MARKER
    if existing and not marker.exists():
        raise ValueError(
            f"{root}/spectra holds {len(existing)} spec-*.fits files but no {MOCK_MARKER}: "
            "not a galforge spectra mock folder, refusing to write into it"
        )
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text("galforge.mock.spectra\n")
    (root / "summary.json").unlink(missing_ok=True)
    stale = [p for p in existing if p not in keep]
    for p in stale:
        p.unlink()
    if stale:
        log.info("spectra mock: removed %d spectra of an earlier mock in %s", len(stale), root)


def write_spectra_mock(
    settings: MockSpectraSettings,
    root: str | os.PathLike,
    seed: int,
    progress: bool = True,
    cosmology: Cosmology | None = None,
) -> dict[str, Any]:
    """Generate the mock chunk by chunk and write every file under ``root``.

    Files: ``spectra/<plate:04d>/spec-PLATE-MJD-FIBER.fits``, ``gswlc.fits``,
    ``mpajhu/gal_info_dr7_v5_2.fit.gz``, ``mpajhu/gal_fiboh_dr7_v5_2.fits.gz``,
    ``truth.parquet``, ``summary.json`` (each written atomically; the summary
    last, so its presence marks a complete mock). The folder is first marked
    with :data:`MOCK_MARKER`; rewriting a marked folder removes the earlier
    summary and the earlier spectra this mock does not rewrite; a folder with
    ``spec-*.fits`` files but no marker is refused.

    Parameters
    ----------
    settings : MockSpectraSettings
    root : path
        Output folder (created).
    seed : int
        Seed of every random stream (see the module docstring).
    progress : bool
        Show a tqdm progress bar over the spectra.
    cosmology : Cosmology, optional
        As in :func:`generate_spectra_mock`.

    Returns
    -------
    dict
        The summary (counts per class, S/N, timings, paths, planted parameters).
    """
    from tqdm.auto import tqdm

    s = settings
    root = Path(root)
    t0 = time.perf_counter()
    cosmo = cosmology or Cosmology(Om0=s.omega_m)
    cat = _draw_catalog(s, seed, cosmo)
    n = len(cat)
    derived: dict[str, np.ndarray] = {}
    t_gen = 0.0
    t_write = 0.0
    paths = [
        root / f"spectra/{p:04d}/spec-{p:04d}-{m:05d}-{f:04d}.fits"
        for p, m, f in zip(cat["plate"], cat["mjd"], cat["fiber"], strict=True)
    ]
    _clear_previous_mock(root, set(paths))
    for d in {p.parent for p in paths}:
        d.mkdir(parents=True, exist_ok=True)
    loglam = _grid().loglam
    col = {c: cat[c].to_numpy() for c in cat.columns}
    primary = (
        ("ORIGIN", "galforge mock", "not real SDSS data"),
        ("MOCK", "spectra", "galforge.mock.spectra"),
        ("SEED", int(seed), "numpy Generator seed"),
    )
    bar = tqdm(total=n, desc="mock spectra", unit="spec", disable=not progress)
    it = _iter_chunks(s, seed, cat, cosmo)
    while True:
        t1 = time.perf_counter()
        try:
            sl, a, d = next(it)
        except StopIteration:
            break
        t2 = time.perf_counter()
        t_gen += t2 - t1
        for k, v in d.items():
            derived.setdefault(k, np.full(n, np.nan))[sl] = v
        ew = d["ew_halpha"]
        for j, k in enumerate(range(sl.start, sl.stop)):
            i0, i1 = int(col["i_start"][k]), int(col["i_end"][k])
            coadd = {
                "flux": a["flux"][j, i0:i1],
                "loglam": loglam[i0:i1],
                "ivar": a["ivar"][j, i0:i1],
                "and_mask": a["and_mask"][j, i0:i1],
                "or_mask": a["or_mask"][j, i0:i1],
                "wdisp": np.full(i1 - i0, s.wdisp_pix),
                "sky": a["sky"][j, i0:i1],
                "model": a["model"][j, i0:i1],
            }
            plate, mjd, fiber = int(col["plate"][k]), int(col["mjd"][k]), int(col["fiber"][k])
            specobj = {
                "SPECOBJID": _specobj_id(plate, mjd, fiber),
                "PLATE": plate,
                "MJD": mjd,
                "FIBERID": fiber,
                "CLASS": col["class"][k],
                "SUBCLASS": _subclass(col["class"][k], col["subclass"][k], ew[j]),
                "Z": float(col["z"][k]),
                "Z_ERR": float(col["z_err"][k]),
                "ZWARNING": int(col["zwarning"][k]),
                "SN_MEDIAN_ALL": float(d["sn_median_all"][j]),
                "WAVEMIN": float(10.0 ** loglam[i0]),
                "WAVEMAX": float(10.0 ** loglam[i1 - 1]),
            }
            write_spec_lite(paths[k], coadd, specobj, primary=primary)
        bar.update(sl.stop - sl.start)
        t_write += time.perf_counter() - t2
    bar.close()

    truth = _assemble_truth(s, seed, cat, derived)
    t3 = time.perf_counter()
    _write_gswlc(truth, root / "gswlc.fits", s)
    _write_mpajhu(
        truth,
        root / "mpajhu/gal_info_dr7_v5_2.fit.gz",
        root / "mpajhu/gal_fiboh_dr7_v5_2.fits.gz",
        s,
    )
    _write_truth(truth[list(TRUTH_COLUMNS)], root / "truth.parquet", s, seed)
    t_cat = time.perf_counter() - t3

    gal = truth["class"] == _CLASS_GALAXY
    low = gal & (truth["z"] < s.z_max)
    summary: dict[str, Any] = {
        "seed": int(seed),
        "n_spectra": int(n),
        "n_params": s.n_params,
        "planted_parameters": list(s.varying_parameters),
        "n_galaxy": int(gal.sum()),
        "n_galaxy_low_z": int(low.sum()),
        "n_galaxy_high_z": int((gal & ~low).sum()),
        "n_star": int((truth["class"] == "STAR").sum()),
        "n_qso": int((truth["class"] == "QSO").sum()),
        "n_zwarning": int((truth["zwarning"] != 0).sum()),
        "n_in_gswlc": int(truth["in_gswlc"].sum()),
        "n_selectable": int(truth["selectable"].sum()),
        "n_plates": int(truth["plate"].nunique()),
        "snr_median_r": float(np.nanmedian(truth.loc[low, "snr_median_r"])),
        "d4000_range": [float(truth.loc[gal, "d4000"].min()), float(truth.loc[gal, "d4000"].max())],
        "ew_halpha_percentiles_5_50_95": [
            float(v) for v in np.nanpercentile(truth.loc[gal, "ew_halpha"], [5, 50, 95])
        ],
        "planted": {
            k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
            for k, v in PLANTED_PARAMETERS.items()
        },
        "lines": {ln.name: ln.wavelength for ln in LINES},
        "seconds_generate": round(t_gen, 3),
        "seconds_write_spectra": round(t_write, 3),
        "seconds_catalogs": round(t_cat, 3),
        "seconds_total": round(time.perf_counter() - t0, 3),
        "settings": s.to_dict(),
        "root": str(root),
    }
    with atomic_path(root / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))
    log.info(
        "spectra mock: %d spectra (%d galaxies at z < %.2f) under %s in %.1f s "
        "(generate %.1f s, write %.1f s)",
        n,
        summary["n_galaxy_low_z"],
        s.z_max,
        root,
        summary["seconds_total"],
        t_gen,
        t_write,
    )
    return summary
