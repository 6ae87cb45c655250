"""Select the spectra study's galaxies: SDSS spectra x GSWLC (x MPA-JHU metallicity).

A spectrum is kept when, in this order of checks,

1. its file reads (:func:`galforge.spectra.readers.read_spectrum`),
2. it is not a second copy of a spectrum already seen (e.g. lite and full),
3. its class is a galaxy (``GALAXY``; DR7 ``GAL_EM`` too),
4. ``zmin < z < zmax`` (default 0 < z < 0.1),
5. its redshift is reliable (:attr:`SpectrumData.redshift_reliable`: DR8+
   ``ZWARNING == 0``; DR7 no fatal ``zWarning`` bit and ``Z_CONF > 0.35``),
6. GSWLC lists it (same plate, MJD and fiber), and
7. GSWLC gives a finite stellar mass and SFR (and, with
   ``require_metallicity``, MPA-JHU a finite 12 + log(O/H)).

Every other spectrum is logged (logger ``galforge.spectra``) with the first
reason that applies and listed in the rejects table with a short ``code``:
``unreadable``, ``duplicate``, ``not_galaxy``, ``z_range``, ``z_warning``,
``no_gswlc``, ``missing_property``.

Properties table (one row per kept spectrum, sorted by key): ``key`` (int64,
:func:`~galforge.archives.sdss_spectra.spectrum_key`), ``plate``, ``mjd``, ``fiber``
(int32), ``z`` (the spectrum's redshift), ``log_mstar``, ``log_sfr`` (GSWLC
``LOGMSTAR``, ``LOGSFR_SED``), ``log_ssfr = log_sfr - log_mstar``, ``oh_p50``
(MPA-JHU fibre 12 + log(O/H), NaN where there is none), ``av`` (GSWLC V-band
attenuation, NaN where missing), ``path`` (the spectrum file).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.table import Table
from tqdm import tqdm

from galforge.archives.gswlc import read_gswlc
from galforge.archives.sdss_spectra import spectrum_key
from galforge.io import InputError
from galforge.spectra.readers import SpectrumData, read_spectrum
from galforge.spectra.settings import SelectionSettings

__all__ = [
    "PROPERTY_COLUMNS",
    "REJECT_CODES",
    "REJECT_COLUMNS",
    "SelectionSettings",
    "SpectrumSelector",
    "select_spectra",
]

log = logging.getLogger("galforge.spectra")

#: Columns of the properties table, in order.
PROPERTY_COLUMNS: tuple[str, ...] = (
    "key", "plate", "mjd", "fiber", "z", "log_mstar", "log_sfr", "log_ssfr", "oh_p50", "av",
    "path",
)
#: Columns of the rejects table, in order.
REJECT_COLUMNS: tuple[str, ...] = ("key", "path", "code", "reason")
#: Reject codes, in the order the checks run.
REJECT_CODES: tuple[str, ...] = (
    "unreadable", "duplicate", "not_galaxy", "z_range", "z_warning", "no_gswlc",
    "missing_property",
)


def _columns(table: Any, what: str) -> dict[str, np.ndarray]:
    if isinstance(table, pd.DataFrame):
        return {str(c): table[c].to_numpy() for c in table.columns}
    if isinstance(table, Table):
        return {
            c: (np.ma.filled(table[c], np.nan) if np.ma.isMaskedArray(table[c])
                else np.asarray(table[c]))
            for c in table.colnames
        }
    if isinstance(table, Mapping):
        return {str(c): np.asarray(v) for c, v in table.items()}
    raise InputError(f"{what}: expected a table (astropy Table, pandas DataFrame), got {type(table)}")


def _lookup(cols: Mapping[str, np.ndarray], what: str, values: Iterable[str]) -> dict[int, int]:
    """key -> first row, from a table with plate, mjd, fiber (or fiberID / fiber_id)."""
    lower = {c.lower(): c for c in cols}
    names = []
    for std, aliases in (("plate", ("plate", "plateid")), ("mjd", ("mjd",)),
                         ("fiber", ("fiber", "fiberid", "fiber_id"))):
        name = next((lower[a] for a in aliases if a in lower), None)
        if name is None:
            raise InputError(f"{what}: no {std!r} column (looked for {', '.join(aliases)})")
        names.append(name)
    for v in values:
        if v.lower() not in lower:
            raise InputError(f"{what}: no {v!r} column; it has {sorted(cols)}")
    keys = spectrum_key(*(np.asarray(cols[n]).astype(np.int64) for n in names))
    out: dict[int, int] = {}
    dups = 0
    for row, k in enumerate(np.asarray(keys).tolist()):
        if k < 0:
            continue
        if k in out:
            dups += 1
            continue
        out[k] = row
    if dups:
        log.warning("%s lists %d spectra more than once; the first row of each is used", what, dups)
    return out


def _reject(rejects: list[dict[str, Any]], key: int, path: Path, code: str, reason: str,
            level: int = logging.INFO) -> None:
    log.log(level, "rejected %s: %s", path.name, reason)
    rejects.append({"key": key, "path": str(path), "code": code, "reason": reason})


class SpectrumSelector:
    """The cuts of the module docstring, one spectrum at a time.

    :func:`select_spectra` runs it over a list of files; a shard driver that reads
    every file once and hands the kept :class:`SpectrumData` on (e.g. to the
    preprocessing) calls :meth:`read` and :meth:`check` itself, then :meth:`result`.
    Parameters as :func:`select_spectra`.
    """

    def __init__(
        self,
        gswlc: Table | pd.DataFrame | str | os.PathLike,
        oh_table: Table | pd.DataFrame | None,
        settings: SelectionSettings | None = None,
    ) -> None:
        settings = settings if settings is not None else SelectionSettings()
        if settings.require_metallicity and oh_table is None:
            raise InputError("require_metallicity is set but no metallicity (oh_table) was given")
        self.settings = settings
        gtab = read_gswlc(gswlc) if isinstance(gswlc, str | os.PathLike) else gswlc
        gcols = _columns(gtab, "GSWLC table")
        self._gindex = _lookup(gcols, "GSWLC table", ("log_mstar", "log_sfr"))
        glower = {c.lower(): c for c in gcols}
        self._mstar = np.asarray(gcols[glower["log_mstar"]], dtype=np.float64)
        self._sfr = np.asarray(gcols[glower["log_sfr"]], dtype=np.float64)
        self._av = (np.asarray(gcols[glower["av"]], dtype=np.float64) if "av" in glower
                    else np.full(len(self._mstar), np.nan))
        if oh_table is not None:
            ocols = _columns(oh_table, "metallicity table")
            self._oindex = _lookup(ocols, "metallicity table", ("oh_p50",))
            olower = {c.lower(): c for c in ocols}
            self._oh = np.asarray(ocols[olower["oh_p50"]], dtype=np.float64)
        else:
            self._oindex, self._oh = {}, np.zeros(0)
        self._kept: list[dict[str, Any]] = []
        self._rejects: list[dict[str, Any]] = []
        self._seen: set[int] = set()
        self._n = 0
        self._zlabel = f"{settings.zmin:g} < z < {settings.zmax:g}"

    def read(self, path: str | os.PathLike) -> SpectrumData | None:
        """Read one file (check 1); None, with the file listed as ``unreadable``, if it fails."""
        path = Path(path)
        self._n += 1
        try:
            return read_spectrum(path)
        except InputError as exc:
            _reject(self._rejects, -1, path, "unreadable", f"unreadable file: {exc}",
                    logging.WARNING)
            return None

    def check(self, spec: SpectrumData) -> dict[str, Any] | None:
        """Checks 2-7 for a spectrum :meth:`read` returned: its properties row when kept
        (:data:`PROPERTY_COLUMNS`), else None (the reason is logged and listed)."""
        settings, path, rejects = self.settings, spec.path, self._rejects
        key = spec.key
        ids = f"{spec.plate}/{spec.mjd}/{spec.fiber}"
        if key in self._seen:
            _reject(rejects, key, path, "duplicate", f"spectrum {ids} already selected from "
                    "another file")
            return None
        self._seen.add(key)
        if not spec.is_galaxy:
            _reject(rejects, key, path, "not_galaxy",
                    f"not a galaxy: class {spec.spec_class} (spectrum {ids}, z={spec.z:.4f})")
            return None
        if not settings.zmin < spec.z < settings.zmax:
            _reject(rejects, key, path, "z_range",
                    f"redshift z={spec.z:.4f} outside {self._zlabel} (spectrum {ids})")
            return None
        if not spec.redshift_reliable:
            what = "zWarning" if spec.source_format == "spSpec" else "ZWARNING"
            conf = f", zConf={spec.z_conf:.2f}" if math.isfinite(spec.z_conf) else ""
            _reject(rejects, key, path, "z_warning",
                    f"unreliable redshift: {what}={spec.z_warning}{conf} (spectrum {ids})")
            return None
        row = self._gindex.get(key)
        if row is None:
            _reject(rejects, key, path, "no_gswlc", f"no GSWLC match for spectrum {ids}")
            return None
        oh = self._oh[self._oindex[key]] if key in self._oindex else np.nan
        mstar, sfr = self._mstar[row], self._sfr[row]
        missing = [name for name, value in (("log_mstar", mstar), ("log_sfr", sfr))
                   if not np.isfinite(value)]
        if settings.require_metallicity and not np.isfinite(oh):
            missing.append("oh_p50")
        if missing:
            _reject(rejects, key, path, "missing_property",
                    f"missing property: {', '.join(missing)} (spectrum {ids})")
            return None
        kept = {
            "key": key, "plate": spec.plate, "mjd": spec.mjd, "fiber": spec.fiber, "z": spec.z,
            "log_mstar": float(mstar), "log_sfr": float(sfr),
            "log_ssfr": float(sfr - mstar), "oh_p50": float(oh),
            "av": float(self._av[row]), "path": str(path),
        }
        self._kept.append(kept)
        return kept

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The properties and rejects tables of :func:`select_spectra` (and its log line)."""
        props = pd.DataFrame(self._kept, columns=list(PROPERTY_COLUMNS))
        props = props.astype({"key": np.int64, "plate": np.int32, "mjd": np.int32,
                              "fiber": np.int32, "z": np.float64, "log_mstar": np.float64,
                              "log_sfr": np.float64, "log_ssfr": np.float64,
                              "oh_p50": np.float64, "av": np.float64, "path": object})
        props = props.sort_values("key", kind="stable").reset_index(drop=True)
        rej = pd.DataFrame(self._rejects, columns=list(REJECT_COLUMNS)).astype({"key": np.int64})
        counts = rej["code"].value_counts().to_dict() if len(rej) else {}
        log.info(
            "selection: kept %d of %d spectra (%s); rejected: %s",
            len(props), self._n, self._zlabel,
            ", ".join(f"{c} {counts[c]}" for c in REJECT_CODES if c in counts) or "none",
        )
        return props, rej


def select_spectra(
    spectra_paths: Iterable[str | os.PathLike],
    gswlc: Table | pd.DataFrame | str | os.PathLike,
    oh_table: Table | pd.DataFrame | None,
    settings: SelectionSettings | None = None,
    *,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-match spectra with GSWLC (and metallicity) and apply the sample cuts.

    Parameters
    ----------
    spectra_paths : iterable of path
        Spectrum files (DR7 spSpec and/or DR8+ spec).
    gswlc : astropy Table, DataFrame or path
        The standard GSWLC table of :func:`galforge.archives.gswlc.read_gswlc`
        (``plate``, ``mjd``, ``fiber``, ``log_mstar``, ``log_sfr``, optional
        ``av``), or a file for it.
    oh_table : astropy Table, DataFrame or None
        Metallicity per spectrum: ``plate``, ``mjd``, ``fiberID`` (or
        ``fiber``) and ``oh_p50``, as :func:`galforge.archives.mpajhu.read_mpajhu`
        returns with ``fiboh=``; None: ``oh_p50`` is NaN throughout.
    settings : SelectionSettings, optional
        Cuts; defaults when None.
    progress : bool
        Show a tqdm bar over the files.

    Returns
    -------
    properties : pandas.DataFrame
        Kept spectra, :data:`PROPERTY_COLUMNS`, sorted by key.
    rejects : pandas.DataFrame
        Rejected spectra, :data:`REJECT_COLUMNS` (``key`` -1 for an unreadable
        file), in input order.

    Raises
    ------
    InputError
        A bad GSWLC or metallicity table (missing column); ``require_metallicity``
        without ``oh_table``. Bad spectrum files are rejected, not raised.
    """
    selector = SpectrumSelector(gswlc, oh_table, settings)
    paths = [Path(p) for p in spectra_paths]
    for path in tqdm(paths, desc="select spectra", unit="file", disable=not progress):
        spec = selector.read(path)
        if spec is not None:
            selector.check(spec)
    return selector.result()
