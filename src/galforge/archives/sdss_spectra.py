"""SDSS optical spectra from the SDSS science archives, downloaded in plate shards.

URLs
----
DR8 and later (``spec-PLATE4-MJD5-FIBER4.fits``), Science Archive Server::

    https://data.sdss.org/sas/dr17/sdss/spectro/redux/26/spectra/lite/PLATE4/spec-PLATE4-MJD-FIBER4.fits

i.e. ``<sas>/<release>/<survey>/spectro/redux/<RUN2D>/spectra/<lite|full>/<PLATE4>/<name>``
with survey ``sdss`` and RUN2D ``26`` for the SDSS-I/II (legacy) spectrograph,
the survey of the GSWLC / MPA-JHU galaxies (:data:`SAS_DR17_LITE`,
:data:`SAS_DR17_FULL`). The pattern is the one the SDSS data-access pages give
(``.../sas/dr15/eboss/spectro/redux/v5_10_0/spectra/lite/4055/spec-4055-55359-0596.fits``
for a BOSS plate). *lite* files hold the coadd only and are about a quarter
of the size of *full* ones; both read with :func:`galforge.spectra.readers.read_spectrum`.

DR7 (``spSpec-MJD5-PLATE4-FIBER3.fit``), Data Archive Server::

    http://das.sdss.org/spectro/1d_26/PLATE4/1d/spSpec-MJD-PLATE4-FIBER3.fit

(:data:`DAS_DR7_SPSPEC`; the pattern astroML's ``fetch_sdss_spectrum`` uses.)

Sharding
--------
:func:`shard_of` puts every spectrum of a plate in shard ``plate mod n_shards``:
stable across runs and machines, and near-even because plate numbers are
nearly consecutive. One cluster job per shard downloads its plates
(:func:`fetch_spectra_shard`) into ``dest_root/PLATE4/<name>`` -- the layout
the mock writes -- through :func:`galforge.archives.download.download_many`
(resume of ``.part`` files with ``Range``, retries with backoff, verification
of the size and of any checksum the server announces (``Content-MD5``,
``Digest``) or the table gives (a ``checksum`` column), atomic rename). No
checksum source for single spectra on the SAS is known here (not checked
against the live server: no network in development), so the manifest records
each file's size and SHA-256 for later integrity checks, and every file is
opened and its plate/MJD/fiber compared with the request.

Manifest
--------
One CSV per shard, written atomically after every download of the shard
finished: ``key, plate, mjd, fiber, path, status, url, bytes, sha256, root``;
``status`` is ``ok`` (downloaded now, verified by reading it), ``cached``
(present from an earlier run, verified) or ``missing`` (the archive answered
404; allowed up to ``max_missing``). Any other failure raises after all
downloads of the shard were tried, leaves no manifest and keeps ``.part``
files, so the rerun resumes.

``root`` (the same on every row) is the folder the files must lie in: the
download folder ``dest_root`` here, the mock's output folder for the manifests
of :func:`galforge.spectra.steps.mock_manifests`. :func:`read_manifest` refuses a
manifest any of whose paths resolves outside it (an absolute path elsewhere,
``..`` components, a symbolic link out), so that a damaged or hand-edited
manifest cannot make a step read files from anywhere. Paths and root are
written as given (relative ones are relative to the working directory, as the
readers open them).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table
from tqdm import tqdm

from galforge.archives.download import (
    DownloadError,
    DownloadManyError,
    DownloadOptions,
    DownloadRequest,
    HTTPStatusError,
    download_many,
)
from galforge.io import InputError, atomic_path

__all__ = [
    "DAS_DR7_SPSPEC",
    "MANIFEST_COLUMNS",
    "SAS_DR17_FULL",
    "SAS_DR17_LITE",
    "fetch_spectra_shard",
    "read_manifest",
    "shard_of",
    "spectrum_key",
    "spectrum_url",
]

log = logging.getLogger("galforge.archives")

#: DR17 SAS folder of the SDSS-I/II *lite* spec files (RUN2D 26).
SAS_DR17_LITE = "https://data.sdss.org/sas/dr17/sdss/spectro/redux/26/spectra/lite"
#: DR17 SAS folder of the SDSS-I/II *full* spec files (RUN2D 26).
SAS_DR17_FULL = "https://data.sdss.org/sas/dr17/sdss/spectro/redux/26/spectra/full"
#: DR7 DAS folder of the spSpec files (spectro1d rerun 26).
DAS_DR7_SPSPEC = "http://das.sdss.org/spectro/1d_26"

#: Columns of the shard manifest, in order.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "key", "plate", "mjd", "fiber", "path", "status", "url", "bytes", "sha256", "root",
)
_DEFAULT_BASE = {"spec-lite": SAS_DR17_LITE, "spec-full": SAS_DR17_FULL, "spSpec": DAS_DR7_SPSPEC}
_FIBER_ALIASES = ("fiber", "fiberid", "fiber_id")


def _filename(fmt: str, plate: int, mjd: int, fiber: int) -> str:
    # same names as galforge.spectra.readers.spectrum_filename (archives must not import studies)
    if fmt == "spSpec":
        return f"spSpec-{mjd:05d}-{plate:04d}-{fiber:03d}.fit"
    if fmt in ("spec-lite", "spec-full"):
        return f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"
    raise ValueError(f"unknown spectrum format {fmt!r}; use 'spec-lite', 'spec-full' or 'spSpec'")


def spectrum_url(
    plate: int, mjd: int, fiber: int, *, fmt: str = "spec-lite", base_url: str | None = None
) -> str:
    """URL of one spectrum on the SDSS archive.

    Parameters
    ----------
    plate, mjd, fiber : int
        Spectrum identity.
    fmt : str
        ``"spec-lite"`` (default), ``"spec-full"`` (DR17 SAS) or ``"spSpec"`` (DR7 DAS).
    base_url : str, optional
        Folder that holds the plate folders (:data:`SAS_DR17_LITE`,
        :data:`SAS_DR17_FULL`, :data:`DAS_DR7_SPSPEC` by default); a local
        mirror or test server.

    Returns
    -------
    str
        ``<base>/PLATE4/<name>`` (SAS) or ``<base>/PLATE4/1d/<name>`` (DAS).
    """
    base = (base_url or _DEFAULT_BASE.get(fmt, "")).rstrip("/")
    name = _filename(fmt, int(plate), int(mjd), int(fiber))
    middle = f"{int(plate):04d}/1d" if fmt == "spSpec" else f"{int(plate):04d}"
    return f"{base}/{middle}/{name}"


def shard_of(plate: Any, n_shards: int) -> Any:
    """Shard of a plate: ``plate mod n_shards`` (every fiber of a plate in one shard).

    Parameters
    ----------
    plate : int or array_like of int
        Plate number(s), >= 0.
    n_shards : int
        Number of shards, >= 1.

    Returns
    -------
    int or numpy.ndarray
        Shard index in ``[0, n_shards)`` (an int for a scalar plate).
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}")
    arr = np.asarray(plate)
    if arr.dtype.kind not in "iu" or np.any(arr < 0):
        raise ValueError("plate numbers must be non-negative integers")
    out = arr.astype(np.int64) % int(n_shards)
    return int(out) if out.ndim == 0 else out


def spectrum_key(plate: Any, mjd: Any, fiber: Any) -> np.ndarray:
    """One int64 per SDSS spectrum: ``(plate * 10**5 + mjd) * 10**3 + fiber``.

    The one spectrum key of the code base: the MPA-JHU join of
    :mod:`galforge.archives.sdss`, the shard manifests here, the spectra study's
    tables and the mock's truth table all use it. -1 where a part is out of
    range (plate >= 10**7, mjd >= 10**5, fiber >= 1000, or negative).

    Parameters
    ----------
    plate, mjd, fiber : int or array_like
        Spectrum identity (DR7 ``fiberID`` is the fiber).

    Returns
    -------
    numpy.ndarray
        int64 keys (0-d for scalars).
    """
    p = np.asarray(plate, dtype=np.int64)
    m = np.asarray(mjd, dtype=np.int64)
    f = np.asarray(fiber, dtype=np.int64)
    ok = (p >= 0) & (p < 10**7) & (m >= 0) & (m < 10**5) & (f >= 0) & (f < 10**3)
    return np.where(ok, (p * 10**5 + m) * 10**3 + f, -1)


def _id_columns(table: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    if isinstance(table, pd.DataFrame):
        cols = {c: table[c].to_numpy() for c in table.columns}
    elif isinstance(table, Table):
        cols = {c: np.asarray(table[c]) for c in table.colnames}
    else:
        cols = {c: np.asarray(v) for c, v in dict(table).items()}
    lower = {str(c).lower(): c for c in cols}
    found = {}
    for std, aliases in (("plate", ("plate", "plateid")), ("mjd", ("mjd",)),
                         ("fiber", _FIBER_ALIASES)):
        name = next((lower[a] for a in aliases if a in lower), None)
        if name is None:
            raise InputError(
                f"spectra table: no {std!r} column (looked for {', '.join(aliases)}); "
                f"it has {sorted(map(str, cols))}"
            )
        values = np.asarray(cols[name])
        if values.dtype.kind not in "iu":
            fv = values.astype(np.float64)
            if not np.all(np.isfinite(fv)) or np.any(fv != np.round(fv)):
                raise InputError(f"spectra table: column {name!r} must hold integers")
        found[std] = values.astype(np.int64)
    checksum = cols.get(lower["checksum"]) if "checksum" in lower else None
    return found["plate"], found["mjd"], found["fiber"], checksum


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify_file(path: Path, plate: int, mjd: int, fiber: int) -> str | None:
    """Open the FITS file, read its identity and its spectrum data; a problem or None.

    DR7 spSpec: primary header ``PLATEID``, ``MJD``, ``FIBERID`` and the image;
    DR8+ spec: the ``SPECOBJ`` row's ``PLATE``, ``MJD``, ``FIBERID`` and the
    ``COADD`` table. Catches error pages saved as files and truncated files.
    """
    try:
        with fits.open(path, memmap=False) as hdul:
            hdr = hdul[0].header
            # DR8+ primary headers carry COEFF0 too; only spSpec has the 2-D image
            if "COEFF0" in hdr and hdr.get("NAXIS", 0) == 2:
                got = (int(hdr["PLATEID"]), int(hdr["MJD"]), int(hdr["FIBERID"]))
                data = hdul[0].data
            else:
                row = hdul["SPECOBJ"].data[0]
                got = (int(row["PLATE"]), int(row["MJD"]), int(row["FIBERID"]))
                data = hdul["COADD"].data
            if data is None or len(data) == 0:
                return f"{path}: no spectrum data"
            np.asarray(data[0])  # forces the read of the data block
    except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError) as exc:
        return f"{path}: not a readable SDSS spectrum ({exc})"
    if got != (plate, mjd, fiber):
        return f"{path}: holds plate/mjd/fiber {got[0]}/{got[1]}/{got[2]}, expected {plate}/{mjd}/{fiber}"
    return None


def fetch_spectra_shard(
    table: Any,
    shard: int,
    n_shards: int,
    dest_root: str | os.PathLike,
    *,
    fmt: str = "spec-lite",
    base_url: str | None = None,
    manifest_path: str | os.PathLike | None = None,
    options: DownloadOptions | None = None,
    max_workers: int = 4,
    max_missing: float = 0.0,
    verify: bool = True,
    progress: bool = False,
) -> Path:
    """Download the spectra of one plate shard and write its manifest.

    Parameters
    ----------
    table : astropy Table, pandas DataFrame or mapping
        The spectra wanted: ``plate``, ``mjd``, ``fiber`` (or ``fiberID`` /
        ``fiber_id``); an optional ``checksum`` column (``"md5:<hex>"``, ...)
        is verified. Duplicate spectra are fetched once.
    shard, n_shards : int
        This job takes the plates with :func:`shard_of` ``== shard``.
    dest_root : path
        Files go to ``dest_root/PLATE4/<archive name>``.
    fmt : str
        ``"spec-lite"`` (default), ``"spec-full"`` or ``"spSpec"``.
    base_url : str, optional
        Archive folder (see :func:`spectrum_url`); a mirror or test server.
    manifest_path : path, optional
        Where the manifest CSV goes; ``dest_root/manifest-SSSS-of-NNNN.csv`` by default.
    options : DownloadOptions, optional
        Retries, timeouts, ... of the download layer (its per-file bars are off;
        ``progress`` shows one bar for the shard).
    max_workers : int
        Downloads in flight at once.
    max_missing : float
        Largest fraction of the shard's spectra the archive may lack (HTTP 404)
        before the shard fails; they are listed with status ``missing``.
    verify : bool
        Open every file as FITS, read its spectrum data and check its
        plate/mjd/fiber; a bad file is deleted and the shard fails.
    progress : bool
        Show a tqdm bar for the verification pass.

    Returns
    -------
    pathlib.Path
        The manifest CSV (:data:`MANIFEST_COLUMNS`), rows sorted by key.

    Raises
    ------
    InputError
        Bad table or shard arguments.
    DownloadError
        Downloads failed for reasons other than 404, too many spectra missing,
        or a downloaded file is not the spectrum asked for. No manifest is
        written; partial downloads are kept for the next run.
    """
    if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)) or not (
        0 <= shard < n_shards
    ):
        raise InputError(f"shard must be an integer in [0, {n_shards}), got {shard!r}")
    if not 0.0 <= max_missing <= 1.0:
        raise InputError(f"max_missing must be in [0, 1], got {max_missing}")
    if fmt not in _DEFAULT_BASE:
        raise InputError(f"unknown spectrum format {fmt!r}; use {', '.join(_DEFAULT_BASE)}")
    dest_root = Path(dest_root)
    plate, mjd, fiber, checksum = _id_columns(table)
    sel = shard_of(plate, n_shards) == shard if len(plate) else np.zeros(0, bool)
    keys = spectrum_key(plate, mjd, fiber)
    if np.any(keys[sel] < 0):
        i = int(np.flatnonzero(sel & (keys < 0))[0])
        raise InputError(f"spectra table: row {i} has out-of-range plate/mjd/fiber "
                         f"{plate[i]}/{mjd[i]}/{fiber[i]}")
    idx = np.flatnonzero(sel)
    _, first = np.unique(keys[idx], return_index=True)
    idx = idx[np.sort(first)]
    idx = idx[np.argsort(keys[idx], kind="stable")]
    manifest_path = (
        Path(manifest_path)
        if manifest_path is not None
        else dest_root / f"manifest-{int(shard):04d}-of-{int(n_shards):04d}.csv"
    )
    rows: list[dict[str, Any]] = []
    requests: list[DownloadRequest] = []
    for i in idx:
        p, m, f = int(plate[i]), int(mjd[i]), int(fiber[i])
        dest = dest_root / f"{p:04d}" / _filename(fmt, p, m, f)
        url = spectrum_url(p, m, f, fmt=fmt, base_url=base_url)
        cached = dest.is_file()
        rows.append({"key": int(keys[i]), "plate": p, "mjd": m, "fiber": f, "path": str(dest),
                     "status": "cached" if cached else "ok", "url": url, "root": str(dest_root)})
        cs = None if checksum is None else checksum[i]
        cs = None if cs is None or (isinstance(cs, float) and np.isnan(cs)) or cs == "" else str(cs)
        requests.append(DownloadRequest(url=url, dest=dest, checksum=cs))
    log.info("spectra shard %d/%d: %d spectra on %d plates (%d already on disk)", shard,
             n_shards, len(rows), len({r["plate"] for r in rows}),
             sum(r["status"] == "cached" for r in rows))
    opts = options if options is not None else DownloadOptions(progress=progress)
    failures: list[tuple[DownloadRequest, BaseException]] = []
    if requests:
        try:
            download_many(requests, max_workers=max_workers, options=opts)
        except DownloadManyError as exc:
            failures = list(exc.failures)
    by_dest = {str(Path(r.dest)): j for j, r in enumerate(requests)}
    other: list[str] = []
    for req, exc in failures:
        row = rows[by_dest[str(Path(req.dest))]]
        if isinstance(exc, HTTPStatusError) and exc.status == 404:
            row["status"] = "missing"
            log.warning("spectrum %s/%s/%s not on the archive (404): %s", row["plate"],
                        row["mjd"], row["fiber"], row["url"])
        else:
            other.append(f"  - {row['url']}: {exc}")
    if other:
        raise DownloadError(
            f"spectra shard {shard}/{n_shards}: {len(other)} of {len(rows)} downloads failed "
            f"(a rerun resumes them); no manifest written:\n" + "\n".join(other[:20])
        )
    n_missing = sum(r["status"] == "missing" for r in rows)
    if rows and n_missing > max_missing * len(rows):
        raise DownloadError(
            f"spectra shard {shard}/{n_shards}: {n_missing} of {len(rows)} spectra are not on "
            f"the archive (404), more than max_missing={max_missing:g}; no manifest written"
        )
    bad: list[str] = []
    for row in tqdm(rows, desc=f"verify shard {shard}", unit="file", disable=not progress):
        path = Path(row["path"])
        if row["status"] == "missing":
            row["bytes"], row["sha256"] = 0, ""
            continue
        if verify:
            problem = _verify_file(path, row["plate"], row["mjd"], row["fiber"])
            if problem is not None:
                path.unlink(missing_ok=True)
                bad.append(f"  - {row['url']}: {problem}")
                continue
        row["bytes"] = path.stat().st_size
        row["sha256"] = _sha256(path)
    if bad:
        raise DownloadError(
            f"spectra shard {shard}/{n_shards}: {len(bad)} downloaded file(s) are not the "
            f"spectrum asked for and were deleted; no manifest written:\n" + "\n".join(bad[:20])
        )
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    with atomic_path(manifest_path) as tmp:
        frame.to_csv(tmp, index=False)
    log.info("spectra shard %d/%d: manifest %s (%d ok, %d cached, %d missing)", shard, n_shards,
             manifest_path, sum(r["status"] == "ok" for r in rows),
             sum(r["status"] == "cached" for r in rows), n_missing)
    return manifest_path


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a shard manifest (:func:`fetch_spectra_shard`, or the mock's) and check its paths.

    Every row's ``path`` must resolve (symbolic links followed, ``..`` applied,
    relative paths taken from the working directory) to a file inside the folder of
    the ``root`` column, resolved the same way.

    Raises
    ------
    InputError
        Missing file or column, no (or more than one) root recorded, or a path outside
        the root (the first such row is named, with its path and the root).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"spectra manifest not found: {path}")
    try:
        frame = pd.read_csv(path, dtype={"sha256": str, "status": str, "path": str, "url": str,
                                         "root": str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable manifest CSV ({exc})") from exc
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        hint = (" (a manifest of an earlier galforge, which did not record the folder of its "
                "files: rerun the step that writes it, spectra-fetch or spectra-mock)"
                if missing == ["root"] else "")
        raise InputError(f"{path}: manifest lacks column(s) {', '.join(missing)}{hint}")
    _check_confined(path, frame)
    return frame


def _check_confined(manifest: Path, frame: pd.DataFrame) -> None:
    """Raise unless every ``path`` of the manifest lies in its one ``root`` folder."""
    if frame.empty:
        return
    roots = sorted(set(frame["root"].astype(str)))
    if len(roots) != 1 or not roots[0]:
        raise InputError(f"{manifest}: the 'root' column must hold one folder on every row, "
                         f"got {roots[:3]!r}")
    root = roots[0]
    base = os.path.realpath(root)
    outside = []
    for i, p in enumerate(frame["path"].astype(str)):
        real = os.path.realpath(p) if p else ""
        if not real or real == base or os.path.commonpath([base, real]) != base:
            outside.append((i, p, real))
    if outside:
        i, p, real = outside[0]
        more = f" ({len(outside)} rows in all)" if len(outside) > 1 else ""
        via = f" (it resolves to {real})" if real and real != p else ""
        raise InputError(
            f"{manifest}: row {i} (CSV line {i + 2}, key {frame['key'].iloc[i]}) lists the "
            f"spectrum file {p!r}{via}, outside the folder {root!r} the manifest's files must "
            f"lie in; refusing the manifest{more}")
