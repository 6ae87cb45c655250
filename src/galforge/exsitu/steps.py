"""One function per workflow rule of the exsitu study (paths in, typed settings, outputs out)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from galforge.exsitu import maps as mp
from galforge.exsitu import sample as sp
from galforge.exsitu.settings import MapSettings, SampleSettings, SplitSettings
from galforge.exsitu.views import polyhedron_vertices
from galforge.io import InputError, read_parquet, write_json, write_parquet
from galforge.mock.tng.settings import MockTNGSettings

__all__ = ["MAP_FIELDS", "api_route", "evaluate", "fetch", "make_maps", "mock", "predict", "sample", "select_model", "train",
           "train_flow"]

PathLike = str | os.PathLike[str]
SAMPLE_COLUMNS = ("snapshot", "subhalo_id", "galaxy_id", "log_mstar", "fex", "r_half_kpc",
                  "n_views", "split")


def mock(out: PathLike, settings: MockTNGSettings, *, seed: int,
         snapshots: tuple[int, ...]) -> dict[str, Any]:
    """Write the mock TNG universe the study reads (its own size: ``exsitu.mock``)."""
    from galforge.mock.tng import write_mock_tng

    m = write_mock_tng(out, settings, seed=seed, snapshots=snapshots)
    print(f"mock TNG universe: {m.n_galaxies} galaxies, snapshots {m.snapshots}; "
          f"base path {m.base_path}")
    return {"n_galaxies": m.n_galaxies, "base_path": str(m.base_path)}


#: The star fields the maps read (the API route fetches exactly these).
MAP_FIELDS = {"stars": ("Coordinates", "Velocities", "Masses", "GFM_StellarFormationTime",
                        "GFM_Metallicity", "ParticleIDs", "Potential")}


def api_route(tng: dict[str, Any], cache_dir: PathLike) -> Any:
    """``snapshot -> ApiTNG``: the web-API route (``tng`` section; downloads cached under
    ``cache_dir``)."""
    from galforge.archives.tng import TNGClient
    from galforge.archives.tng_fetch import ApiTNG

    client = TNGClient(tng["api_url"])
    return lambda snap: ApiTNG(client, tng["simulation"], int(snap), cache_dir,
                               max_workers=tng["max_workers"])


def sample(base_path: PathLike | None, out: PathLike, report: PathLike, *,
           settings: SampleSettings, split: SplitSettings, seed: int,
           truth: PathLike | None = None, api: Any = None) -> pd.DataFrame:
    """Select the galaxies, give each its views and its split; write the table (Parquet).

    ``api``: ``snapshot -> ApiTNG`` (:func:`api_route`) reads TNG through the web API
    instead of the local copy at ``base_path``.
    """
    t = sp.select(base_path, settings,
                  catalog=None if api is None else (lambda snap: sp.api_catalog(api(snap))))
    if not len(t):
        raise InputError(f"{base_path}: no galaxy passes the cuts (log M* > "
                         f"{settings.log_mstar_min}, f_ex < {settings.fex_max})")
    t["galaxy_id"] = sp.galaxy_ids(t, truth)
    t["n_views"] = sp.balanced_views(t["fex"].to_numpy(), settings)
    t["split"] = sp.split_galaxies(t["galaxy_id"], t["n_views"], split, seed)
    t = t[list(SAMPLE_COLUMNS)]
    write_parquet(t, out)
    write_json({
        "galaxies": int(t["galaxy_id"].nunique()), "rows": len(t),
        "projections": int(t["n_views"].sum()),
        "per_snapshot": {str(k): int(v) for k, v in t.groupby("snapshot").size().items()},
        "views": {str(k): int(v) for k, v in t.groupby("n_views").size().items()},
        "split_projections": {k: int(t.loc[t["split"] == k, "n_views"].sum())
                              for k in sp.SPLITS},
        "fex_variant": "StellarMassExSitu / StellarMassTotal (whole subhalo, not in-radius)",
    }, report)
    print(f"{t['galaxy_id'].nunique()} galaxies, {t['n_views'].sum()} projections")
    return t


def _projections(base_path: PathLike | None, t: pd.DataFrame, s: MapSettings, progress: bool,
                 api: Any = None) -> Iterator[dict[str, Any]]:
    from tqdm import tqdm

    from galforge.archives.tng_local import LocalTNG

    bar = tqdm(total=len(t), desc="galaxies", disable=not progress, mininterval=2)
    for snap, rows in t.groupby("snapshot", sort=True):
        rows = rows.sort_values("subhalo_id")
        tng = LocalTNG(base_path, int(snap)) if api is None else api(int(snap))
        for r, gal in zip(rows.itertuples(), tng.iter_galaxies(rows["subhalo_id"], MAP_FIELDS),
                          strict=True):
            p = mp.particles_of(gal, s.systemic_fraction)
            raw, count = mp.raw_maps(p, polyhedron_vertices(int(r.n_views)),
                                     s.extent_rhalf * r.r_half_kpc, s.npix, s.z_sun)
            done = [mp.preprocess(raw[v], count[v], s) for v in range(len(raw))]
            yield {"maps": np.stack([d[0] for d in done]),
                   "masks": np.stack([d[1] for d in done]),
                   "galaxy_id": r.galaxy_id, "snapshot": r.snapshot,
                   "subhalo_id": r.subhalo_id, "view": np.arange(len(raw)),
                   "n_views": r.n_views, "fex": r.fex, "log_mstar": r.log_mstar,
                   "r_half_kpc": r.r_half_kpc, "split": r.split}
            bar.update()
    bar.close()


def fetch(sample_in: PathLike, out: PathLike, *, api: Any, n_shards: int, shard: int
          ) -> int:
    """Download (API route) the cutouts of the sample's subhaloes of one shard (id mod
    ``n_shards``) at every snapshot into the cache; write their manifest (JSON)."""
    t = read_parquet(sample_in, "exsitu sample", SAMPLE_COLUMNS)
    files = {}
    for snap, rows in t.groupby("snapshot", sort=True):
        paths = api(int(snap)).fetch_shard(rows["subhalo_id"], n_shards, shard, MAP_FIELDS)
        files[str(snap)] = [str(p) for p in paths]
    write_json({"shard": shard, "n_shards": n_shards, "files": files}, out)
    n = sum(map(len, files.values()))
    print(f"shard {shard}/{n_shards}: {n} cutouts")
    return n


def make_maps(base_path: PathLike | None, sample_in: PathLike, out: PathLike,
              report: PathLike, *, settings: MapSettings, progress: bool = True,
              api: Any = None) -> int:
    """The six preprocessed maps of every projection of the sample, in one chunked HDF5
    (``api``: the web-API route, :func:`api_route`; its cutouts cached by :func:`fetch`)."""
    t = read_parquet(sample_in, "exsitu sample", SAMPLE_COLUMNS)
    t0 = time.perf_counter()
    n = mp.write_maps(out, _projections(base_path, t, settings, progress, api), settings.npix,
                      settings, {"settings": str(settings.to_dict()),
                                 "preprocessed": "before storage: empty pixels, clipping, "
                                 "smoothing, fill + mask; scaling: at training"})
    dt = time.perf_counter() - t0
    write_json({"projections": n, "seconds": round(dt, 2),
                "projections_per_second": round(n / max(dt, 1e-9), 1)}, report)
    print(f"{n} projections in {dt:.1f} s")
    return n


def train(maps_in: PathLike, model_out: PathLike, metrics_out: PathLike, summary_out: PathLike,
          workdir: PathLike, *, model: Any, train_settings: Any, seed: int,
          run_config: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the conditional VAE (``model``: :class:`~galforge.exsitu.settings.CVAESettings`)."""
    from galforge.exsitu.training import train_cvae

    summary = train_cvae(maps_in, model_out, metrics_out, workdir, model_settings=model,
                         train_settings=train_settings, seed=seed, progress=progress,
                         run_config=run_config)
    write_json(summary, summary_out)
    return summary


def select_model(points: list[str], models: list[PathLike], metrics: list[PathLike],
                 summaries: list[PathLike], model_out: PathLike, metrics_out: PathLike,
                 summary_out: PathLike, selection_out: PathLike) -> str:
    """Keep the grid point with the lowest validation reconstruction error (the masked MSE
    of its checkpoint's epoch: the best epoch's when the best weights are restored, else the
    last's); copy its checkpoint, metrics and summary; write the table of every point."""
    import json
    import shutil

    from galforge.io import atomic_path

    if not len(points) == len(models) == len(metrics) == len(summaries) or not points:
        raise InputError(f"{len(points)} grid points for {len(models)} models, "
                         f"{len(metrics)} metrics files and {len(summaries)} summaries")
    rows = []
    for name, met, summ in zip(points, metrics, summaries, strict=True):
        s = json.loads(open(summ).read())
        table = pd.read_csv(met)
        if "val_mse" not in table or not len(table):
            raise InputError(f"{met}: no val_mse column (not a CVAE metrics file)")
        epoch = s.get("checkpoint_epoch", int(table["epoch"].iloc[-1]))
        row = table.loc[table["epoch"] == epoch]
        rows.append({"point": name, "val_mse": float(row["val_mse"].iloc[0]),
                     "val_kl": float(row["val_kl"].iloc[0]), "epoch": int(epoch)})
    best = min(range(len(rows)), key=lambda i: rows[i]["val_mse"])
    for src, dst in ((models[best], model_out), (metrics[best], metrics_out),
                     (summaries[best], summary_out)):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    write_json({"selected": rows[best]["point"], "criterion": "lowest validation masked MSE",
                "points": rows}, selection_out)
    print(f"kept {rows[best]['point']} (validation MSE {rows[best]['val_mse']:.5g}) of "
          f"{len(rows)} grid points")
    return rows[best]["point"]


def train_flow(cvae_in: PathLike, maps_in: PathLike, model_out: PathLike,
               metrics_out: PathLike, summary_out: PathLike, workdir: PathLike, *, flow: Any,
               train_settings: Any, seed: int, progress: bool = True) -> dict[str, Any]:
    """Train the conditional MAF on the CVAE's training latents."""
    from galforge.exsitu.flow import train_flow as fit_flow

    summary = fit_flow(cvae_in, maps_in, model_out, metrics_out, workdir, flow=flow,
                       train_settings=train_settings, seed=seed, progress=progress)
    write_json(summary, summary_out)
    return summary


#: The latent sources of the predictions (the paper's Figs 2-3).
SOURCES: tuple[str, ...] = ("encoder", "flow", "prior")


def predict(model_in: PathLike, maps_in: PathLike, out: PathLike, *, settings: Any,
            seed: int, flow_in: PathLike | None = None, split: str = "test",
            calibrate_on: str = "val") -> int:
    """S sampled maps per ``split`` projection from each latent source, summarised.

    With ``settings.aleatoric`` each source's noise sigma is first fitted on the
    ``calibrate_on`` projections (:func:`galforge.exsitu.analysis.fit_noise`).
    """
    from galforge.exsitu.analysis import fit_noise, summarise, write_predictions
    from galforge.exsitu.training import predict as sample_maps
    from galforge.train import load_for_inference

    model, meta = load_for_inference(model_in)
    m = mp.read_maps(maps_in)
    rows = np.flatnonzero(m.meta["split"] == split)
    cal = np.flatnonzero(m.meta["split"] == calibrate_on)
    most = settings.calibration_projections
    if most is not None and len(cal) > most:
        cal = cal[np.linspace(0, len(cal) - 1, most).round().astype(int)]
    if not len(rows):
        raise InputError(f"{maps_in}: no {split} projection")
    if settings.aleatoric and not len(cal):
        raise InputError(f"{maps_in}: no {calibrate_on} projection to fit the noise on")
    sampler = None
    if flow_in is not None:
        from galforge.exsitu.flow import flow_sampler
        sampler = flow_sampler(flow_in)
    sources = [s for s in SOURCES if s != "flow" or sampler is not None]

    def draw(r: np.ndarray, k: int, src: str) -> np.ndarray:
        return sample_maps(model, meta.normalization, m.maps[r], m.masks[r], source=src,
                           n_samples=settings.n_samples, seed=seed + k,
                           batch_size=settings.batch_size, latent_sampler=sampler)

    out_s, noise = {}, {}
    for k, src in enumerate(sources):
        noise[src] = 0.0
        if settings.aleatoric:
            noise[src] = fit_noise(draw(cal, 100 + k, src), m.maps[cal, 5], m.masks[cal],
                                   seed=seed + k)
            print(f"{src}: aleatoric sigma {noise[src]:.4f} (fitted on {len(cal)} "
                  f"{calibrate_on} projections)")
        out_s[src] = summarise(draw(rows, k, src), m.maps[rows, 0], m.masks[rows],
                               noise_sigma=noise[src], seed=seed + 200 + k)
    write_predictions(out, rows, out_s, {"split": split, "n_samples": settings.n_samples,
                                         "calibrated_on": calibrate_on if settings.aleatoric
                                         else "none"}, noise)
    print(f"{len(rows)} {split} projections x {settings.n_samples} samples from "
          f"{', '.join(sources)}")
    return len(rows)


#: The acceptance thresholds of the planted-truth checks (issue 15, section 5).
ACCEPT = {"max_error": 0.10, "min_spearman": 0.8, "coverage68_tolerance": 0.10}


def acceptance(report: dict[str, Any]) -> dict[str, Any]:
    """The planted-truth checks on the flow's predictions, each with its numbers and a
    ``pass_<check>`` flag (the flow's row absent: the prior's, and the flow checks fail)."""
    err = report["errors"]
    src = "flow" if "flow" in err else "prior"
    e, base, prior = err[src]["mean"], err["baseline"]["mean"], err["prior"]["mean"]
    rho, cov = report[src]["fex_int_spearman"], report[src]["coverage68"]
    return {
        "source": src, "error": e, "baseline_error": base, "prior_error": prior,
        "fex_int_spearman": rho, "coverage68": cov,
        "coverage95": report[src].get("coverage95"),
        "aleatoric_sigma": report.get("aleatoric_sigma", {}).get(src, 0.0),
        "thresholds": ACCEPT,
        "pass_error": bool(e <= ACCEPT["max_error"]),
        "pass_beats_baseline": bool(e < base),
        "pass_flow_beats_prior": bool(src == "flow" and e < prior),
        "pass_integrated_fex": bool(rho >= ACCEPT["min_spearman"]),
        "pass_coverage68": bool(abs(cov - 0.68) <= ACCEPT["coverage68_tolerance"]),
    }


def evaluate(maps_in: PathLike, predictions_in: PathLike, table_out: PathLike,
             table_md: PathLike, report_out: PathLike,
             truth_out: PathLike | None = None) -> dict[str, Any]:
    """Per-pixel errors of each latent source and of the radial baseline; calibration;
    the planted-truth checks (``truth_out``: ``tables/truth_recovery.json``)."""
    from galforge.exsitu import analysis as an

    m = mp.read_maps(maps_in)
    rows, preds = an.read_predictions(predictions_in)
    true, masks = m.maps[rows, 5], m.masks[rows]
    tr = m.meta["split"] == "train"
    profile = an.radial_baseline(m.maps[tr, 5], m.masks[tr])
    base = an.baseline_maps(profile, len(rows), true.shape[-1])
    table = {src: an.pixel_errors(p["mean"], true, masks) for src, p in preds.items()}
    table["baseline"] = an.pixel_errors(base, true, masks)
    fint_true = an.integrated(true, m.maps[rows, 0], masks)
    report: dict[str, Any] = {"errors": table, "baseline_profile": profile.tolist(),
                              "n_test": len(rows),
                              "aleatoric_sigma": an.read_noise(predictions_in)}
    from scipy.stats import spearmanr
    for src, p in preds.items():
        cov = an.coverage(p, true, masks)
        rho = spearmanr(p["fex_int_mean"], fint_true).statistic
        report[src] = {**cov, "fex_int_spearman": float(rho),
                       "fex_int_scatter": float(np.std(p["fex_int_mean"] - fint_true))}
    frame = pd.DataFrame(table).T.rename_axis("source").reset_index()
    _write_csv(frame, table_out)
    _write_text(frame.to_markdown(index=False, floatfmt=".4f"), table_md)
    write_json(report, report_out)
    if truth_out is not None:
        report["truth_recovery"] = acceptance(report)
        write_json(report["truth_recovery"], truth_out)
    return report


def _write_csv(frame: pd.DataFrame, path: PathLike) -> None:
    from galforge.io import atomic_path

    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _write_text(text: str, path: PathLike) -> None:
    from galforge.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
