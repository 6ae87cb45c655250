"""Preprocessing of SDSS spectra for the spectra study: rest frame, 4000 pixels, masks, infill.

Steps (per spectrum)
--------------------
1. **Bad pixels** (observed frame): ``ivar <= 0``, a non-finite flux or ivar,
   an ``and_mask`` bit of :attr:`PreprocessSettings.bad_mask_bits`, or a pixel
   within ``half_width`` of a strong sky line (:attr:`PreprocessSettings.sky_lines`,
   observed vacuum wavelengths).
2. **Rest frame and resampling**: ``λ_rest = λ_obs / (1 + z)``, resampled onto
   ``n_pix`` pixels uniformly spaced in ``log λ`` with centres
   ``logspace(log10 wave_min, log10 wave_max, n_pix)`` by the flux-conserving
   resampler of :mod:`galforge.spectra.resample` (equal to spectres 2.2, with
   error propagation). Spectra on the SDSS grid (``log10 λ = k · 1e-4``; float32
   ``loglam`` values are snapped to it, a change below 3e-7 in λ) go through the
   batched fast path, others through the general one. Bad pixels enter with
   infinite error, so every new pixel that overlaps a bad old pixel gets an
   infinite error and is masked; new pixels outside the observed range are
   filled and masked.
3. **Normalisation**: the flux and errors are divided by the median of the good
   resampled pixels in the rest-frame window ``norm_window`` (default
   5300–5850 Å, spender's window, Melchior et al. 2023): a stretch of stellar
   continuum without strong emission lines ([O III] 5007 and He I 5876 lie
   outside; only weak Fe/Ca absorption inside), covered by every SDSS spectrum
   for z < 0.5. ``weight = ivar · norm²`` (inverse variance of the normalised
   flux), 0 on masked pixels.
4. **Rejection** (with the reason logged and listed): an invalid redshift, fewer
   than ``min_norm_pixels`` good pixels in the window, a non-positive median
   there, or a good-pixel fraction below ``min_good_fraction``.
5. **Infill** (:func:`galforge.spectra.store.merge_and_infill`): masked pixels are
   replaced by the iterative gappy-PCA reconstruction
   (:class:`galforge.spectra.infill.IterativePCAInfill`) fitted on a seeded random
   subset of the merged spectra; their weight stays 0 and ``mask`` stays True.

Bad ``and_mask`` bits (SDSS ``spPixMask``, numbers in
:data:`galforge.archives.sdss_pixmask.PIXMASK_BITS`): FULLREJECT (18), NOSKY (22),
BRIGHTSKY (23), NODATA (24), COMBINEREJ (25), BADFLUXFACTOR (26), BADSKYCHI (27),
REDMONSTER (28): pixels without data, rejected in extraction or combination,
with unknown or dominant sky, or a bad flux calibration. Not masked:
NEARBADPIXEL, LOWFLAT, PARTIALREJECT, SCATTEREDLIGHT, CROSSTALK (mild, their
ivar already accounts for them), the fibre bits 0-12, and bit 30 (DR7 spSpec
``EMLINE``, "emission line detected here": the real DR7 files set it on Hα,
[N II], [S II], [O II] — masking it would remove the lines).

Sky lines (observed frame, vacuum Å = air × n, Morton 2000; half-width Å):
[O I] 5577.34 air → 5578.89 (±5; the brightest line, its residual wings are
widest), Na D 5889.95/5895.92 → 5891.58/5897.56 (±4 each), [O I] 6300.30 →
6302.05 (±4), [O I] 6363.78 → 6365.54 (±4). The OH forest redwards of ~6800 Å is
left to the pipeline's BRIGHTSKY flag, which marks its strong lines pixel by
pixel.

Steps 1-4 run here, a batch at a time (:func:`prepare_spectra`), and
:func:`preprocess_shard` drives them over one shard of spectrum files; the
HDF5 files (their layout, writers and reader) are in :mod:`galforge.spectra.store`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

from galforge.io import InputError, atomic_path
from galforge.spectra.resample import (
    SDSS_DLOGLAM,
    resample,
    resample_shifted_loglam,
    uniform_loglam_grid,
)
from galforge.spectra.settings import (
    DEFAULT_BAD_MASK_BITS,
    DEFAULT_SKY_LINES,
    PreprocessSettings,
)
from galforge.spectra.store import ShardWriter, open_shard

__all__ = [
    "DEFAULT_BAD_MASK_BITS",
    "DEFAULT_SKY_LINES",
    "PreparedSpectra",
    "PreprocessSettings",
    "ShardPreprocessor",
    "observed_bad_pixels",
    "prepare_spectra",
    "prepare_spectrum",
    "preprocess_shard",
]

log = logging.getLogger("galforge.spectra")

_ID_COLUMNS = ("key", "plate", "mjd", "fiber")


# --------------------------------------------------------------------------- one batch


def observed_bad_pixels(loglam: Any, flux: Any, ivar: Any, and_mask: Any,
                        settings: PreprocessSettings) -> np.ndarray:
    """Bad pixels of one spectrum in its observed frame (step 1 of the module docstring).

    Returns
    -------
    numpy.ndarray
        bool ``(npix,)``, True = bad.
    """
    ll = np.asarray(loglam, dtype=np.float64)
    f = np.asarray(flux, dtype=np.float64)
    iv = np.asarray(ivar, dtype=np.float64)
    am = np.asarray(and_mask).astype(np.int64, copy=False)
    bad = ~(np.isfinite(f) & np.isfinite(iv) & (iv > 0))
    bad |= (am & settings.bad_bits_value) != 0
    if settings.sky_lines:
        lam = 10.0**ll
        for c, hw in settings.sky_lines:
            bad |= np.abs(lam - c) <= hw
    return bad


@dataclass(frozen=True)
class PreparedSpectra:
    """Preprocessed spectra (before infill), one row per input spectrum.

    Attributes
    ----------
    flux : numpy.ndarray
        ``(N, n_pix)`` float64 normalised flux, NaN where masked.
    weight : numpy.ndarray
        ``(N, n_pix)`` inverse variance of ``flux``; 0 where masked.
    mask : numpy.ndarray
        ``(N, n_pix)`` bool, True = bad or not covered.
    norm : numpy.ndarray
        ``(N,)`` normalisation (median good flux in the window, input units); NaN if none.
    good_fraction : numpy.ndarray
        ``(N,)`` fraction of unmasked pixels.
    reasons : list of str or None
        Why each spectrum is rejected, None when accepted.
    """

    flux: np.ndarray
    weight: np.ndarray
    mask: np.ndarray
    norm: np.ndarray
    good_fraction: np.ndarray
    reasons: list[str | None]

    @property
    def accepted(self) -> np.ndarray:
        """bool ``(N,)``: spectra without a rejection reason."""
        return np.array([r is None for r in self.reasons], dtype=bool)


def _spectrum_fields(sp: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    try:
        return (np.asarray(sp.loglam, dtype=np.float64), np.asarray(sp.flux, dtype=np.float64),
                np.asarray(sp.ivar, dtype=np.float64), np.asarray(sp.and_mask),
                float(sp.z))
    except AttributeError as exc:
        raise InputError(f"spectrum object lacks a field ({exc}); need loglam, flux, ivar, "
                         "and_mask, z") from None


def prepare_spectra(spectra: Sequence[Any], settings: PreprocessSettings | None = None
                    ) -> PreparedSpectra:
    """Steps 1-4 of the module docstring for a batch of spectra.

    Parameters
    ----------
    spectra
        Objects with ``loglam``, ``flux``, ``ivar``, ``and_mask`` and ``z``
        (e.g. :class:`galforge.spectra.readers.SpectrumData`).
    settings
        Defaults to :class:`PreprocessSettings()`.

    Returns
    -------
    PreparedSpectra
        Rejected spectra keep their row (with the reason) so that rows stay
        aligned with the input.
    """
    s = settings or PreprocessSettings()
    new = s.wave
    n = len(spectra)
    rflux = np.full((n, s.n_pix), np.nan)
    rerr = np.full((n, s.n_pix), np.nan)
    filled = np.ones((n, s.n_pix), dtype=bool)
    reasons: list[str | None] = [None] * n
    on_grid: list[tuple[int, int, int]] = []  # (row, k0, npix)
    prepared: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    for i, sp in enumerate(spectra):
        ll, f, iv, am, z = _spectrum_fields(sp)
        if not (math.isfinite(z) and z > -1):
            reasons[i] = f"invalid redshift z={z!r}"
            continue
        if not (ll.ndim == 1 and ll.size >= 2 and f.shape == ll.shape == iv.shape
                and np.shape(am) == ll.shape):
            raise InputError(f"spectrum row {i} ({getattr(sp, 'path', '?')}): loglam, flux, "
                             "ivar and and_mask must be 1-D arrays of one length >= 2")
        bad = observed_bad_pixels(ll, f, iv, am, s)
        with np.errstate(divide="ignore"):
            err = np.where(bad, np.inf, 1.0 / np.sqrt(np.where(bad, 1.0, iv)))
        fl = np.where(bad, 0.0, f)
        prepared[i] = (fl, err, z)
        try:
            k0, npx = uniform_loglam_grid(ll, SDSS_DLOGLAM)
            on_grid.append((i, k0, npx))
        except InputError:
            rf, re, fm = resample(new, 10.0**ll / (1.0 + z), fl, err, fill=np.nan)
            rflux[i], rerr[i], filled[i] = rf, re, fm
    # fast path: spectra on the SDSS grid, batched over a common pixel range
    for b0 in range(0, len(on_grid), s.batch):
        rows = on_grid[b0:b0 + s.batch]
        kmin = min(k0 for _, k0, _ in rows)
        kmax = max(k0 + npx for _, k0, npx in rows)
        ncom = kmax - kmin
        F = np.zeros((len(rows), ncom))
        E = np.full((len(rows), ncom), np.inf)
        first = np.empty(len(rows), dtype=np.intp)
        npix = np.empty(len(rows), dtype=np.intp)
        zz = np.empty(len(rows))
        for j, (i, k0, npx) in enumerate(rows):
            fl, err, z = prepared[i]
            first[j], npix[j], zz[j] = k0 - kmin, npx, z
            F[j, first[j]:first[j] + npx] = fl
            E[j, first[j]:first[j] + npx] = err
        ll_com = (kmin + np.arange(ncom)) * SDSS_DLOGLAM
        rf, re, fm = resample_shifted_loglam(new, ll_com, zz, F, E, np.nan, first=first,
                                             npix=npix)
        idx = [i for i, _, _ in rows]
        rflux[idx], rerr[idx], filled[idx] = rf, re, fm
    # masks, normalisation, rejection
    with np.errstate(invalid="ignore", divide="ignore"):
        mask = filled | ~np.isfinite(rerr) | ~(rerr > 0) | ~np.isfinite(rflux)
    lo, hi = s.norm_window
    win = (new >= lo) & (new <= hi)
    good_win = ~mask[:, win]
    counts = good_win.sum(1)
    norm = np.full(n, np.nan)
    for i in range(n):
        if reasons[i] is not None:
            continue
        if counts[i] < s.min_norm_pixels:
            reasons[i] = (f"{int(counts[i])} good pixels in the normalisation window "
                          f"{lo:g}-{hi:g} Å (< min_norm_pixels {s.min_norm_pixels})")
            continue
        med = float(np.median(rflux[i, win][good_win[i]]))
        if not (med > 0 and math.isfinite(med)):
            reasons[i] = f"median flux {med:.4g} in the normalisation window {lo:g}-{hi:g} Å <= 0"
            continue
        norm[i] = med
    good_fraction = 1.0 - mask.mean(1)
    for i in range(n):
        if reasons[i] is None and good_fraction[i] < s.min_good_fraction:
            reasons[i] = (f"good pixel fraction {good_fraction[i]:.3f} < min_good_fraction "
                          f"{s.min_good_fraction:g}")
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = rflux / norm[:, None]
        weight = (norm[:, None] / rerr) ** 2
    flux[mask] = np.nan
    weight[mask] = 0.0
    bad_rows = np.array([r is not None for r in reasons], dtype=bool)
    weight[bad_rows] = 0.0
    return PreparedSpectra(flux=flux, weight=weight, mask=mask, norm=norm,
                           good_fraction=good_fraction, reasons=reasons)


def prepare_spectrum(
    loglam: Any,
    flux: Any,
    ivar: Any,
    and_mask: Any,
    z: float,
    settings: PreprocessSettings | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str | None]:
    """Steps 1-4 of the module docstring for one spectrum.

    Parameters
    ----------
    loglam, flux, ivar, and_mask
        The :class:`~galforge.spectra.readers.SpectrumData` fields (observed frame).
    z
        Redshift.
    settings
        Defaults to :class:`PreprocessSettings()`.

    Returns
    -------
    flux, weight, mask, norm, reason
        Rest-frame normalised flux (NaN where masked), weight, mask on
        :attr:`PreprocessSettings.wave`; the normalisation; the rejection reason
        or None.
    """
    sp = SimpleNamespace(loglam=loglam, flux=flux, ivar=ivar, and_mask=and_mask, z=z)
    out = prepare_spectra([sp], settings)
    return out.flux[0], out.weight[0], out.mask[0], float(out.norm[0]), out.reasons[0]


# --------------------------------------------------------------------------- one shard


def _spectrum_paths(spectra: Any) -> list[tuple[Path | None, str | None]]:
    """(path, skip reason) per entry of a path list, a manifest frame or a manifest CSV."""
    import pandas as pd

    if isinstance(spectra, (str, os.PathLike)) and str(spectra).endswith(".csv"):
        from galforge.archives.sdss_spectra import read_manifest

        spectra = read_manifest(spectra)
    if isinstance(spectra, pd.DataFrame):
        if "path" not in spectra.columns:
            raise InputError("spectra manifest has no 'path' column")
        out: list[tuple[Path | None, str | None]] = []
        status = spectra["status"] if "status" in spectra.columns else None
        for j, p in enumerate(spectra["path"]):
            st = str(status.iloc[j]) if status is not None else "ok"
            if not isinstance(p, str) or not p or st not in ("ok", "cached", ""):
                out.append((None, f"not downloaded (manifest status {st!r})"))
            else:
                out.append((Path(p), None))
        return out
    return [(Path(p), None) for p in spectra]


def _properties_frame(properties: Any) -> Any:
    import pandas as pd

    if isinstance(properties, (str, os.PathLike)):
        path = Path(properties)
        try:
            properties = (pd.read_parquet(path) if path.suffix == ".parquet"
                          else pd.read_csv(path))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable properties table ({exc})") from exc
    if not isinstance(properties, pd.DataFrame):
        raise InputError("properties must be a pandas DataFrame or a parquet/CSV path")
    frame = properties.copy()
    if "key" not in frame.columns:
        missing = [c for c in ("plate", "mjd", "fiber") if c not in frame.columns]
        if missing:
            raise InputError(f"properties table lacks 'key' and {', '.join(missing)}")
        from galforge.archives.sdss_spectra import spectrum_key

        frame["key"] = spectrum_key(frame["plate"].to_numpy(), frame["mjd"].to_numpy(),
                                    frame["fiber"].to_numpy())
    frame["key"] = frame["key"].astype(np.int64)
    dup = frame["key"].duplicated()
    if dup.any():
        raise InputError(f"properties table: duplicate key {int(frame['key'][dup].iloc[0])}")
    return frame.set_index("key", drop=False)


def _property_columns(frame: Any) -> list[str]:
    cols = []
    for c in frame.columns:
        if c in _ID_COLUMNS:
            continue
        if np.issubdtype(frame[c].dtype, np.number) or frame[c].dtype == bool:
            cols.append(str(c))
    return cols


class ShardPreprocessor:
    """Preprocesses spectra into an open shard (:func:`~galforge.spectra.store.open_shard`),
    :attr:`PreprocessSettings.batch` at a time, in the order they are added.

    :func:`preprocess_shard` feeds it files it reads; a driver that already holds the
    :class:`~galforge.spectra.readers.SpectrumData` (read once for the selection) adds
    them itself. The rows, their batches and so the values written depend only on the
    spectra and their order.
    """

    def __init__(self, writer: ShardWriter, settings: PreprocessSettings,
                 prop_cols: Sequence[str]) -> None:
        self.writer, self.settings, self.prop_cols = writer, settings, list(prop_cols)
        self.rejects: list[dict[str, Any]] = []
        self._pending: list[tuple[Any, np.ndarray]] = []

    def add(self, sp: Any, values: Any) -> None:
        """Queue one spectrum (``key``, ``path``, ``plate``, ``mjd``, ``fiber``, ``z`` and the
        fields of :func:`prepare_spectra`) with its property values (one per ``prop_cols``)."""
        self._pending.append((sp, np.asarray(values, dtype=np.float64)))
        if len(self._pending) >= self.settings.batch:
            self.flush()

    def reject(self, key: int, path: str, reason: str) -> None:
        """List a spectrum that is not preprocessed (e.g. not downloaded)."""
        self.rejects.append({"key": key, "path": path, "reason": reason})

    def flush(self) -> None:
        """Preprocess the queued spectra and append the accepted ones to the shard."""
        if not self._pending:
            return
        spectra = [sp for sp, _ in self._pending]
        out = prepare_spectra(spectra, self.settings)
        ok = out.accepted
        for sp, reason in zip(spectra, out.reasons, strict=True):
            if reason is not None:
                self.reject(sp.key, str(sp.path), reason)
                log.info("rejected %s (key %d): %s", sp.path, sp.key, reason)
        rows = [sp for sp, a in zip(spectra, ok, strict=True) if a]
        arrays = {
            "flux": out.flux[ok].astype(np.float32),
            "weight": out.weight[ok].astype(np.float32),
            "mask": out.mask[ok],
            "key": np.array([sp.key for sp in rows], dtype=np.int64),
            "plate": np.array([sp.plate for sp in rows], dtype=np.int32),
            "mjd": np.array([sp.mjd for sp in rows], dtype=np.int32),
            "fiber": np.array([sp.fiber for sp in rows], dtype=np.int32),
            "z": np.array([sp.z for sp in rows], dtype=np.float64),
            "norm": out.norm[ok],
            "good_fraction": out.good_fraction[ok],
        }
        values = np.array([v for (_, v), a in zip(self._pending, ok, strict=True) if a],
                          dtype=np.float64).reshape(len(rows), len(self.prop_cols))
        self.writer.append(arrays, {c: values[:, j] for j, c in enumerate(self.prop_cols)})
        self._pending.clear()

    def finish(self) -> Any:
        """Flush, write the shard's ``rejects`` group; the rejects (``key, path, reason``)."""
        import pandas as pd

        self.flush()
        rej = pd.DataFrame(self.rejects, columns=["key", "path", "reason"])
        self.writer.write_rejects(rej)
        return rej


def preprocess_shard(
    spectra: Any,
    properties: Any,
    settings: PreprocessSettings | None,
    dest: str | os.PathLike,
    *,
    rejects_dest: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Preprocess one shard of spectrum files into a shard HDF5 (no infill).

    Parameters
    ----------
    spectra
        Spectrum files: a sequence of paths, a manifest DataFrame with a
        ``path`` column (rows whose ``status`` is not ok/cached are rejected as
        not downloaded), or the path of a manifest CSV
        (:func:`galforge.archives.sdss_spectra.read_manifest`).
    properties
        The selection's properties table (DataFrame, or parquet/CSV path) with
        ``key`` (or plate/mjd/fiber) and numeric property columns. Only spectra
        whose key is in it are processed; the others are skipped (the selection
        has already rejected them).
    settings
        :class:`PreprocessSettings` (defaults when None).
    dest
        The shard HDF5 (written atomically; layout in :mod:`galforge.spectra.store`).
    rejects_dest
        Optional CSV of the rejected spectra (``key, path, reason``).
    progress
        Show a tqdm bar.

    Returns
    -------
    dict
        ``n_files``, ``n_written``, ``n_rejected``, ``n_not_selected``, ``seconds``, and
        ``rejects``: the rejected spectra (a DataFrame ``key, path, reason``, as written
        into the shard's ``rejects`` group and ``rejects_dest``).

    Raises
    ------
    InputError
        Unreadable spectrum files (named), bad tables or settings.
    """
    from galforge.spectra.readers import read_spectrum

    t0 = time.perf_counter()
    s = settings or PreprocessSettings()
    entries = _spectrum_paths(spectra)
    props = _properties_frame(properties)
    prop_cols = _property_columns(props)
    values = dict(zip(props.index.tolist(), props[prop_cols].to_numpy(dtype=np.float64),
                      strict=True))
    n_not_selected = 0
    seen: set[int] = set()
    with open_shard(dest, s, prop_cols) as writer:
        pre = ShardPreprocessor(writer, s, prop_cols)
        for path, skip in tqdm(entries, desc="preprocess", unit="spectrum",
                               disable=not progress):
            if skip is not None:
                pre.reject(-1, "" if path is None else str(path), skip)
                continue
            sp = read_spectrum(path)
            key = sp.key
            if key not in props.index:
                n_not_selected += 1
                log.debug("skipped %s (key %d): not in the selected properties", path, key)
                continue
            if key in seen:
                raise InputError(f"{path}: spectrum key {key} appears twice in this shard")
            seen.add(key)
            if "z" in props.columns and abs(float(props.at[key, "z"]) - sp.z) > 1e-3:
                log.warning("%s: redshift %.5f differs from the properties table's %.5f; "
                            "using the spectrum's", path, sp.z, float(props.at[key, "z"]))
            pre.add(sp, values[key])
        rej = pre.finish()
        n_written = writer.n
    if rejects_dest is not None:
        with atomic_path(rejects_dest) as tmp:
            rej.to_csv(tmp, index=False)
    summary = {"n_files": len(entries), "n_written": n_written, "n_rejected": len(rej),
               "n_not_selected": n_not_selected, "seconds": time.perf_counter() - t0}
    log.info("preprocess shard %s: %d files, %d written, %d rejected, %d not selected "
             "(%.1f s)", dest, summary["n_files"], n_written, len(rej), n_not_selected,
             summary["seconds"])
    return {**summary, "rejects": rej}
