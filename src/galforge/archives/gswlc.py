"""The GALEX-SDSS-WISE Legacy Catalog (GSWLC): stellar mass, SFR and dust attenuation.

Release and source
------------------
The spectra study uses **GSWLC-X2** (Salim et al. 2016, ApJS 227, 2; Salim,
Boquien & Lee 2018, ApJ 859, 11): SED fits (CIGALE, UV+optical with the
mid-IR luminosity as a constraint) of SDSS galaxies at 0.01 < z < 0.30 in the
GALEX footprint; "X" combines the shallow, medium and deep UV catalogs (A2, M2,
D2), taking the deepest UV photometry available for each galaxy. It is fetched
as the authors' release file :data:`GSWLC_X2_URL`
(``https://salims.pages.iu.edu/gswlc/GSWLC-X2.dat.gz``, as linked from the
GSWLC page https://salims.pages.iu.edu/gswlc/), through the shared download layer (:func:`fetch_gswlc`: resume,
retries, checksum when given, atomic rename). VizieR lists GSWLC-2 as
J/ApJ/859/11 ("The GALEX-SDSS-WISE Legacy Catalog 2 (GSWLC-2)", Salim+ 2018);
its table layout and column labels are VizieR's own and were not checked here,
so the fetcher does not use it. (GSWLC-1 of Salim et al. 2016 is the older
release; the pipeline does not read it.) The authors' server may send the file
with ``Content-Encoding: x-gzip``, in which case the saved file is already
decompressed text: :func:`read_gswlc` detects gzip by its magic bytes, not by
the name.

Layout of the release file
--------------------------
``GSWLC-X2.dat``: ASCII, whitespace-separated, no header line, one galaxy per
line, 24 columns in this order (GSWLC-2 README; the same 24 columns in the
same order appear in the shared LCS-GSWLC-X2 table, whose column names are
given in parentheses, and in third-party readers of the release file):

==  ==============  ==================================================  ==============
 #  name            meaning                                             LCS table name
==  ==============  ==================================================  ==============
 1  OBJID           SDSS photometric object id                          ObjID_1
 2  GLXID           GALEX photometric id (-99: none)                    GLXID
 3  PLATE           SDSS spectroscopic plate                            plate
 4  MJD             SDSS spectroscopic MJD                              MJD
 5  FIBER_ID        SDSS spectroscopic fiber                            fiber_id
 6  RA              right ascension [deg]                               RA_2
 7  DECL            declination [deg]                                   DEC_2
 8  Z               SDSS redshift                                       Z_1
 9  CHISQ_R         reduced chi^2 of the SED fit                        chisq
10  LOGMSTAR        log10 stellar mass [Msun] (Chabrier IMF)            logMstar
11  LOGMSTAR_ERR    its error [dex]                                     logMstar_err
12  LOGSFR_SED      log10 SFR from the SED fit [Msun/yr]                logSFR
13  LOGSFR_SED_ERR  its error [dex]                                     logSFR_err
14  AFUV            FUV attenuation [mag]                               AFUV
15  AFUV_ERR        its error                                           AFUV_err
16  AB              B-band attenuation [mag]                            AB
17  AB_ERR          its error                                           AB_err
18  AV              V-band attenuation [mag]                            AV_2
19  AV_ERR          its error                                           AV_err
20  FLAG_SED        SED fitting flag (0 = OK)                           flag_sed
21  UV_SURVEY       UV depth used (1 = A, 2 = M, 3 = D)                 UV_survey
22  FLAG_UV         UV detection flag                                   flag_uv
23  FLAG_MIDIR      mid-IR flag                                         flag_midir
24  FLAG_MGS        in the SDSS main galaxy sample (1) or not (0)       flag_mgs
==  ==============  ==================================================  ==============

-99 marks a missing value. The upper-case names are the ones this module
writes (:func:`write_gswlc`) and reads from FITS/CSV/Parquet conversions.

Standard table
--------------
:func:`read_gswlc` returns the columns of :data:`STANDARD_COLUMNS`: ``plate``,
``mjd``, ``fiber`` (int32), ``z``, ``log_mstar``, ``log_sfr``,
``log_mstar_err``, ``log_sfr_err``, ``av`` (float64, NaN where missing) and
``flag_sed`` (int16), from any of: the release ``.dat`` (plain or gzip), a
FITS/CSV/ECSV/Parquet table with the official names, or the shared LCS table.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table

from galforge.archives.download import DownloadOptions, download
from galforge.io import InputError, atomic_path

__all__ = [
    "GSWLC_MISSING",
    "GSWLC_X2_COLUMNS",
    "GSWLC_X2_URL",
    "STANDARD_COLUMNS",
    "fetch_gswlc",
    "read_gswlc",
    "write_gswlc",
]

log = logging.getLogger("galforge.archives")

#: The authors' GSWLC-X2 release file.
GSWLC_X2_URL = "https://salims.pages.iu.edu/gswlc/GSWLC-X2.dat.gz"

#: Value of a missing measurement in GSWLC.
GSWLC_MISSING = -99.0

#: The 24 columns of the release file, in order: name -> FITS format written by
#: :func:`write_gswlc` (K int64, J int32, I int16, D float64, E float32).
GSWLC_X2_COLUMNS: dict[str, str] = {
    "OBJID": "K",
    "GLXID": "K",
    "PLATE": "J",
    "MJD": "J",
    "FIBER_ID": "J",
    "RA": "D",
    "DECL": "D",
    "Z": "D",
    "CHISQ_R": "E",
    "LOGMSTAR": "E",
    "LOGMSTAR_ERR": "E",
    "LOGSFR_SED": "E",
    "LOGSFR_SED_ERR": "E",
    "AFUV": "E",
    "AFUV_ERR": "E",
    "AB": "E",
    "AB_ERR": "E",
    "AV": "E",
    "AV_ERR": "E",
    "FLAG_SED": "I",
    "UV_SURVEY": "I",
    "FLAG_UV": "I",
    "FLAG_MIDIR": "I",
    "FLAG_MGS": "I",
}

#: Standard column -> names it may have in an input table, in order of
#: preference (matched case-insensitively): official GSWLC-X2 names first, then
#: the shared LCS-GSWLC-X2 table's (``Z_1``, ``AV_2`` are its GSWLC columns;
#: ``AV_1`` there is NSA's).
_ALIASES: dict[str, tuple[str, ...]] = {
    "plate": ("PLATE",),
    "mjd": ("MJD",),
    "fiber": ("FIBER_ID", "FIBERID", "FIBER"),
    "z": ("Z", "Z_1"),
    "log_mstar": ("LOGMSTAR",),
    "log_sfr": ("LOGSFR_SED", "LOGSFR"),
    "log_mstar_err": ("LOGMSTAR_ERR",),
    "log_sfr_err": ("LOGSFR_SED_ERR", "LOGSFR_ERR"),
    "av": ("AV", "AV_2"),
    "flag_sed": ("FLAG_SED",),
}

#: Standard columns of :func:`read_gswlc`, in order, with their numpy dtypes.
STANDARD_COLUMNS: dict[str, type[np.generic]] = {
    "plate": np.int32,
    "mjd": np.int32,
    "fiber": np.int32,
    "z": np.float64,
    "log_mstar": np.float64,
    "log_sfr": np.float64,
    "log_mstar_err": np.float64,
    "log_sfr_err": np.float64,
    "av": np.float64,
    "flag_sed": np.int16,
}
_REQUIRED = ("plate", "mjd", "fiber", "z", "log_mstar", "log_sfr")
#: Standard column -> official column written by :func:`write_gswlc`.
_OFFICIAL_OF = {std: names[0] for std, names in _ALIASES.items()}
#: Optional extra standard names accepted by :func:`write_gswlc` for the other columns.
_EXTRA_OFFICIAL = {
    "objid": "OBJID",
    "glxid": "GLXID",
    "ra": "RA",
    "dec": "DECL",
    "chisq_r": "CHISQ_R",
    "afuv": "AFUV",
    "afuv_err": "AFUV_ERR",
    "ab": "AB",
    "ab_err": "AB_ERR",
    "av_err": "AV_ERR",
    "uv_survey": "UV_SURVEY",
    "flag_uv": "FLAG_UV",
    "flag_midir": "FLAG_MIDIR",
    "flag_mgs": "FLAG_MGS",
}
_DTYPES = {"K": np.int64, "J": np.int32, "I": np.int16, "D": np.float64, "E": np.float32}


# --------------------------------------------------------------------------- reading


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _head(path: Path, n: int = 80) -> bytes:
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as fh:
        return fh.read(n)


def _read_any(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Columns of the file (original names) and a label of the layout found."""
    name = path.name.lower()
    try:
        if _head(path, 9).startswith(b"SIMPLE  ="):
            with fits.open(path, memmap=False) as hdul:
                table = next(
                    (h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)), None
                )
                if table is None:
                    raise InputError(f"{path}: FITS file without a table HDU")
                data = table.data
                return {c: np.array(data[c]) for c in data.columns.names}, "fits"
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
            return {c: df[c].to_numpy() for c in df.columns}, "parquet"
        if name.endswith(".ecsv"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = Table.read(path, format="ascii.ecsv")
            return {c: np.asarray(t[c]) for c in t.colnames}, "ecsv"
        if name.endswith((".csv", ".csv.gz")):
            df = pd.read_csv(path, compression="gzip" if _is_gzip(path) else None)
            return {c: df[c].to_numpy() for c in df.columns}, "csv"
        return _read_dat(path), "gswlc-x2-dat"
    except InputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, EOFError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable GSWLC table ({exc})") from exc


def _read_dat(path: Path) -> dict[str, np.ndarray]:
    """The release's whitespace-separated, header-less 24-column ASCII file."""
    names = list(GSWLC_X2_COLUMNS)
    compression = "gzip" if _is_gzip(path) else None
    try:
        df = pd.read_csv(
            path,
            sep=r"\s+",
            header=None,
            comment="#",
            compression=compression,
            dtype={i: (np.int64 if i < 2 else np.float64) for i in range(len(names))},
            engine="c",
        )
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: empty GSWLC file") from exc
    except ValueError as exc:
        raise InputError(
            f"{path}: not the GSWLC-X2 ASCII layout (24 numeric columns): {exc}"
        ) from exc
    if df.shape[1] != len(names):
        raise InputError(
            f"{path}: {df.shape[1]} columns per line, the GSWLC-X2 release has {len(names)} "
            f"({', '.join(names)})"
        )
    df.columns = names
    return {c: df[c].to_numpy() for c in names}


def _pick(cols: Mapping[str, np.ndarray], std: str) -> str | None:
    upper = {c.upper(): c for c in cols}
    for alias in _ALIASES[std]:
        if alias.upper() in upper:
            return upper[alias.upper()]
    return None


def _to_float(values: np.ndarray) -> np.ndarray:
    if np.ma.isMaskedArray(values):
        values = np.ma.filled(values.astype(np.float64), np.nan)
    out = np.asarray(values, dtype=np.float64).copy()
    out[~np.isfinite(out) | (out <= GSWLC_MISSING)] = np.nan
    return out


def read_gswlc(path: str | os.PathLike) -> Table:
    """Read a GSWLC table into the standard columns.

    Parameters
    ----------
    path : str or os.PathLike
        The release file ``GSWLC-X2.dat`` (plain or gzip-compressed, whatever
        its name), or a FITS/CSV/ECSV/Parquet table with the official
        GSWLC-X2 names (as :func:`write_gswlc` writes) or the names of the
        shared LCS-GSWLC-X2 table (``logMstar``, ``logSFR``, ``plate``,
        ``MJD``, ``fiber_id``, ``Z_1``, ``AV_2``, ``flag_sed``).

    Returns
    -------
    astropy.table.Table
        :data:`STANDARD_COLUMNS`; -99 and non-finite values are NaN; optional
        columns absent from the input are NaN (``flag_sed``: -1). ``meta``
        records the source file and the layout found.

    Raises
    ------
    InputError
        Missing or unreadable file, a required column missing (the message
        names it and the file), non-integer or missing plate/mjd/fiber.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"GSWLC file not found: {path}")
    cols, layout = _read_any(path)
    n = len(next(iter(cols.values()))) if cols else 0
    out = Table(meta={"source": str(path), "layout": layout})
    for std, dtype in STANDARD_COLUMNS.items():
        src = _pick(cols, std)
        if src is None:
            if std in _REQUIRED:
                raise InputError(
                    f"{path}: no column for {std!r} (looked for "
                    f"{', '.join(_ALIASES[std])}, any case); it has {sorted(cols)[:40]}"
                )
            out[std] = np.full(n, -1 if std == "flag_sed" else np.nan, dtype=dtype)
            continue
        values = cols[src]
        if np.issubdtype(dtype, np.integer):
            fvals = np.asarray(
                np.ma.filled(values, np.nan) if np.ma.isMaskedArray(values) else values,
                dtype=np.float64,
            )
            bad = ~np.isfinite(fvals) | (fvals != np.round(fvals))
            if std != "flag_sed" and bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InputError(
                    f"{path}: column {src!r} (for {std}) has a missing or non-integer value in "
                    f"row {row}: {values[row]!r}"
                )
            out[std] = np.where(bad, -1, fvals).astype(dtype)
        else:
            out[std] = _to_float(values)
    log.info("GSWLC: read %d rows from %s (%s layout)", len(out), path, layout)
    return out


# --------------------------------------------------------------------------- writing


def _columns_for_writing(table: Any) -> dict[str, np.ndarray]:
    """Official-name arrays (with -99 for missing) from a standard-name table."""
    if isinstance(table, pd.DataFrame):
        src = {c: table[c].to_numpy() for c in table.columns}
    elif isinstance(table, Table):
        src = {c: np.asarray(table[c]) if not np.ma.isMaskedArray(table[c]) else
               np.ma.filled(table[c], np.nan) for c in table.colnames}
    else:
        src = {c: np.asarray(v) for c, v in dict(table).items()}
    lower = {c.lower(): c for c in src}
    missing = [c for c in _REQUIRED if c not in lower]
    if missing:
        raise InputError(
            f"cannot write GSWLC table: missing standard column(s) {', '.join(missing)}"
        )
    n = len(src[lower["plate"]])
    official_src = {v: k for k, v in _OFFICIAL_OF.items()} | {
        v: k for k, v in _EXTRA_OFFICIAL.items()
    }
    out: dict[str, np.ndarray] = {}
    for name, fmt in GSWLC_X2_COLUMNS.items():
        std = official_src[name]
        dtype = _DTYPES[fmt]
        if std in lower:
            raw = np.asarray(src[lower[std]])
            if len(raw) != n:
                raise InputError(f"cannot write GSWLC table: column {std!r} has {len(raw)} rows, not {n}")
            if np.issubdtype(dtype, np.integer) and raw.dtype.kind in "iu":
                values = raw.astype(dtype)  # exact: 64-bit ids do not pass through float
            elif np.issubdtype(dtype, np.integer):
                fvals = raw.astype(np.float64)
                if std in ("plate", "mjd", "fiber") and (
                    not np.all(np.isfinite(fvals)) or np.any(fvals != np.round(fvals))
                ):
                    raise InputError(f"cannot write GSWLC table: {std!r} must be integers")
                values = np.where(np.isfinite(fvals), fvals, GSWLC_MISSING).astype(dtype)
            else:
                fvals = raw.astype(np.float64)
                values = np.where(np.isfinite(fvals), fvals, GSWLC_MISSING).astype(dtype)
        else:
            default = 0 if name == "FLAG_SED" else GSWLC_MISSING
            values = np.full(n, default, dtype=dtype)
        out[name] = values
    return out


def write_gswlc(table: Table | pd.DataFrame | Mapping[str, Any], dest: str | os.PathLike) -> Path:
    """Write a GSWLC table in the official GSWLC-X2 layout, atomically.

    A destination ending in ``.dat`` or ``.dat.gz`` gets the release's ASCII
    layout (24 whitespace-separated columns, no header); anything else a FITS
    binary table (HDU 1, ``EXTNAME = GSWLC``) with the upper-case names of
    :data:`GSWLC_X2_COLUMNS`. Either way :func:`read_gswlc` reads it back.

    Parameters
    ----------
    table : astropy Table, pandas DataFrame or mapping
        Standard names (``plate``, ``mjd``, ``fiber``, ``z``, ``log_mstar``,
        ``log_sfr`` required; ``log_mstar_err``, ``log_sfr_err``, ``av``,
        ``flag_sed`` and ``objid``, ``glxid``, ``ra``, ``dec``, ``chisq_r``,
        ``afuv``, ``afuv_err``, ``ab``, ``ab_err``, ``av_err``,
        ``uv_survey``, ``flag_uv``, ``flag_midir``, ``flag_mgs`` optional).
        NaN and absent values are written as -99 (``FLAG_SED`` absent: 0).
    dest : str or os.PathLike
        Output path.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    InputError
        A required column is missing or plate/mjd/fiber are not integers.
    """
    dest = Path(dest)
    cols = _columns_for_writing(table)
    name = dest.name.lower()
    if name.endswith((".dat", ".dat.gz")):
        _write_dat(cols, dest)
        return dest
    fits_cols = [
        fits.Column(name=n, format=GSWLC_X2_COLUMNS[n], array=v) for n, v in cols.items()
    ]
    hdu = fits.BinTableHDU.from_columns(fits_cols, name="GSWLC")
    hdu.header["CATALOG"] = ("GSWLC-X2", "Salim et al. 2016, 2018 layout")
    hdu.header["MISSING"] = (GSWLC_MISSING, "value of a missing measurement")
    with atomic_path(dest) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    return dest


def _write_dat(cols: Mapping[str, np.ndarray], dest: Path) -> None:
    formats = []
    for name, fmt in GSWLC_X2_COLUMNS.items():
        if fmt in "KJI":
            formats.append("%d")
        elif name in ("RA", "DECL"):
            formats.append("%.7f")
        elif name == "Z":
            formats.append("%.7f")
        else:
            formats.append("%.7g")
    matrix = np.empty((len(cols["PLATE"]), len(cols)), dtype=object)
    for j, values in enumerate(cols.values()):
        matrix[:, j] = values.tolist()
    buf = io.StringIO()
    for row in matrix:
        buf.write(" ".join(f % v for f, v in zip(formats, row, strict=True)) + "\n")
    data = buf.getvalue().encode("ascii")
    if dest.name.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


# --------------------------------------------------------------------------- fetching


def fetch_gswlc(
    dest: str | os.PathLike,
    *,
    url: str = GSWLC_X2_URL,
    checksum: str | None = None,
    options: DownloadOptions | None = None,
    **overrides: Any,
) -> Path:
    """Download the GSWLC-X2 release file through the shared download layer.

    Parameters
    ----------
    dest : str or os.PathLike
        Destination file (e.g. ``resources/archives/gswlc/GSWLC-X2.dat.gz``);
        an existing file is not fetched again.
    url : str
        Where from; :data:`GSWLC_X2_URL` by default.
    checksum : str, optional
        ``"md5:<hex>"`` / ``"sha256:<hex>"`` of the file, when known.
    options : DownloadOptions, optional
        Retries, timeouts, progress of :func:`galforge.archives.download.download`.
    **overrides
        Single :class:`DownloadOptions` fields.

    Returns
    -------
    pathlib.Path
        The downloaded file (readable with :func:`read_gswlc`).
    """
    path = download(url, dest, checksum=checksum, options=options, **overrides)
    log.info("GSWLC-X2 catalogue at %s (from %s)", path, url)
    return path
