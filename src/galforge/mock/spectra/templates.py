"""Rest-frame physics of the mock spectra: the SDSS grid, lines, templates, dust.

The constants of the SDSS spectrograph grid (:data:`SDSS_LOGLAM0`,
:data:`SDSS_DLOGLAM`, :data:`N_GRID`), the nebular lines (:data:`LINES`) and the
planted parameters (:data:`PLANTED_PARAMETERS`), the young/old continuum
templates (:func:`continuum_templates`), the mass-to-light and line-ratio laws,
the Calzetti curve and the Dn4000 measure. The model is described in
:mod:`galforge.mock.spectra`. No random numbers are drawn here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from galforge.cosmology import C_KMS

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



def _r_filter(wavelength: np.ndarray) -> np.ndarray:
    """Smooth top-hat stand-in for the SDSS r response (50 % at 5500 and 6900 Å)."""
    return _step((wavelength - 5500.0) / 60.0) * _step((6900.0 - wavelength) / 60.0)

