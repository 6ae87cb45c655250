"""Settings of the mock universes, on the shared settings base (light: no numpy).

:class:`MockEnvironmentSettings` configures :mod:`galforge.mock.environment`
(the SDSS DR7 galaxy catalogue with planted environment trends) and
:class:`MockSpectraSettings` :mod:`galforge.mock.spectra` (SDSS spectra with
planted physical parameters); the physics behind each field is in those
modules' docstrings. Both are :class:`galforge.settings.Settings`: frozen,
built with ``from_dict`` (unknown keys rejected), every value range-checked on
construction, a bad value raising :class:`galforge.settings.SettingsError`
(a ValueError) that names the key.

The scale presets (``tiny``/``demo``/``paper`` overrides of these defaults) live
in each study's ``presets`` module, not here.

This module imports only the standard library and :mod:`galforge.settings`, so
the configuration checker imports it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from galforge.settings import Settings, SettingsError, integer, number

__all__ = [
    "MAX_FIBERS_PER_PLATE",
    "PLANTED_PARAMETER_NAMES",
    "MockEnvironmentSettings",
    "MockSpectraSettings",
]

#: Fibres of an SDSS-I/II plate: the most spectra the mock puts on one plate.
MAX_FIBERS_PER_PLATE = 640

#: The planted parameters of the mock spectra, in order (the keys of
#: :data:`galforge.mock.spectra.PLANTED_PARAMETERS`); each has a ``<name>_min`` and
#: ``<name>_max`` setting.
PLANTED_PARAMETER_NAMES: tuple[str, ...] = ("log_age", "log_ssfr", "log_u", "a_v")


def _must_exceed(s: Settings, pairs: list[tuple[str, str]]) -> None:
    for a, b in pairs:
        if not getattr(s, a) < getattr(s, b):
            raise SettingsError(b, f"= {getattr(s, b)} must exceed {a} = {getattr(s, a)}")


@dataclass(frozen=True)
class MockEnvironmentSettings(Settings):
    """Configuration of the environment mock universe (see :mod:`galforge.mock.environment`)."""


    # Sky region and written redshift range
    ra_min: float = number(
        140.0, "lower right ascension of the sky rectangle [deg]", lo=0.0, hi=360.0
    )
    ra_max: float = number(170.0, "upper right ascension [deg]", lo=0.0, hi=360.0)
    dec_min: float = number(0.0, "lower declination [deg]", lo=-90.0, hi=90.0)
    dec_max: float = number(24.0, "upper declination [deg]", lo=-90.0, hi=90.0)
    z_min: float = number(0.01, "lowest observed redshift written", lo=0.001, hi=0.5)
    z_max: float = number(0.08, "highest observed redshift written", lo=0.001, hi=0.5)
    # Grid and power spectrum
    cell_size: float = number(1.0, "FFT cell size [h^-1 Mpc]", lo=0.25, hi=20.0)
    box_padding: float = number(
        30.0, "periodic-box padding around the survey [h^-1 Mpc]", lo=0.0, hi=500.0
    )
    rsd_margin_kms: float = number(
        3000.0, "real-space margin beyond the z range [km/s]", lo=0.0, hi=20000.0
    )
    max_cells: float = number(
        2.0e8, "refuse grids with more cells than this (memory guard)", lo=1e3, hi=2e9
    )
    sigma8_gal: float = number(
        0.95, "galaxy sigma8 of the target power spectrum", lo=0.1, hi=3.0, lo_open=True
    )
    sigma8_matter: float = number(
        0.8, "matter sigma8 (bias b = sigma8_gal / sigma8_matter)", lo=0.1, hi=3.0
    )
    omega_b: float = number(0.048, "baryon density for the EH98 transfer function", lo=0.0, hi=0.2)
    h_shape: float = number(0.7, "Hubble h for the EH98 transfer function", lo=0.3, hi=1.2)
    n_s: float = number(0.96, "primordial spectral index", lo=0.5, hi=1.5)
    growth_index: float = number(0.55, "gamma in f = Omega_m(z)^gamma", lo=0.3, hi=1.0)
    # Luminosity function
    phi_star: float = number(1.49e-2, "Schechter phi* [h^3 Mpc^-3]", lo=0.0, hi=1.0, lo_open=True)
    m_star: float = number(-20.44, "Schechter M* - 5 log h", lo=-24.0, hi=-17.0)
    alpha: float = number(-1.05, "Schechter faint-end slope", lo=-2.0, hi=1.0, lo_open=True)
    mag_faint: float = number(-17.0, "faintest M_r - 5 log h generated", lo=-22.0, hi=-12.0)
    nbar: float | None = number(
        None, "number density [h^3 Mpc^-3]; None = Schechter integral", lo=0.0, hi=1.0, lo_open=True, optional=True
    )
    lum_seg_slope: float = number(
        0.3, "brightening of M* per dex of (1+delta_s) [mag/dex]", lo=-2.0, hi=2.0
    )
    lum_seg_pivot: float = number(0.3, "log10(1+delta_s) where M* is unshifted", lo=-2.0, hi=3.0)
    # Photometry
    flux_limit: float = number(17.77, "extinction-corrected Petrosian r limit", lo=10.0, hi=25.0)
    photometric_noise: float = number(
        0.02, "Gaussian noise of each magnitude [mag]", lo=0.0, hi=1.0
    )
    extinction_r_min: float = number(0.02, "A_r of the dust map minimum [mag]", lo=0.0, hi=5.0)
    extinction_r_max: float = number(0.20, "A_r of the dust map maximum [mag]", lo=0.0, hi=5.0)
    extinction_g_over_r: float = number(
        3.793 / 2.751, "A_g / A_r (SFD98 3.793/2.751)", lo=0.5, hi=3.0
    )
    # Redshifts and velocities
    redshift_error_kms: float = number(30.0, "typical redshift error [km/s]", lo=0.0, hi=1000.0)
    fog_sigma0: float = number(
        150.0, "Fingers-of-God dispersion at delta_s = 0 [km/s]", lo=0.0, hi=2000.0
    )
    fog_density_power: float = number(
        0.5, "power of (1+delta_s) in the FoG dispersion", lo=0.0, hi=2.0
    )
    fog_sigma_max: float = number(1000.0, "cap on the FoG dispersion [km/s]", lo=0.0, hi=5000.0)
    smoothing_radius: float = number(
        2.0, "Gaussian smoothing of the true density [h^-1 Mpc]", lo=0.1, hi=50.0, lo_open=True
    )
    map_smoothing_radius: float = number(
        5.0, "Gaussian smoothing of the map-scale true density [h^-1 Mpc]", lo=0.1, hi=50.0, lo_open=True
    )
    map_size_mpc: float | None = number(
        None, "side of the map square whose inscribed disc the planted field moments "
        "cover [h^-1 Mpc] (null: none computed; the environment study sets it to "
        "environment.maps.size_mpc)", lo=0.0, lo_open=True, optional=True
    )
    map_dv_kms: float | None = number(
        None, "half width of the velocity window the planted field moments project over "
        "[km/s] (null: none computed; the environment study sets it to "
        "environment.maps.dv_kms)", lo=0.0, lo_open=True, optional=True
    )
    # Quenching and properties
    q_alpha: float = number(2.0, "quenching logit per dex of (1+delta_s)", lo=-20.0, hi=20.0)
    q_x0: float = number(0.3, "density pivot of the quenching logit", lo=-3.0, hi=3.0)
    q_beta: float = number(2.0, "quenching logit per dex of stellar mass", lo=-20.0, hi=20.0)
    q_mass_pivot: float = number(
        10.5, "mass pivot of the quenching logit [dex Msun]", lo=6.0, hi=13.0
    )
    red_color_mean: float = number(0.75, "g-r of quenched galaxies", lo=-0.5, hi=1.5)
    red_color_sigma: float = number(0.05, "g-r scatter of quenched galaxies", lo=0.0, hi=1.0)
    blue_color_mean: float = number(0.45, "g-r of star-forming galaxies", lo=-0.5, hi=1.5)
    blue_color_sigma: float = number(0.10, "g-r scatter of star-forming galaxies", lo=0.0, hi=1.0)
    ml_a: float = number(-0.306, "Bell+03 log(M/L_r) intercept", lo=-3.0, hi=3.0)
    ml_b: float = number(1.097, "Bell+03 log(M/L_r) slope in g-r", lo=-5.0, hi=5.0)
    msun_r: float = number(4.65, "absolute r magnitude of the Sun", lo=3.0, hi=6.0)
    hubble_h: float = number(0.7, "h converting h-scaled luminosities to Msun", lo=0.3, hi=1.2)
    mass_imf_offset: float = number(-0.15, "IMF offset added to log M* [dex]", lo=-1.0, hi=1.0)
    ms_norm: float = number(-10.0, "main-sequence log sSFR at log M* = 10", lo=-13.0, hi=-8.0)
    ms_slope: float = number(-0.3, "main-sequence slope d log sSFR / d log M*", lo=-2.0, hi=2.0)
    ms_scatter: float = number(0.3, "main-sequence scatter [dex]", lo=0.0, hi=2.0)
    quenched_ssfr: float = number(-12.0, "log sSFR of quenched galaxies", lo=-15.0, hi=-9.0)
    quenched_scatter: float = number(
        0.4, "log sSFR scatter of quenched galaxies [dex]", lo=0.0, hi=2.0
    )
    mass_noise_dex: float = number(0.1, "measurement noise on lgm_tot_p50 [dex]", lo=0.0, hi=2.0)
    sfr_noise_dex: float = number(0.1, "measurement noise on sfr_tot_p50 [dex]", lo=0.0, hi=2.0)
    property_missing_fraction: float = number(
        0.01, "fraction of rows with -9999 properties", lo=0.0, hi=1.0, hi_open=True
    )

    def check(self) -> None:
        """Ordered pairs (``ra_min < ra_max``, ...) and a galaxy bias of at least 0.5."""
        _must_exceed(self, [
            ("ra_min", "ra_max"),
            ("dec_min", "dec_max"),
            ("z_min", "z_max"),
            ("extinction_r_min", "extinction_r_max"),
            ("m_star", "mag_faint"),
        ])
        if self.sigma8_gal < self.sigma8_matter * 0.5:
            raise SettingsError("sigma8_gal", "implies a bias below 0.5")


@dataclass(frozen=True)
class MockSpectraSettings(Settings):
    """Configuration of the mock spectra (see :mod:`galforge.mock.spectra` for the model)."""


    n_spectra: int = integer(5000, "spectra written (all classes)", lo=10, hi=1_000_000)
    star_fraction: float = number(0.01, "fraction of stars (class STAR)", lo=0.0, hi=0.2)
    qso_fraction: float = number(0.01, "fraction of quasars (class QSO)", lo=0.0, hi=0.2)
    highz_fraction: float = number(
        0.02, "fraction of galaxies at z_max < z <= highz_max", lo=0.0, hi=0.3
    )
    zwarning_fraction: float = number(
        0.005, "fraction of galaxies with ZWARNING = 4", lo=0.0, hi=0.2
    )
    z_min: float = number(0.01, "lowest galaxy redshift", lo=0.0, hi=0.5, lo_open=True)
    z_max: float = number(
        0.1, "highest redshift of the main galaxy sample", lo=0.0, hi=0.5, lo_open=True
    )
    highz_max: float = number(0.15, "highest redshift of the rejectable galaxies", lo=0.0, hi=0.5)
    # planted parameters
    log_age_min: float = number(8.7, "lower log10 age [yr]", lo=8.0, hi=10.3)
    log_age_max: float = number(10.1, "upper log10 age [yr]", lo=8.0, hi=10.3)
    log_ssfr_min: float = number(-11.0, "lower log10 sSFR [1/yr]", lo=-16.0, hi=-8.0)
    log_ssfr_max: float = number(-9.3, "upper log10 sSFR [1/yr]", lo=-16.0, hi=-8.0)
    log_u_min: float = number(-3.6, "lower log10 ionisation parameter", lo=-4.5, hi=-2.0)
    log_u_max: float = number(-2.8, "upper log10 ionisation parameter", lo=-4.5, hi=-2.0)
    a_v_min: float = number(0.0, "lower stellar A_V [mag]", lo=0.0, hi=3.0)
    a_v_max: float = number(1.0, "upper stellar A_V [mag]", lo=0.0, hi=3.0)
    # line widths
    sigma_gas_kms: float = number(150.0, "gas velocity dispersion [km/s]", lo=10.0, hi=500.0)
    wdisp_pix: float = number(0.95, "instrumental LSF sigma [pixels of 69 km/s]", lo=0.5, hi=2.0)
    # normalisation
    r_fiber_mean: float = number(18.2, "mean fibre r magnitude (AB)", lo=14.0, hi=22.0)
    r_fiber_sigma: float = number(0.5, "scatter of the fibre r magnitude", lo=0.0, hi=3.0)
    r_fiber_min: float = number(16.8, "brightest fibre r magnitude", lo=12.0, hi=22.0)
    r_fiber_max: float = number(19.6, "faintest fibre r magnitude", lo=12.0, hi=23.0)
    ap_corr_mean: float = number(1.3, "mean fibre-to-total magnitude correction", lo=0.2, hi=3.0)
    ap_corr_sigma: float = number(0.3, "scatter of the aperture correction [mag]", lo=0.0, hi=1.0)
    omega_m: float = number(0.3, "Omega_m of the flat LCDM luminosity distance", lo=0.05, hi=1.0)
    hubble_h: float = number(
        0.7, "h of the luminosity distance (Mpc = h^-1 Mpc / h)", lo=0.3, hi=1.2
    )
    # noise, sky, masks
    noise_scale: float = number(
        1.0, "multiplies the variance model", lo=0.0, hi=100.0, lo_open=True
    )
    plate_noise_scatter: float = number(
        0.15, "ln scatter of the variance per plate", lo=0.0, hi=1.0
    )
    sky_scatter: float = number(0.25, "ln scatter of the sky level per plate", lo=0.0, hi=2.0)
    sky_residual_frac: float = number(
        0.03, "sky-line residual amplitude (fraction)", lo=0.0, hi=1.0
    )
    sky_shift_pix: float = number(
        0.05, "sky-line residual wavelength shift [pixels]", lo=0.0, hi=2.0
    )
    cosmic_rate: float = number(3e-4, "cosmic-ray hits per pixel", lo=0.0, hi=0.05)
    bad_chunk_fraction: float = number(
        0.1, "fraction of spectra with a bad-column run", lo=0.0, hi=1.0
    )
    bad_chunk_max_pix: int = integer(40, "longest bad-column run [pixels]", lo=5, hi=500)
    or_mask_rate: float = number(0.01, "fraction of pixels with extra or_mask bits", lo=0.0, hi=0.5)
    start_jitter_pix: int = integer(20, "largest per-plate start offset [px]", lo=0, hi=200)
    end_jitter_pix: int = integer(8, "largest per-spectrum end trim [px]", lo=0, hi=200)
    redshift_error_kms: float = number(0.0, "noise on the written Z [km/s]", lo=0.0, hi=300.0)
    # identifiers
    fibers_per_plate: int = integer(640, "spectra per plate", lo=1, hi=MAX_FIBERS_PER_PLATE)
    first_plate: int = integer(266, "number of the first plate", lo=1, hi=9000)
    # catalogues
    gswlc_missing_fraction: float = number(0.01, "galaxies absent from GSWLC", lo=0.0, hi=0.5)
    gswlc_sfr_missing_fraction: float = number(0.005, "GSWLC rows with SFR = -99", lo=0.0, hi=0.5)
    gswlc_mass_noise: float = number(0.05, "noise on GSWLC log M* [dex]", lo=0.0, hi=1.0)
    gswlc_sfr_noise: float = number(0.1, "noise on GSWLC log SFR [dex]", lo=0.0, hi=1.0)
    gswlc_av_noise: float = number(0.05, "noise on GSWLC A_V [mag]", lo=0.0, hi=1.0)
    oh_noise: float = number(0.03, "noise on the MPA-JHU 12+log(O/H) [dex]", lo=0.0, hi=1.0)
    oh_missing_fraction: float = number(0.01, "galaxies with O/H = -99.9", lo=0.0, hi=1.0)

    def check(self) -> None:
        """Ranges in order, redshift and magnitude limits in order, special classes <= 0.5."""
        for name in PLANTED_PARAMETER_NAMES:
            lo, hi = f"{name}_min", f"{name}_max"
            if getattr(self, lo) > getattr(self, hi):
                raise SettingsError(
                    hi, f"= {getattr(self, hi)} must not be below {lo} = {getattr(self, lo)}"
                )
        _must_exceed(self, [("z_min", "z_max"), ("z_max", "highz_max"),
                            ("r_fiber_min", "r_fiber_max")])
        if self.star_fraction + self.qso_fraction + self.highz_fraction > 0.5:
            raise SettingsError(
                "star_fraction", "star_fraction + qso_fraction + highz_fraction must not exceed 0.5"
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
            for name in PLANTED_PARAMETER_NAMES
            if getattr(self, f"{name}_max") > getattr(self, f"{name}_min")
        )
