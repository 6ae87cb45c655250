"""The spectra study's workflow steps, one function per rule (the CLI calls them).

Data (mock or archive, sharded by plate) → per-shard selection and preprocessing →
merge + iterative-PCA infill → one model per grid point → held-out evaluation → BIC →
analysis of the best VAE (PCA of the latents, MI, decoded sweeps, SHAP) and of the
best CVAE (condition sweeps) → figures.

Choices made here (the paper is silent on them)
-----------------------------------------------
* The **best VAE** is the lowest-BIC plain VAE of the grid; its latent means μ are
  rotated onto their principal axes D1…Dk (all k = latent_dim kept). The **best
  CVAE** (lowest BIC among the CVAEs) gives the condition sweeps of Fig 5.
* **MI** is computed between every D and every property of the spectra file
  (GSWLC log M*, log SFR, log sSFR, A_V; MPA-JHU 12 + log O/H) and, on the mock,
  the planted parameters and two noiseless measurements of the truth file
  (prefixed ``true_``).
* **SHAP** explains every D of the best VAE on ``shap_explain`` random spectra
  against ``shap_background`` other random spectra (seeded by the run's seed). The
  importance curve is the mean |SHAP| of each pixel over the explained spectra that
  *observe* it (weight > 0); pixels observed by fewer than ``shap_min_coverage`` of them
  are left out (NaN), since their attributions rest on the infill, not on data
  (:func:`observed_mean_abs`). The example galaxies of Fig 6 are those nearest the
  10/50/90 % quantiles of D1.
* **Planted-truth recovery** (mock): the BIC minimum of the VAEs must sit within ±1
  of the number of planted parameters; every planted parameter must reach a
  normalised MI ≥ 2 with some D; for the parameters that drive emission lines
  (``log_ssfr``: all lines; ``log_u``: [O III], [N II], [S II], [O II]), the highest
  peak of the mean |SHAP| of the D most informative about it must lie within 20 Å
  of one of the planted lines.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.io import InputError, atomic_path, write_json

log = logging.getLogger("galforge.spectra")

__all__ = [
    "LINE_DRIVERS",
    "REJECTS_COLUMNS",
    "TRUTH_PROPERTIES",
    "build_targets",
    "merge_shards",
    "mock_manifests",
    "observed_mean_abs",
    "preprocess_shard_files",
    "read_bic_csv",
    "run_analysis",
    "truth_recovery",
]

#: Columns of the rejects tables (per shard and merged).
REJECTS_COLUMNS: tuple[str, ...] = ("key", "path", "code", "reason")
#: Truth columns (besides the planted parameters) whose MI with the D is reported (mock).
TRUTH_PROPERTIES: tuple[str, ...] = ("d4000", "ew_halpha")
#: Planted parameters that drive emission lines, and the mock lines they move
#: (names of :data:`galforge.mock.spectra.LINES`; ``None``: every line).
LINE_DRIVERS: dict[str, tuple[str, ...] | None] = {
    "log_ssfr": None,
    "log_u": ("[OII]3727", "[OII]3730", "[OIII]4960", "[OIII]5008", "[NII]6550",
              "[NII]6585", "[SII]6718", "[SII]6733"),
}
#: Properties of the spectra file that the MI table uses, in order.
SPECTRA_PROPERTIES: tuple[str, ...] = ("log_mstar", "log_sfr", "log_ssfr", "oh_p50", "av")


# -- data ----------------------------------------------------------------------------------------
def mock_manifests(root: str | os.PathLike, n_shards: int, dests: Sequence[str | os.PathLike]
                   ) -> list[Path]:
    """Shard manifests of a written mock (the layout :func:`fetch_spectra_shard` writes).

    Every spectrum under ``root/spectra`` goes to shard ``plate mod n_shards``;
    ``status`` is ``ok``, ``url`` empty, ``bytes`` and ``sha256`` those of the file.
    """
    import hashlib

    from galforge.archives.sdss_spectra import MANIFEST_COLUMNS, shard_of, spectrum_key
    from galforge.spectra.readers import parse_spectrum_filename

    if len(dests) != n_shards:
        raise InputError(f"{len(dests)} manifest paths for {n_shards} shards")
    rows = []
    for path in sorted(Path(root).glob("spectra/*/spec-*.fits")):
        parsed = parse_spectrum_filename(path)
        if parsed is None:
            raise InputError(f"{path}: not an SDSS spectrum file name")
        _, plate, mjd, fiber = parsed
        rows.append({"key": int(spectrum_key(plate, mjd, fiber)), "plate": plate, "mjd": mjd,
                     "fiber": fiber, "path": str(path), "status": "ok", "url": "",
                     "bytes": path.stat().st_size,
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    if frame.empty:
        raise InputError(f"{root}/spectra holds no spec-*.fits files")
    shard = shard_of(frame["plate"].to_numpy(np.int64), n_shards)
    out = []
    for i, dest in enumerate(dests):
        with atomic_path(dest) as tmp:
            frame[shard == i].sort_values("key").to_csv(tmp, index=False)
        out.append(Path(dest))
    return out


def read_oh_table(info: str | os.PathLike, oh: str | os.PathLike) -> Any:
    """The MPA-JHU 12 + log(O/H) per spectrum (``plate, mjd, fiberID, oh_p50``)."""
    from galforge.archives.sdss import read_mpajhu

    return read_mpajhu(info, fiboh=oh)


def build_targets(gswlc: str | os.PathLike, selection: Mapping[str, Any],
                  max_spectra: int | None = None) -> pd.DataFrame:
    """The spectra to download (archive): GSWLC galaxies in the redshift range with M* and SFR.

    The final cuts (class, spectrum redshift, ZWARNING) run on the spectra themselves
    (:func:`galforge.spectra.selection.select_spectra`); this pre-selection uses GSWLC's
    own redshift and keeps at most ``max_spectra`` (the lowest spectrum keys, so the
    choice is stable).
    """
    from galforge.archives.gswlc import read_gswlc
    from galforge.archives.sdss_spectra import spectrum_key
    from galforge.spectra.selection import SelectionSettings

    s = SelectionSettings.from_dict(selection)
    g = read_gswlc(gswlc)
    z = np.asarray(g["z"], dtype=np.float64)
    ok = (np.isfinite(z) & (z > s.zmin) & (z < s.zmax)
          & np.isfinite(np.asarray(g["log_mstar"], np.float64))
          & np.isfinite(np.asarray(g["log_sfr"], np.float64)))
    t = pd.DataFrame({"plate": np.asarray(g["plate"])[ok], "mjd": np.asarray(g["mjd"])[ok],
                      "fiber": np.asarray(g["fiber"])[ok], "z": z[ok]})
    t.insert(0, "key", spectrum_key(t["plate"], t["mjd"], t["fiber"]))
    t = t.drop_duplicates("key").sort_values("key").reset_index(drop=True)
    if max_spectra is not None:
        t = t.iloc[: int(max_spectra)]
    if t.empty:
        raise InputError(f"{gswlc}: no GSWLC galaxy with {s.zmin} < z < {s.zmax} and finite "
                         "M* and SFR")
    log.info("targets: %d GSWLC galaxies with %g < z < %g (of %d rows)", len(t), s.zmin,
             s.zmax, len(g))
    return t


def preprocess_shard_files(
    manifest: str | os.PathLike, gswlc: str | os.PathLike, info: str | os.PathLike,
    oh: str | os.PathLike, selection: Mapping[str, Any], preprocess: Mapping[str, Any],
    out: str | os.PathLike, rejects: str | os.PathLike, *, progress: bool = True,
) -> dict[str, Any]:
    """Select (GSWLC × spectra, cuts) and preprocess one shard; write its HDF5 and rejects.

    The rejects CSV (:data:`REJECTS_COLUMNS`) lists every spectrum of the manifest that
    was not kept, with the selection's code or ``preprocess`` and the reason.
    """
    from galforge.archives.sdss_spectra import read_manifest
    from galforge.spectra.preprocess import (
        PreprocessSettings,
        preprocess_shard,
        read_shard_rejects,
    )
    from galforge.spectra.selection import SelectionSettings, select_spectra

    frame = read_manifest(manifest)
    usable = frame["status"].isin(["ok", "cached"])
    rej = [{"key": int(r.key), "path": r.path, "code": "not_downloaded",
            "reason": f"spectrum {r.plate}/{r.mjd}/{r.fiber} not downloaded ({r.status})"}
           for r in frame[~usable].itertuples()]
    props, sel_rej = select_spectra(frame.loc[usable, "path"].tolist(), gswlc,
                                    read_oh_table(info, oh), SelectionSettings.from_dict(selection),
                                    progress=progress)
    settings = PreprocessSettings.from_dict(preprocess)
    summary = preprocess_shard(props["path"].tolist(), props.drop(columns="path"), settings, out,
                               progress=progress)
    pre = read_shard_rejects([out]).assign(code="preprocess")
    table = pd.concat([pd.DataFrame(rej, columns=list(REJECTS_COLUMNS)), sel_rej,
                       pre[list(REJECTS_COLUMNS)]], ignore_index=True)
    with atomic_path(rejects) as tmp:
        table.to_csv(tmp, index=False)
    summary.update(n_manifest=len(frame), n_selected=len(props),
                   n_rejected_selection=len(sel_rej) + len(rej))
    return summary


def merge_shards(shards: Sequence[str | os.PathLike], shard_rejects: Sequence[str | os.PathLike],
                 preprocess: Mapping[str, Any], out: str | os.PathLike,
                 rejects_out: str | os.PathLike, report_out: str | os.PathLike, *,
                 progress: bool = True) -> dict[str, Any]:
    """Merge the shards with the infill; write the rejects of every shard and a report.

    The report counts the spectra per reject code (how many each cut removed) and
    holds the merge/infill summary (no timings or paths, so reruns give equal files).
    """
    from galforge.spectra.preprocess import PreprocessSettings, merge_and_infill

    summary = merge_and_infill(shards, PreprocessSettings.from_dict(preprocess), out,
                               progress=progress)
    frames = [pd.read_csv(p, keep_default_na=False, dtype={"path": str, "reason": str})
              for p in shard_rejects]
    rej = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(REJECTS_COLUMNS))
    with atomic_path(rejects_out) as tmp:
        rej.to_csv(tmp, index=False)
    report = {
        "n_spectra": summary["n_spectra"],
        "n_shards": summary["n_shards"],
        "n_rejected": int(len(rej)),
        "rejected_by_code": {str(k): int(v) for k, v in rej["code"].value_counts().items()},
        "masked_fraction": summary["masked_fraction"],
        "infill": {k: v for k, v in summary["infill"].items() if k != "history"},
    }
    write_json(report, report_out)
    return report


# -- analysis ------------------------------------------------------------------------------------
def read_bic_csv(path: str | os.PathLike) -> pd.DataFrame:
    """The BIC table written by ``galforge spectra-bic`` (VAE conditions read as ``""``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"BIC table not found: {path}")
    t = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in ("bic", "log_l")})
    for col in ("model_id", "kind", "conditions", "latent_dim", "bic"):
        if col not in t.columns:
            raise InputError(f"{path}: column {col!r} is missing")
    return t


def _truth_frame(truth: str | os.PathLike) -> tuple[pd.DataFrame, list[str], dict[str, float]]:
    """Truth table, the varying planted parameters, and the planted lines (name → Å)."""
    import pyarrow.parquet as pq

    from galforge.mock.spectra import MockSpectraSettings

    meta = pq.read_schema(truth).metadata or {}
    try:
        settings = MockSpectraSettings.from_dict(json.loads(meta[b"galforge.settings"]))
        lines = {str(k): float(v) for k, v in json.loads(meta[b"galforge.lines"]).items()}
    except KeyError as exc:
        raise InputError(f"{truth}: not a spectra-mock truth file (metadata {exc} missing)") from None
    return pd.read_parquet(truth), list(settings.varying_parameters), lines


def _property_frame(props: Mapping[str, np.ndarray], key: np.ndarray,
                    truth: pd.DataFrame | None, planted: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame({c: np.asarray(props[c], np.float64) for c in SPECTRA_PROPERTIES
                          if c in props})
    if truth is not None:
        cols = [*planted, *[c for c in TRUTH_PROPERTIES if c in truth.columns]]
        t = truth.set_index("key")[cols].reindex(key)
        for c in cols:
            frame[f"true_{c}"] = t[c].to_numpy(np.float64)
    return frame


def run_analysis(
    *, spectra: str | os.PathLike, bic: str | os.PathLike, models: str | os.PathLike,
    analysis: Mapping[str, Any], seed: int, catalog_out: str | os.PathLike,
    pca_out: str | os.PathLike, mi_out: str | os.PathLike, shap_out: str | os.PathLike,
    arrays_out: str | os.PathLike, truth_out: str | os.PathLike, source: str,
    truth: str | os.PathLike | None = None, progress: bool = True,
) -> dict[str, Any]:
    """PCA of the best VAE's latents, the D catalog, MI, sweeps, SHAP (and truth recovery).

    Writes the catalog (Parquet), the PCA variance and MI tables (CSV), the SHAP
    additivity report and the truth-recovery report (JSON), and the arrays the figures
    need (HDF5; layout in :mod:`galforge.spectra.figure_set`). Returns the truth report.
    """
    import h5py

    from galforge.spectra import analysis as A
    from galforge.spectra.bic import best_model
    from galforge.spectra.training import encode, read_spectra_file
    from galforge.train import load_for_inference

    s = A.AnalysisSettings.from_dict(analysis)
    table = read_bic_csv(bic)
    best_vae = best_model(table, "vae")
    has_cvae = bool((table["kind"] == "cvae").any())
    best_cvae = best_model(table, "cvae") if has_cvae else ""
    models = Path(models)
    vae_path = models / best_vae / "model.pt"
    log.info("best VAE by BIC: %s%s", best_vae, f"; best CVAE: {best_cvae}" if has_cvae else "")

    lat = encode(vae_path, spectra, batch_size=s.batch_size)
    data = read_spectra_file(spectra)
    assert data.flux is not None
    pca = A.fit_latent_pca(lat.mu)
    d = pca.transform(lat.mu)
    k = d.shape[1]
    cat = A.latent_catalog(data.key, data.plate, data.mjd, data.fiber, d, lat.mu)
    with atomic_path(catalog_out) as tmp:
        cat.to_parquet(tmp, index=False)
    with atomic_path(pca_out) as tmp:
        A.pca_variance_table(pca).to_csv(tmp, index=False)

    truth_df, planted, lines = (None, [], {})
    if truth is not None:
        truth_df, planted, lines = _truth_frame(truth)
    props = _property_frame(data.properties, data.key, truth_df, planted)
    mi = A.mi_table(d, props, n_shuffles=s.n_shuffles, seed=seed)
    with atomic_path(mi_out) as tmp:
        mi.to_csv(tmp, index=False)

    vae, _ = load_for_inference(vae_path)
    sweep_vals = np.stack([A.sweep_values(d[:, i], s.n_steps, s.sweep_quantiles)
                           for i in range(k)])
    sweeps = np.stack([A.decode_component_sweep(vae, pca, i, sweep_vals[i],
                                                batch_size=s.batch_size) for i in range(k)])

    # SHAP: explain random spectra and the example galaxies, against a random background
    rng = np.random.default_rng([int(seed), 0x5A4B])
    n = data.n
    perm = rng.permutation(n)
    n_bg = min(s.shap_background, max(2, n // 2))
    bg_rows = np.sort(perm[:n_bg])
    rest = perm[n_bg:]
    explain_rows = np.sort(rest[: min(s.shap_explain, len(rest))])
    ex_rows = A.choose_examples(d[:, 0], n=s.shap_examples)
    rows = np.concatenate([explain_rows, ex_rows])
    res = A.shap_values(vae, pca, data.flux[rows], data.flux[bg_rows], rows=rows,
                        progress=progress)
    mean_abs = observed_mean_abs(res.values[: len(explain_rows)],
                                 data.weight[explain_rows] > 0, s.shap_min_coverage)
    ex_vals = res.values[len(explain_rows):]
    shap_report = {
        "model": best_vae, "components": res.components, "n_background": int(n_bg),
        "n_explained": int(len(explain_rows)), "example_rows": ex_rows.tolist(),
        "additivity_error": res.additivity_error,
        "relative_additivity_error": res.relative_additivity_error,
        "expected_value": res.expected.tolist(),
    }
    write_json(shap_report, shap_out)

    with atomic_path(arrays_out) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["best_vae"] = best_vae
        h5.attrs["best_cvae"] = best_cvae
        h5["wave"] = data.wave
        g = h5.create_group("pca")
        g["components"], g["mean"], g["variance"] = pca.components, pca.mean, pca.variance
        g = h5.create_group("sweep")
        g["values"], g["spectra"] = sweep_vals, sweeps.astype(np.float32)
        cvae_conds: list[str] = []
        if has_cvae:
            cvae, _ = load_for_inference(models / best_cvae / "model.pt")
            cvae_conds = list(cvae.conditions)
            g = h5.create_group("cvae_sweep")
            for c in cvae_conds:
                vals = A.sweep_values(data.properties[c], s.n_steps, s.sweep_quantiles)
                sub = g.create_group(c)
                sub["values"] = vals
                sub["spectra"] = A.cvae_condition_sweep(
                    cvae, c, vals, batch_size=s.batch_size).astype(np.float32)
        h5.attrs["cvae_conditions"] = json.dumps(cvae_conds)
        g = h5.create_group("shap")
        g["mean_abs"] = mean_abs
        g["example_rows"] = ex_rows
        g["example_flux"] = data.flux[ex_rows]
        g["example_values"] = ex_vals.astype(np.float32)
        g["example_D"] = d[ex_rows]
        g.attrs["additivity_error"] = res.additivity_error
        g.attrs["relative_additivity_error"] = res.relative_additivity_error
        g.attrs["components"] = json.dumps(res.components)

    report: dict[str, Any] = {"source": source, "best_vae": best_vae, "best_cvae": best_cvae,
                              "shap_relative_additivity_error": res.relative_additivity_error}
    if truth_df is not None:
        report.update(truth_recovery(table, mi, data.wave, mean_abs, planted, lines))
        log.info("planted truth: %s", {k: v for k, v in report.items() if k.startswith("pass")})
    write_json(report, truth_out)
    return report


def observed_mean_abs(values: np.ndarray, observed: np.ndarray, min_coverage: float
                      ) -> np.ndarray:
    """Mean |SHAP| per pixel over the spectra that observe it: (k, npix).

    ``values`` (n, k, npix), ``observed`` (n, npix) True where the pixel was measured
    (weight > 0, not infilled). A pixel that fewer than ``min_coverage`` of the spectra
    observe is NaN: its attributions would rest on the infill (e.g. rest-frame
    λ < 3800 Å / (1 + z_max), which no spectrum covers), not on data.
    """
    obs = np.asarray(observed, dtype=bool)[:, None, :]
    n_obs = obs.sum(axis=0)
    total = np.where(obs, np.abs(values), 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n_obs
    return np.where(n_obs >= max(1, min_coverage * len(values)), mean, np.nan)


def truth_recovery(
    bic: pd.DataFrame, mi: pd.DataFrame, wave: np.ndarray, mean_abs_shap: np.ndarray,
    planted: Sequence[str], lines: Mapping[str, float], *, dim_tolerance: int = 1,
    nmi_min: float = 2.0, line_tolerance: float = 20.0,
) -> dict[str, Any]:
    """How well the grid and the best VAE recover the mock's planted truth.

    Returns the planted and chosen latent sizes, the best normalised MI of each planted
    parameter (and with which D), the top mean-|SHAP| peak of the D most informative
    about each line-driving parameter and its distance to the nearest planted line,
    and ``pass_*`` flags for the three criteria (see the module docstring).
    """
    from galforge.spectra.analysis import importance_peaks

    vae = bic[bic["kind"] == "vae"]
    best_d = int(vae.loc[vae["bic"].idxmin(), "latent_dim"])
    p = len(planted)
    out: dict[str, Any] = {"n_planted": p, "planted_parameters": list(planted),
                           "bic_best_latent_dim": best_d,
                           "pass_bic": bool(abs(best_d - p) <= dim_tolerance)}
    cv = bic[bic["kind"] == "cvae"]
    if len(cv):
        out["bic_best_latent_dim_cvae"] = {
            str(c): int(g.loc[g["bic"].idxmin(), "latent_dim"]) for c, g in cv.groupby("conditions")}
    best_mi: dict[str, Any] = {}
    for name in planted:
        rows = mi[mi["property"] == f"true_{name}"].dropna(subset=["nmi"])
        if rows.empty:
            best_mi[name] = {"component": None, "nmi": math.nan, "rho": math.nan}
            continue
        r = rows.loc[rows["nmi"].idxmax()]
        best_mi[name] = {"component": str(r["component"]), "nmi": float(r["nmi"]),
                         "rho": float(r["rho"])}
    out["best_nmi"] = best_mi
    out["pass_mi"] = bool(best_mi) and all(v["nmi"] >= nmi_min for v in best_mi.values())
    comps = sorted(mi["component"].unique(), key=lambda c: int(str(c)[1:]))
    shap_peaks: dict[str, Any] = {}
    for name, driven in LINE_DRIVERS.items():
        if name not in planted or best_mi.get(name, {}).get("component") is None:
            continue
        comp = best_mi[name]["component"]
        i = comps.index(comp)
        peak = importance_peaks(wave, mean_abs_shap[i], n_peaks=3)
        targets = {k: v for k, v in lines.items() if driven is None or k in driven}
        top = float(peak["wave"].iloc[0])
        nearest = min(targets, key=lambda k: abs(targets[k] - top))
        shap_peaks[name] = {
            "component": comp, "peak_wave": top, "nearest_line": nearest,
            "distance": abs(targets[nearest] - top),
            "top_peaks": [float(w) for w in peak["wave"]],
        }
    out["shap_peaks"] = shap_peaks
    out["pass_shap"] = bool(shap_peaks) and all(v["distance"] <= line_tolerance
                                                for v in shap_peaks.values())
    return out
