"""The HDF5 files of the preprocessed spectra: shards, the merged and infilled file, their reader.

:mod:`galforge.spectra.preprocess` turns spectra into rows (masks, rest frame,
normalisation); this module holds the files those rows go into, each writer
beside its reader: :func:`open_shard` (a shard) and :func:`read_shard_rejects`,
:func:`merge_and_infill` (the final file, step 5 of the preprocessing: infill) and
:func:`read_spectra_file` (either file).

Layout
------
Shard (:func:`open_shard`, filled by :class:`galforge.spectra.preprocess.ShardPreprocessor`;
no infill): ``wave`` (n_pix,), ``flux`` (N, n_pix) float32 normalised, NaN where
masked; ``weight`` float32; ``mask`` bool; ``key`` int64, ``plate``, ``mjd``, ``fiber`` int32, ``z`` float64,
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
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import galforge
from galforge.io import InputError, atomic_path
from galforge.spectra.infill import IterativePCAInfill
from galforge.spectra.settings import PreprocessSettings

__all__ = [
    "ShardWriter",
    "SpectraFile",
    "merge_and_infill",
    "open_shard",
    "read_shard_rejects",
    "read_spectra_file",
]

log = logging.getLogger("galforge.spectra")


# --------------------------------------------------------------------------- shards


def _h5_comp(settings: PreprocessSettings) -> dict[str, Any]:
    if settings.compression == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    if settings.compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    return {}


class ShardWriter:
    """Appends preprocessed rows to an open shard HDF5 (:func:`open_shard`)."""

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

    def write_rejects(self, rej: Any) -> None:
        """The ``rejects`` group: ``key``, ``path``, ``reason`` of a DataFrame (once, at the end)."""
        import h5py

        g = self.h5.create_group("rejects")
        g["key"] = rej["key"].to_numpy(dtype=np.int64)
        str_dt = h5py.string_dtype()
        g.create_dataset("path", data=rej["path"].astype(str).to_numpy(dtype=object),
                         dtype=str_dt)
        g.create_dataset("reason", data=rej["reason"].astype(str).to_numpy(dtype=object),
                         dtype=str_dt)


@contextmanager
def open_shard(dest: str | os.PathLike, settings: PreprocessSettings,
               prop_cols: list[str]) -> Iterator[ShardWriter]:
    """Write a shard HDF5 atomically: attrs ``kind``, ``settings``, ``galforge_version``, then
    the rows :meth:`ShardWriter.append` adds and the rejects of :meth:`ShardWriter.write_rejects`
    (:class:`galforge.spectra.preprocess.ShardPreprocessor` fills it)."""
    import h5py

    with atomic_path(dest) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["kind"] = "shard"
            h5.attrs["settings"] = json.dumps(settings.to_dict())
            h5.attrs["galforge_version"] = galforge.__version__
            yield ShardWriter(h5, settings, prop_cols)


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
    """Read a spectra HDF5 file of :func:`merge_and_infill` or a shard of :func:`open_shard`
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
