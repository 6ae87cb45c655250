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
5. **Infill** (:func:`merge_and_infill`): masked pixels are replaced by the
   iterative gappy-PCA reconstruction (:class:`galforge.spectra.infill.IterativePCAInfill`)
   fitted on a seeded random subset of the merged spectra; their weight stays 0
   and ``mask`` stays True.

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

Files
-----
Shard (:func:`preprocess_shard`, no infill): ``wave`` (n_pix,), ``flux``
(N, n_pix) float32 normalised, NaN where masked; ``weight`` float32; ``mask``
bool; ``key`` int64, ``plate``, ``mjd``, ``fiber`` int32, ``z`` float64,
``norm`` float64 (the normalisation, 1e-17 erg/s/cm²/Å), ``good_fraction``;
``properties/<name>`` float64; ``rejects/{key,path,reason}``; attrs
``settings`` (JSON), ``kind = "shard"``.

Final (:func:`merge_and_infill`): the same datasets with the masked flux
infilled (no NaN), rows in the order of the shards and of their inputs, attrs
``settings``, ``norm_window``, ``infill`` (JSON summary), ``kind = "spectra"``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

import galforge
from galforge.io import InputError, atomic_path
from galforge.spectra.infill import IterativePCAInfill
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

__all__ = [
    "DEFAULT_BAD_MASK_BITS",
    "DEFAULT_SKY_LINES",
    "PreparedSpectra",
    "PreprocessSettings",
    "merge_and_infill",
    "observed_bad_pixels",
    "prepare_spectra",
    "prepare_spectrum",
    "preprocess_shard",
    "SpectraFile",
    "read_spectra_file",
    "read_shard_rejects",
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


# --------------------------------------------------------------------------- shards


def _h5_comp(settings: PreprocessSettings) -> dict[str, Any]:
    if settings.compression == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    if settings.compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    return {}


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


class _ShardWriter:
    """Appends preprocessed rows to an open HDF5 file."""

    def __init__(self, h5: Any, settings: PreprocessSettings, prop_cols: list[str]) -> None:
        self.h5, self.n = h5, 0
        p = settings.n_pix
        comp = _h5_comp(settings)
        rows = max(1, min(256, settings.batch))
        h5["wave"] = settings.wave
        self.two_d = {
            "flux": h5.create_dataset("flux", (0, p), np.float32, maxshape=(None, p),
                                      chunks=(rows, p), **comp),
            "weight": h5.create_dataset("weight", (0, p), np.float32, maxshape=(None, p),
                                        chunks=(rows, p), **comp),
            "mask": h5.create_dataset("mask", (0, p), bool, maxshape=(None, p),
                                      chunks=(rows, p), **comp),
        }
        dtypes = {"key": np.int64, "plate": np.int32, "mjd": np.int32, "fiber": np.int32,
                  "z": np.float64, "norm": np.float64, "good_fraction": np.float64}
        self.one_d = {k: h5.create_dataset(k, (0,), dt, maxshape=(None,), chunks=(4096,))
                      for k, dt in dtypes.items()}
        g = h5.create_group("properties")
        self.props = {c: g.create_dataset(c, (0,), np.float64, maxshape=(None,),
                                          chunks=(4096,)) for c in prop_cols}

    def append(self, arrays: Mapping[str, np.ndarray], props: Mapping[str, np.ndarray]) -> None:
        k = len(arrays["key"])
        if k == 0:
            return
        for name, ds in list(self.two_d.items()) + list(self.one_d.items()):
            ds.resize(self.n + k, axis=0)
            ds[self.n:self.n + k] = arrays[name]
        for name, ds in self.props.items():
            ds.resize(self.n + k, axis=0)
            ds[self.n:self.n + k] = props[name]
        self.n += k


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
        The shard HDF5 (written atomically; layout in the module docstring).
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
    import h5py
    import pandas as pd

    from galforge.spectra.readers import read_spectrum

    t0 = time.perf_counter()
    s = settings or PreprocessSettings()
    entries = _spectrum_paths(spectra)
    props = _properties_frame(properties)
    prop_cols = _property_columns(props)
    rejects: list[dict[str, Any]] = []
    n_not_selected = 0
    seen: set[int] = set()
    with atomic_path(dest) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["kind"] = "shard"
            h5.attrs["settings"] = json.dumps(s.to_dict())
            h5.attrs["galforge_version"] = galforge.__version__
            writer = _ShardWriter(h5, s, prop_cols)
            pending: list[Any] = []

            def flush() -> None:
                if not pending:
                    return
                out = prepare_spectra(pending, s)
                ok = out.accepted
                for sp, reason in zip(pending, out.reasons, strict=True):
                    if reason is not None:
                        rejects.append({"key": sp.key, "path": str(sp.path), "reason": reason})
                        log.info("rejected %s (key %d): %s", sp.path, sp.key, reason)
                rows = [sp for sp, a in zip(pending, ok, strict=True) if a]
                keys = np.array([sp.key for sp in rows], dtype=np.int64)
                arrays = {
                    "flux": out.flux[ok].astype(np.float32),
                    "weight": out.weight[ok].astype(np.float32),
                    "mask": out.mask[ok],
                    "key": keys,
                    "plate": np.array([sp.plate for sp in rows], dtype=np.int32),
                    "mjd": np.array([sp.mjd for sp in rows], dtype=np.int32),
                    "fiber": np.array([sp.fiber for sp in rows], dtype=np.int32),
                    "z": np.array([sp.z for sp in rows], dtype=np.float64),
                    "norm": out.norm[ok],
                    "good_fraction": out.good_fraction[ok],
                }
                sel = props.loc[keys] if keys.size else props.iloc[:0]
                pvals = {c: sel[c].to_numpy(dtype=np.float64) for c in prop_cols}
                writer.append(arrays, pvals)
                pending.clear()

            for path, skip in tqdm(entries, desc="preprocess", unit="spectrum",
                                   disable=not progress):
                if skip is not None:
                    rejects.append({"key": -1, "path": "" if path is None else str(path),
                                    "reason": skip})
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
                pending.append(sp)
                if len(pending) >= s.batch:
                    flush()
            flush()
            rej = pd.DataFrame(rejects, columns=["key", "path", "reason"])
            g = h5.create_group("rejects")
            g["key"] = rej["key"].to_numpy(dtype=np.int64)
            str_dt = h5py.string_dtype()
            g.create_dataset("path", data=rej["path"].astype(str).to_numpy(dtype=object),
                             dtype=str_dt)
            g.create_dataset("reason", data=rej["reason"].astype(str).to_numpy(dtype=object),
                             dtype=str_dt)
            n_written = writer.n
    if rejects_dest is not None:
        with atomic_path(rejects_dest) as tmp:
            rej.to_csv(tmp, index=False)
    summary = {"n_files": len(entries), "n_written": n_written, "n_rejected": len(rejects),
               "n_not_selected": n_not_selected, "seconds": time.perf_counter() - t0}
    log.info("preprocess shard %s: %d files, %d written, %d rejected, %d not selected "
             "(%.1f s)", dest, summary["n_files"], n_written, len(rejects), n_not_selected,
             summary["seconds"])
    return {**summary, "rejects": rej}


def read_shard_rejects(shard_paths: Iterable[str | os.PathLike]) -> Any:
    """The rejects (``key, path, reason``) of shard files, concatenated (a DataFrame)."""
    import h5py
    import pandas as pd

    frames = []
    for p in shard_paths:
        with h5py.File(p, "r") as h5:
            g = h5["rejects"]
            frames.append(pd.DataFrame({
                "key": g["key"][()],
                "path": [x.decode() if isinstance(x, bytes) else str(x) for x in g["path"][()]],
                "reason": [x.decode() if isinstance(x, bytes) else str(x)
                           for x in g["reason"][()]],
            }))
    if not frames:
        return pd.DataFrame(columns=["key", "path", "reason"])
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- merge + infill


def _open_shards(shard_paths: Sequence[str | os.PathLike], settings: PreprocessSettings
                 ) -> tuple[list[int], list[str]]:
    import h5py

    sizes, prop_cols = [], None
    want = settings.resampling_dict()
    wave = settings.wave
    for p in shard_paths:
        try:
            h5 = h5py.File(p, "r")
        except OSError as exc:
            raise InputError(f"{p}: not a readable shard HDF5 ({exc})") from exc
        with h5:
            if h5.attrs.get("kind") != "shard":
                raise InputError(f"{p}: not a preprocessing shard (attr kind != 'shard')")
            got = PreprocessSettings.from_dict(json.loads(h5.attrs["settings"]))
            if got.resampling_dict() != want:
                diff = [k for k in want if got.resampling_dict()[k] != want[k]]
                raise InputError(f"{p}: written with other preprocessing settings ({diff})")
            if h5["wave"].shape != wave.shape or not np.allclose(h5["wave"][()], wave,
                                                                 rtol=1e-12):
                raise InputError(f"{p}: its wavelength grid differs from the settings'")
            cols = sorted(h5["properties"].keys())
            if prop_cols is None:
                prop_cols = cols
            elif cols != prop_cols:
                raise InputError(f"{p}: property columns {cols} differ from the first shard's "
                                 f"{prop_cols}")
            sizes.append(int(h5["key"].shape[0]))
    return sizes, prop_cols or []


def merge_and_infill(
    shard_paths: Sequence[str | os.PathLike],
    settings: PreprocessSettings | None,
    dest: str | os.PathLike,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Merge shard files and infill the masked pixels into the final spectra HDF5.

    The infill's eigenspectra are fitted on a seeded random subset of at most
    ``infill_fit_max`` spectra, then every spectrum's masked pixels are replaced
    by its gappy-PCA reconstruction (chunk by chunk, so memory stays bounded by
    ``infill_chunk`` rows). ``weight`` stays 0 and ``mask`` True on them.

    Returns
    -------
    dict
        ``n_spectra``, ``n_shards``, ``masked_fraction``, ``infill`` (the fit
        summary), ``seconds``, ``path``.

    Raises
    ------
    InputError
        A shard that is unreadable, written with other settings, or duplicate keys.
    """
    import h5py

    t0 = time.perf_counter()
    s = settings or PreprocessSettings()
    shard_paths = list(shard_paths)
    if not shard_paths:
        raise InputError("no shard files to merge")
    sizes, prop_cols = _open_shards(shard_paths, s)
    n = int(sum(sizes))
    if n <= s.infill_components:
        raise InputError(f"only {n} preprocessed spectra in {len(shard_paths)} shard(s); the "
                         f"infill needs more than infill_components = {s.infill_components}")
    p = s.n_pix
    comp = _h5_comp(s)
    rows = max(1, min(256, n))
    with atomic_path(dest) as tmp:
        with h5py.File(tmp, "w") as out:
            out["wave"] = s.wave
            ds = {
                "flux": out.create_dataset("flux", (n, p), np.float32, chunks=(rows, p), **comp),
                "weight": out.create_dataset("weight", (n, p), np.float32, chunks=(rows, p),
                                             **comp),
                "mask": out.create_dataset("mask", (n, p), bool, chunks=(rows, p), **comp),
            }
            one = ("key", "plate", "mjd", "fiber", "z", "norm", "good_fraction")
            vec: dict[str, list[np.ndarray]] = {k: [] for k in one}
            pvec: dict[str, list[np.ndarray]] = {c: [] for c in prop_cols}
            pos = 0
            step = s.infill_chunk
            with tqdm(total=n, desc="merge", unit="spectrum", disable=not progress) as bar:
                for path in shard_paths:
                    with h5py.File(path, "r") as h5:
                        k = int(h5["key"].shape[0])
                        for a in range(0, k, step):
                            b = min(k, a + step)
                            for name, d in ds.items():
                                d[pos + a:pos + b] = h5[name][a:b]
                            bar.update(b - a)
                        for name in one:
                            vec[name].append(h5[name][()])
                        for c in prop_cols:
                            pvec[c].append(h5["properties"][c][()])
                        pos += k
            keys = np.concatenate(vec["key"])
            uniq, counts = np.unique(keys, return_counts=True)
            if (counts > 1).any():
                raise InputError(f"spectrum key {int(uniq[counts > 1][0])} appears in more than "
                                 "one shard")
            for name in one:
                out[name] = np.concatenate(vec[name])
            g = out.create_group("properties")
            for c in prop_cols:
                g[c] = np.concatenate(pvec[c])
            # infill: fit on a seeded subset, then fill every chunk
            rng = np.random.default_rng(s.seed)
            fit_rows = np.sort(rng.choice(n, size=min(n, s.infill_fit_max), replace=False))
            model = IterativePCAInfill(s.infill_components, s.infill_iter, s.infill_tol,
                                       weighted=s.infill_weighted, random_state=s.seed)
            fx = ds["flux"][fit_rows]
            fm = ds["mask"][fit_rows]
            fw = ds["weight"][fit_rows] if s.infill_weighted else None
            model.fit(fx, fm, fw)
            del fx, fm, fw
            n_masked = 0
            with tqdm(total=n, desc="infill", unit="spectrum", disable=not progress) as bar:
                for a in range(0, n, step):
                    b = min(n, a + step)
                    fx = ds["flux"][a:b]
                    fm = ds["mask"][a:b]
                    fw = ds["weight"][a:b] if s.infill_weighted else None
                    filled = model.transform(fx, fm, fw)
                    if not np.all(np.isfinite(filled)):  # pragma: no cover - defensive
                        raise RuntimeError("infill left non-finite values")
                    ds["flux"][a:b] = filled.astype(np.float32)
                    n_masked += int(fm.sum())
                    bar.update(b - a)
            summary_infill = model.summary()
            summary_infill["n_fit_spectra"] = int(fit_rows.size)
            out.attrs["kind"] = "spectra"
            out.attrs["settings"] = json.dumps(s.to_dict())
            out.attrs["norm_window"] = np.asarray(s.norm_window)
            out.attrs["infill"] = json.dumps(summary_infill)
            out.attrs["wave_description"] = "rest-frame vacuum wavelength of the pixel centres, Å"
            out.attrs["flux_description"] = (
                "flux / median good flux in the rest-frame norm_window; masked pixels infilled "
                "by iterative gappy PCA")
            out.attrs["weight_description"] = "inverse variance of flux (ivar * norm^2); 0 = masked"
            out.attrs["mask_description"] = "True = bad or not covered pixel, infilled"
            out.attrs["galforge_version"] = galforge.__version__
    summary = {"path": str(dest), "n_spectra": n, "n_shards": len(shard_paths),
               "masked_fraction": n_masked / float(n * p), "infill": summary_infill,
               "seconds": time.perf_counter() - t0}
    log.info("merged %d spectra from %d shards into %s; %.2f%% pixels infilled; %.1f s",
             n, len(shard_paths), dest, 100 * summary["masked_fraction"], summary["seconds"])
    return summary


@dataclass(frozen=True)
class SpectraFile:
    """The arrays of a preprocessed spectra file (rows in file order).

    ``flux``/``weight`` are float32 (N, npix); ``conditions`` (N, n_cond) float64 in the
    order asked for (empty second axis without conditions); ``properties`` holds every
    ``properties/<name>`` column of the file. ``mask`` (N, npix) bool is read only when
    asked for; ``z``, ``norm``, ``good_fraction`` are None in a file without them; ``attrs``
    holds the file's attributes (``kind``, ``settings``, ...).
    """

    path: Path
    wave: np.ndarray
    flux: np.ndarray | None
    weight: np.ndarray | None
    key: np.ndarray
    plate: np.ndarray
    mjd: np.ndarray
    fiber: np.ndarray
    conditions: np.ndarray
    properties: dict[str, np.ndarray]
    mask: np.ndarray | None = None
    z: np.ndarray | None = None
    norm: np.ndarray | None = None
    good_fraction: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.key.shape[0])


def read_spectra_file(
    path: str | Path,
    conditions: tuple[str, ...] | list[str] = (),
    *,
    rows: np.ndarray | None = None,
    arrays: bool = True,
    mask: bool = False,
) -> SpectraFile:
    """Read a spectra HDF5 file of :func:`merge_and_infill` or a shard of :func:`preprocess_shard`
    (all rows, or the sorted ``rows``): the one reader of both.

    ``arrays=False`` skips ``flux``/``weight`` (ids and properties only); ``mask=True``
    reads the pixel mask as well. Raises
    :class:`~galforge.io.InputError` naming the file and the dataset on a missing
    dataset, mismatched shapes, negative or non-finite weights, non-finite flux
    where the weight is positive, or a missing condition column.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot open the preprocessed spectra file ({exc})") from None
    with f:
        for name in ("wave", "flux", "weight", "key", "plate", "mjd", "fiber"):
            if name not in f:
                raise InputError(f"{path}: dataset {name!r} is missing (not a preprocessed spectra file)")
        n, npix = f["flux"].shape
        if f["weight"].shape != (n, npix) or f["wave"].shape != (npix,):
            raise InputError(
                f"{path}: shapes disagree: flux {f['flux'].shape}, weight {f['weight'].shape}, "
                f"wave {f['wave'].shape}"
            )
        sel: Any = slice(None)
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= n):
                raise ValueError(f"rows must be sorted, unique and within 0..{n - 1}")
            sel = rows

        def _get(name: str) -> np.ndarray:
            ds = f[name]
            if ds.shape[:1] != (n,):
                raise InputError(f"{path}: dataset {name!r} has {ds.shape[0]} rows, flux has {n}")
            return ds[sel] if rows is None or rows.size else ds[:0]

        props: dict[str, np.ndarray] = {}
        if "properties" in f:
            for name in f["properties"]:
                props[name] = np.asarray(_get(f"properties/{name}"), dtype=np.float64)
        missing = [c for c in conditions if c not in props]
        if missing:
            raise InputError(
                f"{path}: condition column properties/{missing[0]} is missing "
                f"(present: {', '.join(sorted(props)) or 'none'})"
            )
        flux = weight = None
        if arrays:
            flux = np.asarray(_get("flux"), dtype=np.float32)
            weight = np.asarray(_get("weight"), dtype=np.float32)
            bad_w = ~np.isfinite(weight) | (weight < 0)
            if bad_w.any():
                r = int(np.argwhere(bad_w)[0, 0])
                raise InputError(f"{path}: dataset 'weight' row {r} holds a negative or non-finite value")
            bad_f = (weight > 0) & ~np.isfinite(flux)
            if bad_f.any():
                r = int(np.argwhere(bad_f)[0, 0])
                raise InputError(f"{path}: dataset 'flux' row {r} is not finite where its weight is > 0")
        cond = (np.column_stack([props[c] for c in conditions]) if conditions
                else np.zeros((len(_get("key")), 0)))
        extra = {name: np.asarray(_get(name), dtype=np.float64)
                 for name in ("z", "norm", "good_fraction") if name in f}
        return SpectraFile(
            path=path, wave=np.asarray(f["wave"][...], dtype=np.float64), flux=flux,
            weight=weight, key=np.asarray(_get("key"), dtype=np.int64),
            plate=np.asarray(_get("plate")), mjd=np.asarray(_get("mjd")),
            fiber=np.asarray(_get("fiber")), conditions=cond.astype(np.float64), properties=props,
            mask=np.asarray(_get("mask"), dtype=bool) if mask else None,
            attrs={k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()},
            **extra,
        )
