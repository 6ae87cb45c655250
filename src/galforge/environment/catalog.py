"""The environment study's galaxy catalog: read, check, and volume-limit.

One ingestion path for three kinds of input:

* the SDSS DR7 galaxy table as :mod:`galforge.archives.sdss` stores it (and as
  the mock universe writes it): absolute magnitudes are computed here,
  ``M_r - 5 log10 h = petroMag_r - A_r - DM(z) - K_r(z, g-r)`` with the
  k-correction of :func:`galforge.photometry.kcorrect_r` (Chilingarian et al.
  2010/2012 polynomial in z and the extinction-corrected model g - r colour);
* any user catalog (FITS, CSV, Parquet) through a column map;

and one canonical output table (Parquet) with the columns of
:data:`CANONICAL_COLUMNS`, NaN where a property is unknown.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.archives.formats import SDSS_GALAXY_COLUMNS, SDSS_MISSING, SDSS_PROPERTY_COLUMNS
from galforge.cosmology import Cosmology
from galforge.environment.settings import CatalogSettings
from galforge.io import InputError, read_parquet, write_parquet
from galforge.photometry import absolute_mag_r

log = logging.getLogger("galforge.environment")

#: Columns of the canonical catalog, in order.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "id", "ra", "dec", "z", "Mr", "g_r", "log_mstar", "log_sfr", "log_ssfr",
)
#: Optional canonical columns (NaN when the input lacks them).
OPTIONAL_COLUMNS: tuple[str, ...] = ("Mr", "g_r", "log_mstar", "log_sfr", "log_ssfr")

_SDSS_PROPERTY_MAP = {
    "lgm_tot_p50": "log_mstar",
    "sfr_tot_p50": "log_sfr",
    "specsfr_tot_p50": "log_ssfr",
}


def read_table(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """Read a FITS (HDU 1), CSV or Parquet table into a DataFrame (native byte order)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: catalog file not found")
    if fmt == "auto":
        suffixes = [s.lower() for s in path.suffixes]
        if any(s in (".fits", ".fit", ".fts") for s in suffixes):
            fmt = "fits"
        elif ".csv" in suffixes:
            fmt = "csv"
        elif ".parquet" in suffixes or ".pq" in suffixes:
            fmt = "parquet"
        else:
            raise InputError(f"{path}: cannot tell the format from the suffix; set environment.catalog.format")
    try:
        if fmt == "fits":
            from astropy.table import Table

            _check_fits_size(path)
            tab = Table.read(path, format="fits", hdu=1)
            cols, skipped = {}, []
            for name in tab.colnames:
                col = np.asarray(tab[name])
                if col.ndim == 2 and col.shape[1] == 1:  # TDIM='(1)', as CasJobs writes
                    col = col[:, 0]
                if col.ndim != 1:
                    skipped.append(name)  # vector columns are not catalog quantities
                    continue
                cols[name] = col.astype(col.dtype.newbyteorder("="))
            df = pd.DataFrame(cols)
            df.attrs["skipped_columns"] = skipped
            return df
        if fmt == "csv":
            return pd.read_csv(path, comment="#")
        if fmt == "parquet":
            return pd.read_parquet(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear error
        raise InputError(f"{path}: cannot read as {fmt}: {exc}") from None
    raise InputError(f"{path}: unknown format {fmt!r}")


def _column_list(df: pd.DataFrame, most: int = 40) -> str:
    """The columns of a table read by :func:`read_table`, for an error message."""
    names = [str(c) for c in df.columns]
    names += [f"{c} (vector, not read)" for c in df.attrs.get("skipped_columns", [])]
    if not names:
        return "no columns"
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _check_fits_size(path: Path) -> None:
    """Refuse a FITS file cut short (a killed download or copy) with one clear error."""
    import warnings

    from astropy.io import fits

    size = path.stat().st_size
    try:
        with warnings.catch_warnings(), fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            if len(hdul) < 2:
                raise InputError(f"{path}: no table in HDU 1 (the file has {len(hdul)} HDU)")
            info = hdul.fileinfo(1)
            hdr = hdul[1].header
            need = info["datLoc"] + int(hdr.get("NAXIS1", 0)) * int(hdr.get("NAXIS2", 0))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a header that does not parse
        if size % 2880:
            raise InputError(f"{path}: truncated FITS file ({size} bytes, not a whole number "
                             f"of 2880-byte blocks)") from None
        raise InputError(f"{path}: not a FITS table: {exc}") from None
    if size < need:
        raise InputError(f"{path}: truncated FITS file: {size} bytes, the table needs {need}")


def is_sdss_table(df: pd.DataFrame) -> bool:
    """True when ``df`` has the layout of the stored SDSS galaxy table."""
    return all(c in df.columns for c in SDSS_GALAXY_COLUMNS)


def _missing_to_nan(x: pd.Series) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    return np.where((a <= SDSS_MISSING + 1) | ~np.isfinite(a), np.nan, a)


def from_sdss_table(df: pd.DataFrame, cosmology: Cosmology) -> pd.DataFrame:
    """Canonical catalog from the SDSS galaxy table (mock or archive)."""
    # -9999 marks a missing measurement: it becomes NaN, and so do the colour and Mr
    mag = {c: _missing_to_nan(df[c]) for c in
           ("petroMag_r", "modelMag_g", "modelMag_r", "extinction_g", "extinction_r")}
    g_r = (mag["modelMag_g"] - mag["extinction_g"]) - (mag["modelMag_r"] - mag["extinction_r"])
    out = pd.DataFrame(
        {
            "id": df["objID"].astype("int64").to_numpy(),
            "ra": df["ra"].astype(float).to_numpy(),
            "dec": df["dec"].astype(float).to_numpy(),
            "z": df["z"].astype(float).to_numpy(),
        }
    )
    out["Mr"] = absolute_mag_r(
        mag["petroMag_r"], out["z"].to_numpy(), g_r, cosmology, extinction_r=mag["extinction_r"]
    )
    out["g_r"] = g_r
    for src, dst in _SDSS_PROPERTY_MAP.items():
        out[dst] = _missing_to_nan(df[src]) if src in df.columns else np.nan
    assert set(SDSS_PROPERTY_COLUMNS) == set(_SDSS_PROPERTY_MAP)
    return out[list(CANONICAL_COLUMNS)]


def from_user_table(df: pd.DataFrame, columns: dict[str, str | None], source: str) -> pd.DataFrame:
    """Canonical catalog from a user table through the ``columns`` map."""
    out = pd.DataFrame(index=df.index)
    for canon in CANONICAL_COLUMNS:
        name = columns.get(canon)
        if name is None and canon in ("ra", "dec", "z"):
            name = canon
        if name is None:
            if canon == "id":
                out["id"] = np.arange(len(df), dtype="int64")
            else:
                out[canon] = df[canon].astype(float) if canon in df.columns else np.nan
            continue
        if name not in df.columns:
            raise InputError(
                f"{source}: no column {name!r} (environment.catalog.columns.{canon}); "
                f"the file has: {_column_list(df)}"
            )
        out[canon] = df[name].to_numpy()
    if not np.issubdtype(out["id"].dtype, np.integer):
        raise InputError(f"{source}: id column {columns.get('id')!r} is not integer")
    out["id"] = out["id"].astype("int64")
    for c in CANONICAL_COLUMNS[1:]:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out.reset_index(drop=True)[list(CANONICAL_COLUMNS)]


def check_catalog(df: pd.DataFrame, source: str) -> None:
    """Reject NaN coordinates, impossible values, wrong units and duplicate ids."""
    if len(df) == 0:
        raise InputError(f"{source}: the catalog has no rows")
    for c in ("ra", "dec", "z"):
        bad = ~np.isfinite(df[c].to_numpy())
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{source}: row {row}: {c} is not a finite number ({int(bad.sum())} such rows)")
    ra, dec, z = (df[c].to_numpy() for c in ("ra", "dec", "z"))
    if len(df) > 50 and ra.max() <= 2 * np.pi and np.abs(dec).max() <= np.pi / 2:
        raise InputError(f"{source}: ra/dec all lie within 0..2π and ±π/2: they look like radians; give degrees")
    for c, lo, hi in (("ra", 0.0, 360.0), ("dec", -90.0, 90.0)):
        a = df[c].to_numpy()
        bad = (a < lo) | (a > hi)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{source}: row {row}: {c} = {a[row]} outside {lo}..{hi} degrees")
    if np.nanmedian(z) > 10:
        raise InputError(f"{source}: z has median {np.nanmedian(z):.0f}: it looks like cz in km/s; give the redshift")
    bad = (z < -0.01) | (z > 10)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{source}: row {row}: z = {z[row]} is not a plausible redshift")
    dup = df["id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(f"{source}: row {row}: id {df['id'].iloc[row]} appears twice")


def volume_limit(
    df: pd.DataFrame, zmin: float, zmax: float, mr_max: float | None, source: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply ``zmin < z < zmax`` and ``Mr < mr_max``; report how many each cut removed."""
    report: dict[str, int] = {"input": len(df)}
    keep = (df["z"] > zmin) & (df["z"] < zmax)
    report["removed_redshift"] = int((~keep).sum())
    if mr_max is not None:
        if df["Mr"].isna().all():
            raise InputError(
                f"{source}: environment.catalog.mr_max is {mr_max} but the catalog has no Mr column; "
                "map one with environment.catalog.columns.Mr or set mr_max: null"
            )
        mag = df["Mr"] < mr_max  # NaN Mr fails the cut
        report["removed_magnitude"] = int((keep & ~mag).sum())
        keep &= mag
    else:
        report["removed_magnitude"] = 0
    out = df[keep].reset_index(drop=True)
    report["selected"] = len(out)
    if len(out) == 0:
        raise InputError(
            f"{source}: no galaxy passes the cuts {zmin} < z < {zmax}"
            + (f", Mr < {mr_max}" if mr_max is not None else "")
        )
    return out, report


def build_catalog(
    raw_path: str | Path, settings: CatalogSettings, cosmology: Cosmology
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read ``raw_path``, convert to the canonical columns, check and volume-limit."""
    source = str(raw_path)
    df = read_table(raw_path, settings.format)
    if settings.path is None and is_sdss_table(df):
        kind = "sdss"
        canon = from_sdss_table(df, cosmology)
    elif settings.path is None and not is_sdss_table(df):
        missing = [c for c in SDSS_GALAXY_COLUMNS if c not in df.columns]
        raise InputError(f"{source}: not an SDSS galaxy table: missing column {missing[0]!r}")
    else:
        kind = "user"
        canon = from_user_table(df, dict(settings.columns), source)
    check_catalog(canon, source)
    out, report = volume_limit(canon, settings.zmin, settings.zmax, settings.mr_max, source)
    report = {"source_file": Path(raw_path).name, "kind": kind, **report}
    log.info("catalog %s: %s", source, report)
    return out, report


def write_catalog(df: pd.DataFrame, path: str | Path) -> None:
    """Write the canonical catalog as Parquet, atomically."""
    write_parquet(df, path)


def read_catalog(path: str | Path) -> pd.DataFrame:
    """The canonical catalog written by :func:`write_catalog` (``id, ra, dec, z`` and properties)."""
    return read_parquet(path, "catalog", ("id", "ra", "dec", "z"))
