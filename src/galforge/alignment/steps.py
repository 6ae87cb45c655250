"""One function per workflow rule of the alignment study: paths in, typed settings, outputs out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from galforge.alignment.settings import (
    CatalogSettings,
    ShapeSettings,
    StatsSettings,
    TidalSettings,
)
from galforge.io import InputError, atomic_path, write_json

__all__ = ["catalog", "evaluate", "figures", "so3_benchmark", "stats", "train_diffusion",
           "train_gan"]


def catalog(base_path: str | Path, catalog_out: str | Path, report_out: str | Path, *,
            catalog: CatalogSettings, shapes: ShapeSettings, tidal: TidalSettings,
            progress: bool = True) -> dict[str, Any]:
    """The galaxy catalog (shapes, groups, tidal field) of a TNG copy or the mock TNG.

    ``base_path``: the simulation's ``output/`` folder (the mock's ``<sim>/output``).
    Writes the catalog (HDF5) and a JSON report (counts, conventions, the halo route's
    difference from the particles'); returns the report.
    """
    from galforge.alignment.catalog import build_catalog, write_catalog

    cols, attrs = build_catalog(base_path, catalog, shapes, tidal, progress=progress)
    write_catalog(catalog_out, cols, attrs)
    write_json(attrs, report_out)
    print(f"{attrs['n_galaxies']} galaxies ({attrs['n_centrals']} centrals) -> {catalog_out}")
    return attrs


def _write_csv(path: str | Path, columns: dict[str, Any]) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(columns).to_csv(tmp, index=False, float_format="%.8g")


def read_truth_wgp(path: str | Path) -> dict[str, Any]:
    """The mock truth's planted w_g+ (``wgp/``: rp_edges, expected, its scatter, Pi_max)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mock TNG truth file not found")
    with h5py.File(path, "r") as f:
        if "wgp" not in f:
            raise InputError(f"{path}: no wgp/ group (not a galforge mock TNG truth file)")
        w = f["wgp"]
        out = {k: w[k][()] for k in w}
        out.update({k: (v.item() if hasattr(v, "item") else v) for k, v in w.attrs.items()})
        out["shape_log_mstar"] = json.loads(f.attrs["settings"])["wgp_shape_log_mstar"]
    return out


def stats(catalog_in: str | Path, wgp_out: str | Path, ed_ee_out: str | Path,
          misalign_out: str | Path, summary_out: str | Path, *, settings: StatsSettings,
          truth: str | Path | None = None, truth_out: str | Path | None = None) -> dict[str, Any]:
    """w_gg and w_g+ (jackknife), ED/EE, misalignments of the catalog; on the mock, the
    planted-truth check of w_g+ (``truth_out``: ``pass_wgp_mock``).

    The truth check uses the truth file's own r_p bins, Pi_max and shape sample (log M*
    cut), with the catalog's measured shapes and ``settings.n_pi`` / ``jackknife``.
    """
    from galforge.alignment.catalog import read_catalog
    from galforge.alignment.correlations import (
        ed_ee,
        misalignments,
        projected_correlations,
        summary,
    )

    cols, attrs = read_catalog(catalog_in)
    box, los = float(attrs["box"]), "xyz".index(attrs["line_of_sight"])
    method = attrs["shape_method"]
    good = np.isfinite(cols["e1"]) & np.isfinite(cols["e2"])
    shape = good & (cols["log_mstar"] >= settings.shape_log_mstar_min)
    if shape.sum() < 2:
        raise InputError(f"{catalog_in}: {int(shape.sum())} galaxies with a shape above log M* "
                         f"= {settings.shape_log_mstar_min}: lower stats.shape_log_mstar_min")
    if 2 * settings.pi_max > box or 2 * settings.rp_max > box:
        raise InputError(f"{catalog_in}: the {box:g} h^-1 Mpc box is smaller than 2 stats.pi_max "
                         f"({settings.pi_max:g}) or 2 stats.rp_max ({settings.rp_max:g})")
    edges = np.geomspace(settings.rp_min, settings.rp_max, settings.n_rp + 1)
    w = projected_correlations(cols["pos"], cols["pos"][shape], cols["e1"][shape],
                               cols["e2"][shape], box=box, rp_edges=edges,
                               pi_max=settings.pi_max, n_pi=settings.n_pi, los=los,
                               jackknife=settings.jackknife, responsivity=settings.responsivity)
    _write_csv(wgp_out, {k: w[k] for k in ("rp", "wgg", "wgg_err", "wgp", "wgp_err")} |
               {"rp_lo": edges[:-1], "rp_hi": edges[1:]})
    axes = cols[f"star_axes_{method}"][:, :, 0]
    shape3d = shape & np.isfinite(axes).all(axis=1)
    e = ed_ee(cols["pos"][shape3d], axes[shape3d], cols["pos"], box=box, r_edges=edges,
              jackknife=settings.jackknife)
    _write_csv(ed_ee_out, {k: e[k] for k in ("r", "ed", "ed_err", "ee", "ee_err", "ed_pairs",
                                             "ee_pairs")})
    mis = misalignments(cols, box, method)
    _write_csv(misalign_out, mis)
    report: dict[str, Any] = {
        "n_shape": int(shape.sum()), "n_density": len(cols["pos"]), "box": box,
        "line_of_sight": attrs["line_of_sight"], "shape_method": method,
        "misalignment_mean_cos2": summary(mis, attrs["smoothing"]),
        "tidal_smoothing": attrs["smoothing"],
    }
    if truth is not None:
        report["truth"] = _truth_check(cols, truth, good, box, los, settings)
        if truth_out is not None:
            write_json(report["truth"], truth_out)
    write_json(report, summary_out)
    return report


def _truth_check(cols: dict[str, Any], truth: str | Path, good: np.ndarray, box: float,
                 los: int, settings: StatsSettings) -> dict[str, Any]:
    """w_g+ of the measured shapes against the planted expectation (1σ jackknife, ≥ 80 %)."""
    from galforge.alignment.correlations import projected_correlations

    t = read_truth_wgp(truth)
    if t["line_of_sight"] != "xyz"[los]:
        raise InputError(f"{truth}: truth w_g+ along {t['line_of_sight']}, the catalog's e1/e2 "
                         f"along {'xyz'[los]}: set alignment.catalog.line_of_sight to match")
    shape = good & (cols["log_mstar"] >= t["shape_log_mstar"])
    w = projected_correlations(cols["pos"], cols["pos"][shape], cols["e1"][shape],
                               cols["e2"][shape], box=box, rp_edges=t["rp_edges"],
                               pi_max=float(t["pi_max"]), n_pi=settings.n_pi, los=los,
                               jackknife=settings.jackknife, responsivity=False, corr="g+")
    within = np.abs(w["wgp"] - t["expected"]) <= w["wgp_err"]
    frac = float(within.mean())
    return {
        "wgp_rp": t["rp_centres"].tolist(), "wgp_measured": w["wgp"].tolist(),
        "wgp_jackknife_err": w["wgp_err"].tolist(), "wgp_expected": t["expected"].tolist(),
        "wgp_expected_sem": t["expected_sem"].tolist(), "wgp_within_1sigma": within.tolist(),
        "wgp_fraction_within_1sigma": frac, "wgp_required_fraction": 0.8,
        "n_shape": int(shape.sum()), "n_shape_truth": int(t["n_shape"]),
        "n_density": len(cols["pos"]), "n_density_truth": int(t["n_density"]),
        "pass_wgp_mock": bool(frac >= 0.8),
    }


def train_gan(catalog_in: str | Path, model_out: str | Path, metrics_out: str | Path,
              generated_out: str | Path, summary_out: str | Path, workroot: str | Path, *,
              settings: Any, seed: int, progress: bool = True,
              run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the graph WGAN-GP (``settings``: the study's AlignmentSettings) and sample it."""
    from galforge.alignment import training

    summary = training.train_gan(catalog_in, model_out, metrics_out, generated_out, workroot,
                                 graphs=settings.graphs, model=settings.gan,
                                 train=settings.gan_train,
                                 val_fraction=settings.split.val_fraction, seed=seed,
                                 progress=progress, run_config=run_config)
    write_json(summary, summary_out)
    return summary


def train_diffusion(catalog_in: str | Path, model_out: str | Path, metrics_out: str | Path,
                    generated_out: str | Path, summary_out: str | Path, workroot: str | Path, *,
                    settings: Any, seed: int, progress: bool = True,
                    run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the GNN-conditioned SO(3) diffusion model (``settings``: the study's
    AlignmentSettings) and sample it."""
    from galforge.alignment import training

    summary = training.train_diffusion(catalog_in, model_out, metrics_out, generated_out,
                                       workroot, graphs=settings.graphs,
                                       model=settings.diffusion,
                                       train=settings.diffusion_train,
                                       val_fraction=settings.split.val_fraction, seed=seed,
                                       progress=progress, run_config=run_config)
    write_json(summary, summary_out)
    return summary


def so3_benchmark(out_json: str | Path, out_samples: str | Path, *, settings: Any,
                  seed: int) -> dict[str, Any]:
    """The diffusion model's synthetic SO(3) benchmark: per density, the MMD against true
    samples beside the noise floor, the mean log density, ``pass_<density>``; the samples
    (HDF5: model and truth rotations per density) for the figure."""
    import h5py

    from galforge.alignment.diffusion import benchmark

    report: dict[str, Any] = {}
    with atomic_path(out_samples) as tmp, h5py.File(tmp, "w") as f:
        for name in settings.densities:
            r = benchmark(name, settings, seed)
            f.create_dataset(f"{name}/model", data=r.pop("samples"))
            f.create_dataset(f"{name}/truth", data=r.pop("truth"))
            report[name] = r
            report[f"pass_{name}"] = r["pass"]
            print(f"{name}: MMD {r['mmd']:.3g} (noise floor {r['mmd_noise_floor']:.3g}, ratio "
                  f"{r['mmd_ratio']:.2f}), log p {r['mean_log_density_model']:.3f} "
                  f"(truth {r['mean_log_density_truth']:.3f})")
    write_json(report, out_json)
    return report


def evaluate(catalog_in: str | Path, generated: dict[str, str | Path], stats_in: str | Path,
             so3_in: str | Path, checks_out: str | Path, truth_out: str | Path | None, *,
             settings: StatsSettings) -> dict[str, Any]:
    """The generated catalogs' checks (``checks_out``) and, on the mock, every planted-truth
    and model check with one ``pass_<check>`` each (``truth_out``: truth_recovery.json)."""
    from galforge.alignment.catalog import read_catalog
    from galforge.alignment.evaluate import model_checks
    from galforge.alignment.training import read_generated

    cols, attrs = read_catalog(catalog_in)
    checks = {name: model_checks(cols, attrs, read_generated(path), settings)
              for name, path in generated.items()}
    write_json(checks, checks_out)
    report: dict[str, Any] = {"models": checks}
    if truth_out is not None:
        stats_report = json.loads(Path(stats_in).read_text())
        if "truth" not in stats_report:
            raise InputError(f"{stats_in}: no planted-truth check (was the stats step given "
                             "the mock's truth file?)")
        so3 = json.loads(Path(so3_in).read_text())
        report["wgp_mock"] = stats_report["truth"]
        report["so3_benchmark"] = so3
        report["pass_wgp_mock"] = stats_report["truth"]["pass_wgp_mock"]
        for name, c in checks.items():
            for k in ("wgp", "cos2_satellites", "axis_ratios"):
                report[f"pass_{name}_{k}"] = c[f"pass_{k}"]
        for k, v in so3.items():
            if k.startswith("pass_"):
                report[f"pass_so3_{k[5:]}"] = v
        write_json(report, truth_out)
    return report


def figures(*, wgp: str | Path, checks: str | Path, metrics: str | Path,
            diffusion_metrics: str | Path, so3_report: str | Path, so3_samples: str | Path,
            ed_ee: str | Path, misalignments: str | Path,
            catalog: str | Path, generated: dict[str, str | Path], outdir: str | Path,
            cfg: dict[str, Any], samuroff: str | Path | None = None,
            truth: str | Path | None = None) -> list[Path]:
    """The study's figures (PDF + PNG, stamped with the provenance of ``cfg``)."""
    from galforge.alignment.figures import make_figures

    return make_figures(wgp=wgp, checks=checks, metrics=metrics,
                        diffusion_metrics=diffusion_metrics, so3_report=so3_report,
                        so3_samples=so3_samples, ed_ee=ed_ee, misalignments=misalignments,
                        catalog=catalog, generated=generated, outdir=outdir, cfg=cfg,
                        samuroff=samuroff, truth=truth)
