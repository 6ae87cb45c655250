"""The spectra study's workflow steps: one function per rule (``galforge spectra-*``).

Each step takes its input and output paths and the typed settings of the sections it
uses; :mod:`galforge.spectra.cli` parses the arguments, builds the settings from the
resolved configuration and calls the step. Every output is written atomically.

Data (mock or archive, sharded by plate) → per-shard selection and preprocessing →
merge + iterative-PCA infill → ``grid.seeds`` models per grid point (one per training
seed) → held-out evaluation → BIC per model and seed, and its summary over the seeds →
analysis of the best VAE (PCA of the latents, MI, decoded sweeps, SHAP) and of the
best CVAE (condition sweeps) → figures.

Choices made here (the paper is silent on them)
-----------------------------------------------
* The **best VAE** is the plain VAE of the grid with the lowest BIC **averaged over
  the training seeds** (:func:`galforge.spectra.bic.bic_summary`; one seed's minimum
  moves with the seed); the analyses use its trained repeat with the lowest BIC (the
  *representative* seed, named in the reports). Its latent means μ are rotated onto
  their principal axes D1…Dk (all k = latent_dim kept). The **best CVAE** (lowest mean
  BIC among the CVAEs, its representative seed) gives the condition sweeps of Fig 5.
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
* **Planted-truth recovery** (mock): the minimum of the VAEs' mean BIC must sit within
  ±1 of the number of planted parameters (each seed's own minimum is recorded too); every planted parameter must reach a
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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from galforge.io import InputError, atomic_path, read_parquet, write_json, write_parquet

if TYPE_CHECKING:  # pragma: no cover
    from galforge.cosmology import Cosmology
    from galforge.mock.settings import MockSpectraSettings
    from galforge.spectra.settings import (
        AnalysisSettings,
        PreprocessSettings,
        SelectionSettings,
        SpectraModelSettings,
    )
    from galforge.train.settings import TrainSettings

PathLike = str | os.PathLike

log = logging.getLogger("galforge.spectra")

__all__ = [
    "LINE_DRIVERS",
    "REJECTS_COLUMNS",
    "TRUTH_PROPERTIES",
    "analysis",
    "bic",
    "build_targets",
    "fetch",
    "fetch_gswlc",
    "figures",
    "mock",
    "mock_manifests",
    "observed_mean_abs",
    "parity",
    "preprocess",
    "preprocess_shard",
    "read_rejects",
    "read_targets",
    "targets",
    "train",
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
    ``status`` is ``ok``, ``url`` empty, ``bytes`` and ``sha256`` those of the file,
    ``root`` the mock's folder (the files must stay in it:
    :func:`~galforge.archives.sdss_spectra.read_manifest`).
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
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                     "root": str(Path(root))})
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
    from galforge.archives.mpajhu import read_mpajhu

    return read_mpajhu(info, fiboh=oh)


def build_targets(gswlc: PathLike, selection: SelectionSettings,
                  max_spectra: int | None = None) -> pd.DataFrame:
    """The spectra to download (archive): GSWLC galaxies in the redshift range with M* and SFR.

    The final cuts (class, spectrum redshift, ZWARNING) run on the spectra themselves
    (:func:`galforge.spectra.selection.select_spectra`); this pre-selection uses GSWLC's
    own redshift and keeps at most ``max_spectra`` (the lowest spectrum keys, so the
    choice is stable).
    """
    from galforge.archives.gswlc import read_gswlc
    from galforge.archives.sdss_spectra import spectrum_key

    s = selection
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


def read_targets(path: PathLike) -> pd.DataFrame:
    """The targets written by :func:`targets` (``key, plate, mjd, fiber, z``)."""
    return read_parquet(path, "targets", ("key", "plate", "mjd", "fiber", "z"))


def read_rejects(paths: Sequence[PathLike]) -> pd.DataFrame:
    """The rejects tables (:data:`REJECTS_COLUMNS`) written by :func:`preprocess_shard` and
    :func:`preprocess`, concatenated."""
    frames = [pd.read_csv(p, keep_default_na=False, dtype={"path": str, "reason": str})
              for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(REJECTS_COLUMNS))


def _write_rejects(table: pd.DataFrame, path: PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


# -- the steps -----------------------------------------------------------------------------------
def mock(root: PathLike, manifests: Sequence[PathLike], *, settings: MockSpectraSettings,
         n_shards: int, seed: int, cosmology: Cosmology, progress: bool = True) -> dict[str, Any]:
    """The mock SDSS spectra, GSWLC and MPA-JHU tables, truth, and the shard manifests."""
    from galforge.mock.spectra import write_spectra_mock

    summary = write_spectra_mock(settings, root, seed=seed, progress=progress,
                                 cosmology=cosmology)
    mock_manifests(root, n_shards, manifests)
    log.info("spectra mock: %d spectra, %d selectable galaxies, planted %s",
             summary["n_spectra"], summary["n_selectable"], summary["planted_parameters"])
    return summary


def fetch_gswlc(out: PathLike, *, progress: bool = True) -> None:
    """Download the GSWLC-X2 catalogue (network)."""
    from galforge.archives import gswlc
    from galforge.archives.download import DownloadOptions

    gswlc.fetch_gswlc(out, url=gswlc.GSWLC_X2_URL, options=DownloadOptions(progress=progress))


def targets(gswlc: PathLike, out: PathLike, *, selection: SelectionSettings,
            max_spectra: int | None = None) -> pd.DataFrame:
    """The spectra to download: GSWLC galaxies in the redshift range (:func:`build_targets`)."""
    t = build_targets(gswlc, selection, max_spectra)
    write_parquet(t, out)
    return t


def fetch(targets: PathLike, manifest: PathLike, *, shard: int, n_shards: int, dest: PathLike,
          spectra_format: str, base_url: str, max_missing: Any,
          progress: bool = True) -> Any:
    """Download one plate shard of SDSS spectra and write its manifest (network)."""
    from galforge.archives.download import DownloadOptions
    from galforge.archives.sdss_spectra import fetch_spectra_shard

    return fetch_spectra_shard(
        read_targets(targets), int(shard), n_shards, dest, fmt=spectra_format, base_url=base_url,
        manifest_path=manifest, max_missing=max_missing, options=DownloadOptions(progress=False),
        progress=progress,
    )


def preprocess_shard(
    manifest: PathLike, gswlc: PathLike, info: PathLike, oh: PathLike, out: PathLike,
    rejects: PathLike, *, selection: SelectionSettings, preprocess: PreprocessSettings,
    progress: bool = True,
) -> dict[str, Any]:
    """Select (GSWLC × spectra, cuts) and preprocess one shard; write its HDF5 and rejects.

    The rejects CSV (:data:`REJECTS_COLUMNS`) lists every spectrum of the manifest that
    was not kept, with the selection's code or ``preprocess`` and the reason.

    Every file is read once: the spectrum the selection read goes on to the
    preprocessing, which takes the kept spectra in key order (the properties table's).
    A manifest sorted by key (as both writers write it) streams them, a batch at a time;
    another order holds them until every file is read. A file must hold the spectrum
    its manifest row names (``key``).
    """
    import time

    from tqdm import tqdm

    from galforge.archives.sdss_spectra import read_manifest
    from galforge.spectra.preprocess import ShardPreprocessor
    from galforge.spectra.selection import PROPERTY_COLUMNS, SpectrumSelector
    from galforge.spectra.store import open_shard

    t0 = time.perf_counter()
    frame = read_manifest(manifest)
    usable = frame["status"].isin(["ok", "cached"])
    rej = [{"key": int(r.key), "path": r.path, "code": "not_downloaded",
            "reason": f"spectrum {r.plate}/{r.mjd}/{r.fiber} not downloaded ({r.status})"}
           for r in frame[~usable].itertuples()]
    selector = SpectrumSelector(gswlc, read_oh_table(info, oh), selection)
    rows = frame[usable]
    stream = bool(np.all(np.diff(rows["key"].to_numpy(np.int64)) > 0))
    prop_cols = [c for c in PROPERTY_COLUMNS if c not in ("key", "plate", "mjd", "fiber", "path")]
    held: list[tuple[Any, list[float]]] = []
    with open_shard(out, preprocess, prop_cols) as writer:
        pre = ShardPreprocessor(writer, preprocess, prop_cols)
        for i, r in tqdm(zip(rows.index, rows.itertuples(), strict=True), total=len(rows),
                         desc="select and preprocess", unit="file", disable=not progress):
            spec = selector.read(r.path)
            if spec is None:
                continue
            if spec.key != r.key:
                raise InputError(
                    f"{manifest}: row {i} (key {r.key}) lists {r.path}, which holds spectrum "
                    f"{spec.plate}/{spec.mjd}/{spec.fiber} (key {spec.key}): the manifest does "
                    "not match its files; rerun the step that writes it")
            kept = selector.check(spec)
            if kept is None:
                continue
            item = (spec, [kept[c] for c in prop_cols])
            if stream:
                pre.add(*item)
            else:
                held.append(item)
        for item in sorted(held, key=lambda it: it[0].key):
            pre.add(*item)
        pre_rej = pre.finish()
        n_written = writer.n
    props, sel_rej = selector.result()
    pre_rej = pre_rej.astype({"key": np.int64, "path": str, "reason": str}).assign(
        code="preprocess")
    table = pd.concat([pd.DataFrame(rej, columns=list(REJECTS_COLUMNS)), sel_rej,
                       pre_rej[list(REJECTS_COLUMNS)]], ignore_index=True)
    _write_rejects(table, rejects)
    summary = {"n_files": len(props), "n_written": n_written, "n_rejected": len(pre_rej),
               "n_not_selected": 0, "seconds": time.perf_counter() - t0,
               "n_manifest": len(frame), "n_selected": len(props),
               "n_rejected_selection": len(sel_rej) + len(rej)}
    log.info("shard: %s", summary)
    return summary


def preprocess(shards: Sequence[PathLike], shard_rejects: Sequence[PathLike], out: PathLike,
               rejects_out: PathLike, report_out: PathLike, *, settings: PreprocessSettings,
               progress: bool = True) -> dict[str, Any]:
    """Merge the shards with the infill; write the rejects of every shard and a report.

    The report counts the spectra per reject code (how many each cut removed) and
    holds the merge/infill summary (no timings or paths, so reruns give equal files).
    """
    from galforge.spectra.store import merge_and_infill

    if len(shards) != len(shard_rejects):
        raise InputError("--shards and --shard-rejects must list the same number of files")
    summary = merge_and_infill(shards, settings, out, progress=progress)
    rej = read_rejects(shard_rejects)
    _write_rejects(rej, rejects_out)
    report = {
        "n_spectra": summary["n_spectra"],
        "n_shards": summary["n_shards"],
        "n_rejected": int(len(rej)),
        "rejected_by_code": {str(k): int(v) for k, v in rej["code"].value_counts().items()},
        "masked_fraction": summary["masked_fraction"],
        "infill": {k: v for k, v in summary["infill"].items() if k != "history"},
    }
    write_json(report, report_out)
    log.info("preprocessing: %s", report)
    return report


def train(spectra: PathLike, model: PathLike, metrics: PathLike, summary: PathLike,
          evaluation: PathLike, workdir: PathLike, *, settings: SpectraModelSettings,
          train_settings: TrainSettings, seed: int, val_fraction: float, repeat: int = 0,
          run_config: Mapping[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train repeat ``repeat`` of one VAE / CVAE of the grid (resumes from its checkpoint in
    ``workdir``), then evaluate it on the held-out spectra for the BIC.

    ``settings`` is one model of the grid (:meth:`SpectraModelSettings.for_model`),
    ``train_settings`` the study's ``train`` section, ``seed`` the run's seed: the repeat
    trains with :func:`~galforge.spectra.model_ids.repeat_seeds` ``(seed, repeat + 1)[repeat]``
    on the train/validation split of ``seed`` (the same validation spectra for every model
    and repeat). The evaluation records the repeat and its seed.
    """
    from galforge.spectra.bic import evaluate_model, write_evaluation
    from galforge.spectra.model_ids import repeat_seeds
    from galforge.spectra.training import train_spectra_model

    train_seed = repeat_seeds(seed, repeat + 1)[repeat]
    out = train_spectra_model(
        spectra, settings, train_settings, seed=train_seed, split_seed=seed,
        val_fraction=val_fraction, out_model=model, out_metrics=metrics, workroot=workdir,
        progress=progress, run_config=None if run_config is None else dict(run_config),
    )
    write_json({**out, "repeat": int(repeat)}, summary)
    # the held-out evaluation of the BIC, from the model file alone (as any later reader would)
    ev = {**evaluate_model(model, spectra), "repeat": int(repeat)}
    write_evaluation(ev, evaluation)
    log.info("%s repeat %d (seed %d): n=%d, ln L=%.2f, BIC=%.2f, chi2_nu=%.4f", ev["model_id"],
             repeat, ev["seed"], ev["n"], ev["log_l"], ev["bic"], ev["chi2_nu"])
    return ev


def bic(evaluations: Sequence[PathLike], out: PathLike, out_md: PathLike,
        summary_out: PathLike, summary_md: PathLike) -> pd.DataFrame:
    """The BIC of every model and seed (``bic.csv``) and its summary over the seeds, with
    the choice by the mean (``bic_summary.csv``; Fig 2). Returns the summary."""
    from galforge.spectra.bic import bic_summary, bic_table, load_evaluations, write_bic_table

    table = bic_table(load_evaluations(evaluations))
    summary = bic_summary(table)
    write_bic_table(table, out, out_md)
    write_bic_table(summary, summary_out, summary_md)
    for kind, rows in table[table["best_in_kind"]].groupby("kind"):
        best = summary[(summary["kind"] == kind) & summary["best_in_kind"]].iloc[0]
        log.info("lowest mean BIC of the %ss (%d seeds): %s; each seed's lowest: %s", kind,
                 int(best["n_seeds"]), best["model_id"],
                 dict(zip(rows["seed"].astype(int), rows["model_id"], strict=True)))
    return summary


def parity(bic: PathLike, pca: PathLike, arrays: PathLike, truth_report: PathLike, *,
           out_csv: PathLike, out_md: PathLike, out_html: PathLike, source: str) -> pd.DataFrame:
    """The paper's headline numbers beside ours (``tables/parity.*``), from the tables of
    the BIC (``bic`` is the summary over the seeds, ``bic_summary.csv``) and analysis
    steps; the HTML copy is the report's."""
    from galforge.parity import write_parity
    from galforge.spectra.parity import TITLE, parity_from_files

    table = parity_from_files(bic, pca, arrays, truth_report, source=source)
    write_parity(table, out_csv, out_md, out_html, title=TITLE)
    log.info("parity: %s", dict(zip(table["quantity"], table["ours"], strict=True)))
    return table


def figures(*, spectra: PathLike, catalog: PathLike, bic: PathLike, bic_summary: PathLike,
            pca: PathLike, mi: PathLike, arrays: PathLike, metrics: Sequence[PathLike],
            outdir: PathLike, cfg: Mapping[str, Any], truth: PathLike | None = None
            ) -> list[Path]:
    """Every figure of the study (PDF + PNG, stamped with the provenance of ``cfg``);
    ``metrics`` are the ``models/<id>/r<repeat>/metrics.csv`` of every model and repeat
    (the loss curves show each grid point's representative repeat)."""
    from galforge.spectra.bic import read_bic_summary
    from galforge.spectra.figure_set import make_figures
    from galforge.spectra.model_ids import run_folder

    by_run = {f"{Path(p).parent.parent.name}/{Path(p).parent.name}": p for p in metrics}
    summ = read_bic_summary(bic_summary)
    by_model = {}
    for mid, rep in zip(summ["model_id"], summ["representative_repeat"], strict=True):
        folder = run_folder(str(mid), int(rep))
        if folder not in by_run:
            raise InputError(f"{bic_summary}: {mid} repeat {int(rep)} has no metrics.csv "
                             f"among --metrics (models/{folder}/metrics.csv)")
        by_model[str(mid)] = by_run[folder]
    return make_figures(spectra=spectra, catalog=catalog, bic=bic, bic_summary=bic_summary,
                        pca=pca, mi=mi, analysis=arrays, metrics=by_model, outdir=outdir,
                        cfg=cfg, truth=truth)


# -- analysis ------------------------------------------------------------------------------------
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


def analysis(
    spectra: PathLike, bic: PathLike, bic_summary: PathLike, models: PathLike, *,
    catalog_out: PathLike, pca_out: PathLike, mi_out: PathLike, shap_out: PathLike,
    arrays_out: PathLike, truth_out: PathLike, settings: AnalysisSettings, seed: int,
    source: str, truth: PathLike | None = None, progress: bool = True,
) -> dict[str, Any]:
    """PCA of the best VAE's latents, the D catalog, MI, sweeps, SHAP (and truth recovery).

    The best VAE and CVAE are the grid points of lowest mean BIC over the seeds
    (``bic_summary``), each in its representative repeat (``models/<id>/r<repeat>/``);
    ``bic`` (one row per model and seed) gives the truth report each seed's own choice.
    Writes the catalog (Parquet), the PCA variance and MI tables (CSV), the SHAP
    additivity report and the truth-recovery report (JSON), and the arrays the figures
    need (HDF5, :class:`~galforge.spectra.analysis.AnalysisArrays`). Returns the truth report.
    """
    from galforge.spectra import analysis as A
    from galforge.spectra.bic import chosen_run, read_bic_summary, read_bic_table
    from galforge.spectra.model_ids import run_folder
    from galforge.spectra.store import read_spectra_file
    from galforge.spectra.training import encode
    from galforge.train import load_for_inference

    s = settings
    table = read_bic_table(bic)
    summary = read_bic_summary(bic_summary)
    best_vae, vae_repeat, vae_seed = chosen_run(summary, "vae")
    has_cvae = bool((summary["kind"] == "cvae").any())
    best_cvae, cvae_repeat, cvae_seed = chosen_run(summary, "cvae") if has_cvae else ("", -1, -1)
    models = Path(models)
    vae_path = models / run_folder(best_vae, vae_repeat) / "model.pt"
    log.info("best VAE by mean BIC: %s (representative: repeat %d, seed %d)%s", best_vae,
             vae_repeat, vae_seed, f"; best CVAE: {best_cvae} (repeat {cvae_repeat}, seed "
             f"{cvae_seed})" if has_cvae else "")

    lat = encode(vae_path, spectra, batch_size=s.batch_size)
    data = read_spectra_file(spectra)
    assert data.flux is not None
    pca = A.fit_latent_pca(lat.mu)
    d = pca.transform(lat.mu)
    k = d.shape[1]
    cat = A.latent_catalog(data.key, data.plate, data.mjd, data.fiber, d, lat.mu)
    A.write_latent_catalog(cat, catalog_out)
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
        "model": best_vae, "repeat": vae_repeat, "seed": vae_seed, "components": res.components, "n_background": int(n_bg),
        "n_explained": int(len(explain_rows)), "example_rows": ex_rows.tolist(),
        "additivity_error": res.additivity_error,
        "relative_additivity_error": res.relative_additivity_error,
        "expected_value": res.expected.tolist(),
    }
    write_json(shap_report, shap_out)

    cvae_sweeps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if has_cvae:
        cvae, _ = load_for_inference(models / run_folder(best_cvae, cvae_repeat) / "model.pt")
        for c in cvae.conditions:
            vals = A.sweep_values(data.properties[c], s.n_steps, s.sweep_quantiles)
            cvae_sweeps[c] = (vals, A.cvae_condition_sweep(cvae, c, vals,
                                                           batch_size=s.batch_size))
    A.write_analysis_arrays(A.AnalysisArrays(
        best_vae=best_vae, best_cvae=best_cvae, wave=data.wave, pca_components=pca.components,
        pca_mean=pca.mean, pca_variance=pca.variance, sweep_values=sweep_vals,
        sweep_spectra=sweeps, cvae_sweeps=cvae_sweeps, shap_mean_abs=mean_abs,
        shap_example_rows=ex_rows, shap_example_flux=data.flux[ex_rows],
        shap_example_values=ex_vals, shap_example_D=d[ex_rows],
        shap_additivity_error=res.additivity_error,
        shap_relative_additivity_error=res.relative_additivity_error,
        shap_components=list(res.components),
    ), arrays_out)

    report: dict[str, Any] = {
        "source": source, "best_vae": best_vae, "best_vae_repeat": vae_repeat,
        "best_vae_seed": vae_seed, "best_cvae": best_cvae, "best_cvae_repeat": cvae_repeat,
        "best_cvae_seed": cvae_seed,
        "shap_relative_additivity_error": res.relative_additivity_error}
    if truth_df is not None:
        report.update(truth_recovery(summary, table, mi, data.wave, mean_abs, planted, lines))
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


def _per_seed_dims(bic: pd.DataFrame) -> dict[str, int]:
    """Each seed's own lowest-BIC latent size among ``bic``'s rows (seed → d)."""
    rows = bic.loc[bic.groupby("repeat")["bic"].idxmin()].sort_values("repeat")
    return {str(int(s)): int(d) for s, d in zip(rows["seed"], rows["latent_dim"], strict=True)}


def truth_recovery(
    bic_summary: pd.DataFrame, bic: pd.DataFrame, mi: pd.DataFrame, wave: np.ndarray,
    mean_abs_shap: np.ndarray, planted: Sequence[str], lines: Mapping[str, float], *,
    dim_tolerance: int = 1, nmi_min: float = 2.0, line_tolerance: float = 20.0,
) -> dict[str, Any]:
    """How well the grid and the best VAE recover the mock's planted truth.

    ``bic_summary`` (:func:`galforge.spectra.bic.bic_summary`) gives the chosen latent
    size, by the mean BIC over the seeds, which ``pass_bic`` checks; ``bic`` (one row per
    model and seed) each seed's own choice, recorded beside it
    (``bic_best_latent_dim_per_seed``, seed → d, and how many of them lie within the
    tolerance), with the runner-up's mean-BIC margin and its standard error.
    Returns the planted and chosen latent sizes, the best normalised MI of each planted
    parameter (and with which D), the top mean-|SHAP| peak of the D most informative
    about each line-driving parameter and its distance to the nearest planted line,
    and ``pass_*`` flags for the three criteria (see the module docstring).
    """
    from galforge.spectra.analysis import importance_peaks

    vae = bic_summary[bic_summary["kind"] == "vae"]
    best_d = int(vae.loc[vae["bic_mean"].idxmin(), "latent_dim"])
    p = len(planted)
    per_seed = _per_seed_dims(bic[bic["kind"] == "vae"])
    out: dict[str, Any] = {"n_planted": p, "planted_parameters": list(planted),
                           "bic_best_latent_dim": best_d,
                           "bic_n_seeds": int(vae["n_seeds"].max()),
                           "bic_best_latent_dim_per_seed": per_seed,
                           "bic_seeds_within_tolerance": sum(
                               abs(d - p) <= dim_tolerance for d in per_seed.values()),
                           "pass_bic": bool(abs(best_d - p) <= dim_tolerance)}
    others = vae[vae["latent_dim"] != best_d]
    if len(others):
        r = others.loc[others["bic_mean"].idxmin()]
        out["bic_runner_up"] = {"latent_dim": int(r["latent_dim"]),
                                "delta_bic": float(r["delta_bic"]),
                                "delta_bic_se": float(r["delta_bic_se"])}
    cv = bic_summary[bic_summary["kind"] == "cvae"]
    if len(cv):
        out["bic_best_latent_dim_cvae"] = {
            str(c): int(g.loc[g["bic_mean"].idxmin(), "latent_dim"])
            for c, g in cv.groupby("conditions")}
        cv_seed = bic[bic["kind"] == "cvae"]
        out["bic_best_latent_dim_cvae_per_seed"] = {
            str(c): _per_seed_dims(g) for c, g in cv_seed.groupby("conditions")}
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
