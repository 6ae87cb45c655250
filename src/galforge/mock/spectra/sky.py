"""The observing side of the mock spectra: sky, noise model, masks, the observed grid.

Night-sky lines (:data:`SKY_LINES`) and continuum, the variance model (``_var_a``,
``_var_b``), the SDSS pixel-mask bits (:data:`SPPIXMASK`, the archive's
:data:`galforge.archives.sdss_pixmask.PIXMASK_BITS`), and the observed-frame
grid with its rest-frame template tables (``_Grid``, built once per process)
and the pixel-integrated Gaussian line profiles. No random numbers are drawn here.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import erf

from galforge.archives.sdss_pixmask import PIXMASK_BITS
from galforge.mock.spectra.templates import (
    N_GRID,
    SDSS_DLOGLAM,
    SDSS_LOGLAM0,
    _r_filter,
    _step,
    calzetti_k,
    continuum_templates,
)

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

