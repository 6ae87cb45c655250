"""MPA-JHU DR7 value-added catalogue: stellar masses, SFRs and gas-phase metallicities.

The release files read here complete the SDSS DR7 galaxies that
:mod:`galforge.archives.sdss` fetches (environment study) and give the spectra
study its metallicities; both match them on the spectrum keys (plate, mjd, fiberID).

DR7 CAS has no ``galSpecExtra`` (that table starts with DR8). Stellar masses and
SFRs come from the MPA-JHU DR7 release files (:data:`MPAJHU_DR7_URLS`, base
https://wwwmpa.mpa-garching.mpg.de/SDSS/DR7/Data/): ``gal_info_dr7_v5_2.fit.gz``
(``PLATEID``, ``MJD``, ``FIBERID``), and, row by row aligned with it,
``totlgm_dr7_v5_2.fit.gz`` (total stellar mass), ``gal_totsfr_dr7_v5_2.fits.gz``
(total SFR) and ``gal_totspecsfr_dr7_v5_2.fits.gz`` (total specific SFR), each
with the ``MEDIAN`` of the likelihood (plus P2P5, P16, P84, P97P5, MODE, AVG).
:func:`read_mpajhu` reads them and :func:`join_properties` matches them to the
galaxies on (plate, mjd, fiberID) into ``lgm_tot_p50``, ``sfr_tot_p50``,
``specsfr_tot_p50`` (:data:`galforge.archives.formats.SDSS_PROPERTY_COLUMNS`).

Gas-phase metallicity (spectra study): ``gal_fiboh_dr7_v5_2.fits.gz``, row-aligned
with ``gal_info``, holds the likelihood of the fibre 12 + log(O/H) of star-forming
galaxies (Tremonti et al. 2004, ApJ 613, 898; Brinchmann et al. 2004) with the
same ``MEDIAN``/``P16``/``P84``/... columns. ``read_mpajhu(info, fiboh=...)`` adds
its ``MEDIAN`` as ``oh_p50`` (:data:`MPAJHU_OH_COLUMN`); galaxies without an
estimate carry a placeholder at or below -99, read as NaN. The two files are
listed in :data:`MPAJHU_DR7_OH_FILES` / :data:`MPAJHU_DR7_OH_URLS`, apart from
:data:`MPAJHU_DR7_FILES` so that the environment study fetches what it always
did. :func:`write_mpajhu_oh` writes both files in the release layout (the mock
uses it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Column, Table

from galforge.archives.formats import SDSS_MISSING, SDSS_PROPERTY_COLUMNS
from galforge.archives.sdss_spectra import spectrum_key
from galforge.io import InputError, atomic_path

__all__ = [
    "MPAJHU_DR7_BASE_URL",
    "MPAJHU_DR7_FILES",
    "MPAJHU_DR7_OH_FILES",
    "MPAJHU_DR7_OH_URLS",
    "MPAJHU_DR7_URLS",
    "MPAJHU_OH_COLUMN",
    "join_properties",
    "read_mpajhu",
    "write_mpajhu_oh",
]

log = logging.getLogger(__name__)

# --- release files -----------------------------------------------------------------

#: Where the MPA-JHU DR7 (v5_2) files live.
MPAJHU_DR7_BASE_URL = "https://wwwmpa.mpa-garching.mpg.de/SDSS/DR7/Data/"
#: MPA-JHU DR7 file names: ``info`` holds the spectrum keys, the others are
#: row-aligned with it (note the ``.fit.gz`` / ``.fits.gz`` mix, as published).
MPAJHU_DR7_FILES: dict[str, str] = {
    "info": "gal_info_dr7_v5_2.fit.gz",
    "lgm_tot": "totlgm_dr7_v5_2.fit.gz",
    "sfr_tot": "gal_totsfr_dr7_v5_2.fits.gz",
    "specsfr_tot": "gal_totspecsfr_dr7_v5_2.fits.gz",
}
#: Download URLs of :data:`MPAJHU_DR7_FILES`.
MPAJHU_DR7_URLS: dict[str, str] = {k: MPAJHU_DR7_BASE_URL + v for k, v in MPAJHU_DR7_FILES.items()}
#: Property column filled from each MPA-JHU file's ``MEDIAN``.
MPAJHU_PROPERTY_SOURCES: dict[str, str] = {
    "lgm_tot_p50": "lgm_tot",
    "sfr_tot_p50": "sfr_tot",
    "specsfr_tot_p50": "specsfr_tot",
}
#: MPA-JHU values at or below this are placeholders for failed fits (-99, -9999, ...).
MPAJHU_SENTINEL_MAX = -99.0
#: MPA-JHU DR7 files of the gas-phase metallicity (spectra study): ``gal_info``
#: (spectrum keys) and, row-aligned with it, the fibre 12 + log(O/H) likelihood.
MPAJHU_DR7_OH_FILES: dict[str, str] = {
    "info": MPAJHU_DR7_FILES["info"],
    "fiboh": "gal_fiboh_dr7_v5_2.fits.gz",
}
#: Download URLs of :data:`MPAJHU_DR7_OH_FILES`.
MPAJHU_DR7_OH_URLS: dict[str, str] = {
    k: MPAJHU_DR7_BASE_URL + v for k, v in MPAJHU_DR7_OH_FILES.items()
}
#: Column that :func:`read_mpajhu` fills from the ``fiboh`` file's ``MEDIAN``.
MPAJHU_OH_COLUMN = "oh_p50"
#: Placeholder :func:`write_mpajhu_oh` writes for a galaxy without an estimate
#: (any value at or below :data:`MPAJHU_SENTINEL_MAX` reads as NaN).
MPAJHU_OH_MISSING = -99.9


# --- reading and writing the release files ----------------------------------------------


def _fits_columns(path: Path, wanted: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
    """Read columns of HDU 1 by case-insensitive name; InputError naming what is missing."""
    if not path.exists():
        raise InputError(f"MPA-JHU file not found: {path}")
    try:
        with fits.open(path, memmap=False) as hdul:
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                raise InputError(f"{path}: no binary table in HDU 1")
            data = hdul[1].data
            names = {n.upper(): n for n in data.columns.names}
            missing = [w for w in wanted if w.upper() not in names]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {', '.join(missing)}; it has {sorted(names.values())}"
                )
            out = {w: np.array(data[names[w.upper()]]) for w in wanted}
            return out, len(data)
    except (OSError, TypeError) as exc:
        raise InputError(f"{path}: not a readable FITS file ({exc})") from exc


def _medians(path: Path, info: Path, n_info: int) -> np.ndarray:
    """The ``MEDIAN`` column of a file row-aligned with ``info`` (float64, placeholders NaN)."""
    cols, n = _fits_columns(path, ["MEDIAN"])
    if n != n_info:
        raise InputError(
            f"{path}: {n} rows, but {info} has {n_info}; the MPA-JHU files must be "
            f"row-aligned (same release, v5_2)"
        )
    values = cols["MEDIAN"].astype(np.float64)
    values[~np.isfinite(values) | (values <= MPAJHU_SENTINEL_MAX)] = np.nan
    return values


def read_mpajhu(
    info: str | os.PathLike,
    *,
    lgm_tot: str | os.PathLike | None = None,
    sfr_tot: str | os.PathLike | None = None,
    specsfr_tot: str | os.PathLike | None = None,
    fiboh: str | os.PathLike | None = None,
) -> Table:
    """Read the MPA-JHU DR7 files into one table keyed by (plate, mjd, fiberID).

    Parameters
    ----------
    info : path
        ``gal_info_dr7_v5_2.fit.gz`` (columns ``PLATEID``, ``MJD``, ``FIBERID``).
    lgm_tot, sfr_tot, specsfr_tot : path, optional
        ``totlgm_dr7_v5_2.fit.gz``, ``gal_totsfr_dr7_v5_2.fits.gz``,
        ``gal_totspecsfr_dr7_v5_2.fits.gz``; row-aligned with ``info``, their
        ``MEDIAN`` becomes ``lgm_tot_p50``, ``sfr_tot_p50``, ``specsfr_tot_p50``.
    fiboh : path, optional
        ``gal_fiboh_dr7_v5_2.fits.gz`` (row-aligned with ``info``); its
        ``MEDIAN`` 12 + log(O/H) (Tremonti et al. 2004) becomes ``oh_p50``
        (float32, after the other columns).

    Returns
    -------
    astropy.table.Table
        ``plate``, ``mjd``, ``fiberID`` and one column per file given; values at
        or below :data:`MPAJHU_SENTINEL_MAX` (failed fits) and non-finite ones are NaN.

    Raises
    ------
    InputError
        A file is missing or unreadable, lacks a column, or has a different
        number of rows from ``info``.
    """
    info = Path(info)
    keys, n_info = _fits_columns(info, ["PLATEID", "MJD", "FIBERID"])
    table = Table()
    table["plate"] = keys["PLATEID"].astype(np.int32)
    table["mjd"] = keys["MJD"].astype(np.int32)
    table["fiberID"] = keys["FIBERID"].astype(np.int32)
    paths = {"lgm_tot": lgm_tot, "sfr_tot": sfr_tot, "specsfr_tot": specsfr_tot}
    for prop, source in MPAJHU_PROPERTY_SOURCES.items():
        path = paths[source]
        if path is None:
            continue
        values = _medians(Path(path), info, n_info)
        _fmt, unit, desc = SDSS_PROPERTY_COLUMNS[prop]
        table[prop] = Column(values.astype(np.float32), unit=unit or None, description=desc)
    if fiboh is not None:
        values = _medians(Path(fiboh), info, n_info)
        table[MPAJHU_OH_COLUMN] = Column(
            values.astype(np.float32),
            description="12 + log10(O/H), fibre, median of the PDF (Tremonti et al. 2004)",
        )
    return table


def write_mpajhu_oh(
    plate: Any,
    mjd: Any,
    fiber: Any,
    oh: Any,
    info_dest: str | os.PathLike,
    oh_dest: str | os.PathLike,
    *,
    oh_err: Any = 0.05,
    z: Any = None,
) -> tuple[Path, Path]:
    """Write ``gal_info`` and ``gal_fiboh`` files in the MPA-JHU DR7 layout, atomically.

    ``gal_info``: HDU 1 with ``PLATEID`` (int16), ``MJD`` (int32), ``FIBERID``
    (int16) and, when ``z`` is given, ``Z`` (float32). ``gal_fiboh``: HDU 1,
    row-aligned, with the likelihood summary columns of the release, ``AVG``,
    ``ENTROPY``, ``MEDIAN``, ``P16``, ``P84``, ``MODE``, ``P2P5``, ``P97P5``
    (float32), built from ``oh`` and a Gaussian width ``oh_err``; NaN in
    ``oh`` is written as :data:`MPAJHU_OH_MISSING` in every column. A name
    ending in ``.gz`` is gzip-compressed (the release names are
    :data:`MPAJHU_DR7_OH_FILES`). :func:`read_mpajhu` reads both back.

    Parameters
    ----------
    plate, mjd, fiber : array_like of int
        Spectrum keys.
    oh : array_like of float
        12 + log(O/H); NaN where there is no estimate.
    info_dest, oh_dest : path
        Output files.
    oh_err : float or array_like
        1-sigma width used for the percentile columns.
    z : array_like of float, optional
        Redshifts for ``gal_info``'s ``Z``.

    Returns
    -------
    tuple of pathlib.Path
        ``(info_dest, oh_dest)``.

    Raises
    ------
    InputError
        Arrays of different lengths, or keys out of the int16/int32 ranges.
    """
    p = np.asarray(plate, dtype=np.int64)
    m = np.asarray(mjd, dtype=np.int64)
    f = np.asarray(fiber, dtype=np.int64)
    med = np.asarray(oh, dtype=np.float64)
    err = np.broadcast_to(np.asarray(oh_err, dtype=np.float64), med.shape)
    n = len(p)
    if not (len(m) == len(f) == len(med) == n) or (z is not None and len(z) != n):
        raise InputError("write_mpajhu_oh: plate, mjd, fiber, oh (and z) must have one length")
    if n and (p.min() < 0 or p.max() > 32767 or f.min() < 0 or f.max() > 32767 or m.min() < 0):
        raise InputError("write_mpajhu_oh: plate and fiber must fit int16, mjd int32 (>= 0)")
    info_cols = [
        fits.Column(name="PLATEID", format="I", array=p.astype(np.int16)),
        fits.Column(name="MJD", format="J", array=m.astype(np.int32)),
        fits.Column(name="FIBERID", format="I", array=f.astype(np.int16)),
    ]
    if z is not None:
        info_cols.append(fits.Column(name="Z", format="E", array=np.asarray(z, np.float32)))
    missing = ~np.isfinite(med)

    def _col(values: np.ndarray) -> np.ndarray:
        return np.where(missing, MPAJHU_OH_MISSING, values).astype(np.float32)

    oh_cols = {
        "AVG": _col(med),
        "ENTROPY": _col(np.ones(n)),
        "MEDIAN": _col(med),
        "P16": _col(med - err),
        "P84": _col(med + err),
        "MODE": _col(med),
        "P2P5": _col(med - 2 * err),
        "P97P5": _col(med + 2 * err),
    }
    outputs = []
    for dest, cols in (
        (info_dest, info_cols),
        (oh_dest, [fits.Column(name=k, format="E", array=v) for k, v in oh_cols.items()]),
    ):
        hdu = fits.BinTableHDU.from_columns(cols)
        with atomic_path(dest) as tmp:
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
        outputs.append(Path(dest))
    return outputs[0], outputs[1]


def join_properties(table: Table, mpajhu: Table) -> Table:
    """Add the MPA-JHU properties to galaxies, matched on (plate, mjd, fiberID).

    Parameters
    ----------
    table : astropy.table.Table
        Galaxies with ``plate``, ``mjd``, ``fiberID`` (as fetched here).
    mpajhu : astropy.table.Table
        From :func:`read_mpajhu`.

    Returns
    -------
    astropy.table.Table
        A copy of ``table`` with ``lgm_tot_p50``, ``sfr_tot_p50``,
        ``specsfr_tot_p50`` (float32, units of ``SDSS_PROPERTY_COLUMNS``); NaN
        where the galaxy has no MPA-JHU entry, the property file was not read,
        or the value is missing. Existing property columns are replaced. When
        MPA-JHU lists a spectrum twice, its first row is used.

    Raises
    ------
    InputError
        A key column is missing from either table; the message names it.
    """
    for tab, label in ((table, "galaxy table"), (mpajhu, "MPA-JHU table")):
        missing = [k for k in ("plate", "mjd", "fiberID") if k not in tab.colnames]
        if missing:
            raise InputError(
                f"{label}: missing column(s) {', '.join(repr(m) for m in missing)} "
                f"needed to match on plate/mjd/fiberID"
            )
    out = table.copy()
    gal_keys = spectrum_key(out["plate"], out["mjd"], out["fiberID"])
    mpa_keys = spectrum_key(mpajhu["plate"], mpajhu["mjd"], mpajhu["fiberID"])
    valid = np.flatnonzero(mpa_keys >= 0)
    uniq, first = np.unique(mpa_keys[valid], return_index=True)
    rows = valid[first]
    pos = np.searchsorted(uniq, gal_keys)
    pos_c = np.minimum(pos, max(len(uniq) - 1, 0))
    matched = (gal_keys >= 0) & (len(uniq) > 0)
    if len(uniq):
        matched &= uniq[pos_c] == gal_keys
    n_matched = int(matched.sum())
    log.info("MPA-JHU: matched %d of %d galaxies", n_matched, len(out))
    for prop, (_fmt, unit, desc) in SDSS_PROPERTY_COLUMNS.items():
        values = np.full(len(out), np.nan, dtype=np.float32)
        if prop in mpajhu.colnames and n_matched:
            src = np.asarray(mpajhu[prop], dtype=np.float64)
            picked = src[rows[pos_c[matched]]]
            picked[~np.isfinite(picked) | (picked == SDSS_MISSING)] = np.nan
            values[matched] = picked.astype(np.float32)
        if prop in out.colnames:
            out.remove_column(prop)
        out[prop] = Column(values, unit=unit or None, description=desc)
    return out
