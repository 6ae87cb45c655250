"""The sample: galaxies above the mass cut at each snapshot, their lines of sight, the split.

* M* = SubhaloMassType[:, 4] 1e10 / h > 10^``log_mstar_min`` Msun; the ex-situ fraction is
  the StellarAssembly galaxies catalog's StellarMassExSitu / StellarMassTotal (the
  whole-subhalo variant, not the in-radius one; NaN when Total = 0, such galaxies dropped);
  galaxies with f_ex >= ``fex_max`` dropped (the authors'); the half-mass radius is
  SubhaloHalfmassRadType[:, 4] in physical kpc.
* Views per galaxy (:func:`balanced_views`): f_ex in ``fex_bins`` equal bins over
  [0, fex_max); each non-empty bin aims at target_projections / (non-empty bins)
  projections, so a galaxy gets the largest allowed view count not above
  (its bin's aim) / (galaxies in the bin), at least the smallest allowed: rare f_ex get
  many views, common f_ex few.
* Two routes to TNG (:class:`SnapshotCatalog`): a local copy (:func:`local_catalog`,
  ``tng.base_path`` or the mock) or the web API (:func:`api_catalog`: the three
  group-catalog fields and the StellarAssembly galaxies file of each snapshot, cached under
  ``cache_dir``; h and the scale factor from the API's simulation and snapshot records).
* Galaxy identity (:func:`galaxy_ids`): one galaxy seen at two snapshots is one galaxy;
  on the mock the truth file links them (``SubfindID_SSS``); without it each
  (snapshot, subhalo) is its own galaxy (the archive route does not link snapshots yet).
* Split (:func:`split_galaxies`): by galaxy, stratified by the number of views: within
  each view count the galaxies are shuffled (seeded) and cut train/val/test, so no
  galaxy is in two splits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import h5py
import numpy as np
import pandas as pd

from galforge.archives.tng_layout import stellar_assembly_path
from galforge.archives.tng_local import LocalTNG, _open
from galforge.exsitu.settings import SampleSettings, SplitSettings
from galforge.io import InputError

__all__ = ["CATALOG_FIELDS", "SPLITS", "SnapshotCatalog", "api_catalog", "balanced_views",
           "exsitu_fractions", "galaxy_ids", "local_catalog", "select", "split_galaxies"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


def exsitu_fractions(base_path: str | os.PathLike[str], snapshot: int) -> np.ndarray:
    """StellarMassExSitu / StellarMassTotal of every subhalo (NaN where Total = 0)."""
    return _fractions(stellar_assembly_path(base_path, snapshot, "galaxies"))


#: The group-catalog fields the selection reads.
CATALOG_FIELDS: tuple[str, ...] = ("SubhaloMassType", "SubhaloHalfmassRadType", "SubhaloLenType")


class SnapshotCatalog(NamedTuple):
    """What the selection needs of one snapshot, from either route."""

    subhalos: dict[str, np.ndarray]  #: :data:`CATALOG_FIELDS` of every subhalo
    fex: np.ndarray  #: ex-situ fraction of every subhalo
    h: float
    a: float
    fex_file: str  #: the StellarAssembly galaxies file (for messages)


def local_catalog(base_path: str | os.PathLike[str], snapshot: int) -> SnapshotCatalog:
    """The catalog of a local TNG copy (or of the mock)."""
    tng = LocalTNG(base_path, snapshot)
    return SnapshotCatalog(tng.subhalos(list(CATALOG_FIELDS)),
                           exsitu_fractions(base_path, snapshot), tng.h, tng.a,
                           str(stellar_assembly_path(base_path, snapshot, "galaxies")))


def api_catalog(api: Any) -> SnapshotCatalog:
    """The catalog of one snapshot through the web API (a
    :class:`~galforge.archives.tng_fetch.ApiTNG`; downloads cached)."""
    sim = api.client.get_json(f"{api.sim}/")
    snap = api.client.get_json(f"{api.sim}/snapshots/{api.snap}/")
    for rec, key in ((sim, "hubble"), (snap, "redshift")):
        if not isinstance(rec, dict) or key not in rec:
            raise InputError(f"{api.client.url(api.sim)}: the API's record has no {key!r}")
    path = api.stellar_assembly("galaxies")
    return SnapshotCatalog({f: api.groupcat_field("Subhalo", f) for f in CATALOG_FIELDS},
                           _fractions(path), float(sim["hubble"]),
                           1.0 / (1.0 + float(snap["redshift"])), str(path))


def _fractions(path: str | os.PathLike[str]) -> np.ndarray:
    with _open(path, "stellar assembly galaxies catalog") as f:
        for k in ("StellarMassExSitu", "StellarMassTotal"):
            if k not in f:
                raise InputError(f"{path}: no {k} dataset")
        ex = f["StellarMassExSitu"][()].astype(np.float64)
        tot = f["StellarMassTotal"][()].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, ex / tot, np.nan)


def select(base_path: str | os.PathLike[str] | None, s: SampleSettings, *,
           catalog: Callable[[int], SnapshotCatalog] | None = None) -> pd.DataFrame:
    """The galaxies of every snapshot passing the cuts (one row each, ascending M* order
    within a snapshot reversed: the most massive first). ``catalog(snapshot)``: the route
    (default: the local copy at ``base_path``)."""
    if catalog is None:
        if base_path is None:
            raise InputError("no TNG copy and no web-API route given")

        def catalog(snap: int) -> SnapshotCatalog:
            return local_catalog(base_path, snap)

    rows = []
    for snap in s.snapshots:
        c = catalog(snap)
        cat, fex = c.subhalos, c.fex
        if len(fex) != len(cat["SubhaloMassType"]):
            raise InputError(f"{c.fex_file}: "
                             f"{len(fex)} rows for {len(cat['SubhaloMassType'])} subhaloes")
        mstar = cat["SubhaloMassType"][:, 4].astype(np.float64) * 1e10 / c.h
        with np.errstate(divide="ignore"):
            logm = np.log10(mstar)
        keep = (logm > s.log_mstar_min) & np.isfinite(fex) & (fex < s.fex_max) & \
            (cat["SubhaloLenType"][:, 4] >= s.min_stars)
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(-mstar[idx], kind="stable")]
        if s.max_galaxies is not None:
            idx = idx[: s.max_galaxies]
        rows.append(pd.DataFrame({
            "snapshot": snap, "subhalo_id": idx.astype(np.int64), "log_mstar": logm[idx],
            "fex": fex[idx],
            "r_half_kpc": cat["SubhaloHalfmassRadType"][idx, 4].astype(np.float64) * c.a / c.h,
        }))
    out = pd.concat(rows, ignore_index=True)
    bad = out["r_half_kpc"] <= 0
    if bad.any():
        r = out[bad].iloc[0]
        raise InputError(f"snapshot {r.snapshot} subhalo {r.subhalo_id}: stellar half-mass "
                         "radius is 0")
    return out


def galaxy_ids(sample: pd.DataFrame, truth: str | os.PathLike[str] | None = None) -> np.ndarray:
    """One id per physical galaxy (see the module docstring)."""
    snaps, sids = sample["snapshot"].to_numpy(), sample["subhalo_id"].to_numpy()
    fallback = snaps.astype(np.int64) * 100_000_000 + sids
    if truth is None:
        return fallback
    out = np.full(len(sample), -1, dtype=np.int64)
    with h5py.File(truth, "r") as f:
        for snap in np.unique(snaps):
            key = f"galaxies/SubfindID_{int(snap):03d}"
            if key not in f:
                raise InputError(f"{truth}: no {key} (mock written without snapshot {snap})")
            lookup = {int(s): i for i, s in enumerate(f[key][()]) if s >= 0}
            here = np.flatnonzero(snaps == snap)
            out[here] = [lookup.get(int(s), -1) for s in sids[here]]
    unlinked = out < 0
    out[unlinked] = -1 - fallback[unlinked]  # negative: not in the truth file
    return out


def balanced_views(fex: np.ndarray, s: SampleSettings) -> np.ndarray:
    """Views per galaxy balancing the f_ex distribution (module docstring)."""
    fex = np.asarray(fex, dtype=np.float64)
    b = np.clip((fex / s.fex_max * s.fex_bins).astype(int), 0, s.fex_bins - 1)
    per_bin = np.bincount(b, minlength=s.fex_bins)
    aim = s.target_projections / max(int((per_bin > 0).sum()), 1)
    counts = np.asarray(s.view_counts)
    out = np.empty(len(fex), dtype=np.int64)
    for k in np.flatnonzero(per_bin):
        want = aim / per_bin[k]
        ok = counts[counts <= want]
        out[b == k] = ok.max() if ok.size else counts.min()
    return out


def split_galaxies(galaxy: Sequence[int], n_views: Sequence[int], s: SplitSettings,
                   seed: int) -> np.ndarray:
    """train/val/test per row, by galaxy, stratified by the galaxy's (largest) view count."""
    g = pd.DataFrame({"g": np.asarray(galaxy), "v": np.asarray(n_views)})
    per = g.groupby("g")["v"].max()
    rng = np.random.default_rng([int(seed), 15])
    label: dict[int, str] = {}
    for v in sorted(per.unique()):
        ids = per.index[per == v].to_numpy()
        ids = ids[rng.permutation(len(ids))]
        n = len(ids)
        n_test = int(round(s.test * n))
        n_val = int(round(s.val * n))
        if n >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1 if s.val > 0 else 0)
        cuts = (n - n_val - n_test, n - n_test)
        for part, chunk in zip(SPLITS, np.split(ids, cuts), strict=True):
            label.update(dict.fromkeys(chunk.tolist(), part))
    return np.array([label[int(x)] for x in g["g"]])
