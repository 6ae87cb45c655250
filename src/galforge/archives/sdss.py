"""SDSS DR7 spectroscopic main galaxy sample for the environment study.

The environment study (Gim, Moon, Yoon et al.) uses the SDSS DR7 main galaxy
sample, volume-limited to 0.02 < z < 0.07 and M_r - 5 log h < -18.95. This
module fetches the flux-limited parent sample with a margin in redshift (the
pipeline applies the exact cuts later) and writes it as a FITS binary table in
the layout of :data:`galforge.archives.formats.SDSS_GALAXY_COLUMNS`, whose
spectrum keys ``plate``, ``mjd``, ``fiberID`` serve the MPA-JHU join
(:mod:`galforge.archives.mpajhu`).

Endpoint
--------
The query goes through :meth:`astroquery.sdss.SDSSClass.query_sql_async` with
``data_release=7`` (read in astroquery 0.4.11's source). For data releases below 10,
astroquery builds the URL ``conf.skyserver_baseurl + '/dr7/en/tools/search/x_sql.asp'``,
i.e. the old CAS SkyServer SQL search::

    GET https://skyserver.sdss.org/dr7/en/tools/search/x_sql.asp?cmd=<SQL>&format=csv

``cmd`` is the SQL with ``--`` comments removed and newlines replaced by
spaces; no ``searchtool`` parameter is sent (only for DR > 11). The answer is
plain CSV: the column names on the first line, then one line per row; DR >= 10
servers prefix a ``#Table1`` line, which the parser here skips too. A SQL error
comes back with status 200 and a body whose first line starts with ``ERROR`` (what
the old ``sqlcl.py`` client checks for); server failures come back as HTML pages.
The body is parsed here (:func:`parse_cas_csv`) rather than by astroquery's
``_parse_result``, so that such answers give clear errors. The public DR7 SQL search allows 90 s
and 100,000 rows per query and 60 queries a minute
(https://cas.sdss.org/dr7/en/help/docs/limits.asp), hence the redshift slices,
the pause between them (``min_interval``) and the row-limit check.

Tests point astroquery at a local server with ``base_url`` (which sets
``astroquery.sdss.conf.skyserver_baseurl`` for the duration of each request)
and may inject their own ``client``.

Schema
------
DR7 CAS names, checked against the DR7 schema browser and DR7-era queries:
``SpecObj`` (the ``sciencePrimary = 1`` view of ``SpecObjAll``) holds
``specObjID``, ``bestObjID``, ``z``, ``zErr``, ``zConf``, ``specClass``,
``primTarget``, ``plate``, ``mjd``, ``fiberID``
(https://casjobs.sdss.org/dr7/sp/help/browser/description.asp?n=SpecPhotoAll&t=U
lists the SpecObj columns, http://cas.sdss.org/dr7/en/help/docs/QS_UserGuide.asp
the SpecObjAll ones); ``PhotoObj`` holds ``objID``, ``ra``, ``dec``,
``petroMag_r``, ``modelMag_g``, ``modelMag_r``, ``extinction_g``,
``extinction_r``; the two join on ``SpecObj.bestObjID = PhotoObj.objID``
(the DR7 join used by, e.g., Meert et al.'s DR7 CasJobs queries). DR7 has
``specClass = 2`` for SPEC_GALAXY (0 unknown, 1 star, 3 QSO, ...), and the
main galaxy sample is ``primTarget`` bits GALAXY (0x40), GALAXY_BIG (0x80) and
GALAXY_BRIGHT_CORE (0x100) (Strauss et al. 2002; PrimTarget in the schema
browser). ``ra``/``dec`` are the photometric (``PhotoObj``) position of the
object whose ``objID`` is stored.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import requests
import urllib3
from astropy.io import fits
from astropy.table import Table

from galforge.archives.formats import SDSS_GALAXY_COLUMNS, SDSS_PROPERTY_COLUMNS
from galforge.archives.retry import Backoff, call_with_retries
from galforge.io import InputError, atomic_path

__all__ = [
    "DR7_DATA_RELEASE",
    "DR7_FETCH_COLUMNS",
    "DR7_GALAXY_SQL",
    "DR7_ROW_LIMIT",
    "DR7_SQL_ENDPOINT",
    "DR7_SQL_PATH",
    "MAIN_SAMPLE_TARGET_MASK",
    "ArchiveUnreachableError",
    "SDSSQueryError",
    "build_dr7_queries",
    "fetch_dr7_galaxies",
    "parse_cas_csv",
    "write_galaxy_table",
]

log = logging.getLogger(__name__)

# --- endpoint ----------------------------------------------------------------------

#: Data release passed to astroquery.
DR7_DATA_RELEASE = 7
#: Default SkyServer base URL (``astroquery.sdss.conf.skyserver_baseurl``).
SKYSERVER_BASE_URL = "https://skyserver.sdss.org"
#: Path astroquery appends for DR < 10 (``SDSSClass.QUERY_URL_SUFFIX_DR_OLD``).
DR7_SQL_PATH = "/dr7/en/tools/search/x_sql.asp"
#: The endpoint astroquery queries for ``data_release=7``.
DR7_SQL_ENDPOINT = SKYSERVER_BASE_URL + DR7_SQL_PATH
#: Row limit of the public DR7 SQL search; a slice returning this many rows was truncated.
DR7_ROW_LIMIT = 100_000

# --- selection ---------------------------------------------------------------------

#: DR7 ``specClass`` of galaxy spectra (SPEC_GALAXY).
SPEC_CLASS_GALAXY = 2
#: ``primTarget`` bits of the main galaxy sample: GALAXY | GALAXY_BIG | GALAXY_BRIGHT_CORE.
MAIN_SAMPLE_TARGET_MASK = 0x40 | 0x80 | 0x100
#: Minimum DR7 redshift confidence.
ZCONF_MIN = 0.35
#: Main-sample flux limit on the extinction-corrected Petrosian r magnitude.
R_PETRO_LIMIT = 17.77
#: Default number of redshift slices (one query each); about 20k rows or less per slice.
DEFAULT_N_SLICES = 12
#: Default redshift margin on either side of the study's range.
DEFAULT_Z_MARGIN = 0.005

#: Every column the DR7 query returns and the FITS table stores, in order: the
#: stored layout of :data:`galforge.archives.formats.SDSS_GALAXY_COLUMNS`, whose
#: spectrum keys (plate, mjd, fiberID) serve the MPA-JHU match.
DR7_FETCH_COLUMNS: dict[str, tuple[str, str, str]] = dict(SDSS_GALAXY_COLUMNS)

#: SQL for one redshift slice of the DR7 main galaxy sample (CAS T-SQL), recorded
#: in the README. Placeholders: ``z_lo``, ``z_hi_op`` (``<`` or ``<=`` for the last
#: slice), ``z_hi``, ``r_limit``. The selected columns are exactly
#: :data:`DR7_FETCH_COLUMNS`; see the module docstring for the schema sources.
DR7_GALAXY_SQL = """SELECT p.objID, s.specObjID, p.ra, p.dec, s.z, s.zErr,
  p.petroMag_r, p.modelMag_g, p.modelMag_r, p.extinction_g, p.extinction_r,
  s.plate, s.mjd, s.fiberID
FROM SpecObj AS s
  JOIN PhotoObj AS p ON p.objID = s.bestObjID
WHERE s.specClass = 2
  AND (s.primTarget & 0x000001C0) > 0
  AND s.zConf > 0.35
  AND s.z >= {z_lo} AND s.z {z_hi_op} {z_hi}
  AND p.petroMag_r - p.extinction_r <= {r_limit}"""

_FITS_DTYPES: dict[str, type[np.generic]] = {
    "K": np.int64,
    "J": np.int32,
    "I": np.int16,
    "D": np.float64,
    "E": np.float32,
}

_T = TypeVar("_T")


class SDSSQueryError(RuntimeError):
    """The SDSS server answered, but not with a usable result (error page, bad CSV, ...)."""


class ArchiveUnreachableError(ConnectionError):
    """The SDSS server could not be reached at all."""


# --- queries -------------------------------------------------------------------------


def _slice_edges(lo: float, hi: float, n_slices: int) -> list[str]:
    edges = [f"{x:.6f}" for x in np.linspace(lo, hi, n_slices + 1)]
    if len(set(edges)) != len(edges):
        raise ValueError(f"{n_slices} slices are too many for the range {lo} to {hi}")
    return edges


def build_dr7_queries(
    zmin: float,
    zmax: float,
    *,
    z_margin: float = DEFAULT_Z_MARGIN,
    n_slices: int = DEFAULT_N_SLICES,
    r_limit: float = R_PETRO_LIMIT,
) -> list[str]:
    """SQL of the DR7 main-sample query split into ``n_slices`` redshift slices.

    The slices cover ``[max(zmin - z_margin, 0), zmax + z_margin]`` in equal
    widths, half-open (``z_lo <= z < z_hi``) except the last, closed one, so
    that no galaxy falls into two slices or between them.

    Parameters
    ----------
    zmin, zmax : float
        Redshift range of the study.
    z_margin : float
        Margin added on both sides.
    n_slices : int
        Number of slices (queries).
    r_limit : float
        Limit on ``petroMag_r - extinction_r``.

    Returns
    -------
    list of str
        One :data:`DR7_GALAXY_SQL` per slice, lowest redshift first.
    """
    if not (np.isfinite(zmin) and np.isfinite(zmax)) or zmin >= zmax:
        raise ValueError(f"need zmin < zmax, got zmin={zmin}, zmax={zmax}")
    if z_margin < 0:
        raise ValueError(f"z_margin must be >= 0, got {z_margin}")
    if int(n_slices) != n_slices or n_slices < 1:
        raise ValueError(f"n_slices must be a positive integer, got {n_slices}")
    lo = max(zmin - z_margin, 0.0)
    hi = zmax + z_margin
    edges = _slice_edges(lo, hi, int(n_slices))
    queries = []
    for i in range(int(n_slices)):
        last = i == n_slices - 1
        queries.append(
            DR7_GALAXY_SQL.format(
                z_lo=edges[i],
                z_hi_op="<=" if last else "<",
                z_hi=edges[i + 1],
                r_limit=f"{r_limit:.2f}",
            )
        )
    return queries


# --- response parsing ---------------------------------------------------------------


def _snippet(text: str, n: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[:n] + " ..."


def parse_cas_csv(
    text: str,
    columns: Mapping[str, tuple[str, str, str]] | None = None,
    *,
    where: str = "SDSS response",
) -> dict[str, np.ndarray]:
    """Parse a CAS ``format=csv`` answer into arrays typed by the FITS layout.

    Column names match case-insensitively (SQL Server echoes the case written in
    the query) and are returned with the layout's spelling. Lines starting with
    ``#`` (the ``#Table1`` of DR >= 10) are skipped; extra columns are ignored.

    Parameters
    ----------
    text : str
        Response body.
    columns : mapping, optional
        name -> (FITS format, unit, description); :data:`DR7_FETCH_COLUMNS` by default.
    where : str
        What the text is, for error messages.

    Raises
    ------
    SDSSQueryError
        Empty body, HTML page, SQL error, missing column, ragged or non-numeric row.
    """
    columns = DR7_FETCH_COLUMNS if columns is None else columns
    stripped = text.strip()
    if not stripped:
        raise SDSSQueryError(f"{where}: empty response (expected CSV with a header line)")
    head = stripped[:200].lower()
    if stripped.startswith("<") or "<html" in head or "<!doctype" in head:
        raise SDSSQueryError(f"{where}: got an HTML page instead of CSV: {_snippet(stripped)}")
    if stripped.upper().startswith("ERROR") or "error_message" in head:
        raise SDSSQueryError(f"{where}: the server reported an error: {_snippet(stripped)}")
    lines = [ln for ln in stripped.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise SDSSQueryError(f"{where}: no header line in the response: {_snippet(stripped)}")
    rows = list(csv.reader(lines))
    header = [h.strip() for h in rows[0]]
    index = {h.lower(): i for i, h in enumerate(header)}
    missing = [name for name in columns if name.lower() not in index]
    if missing:
        raise SDSSQueryError(
            f"{where}: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"the response has {header}"
        )
    body = rows[1:]
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise SDSSQueryError(
                f"{where}: line {n} has {len(row)} fields, the header has {len(header)}: "
                f"{_snippet(','.join(row), 120)}"
            )
    out: dict[str, np.ndarray] = {}
    for name, (fmt, _unit, _desc) in columns.items():
        dtype = _FITS_DTYPES[fmt]
        raw = [row[index[name.lower()]].strip() for row in body]
        try:
            if np.issubdtype(dtype, np.integer):
                # via Python int: exact for 64-bit ids, and rejects "1.5"
                values = np.array([int(v) for v in raw], dtype=dtype)
            else:
                values = np.array([float(v) for v in raw], dtype=np.float64).astype(dtype)
        except (ValueError, OverflowError) as exc:
            raise SDSSQueryError(
                f"{where}: column {name!r} has a non-numeric value ({exc})"
            ) from exc
        out[name] = values
    return out


# --- fetching --------------------------------------------------------------------------


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return status is not None and (status >= 500 or status in (408, 429))
    return isinstance(
        exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
    )


def _with_retries(
    fn: Callable[[], _T],
    *,
    retries: int,
    backoff: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Call ``fn``; on a 5xx/408/429, timeout or connection error, try again.

    ``retries`` is the number of extra attempts; the pause doubles from ``backoff``
    (no cap, no jitter). The loop is :func:`galforge.archives.retry.call_with_retries`.
    """
    return call_with_retries(
        fn, retries=retries, transient=_retryable, backoff=Backoff(base=backoff), what=what,
        logger=log, sleep=sleep,
    )


def _no_connection(exc: BaseException) -> bool:
    """Whether a requests error means no connection was made (refused, DNS, connect timeout).

    A connection that broke or stalled mid-answer is not "unreachable".
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def _reason(exc: BaseException) -> str:
    """The root cause of a requests error, without the (long, SQL-laden) URL."""
    reason: Any = exc.args[0] if exc.args else exc
    if isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    text = str(reason)
    if isinstance(reason, urllib3.exceptions.NewConnectionError) and ": " in text:
        text = text.split(": ", 1)[1]  # drop the connection object's repr
    return _snippet(f"{type(reason).__name__}: {text}", 200)


def _query_text(client: Any, sql: str, *, timeout: float, base_url: str | None) -> str:
    """Send one SQL query through astroquery and return the body of a 2xx answer."""
    from astroquery.sdss import conf

    ctx = (
        conf.set_temp("skyserver_baseurl", base_url.rstrip("/"))
        if base_url
        else contextlib.nullcontext()
    )
    with ctx:
        response = client.query_sql_async(
            sql, data_release=DR7_DATA_RELEASE, timeout=timeout, cache=False
        )
    response.raise_for_status()
    return response.text


def _concatenate(shards: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    names = list(DR7_FETCH_COLUMNS)
    data = {n: np.concatenate([s[n] for s in shards]) for n in names}
    # slices are disjoint; this only guards against a server repeating rows
    _, first = np.unique(data["specObjID"], return_index=True)
    order = np.sort(first)
    if len(order) != len(data["specObjID"]):
        log.warning("dropped %d duplicate specObjID rows", len(data["specObjID"]) - len(order))
    data = {n: v[order] for n, v in data.items()}
    order = np.argsort(data["specObjID"], kind="stable")
    return {n: v[order] for n, v in data.items()}


def fetch_dr7_galaxies(
    dest: str | os.PathLike,
    *,
    zmin: float,
    zmax: float,
    z_margin: float = DEFAULT_Z_MARGIN,
    n_slices: int = DEFAULT_N_SLICES,
    r_limit: float = R_PETRO_LIMIT,
    timeout: float = 120.0,
    retries: int = 3,
    backoff: float = 2.0,
    min_interval: float = 1.0,
    row_limit: int = DR7_ROW_LIMIT,
    base_url: str | None = None,
    client: Any = None,
) -> Path:
    """Fetch the DR7 main galaxy sample around ``zmin..zmax`` and write it as FITS.

    One query per redshift slice (:func:`build_dr7_queries`), each retried on
    server errors, timeouts and dropped connections; the slices are concatenated
    (sorted by ``specObjID``) and written atomically to ``dest``
    (:func:`write_galaxy_table`): a failed fetch leaves no file.

    Parameters
    ----------
    dest : path
        Output FITS file.
    zmin, zmax : float
        Redshift range of the study; ``z_margin`` is added on both sides.
    z_margin, n_slices, r_limit
        See :func:`build_dr7_queries`.
    timeout : float
        Per-request timeout in seconds (the server itself stops a query at 90 s).
    retries : int
        Extra attempts per slice.
    backoff : float
        First pause between attempts, seconds; doubles each time.
    min_interval : float
        Pause between slices, seconds (the server allows 60 queries a minute).
    row_limit : int
        A slice with this many rows was truncated by the server: error.
    base_url : str, optional
        SkyServer base URL instead of ``astroquery.sdss.conf.skyserver_baseurl``
        (``https://skyserver.sdss.org``); tests use a local server.
    client : optional
        An ``astroquery.sdss.SDSSClass`` (anything with its ``query_sql_async``);
        a new one by default.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    ArchiveUnreachableError
        No connection to the server after the retries.
    SDSSQueryError
        The server answered with an error, an unusable body or a truncated slice.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    queries = build_dr7_queries(zmin, zmax, z_margin=z_margin, n_slices=n_slices, r_limit=r_limit)
    if client is None:
        from astroquery.sdss import SDSSClass

        client = SDSSClass()
    endpoint = (base_url.rstrip("/") if base_url else _configured_base_url()) + DR7_SQL_PATH
    shards = []
    for i, sql in enumerate(queries):
        what = f"SDSS DR7 query, redshift slice {i + 1}/{len(queries)}"
        if i and min_interval > 0:
            time.sleep(min_interval)
        try:
            text = _with_retries(
                lambda sql=sql: _query_text(client, sql, timeout=timeout, base_url=base_url),
                retries=retries,
                backoff=backoff,
                what=what,
            )
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            body = _snippet(exc.response.text) if exc.response is not None else ""
            raise SDSSQueryError(f"{what}: {endpoint} answered HTTP {status}: {body}") from exc
        except requests.ReadTimeout as exc:
            raise SDSSQueryError(
                f"{what}: no answer from {endpoint} within {timeout} s after {retries + 1} "
                f"attempt(s); try more slices (n_slices) or a longer timeout"
            ) from exc
        except requests.RequestException as exc:
            if not _no_connection(exc):
                raise SDSSQueryError(
                    f"{what}: request to {endpoint} failed after {retries + 1} attempt(s): "
                    f"{_reason(exc)}"
                ) from exc
            raise ArchiveUnreachableError(
                f"the SDSS archive is unreachable: cannot connect to {endpoint} "
                f"({_reason(exc)}). Check the network, or set "
                f"`source: mock` in the configuration to run on the mock universe."
            ) from exc
        shard = parse_cas_csv(text, where=what)
        n_rows = len(shard["specObjID"])
        if n_rows >= row_limit:
            raise SDSSQueryError(
                f"{what}: {n_rows} rows, at the server's row limit ({row_limit}); the slice was "
                f"probably truncated: use more slices (n_slices > {len(queries)})"
            )
        log.info("%s: %d rows", what, n_rows)
        shards.append(shard)
    data = _concatenate(shards)
    lo = max(zmin - z_margin, 0.0)
    meta = {
        "SDSSDR": (DR7_DATA_RELEASE, "SDSS data release"),
        "ZLO": (float(f"{lo:.6f}"), "lowest redshift fetched"),
        "ZHI": (float(f"{zmax + z_margin:.6f}"), "highest redshift fetched"),
        "RLIM": (float(f"{r_limit:.2f}"), "limit on petroMag_r - extinction_r"),
        "NSLICES": (len(queries), "redshift slices (queries)"),
        "SQLURL": (endpoint, ""),
    }
    return write_galaxy_table(data, dest, header=meta)


def _configured_base_url() -> str:
    try:
        from astroquery.sdss import conf

        return str(conf.skyserver_baseurl).rstrip("/")
    except Exception:  # pragma: no cover - astroquery missing or misconfigured
        return SKYSERVER_BASE_URL


# --- FITS output -------------------------------------------------------------------------


def _layout_for(data: Mapping[str, Any]) -> dict[str, tuple[str, str, str]]:
    """The stored layout: the fetch columns, then the property columns present."""
    layout = dict(DR7_FETCH_COLUMNS)
    names = set(data.colnames if isinstance(data, Table) else data.keys())
    layout.update({k: v for k, v in SDSS_PROPERTY_COLUMNS.items() if k in names})
    return layout


def fetched_range_matches(
    path: str | os.PathLike,
    *,
    zmin: float,
    zmax: float,
    z_margin: float = DEFAULT_Z_MARGIN,
    r_limit: float = R_PETRO_LIMIT,
) -> bool:
    """Whether a table written by :func:`fetch_dr7_galaxies` holds exactly this query's range."""
    try:
        hdr = fits.getheader(path, 1)
    except (OSError, IndexError):
        return False
    want = {
        "SDSSDR": DR7_DATA_RELEASE,
        "ZLO": float(f"{max(zmin - z_margin, 0.0):.6f}"),
        "ZHI": float(f"{zmax + z_margin:.6f}"),
        "RLIM": float(f"{r_limit:.2f}"),
    }
    return all(hdr.get(k) == v for k, v in want.items())


def write_galaxy_table(
    data: Table | Mapping[str, Any],
    dest: str | os.PathLike,
    *,
    header: Mapping[str, tuple[Any, str]] | None = None,
) -> Path:
    """Write galaxies as a FITS binary table (HDU 1) in the stored layout, atomically.

    The columns are :data:`DR7_FETCH_COLUMNS` followed by whichever
    :data:`~galforge.archives.formats.SDSS_PROPERTY_COLUMNS` ``data`` has, with
    their FITS formats, units and descriptions (``TCOMMn``).

    Raises
    ------
    InputError
        A required column is missing; the message names it.
    """
    names = set(data.colnames if isinstance(data, Table) else data.keys())
    missing = [name for name in DR7_FETCH_COLUMNS if name not in names]
    if missing:
        raise InputError(
            f"cannot write {dest}: missing column(s) {', '.join(repr(m) for m in missing)}"
        )
    layout = _layout_for(data)
    cols = []
    for name, (fmt, unit, _desc) in layout.items():
        values = np.asarray(data[name])
        if np.ma.isMaskedArray(data[name]):
            values = np.ma.filled(data[name], np.nan if fmt in "DE" else 0)
        cols.append(
            fits.Column(
                name=name, format=fmt, unit=unit or None, array=values.astype(_FITS_DTYPES[fmt])
            )
        )
    hdu = fits.BinTableHDU.from_columns(cols, name="GALAXIES")
    for i, (_name, (_fmt, _unit, desc)) in enumerate(layout.items(), start=1):
        hdu.header[f"TCOMM{i}"] = desc
    for key, (value, comment) in (header or {}).items():
        hdu.header[key] = (value, comment)
    with atomic_path(dest) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    return Path(dest)
