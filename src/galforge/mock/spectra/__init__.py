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
  written by :func:`galforge.archives.mpajhu.write_mpajhu_oh`;
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
    ``(plate * 10^5 + mjd) * 10^3 + fiber``
    (:func:`galforge.archives.sdss_spectra.spectrum_key`).

Speed (one core of the 2-core development machine): 5000 spectra (0.67 GB of
files) generates in ~5 s and writes in ~7 s (12-22 s in all,
depending on the load); FITS files are written by a small dedicated writer
(:func:`write_spec_lite`, ~0.6 ms per file) because astropy's
``HDUList.writeto`` costs ~16 ms per file.

Modules
    :mod:`~galforge.mock.spectra.templates` (grid, lines, rest-frame templates,
    dust), :mod:`~galforge.mock.spectra.sky` (sky, noise model, masks, the
    observed grid), :mod:`~galforge.mock.spectra.catalog` (the per-object draw),
    :mod:`~galforge.mock.spectra.simulate` (pixels and truth),
    :mod:`~galforge.mock.spectra.writers` (FITS files, catalogues, the mock
    folder); the settings are :class:`galforge.mock.settings.MockSpectraSettings`
    (re-exported here). Callers import from this package.
"""

from __future__ import annotations

from galforge.mock.settings import MockSpectraSettings
from galforge.mock.spectra.simulate import CHUNK, MockSpectra, generate_spectra_mock
from galforge.mock.spectra.sky import SKY_LINES, SPPIXMASK
from galforge.mock.spectra.templates import (
    L_SUN_6200,
    LINES,
    N_GRID,
    PLANTED_PARAMETERS,
    SDSS_DLOGLAM,
    SDSS_LOGLAM0,
    calzetti_k,
    continuum_templates,
    dn4000,
    line_ratios,
    log_mass_to_light,
    young_fraction,
)
from galforge.mock.spectra.writers import (
    COADD_COLUMNS,
    MOCK_MARKER,
    SPECOBJ_COLUMNS,
    TRUTH_COLUMNS,
    write_spec_lite,
    write_spectra_mock,
)

__all__ = [
    "CHUNK",
    "COADD_COLUMNS",
    "LINES",
    "L_SUN_6200",
    "MOCK_MARKER",
    "MockSpectra",
    "MockSpectraSettings",
    "N_GRID",
    "PLANTED_PARAMETERS",
    "SDSS_DLOGLAM",
    "SDSS_LOGLAM0",
    "SKY_LINES",
    "SPECOBJ_COLUMNS",
    "SPPIXMASK",
    "TRUTH_COLUMNS",
    "calzetti_k",
    "continuum_templates",
    "dn4000",
    "generate_spectra_mock",
    "line_ratios",
    "log_mass_to_light",
    "write_spec_lite",
    "write_spectra_mock",
    "young_fraction",
]
