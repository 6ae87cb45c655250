"""The environment study's workflow steps: one function per rule (``galforge environment-*``).

Each step takes its input and output paths and the typed settings of the sections it
uses; :mod:`galforge.environment.cli` parses the arguments, builds the settings from
the resolved configuration and calls the step. Every output is written atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from galforge.io import InputError, write_json

if TYPE_CHECKING:  # pragma: no cover
    from galforge.cosmology import Cosmology
    from galforge.environment.settings import (
        CatalogSettings,
        EnvironmentModelSettings,
        EnvParamsSettings,
        FootprintSettings,
        MapSettings,
        StatsSettings,
    )
    from galforge.mock.settings import MockEnvironmentSettings
    from galforge.train.settings import TrainSettings

log = logging.getLogger("galforge.environment")

PathLike = str | os.PathLike

__all__ = ["catalog", "fetch", "figures", "latents", "maps", "mock", "parity", "stats",
           "train"]


def mock(catalog_out: PathLike, truth_out: PathLike, *, settings: MockEnvironmentSettings,
         cosmology: Cosmology, seed: int, config_hash: str) -> dict[str, Any]:
    """The mock universe's SDSS-format galaxy table and its truth file."""
    from galforge.mock.environment import write_environment_mock

    summary = write_environment_mock(
        settings, cosmology, seed=seed, catalog_path=catalog_out, truth_path=truth_out,
        config_hash=config_hash,
    )
    log.info("mock universe written: %s", summary)
    return summary


def fetch(out: PathLike, *, mpajhu_info: PathLike, mpajhu_lgm: PathLike, mpajhu_sfr: PathLike,
          mpajhu_specsfr: PathLike, catalog: CatalogSettings, timeout: float) -> None:
    """The DR7 galaxy table from the CAS (``catalog.zmin < z < catalog.zmax``), joined with
    the MPA-JHU stellar masses and SFRs."""
    from astropy.table import Table

    from galforge.archives.mpajhu import join_properties, read_mpajhu
    from galforge.archives.sdss import fetch_dr7_galaxies, fetched_range_matches, write_galaxy_table

    out = Path(out)
    raw = out.with_name(out.stem + ".cas.fits")
    # the CAS query is the slow part: keep its answer across reruns of the same range
    if not fetched_range_matches(raw, zmin=catalog.zmin, zmax=catalog.zmax):
        fetch_dr7_galaxies(raw, zmin=catalog.zmin, zmax=catalog.zmax, timeout=timeout)
    mpajhu = read_mpajhu(mpajhu_info, lgm_tot=mpajhu_lgm, sfr_tot=mpajhu_sfr,
                         specsfr_tot=mpajhu_specsfr)
    fetched = Table.read(raw, hdu=1)
    keep = ("SDSSDR", "ZLO", "ZHI", "RLIM", "NSLICES", "SQLURL")
    header = {k: (fetched.meta[k], "") for k in keep if k in fetched.meta}
    write_galaxy_table(join_properties(fetched, mpajhu), out, header=header)


def catalog(raw: PathLike, out: PathLike, report: PathLike, *, settings: CatalogSettings,
            cosmology: Cosmology) -> dict[str, Any]:
    """Read a galaxy table, check it and apply the volume limit; the report counts each cut."""
    from galforge.environment.catalog import build_catalog, write_catalog

    df, rep = build_catalog(raw, settings, cosmology)
    write_catalog(df, out)
    write_json(rep, report)
    return rep


def maps(catalog_path: PathLike, maps_out: PathLike, params_out: PathLike, report_out: PathLike, *,
         catalog: CatalogSettings, maps: MapSettings, footprint: FootprintSettings,
         envparams: EnvParamsSettings, cosmology: Cosmology, progress: bool = True) -> dict[str, Any]:
    """Neighbour-count maps and environment parameters of every target inside the survey."""
    import numpy as np

    from galforge.environment.anisotropy import map_moments, moment_frame
    from galforge.environment.catalog import read_catalog
    from galforge.environment.envparams import compute_envparams, write_envparams
    from galforge.environment.footprint import build_footprint, select_targets
    from galforge.environment.maps import iter_maps, write_maps

    cat = read_catalog(catalog_path)
    ra, dec, z, ids = (cat[c].to_numpy() for c in ("ra", "dec", "z", "id"))
    fp = build_footprint(footprint, ra, dec)
    # report: removed_redshift_edge, removed_coverage (square < min_coverage inside), kept
    targets, report = select_targets(ra, dec, z, fp, maps, cosmology,
                                     zmin=catalog.zmin, zmax=catalog.zmax, coverage=footprint)
    summary = write_maps(maps_out, ra, dec, z, ids, targets, maps, cosmology, progress=progress)
    params = compute_envparams(ra, dec, z, ids, targets, envparams, maps, cosmology,
                               progress=progress)
    # the maps' own dipole and quadrupole moments, read back from the file just written
    ids_read, moments = [], []
    for chunk_ids, chunk_maps in iter_maps(maps_out):
        ids_read.append(chunk_ids)
        moments.append(map_moments(chunk_maps))
    moments = moment_frame(np.concatenate(ids_read), np.concatenate(moments))
    params = params.merge(moments, on="id", how="left", validate="one_to_one")
    write_envparams(params, params_out)
    # the report holds no timings or paths, so reruns give identical files
    report = {**report, "n_neighbours": summary["n_neighbours"]}
    write_json(report, report_out)
    log.info("maps: %s", report)
    return report


def train(maps: PathLike, model: PathLike, metrics: PathLike, summary: PathLike, workdir: PathLike, *,
          model_settings: EnvironmentModelSettings, train_settings: TrainSettings, seed: int,
          val_fraction: float, run_config: Mapping[str, Any] | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train the Poisson VAE on the maps (resumes from its checkpoint in ``workdir``).

    ``model_settings`` and ``train_settings`` are the study's ``model`` and ``train``
    sections (the model's ``npix`` set, as the study settings derive it).
    """
    from galforge.environment.training import train_environment_model

    out = train_environment_model(
        maps, model_settings, train_settings, seed=seed, val_fraction=val_fraction,
        out_model=model, out_metrics=metrics, workroot=workdir, progress=progress,
        run_config=None if run_config is None else dict(run_config),
    )
    write_json(out, summary)
    return out


def latents(model: PathLike, maps: PathLike, out: PathLike, kl: PathLike) -> None:
    """Encode every target and rank the latents by mean KL."""
    from galforge.environment.analysis import write_latent_kl, write_latents
    from galforge.environment.training import ranked_latents

    table, kl_ranked, order = ranked_latents(model, maps)
    write_latents(table, out)
    write_latent_kl(kl_ranked, order, kl)
    log.info("latents: %d targets, top mean KL %s", len(table),
             [round(float(k), 3) for k in kl_ranked[:5]])


def stats(latents: PathLike, envparams: PathLike, catalog: PathLike, *, env_table: PathLike,
          env_table_md: PathLike, prop_table: PathLike, prop_table_md: PathLike,
          moments_table: PathLike, moments_table_md: PathLike, truth_report: PathLike,
          settings: StatsSettings, seed: int, source: str,
          truth: PathLike | None = None) -> dict[str, Any]:
    """Spearman, shuffle-normalised MI and KS between latents and parameters; every latent
    ranked by its Spearman rho with the maps' dipole and quadrupole moments (and the
    planted-truth recovery on the mock)."""
    import pandas as pd

    from galforge.environment.analysis import (
        join_tables,
        read_latents,
        statistics_tables,
        truth_recovery,
    )
    from galforge.environment.anisotropy import MOMENT_NAMES, latents_vs_moments
    from galforge.environment.catalog import read_catalog
    from galforge.environment.envparams import read_envparams
    from galforge.stats import write_tables

    params = read_envparams(envparams)
    missing = [c for c in MOMENT_NAMES if c not in params]
    if missing:
        raise InputError(f"{envparams}: no map moments {missing} (written by an older maps "
                         "step: run it again)")
    joined = join_tables(read_latents(latents), params, read_catalog(catalog))
    env, gal = statistics_tables(joined, settings, seed=seed)
    write_tables(env, env_table, env_table_md)
    write_tables(gal, prop_table, prop_table_md)
    write_tables(latents_vs_moments(joined), moments_table, moments_table_md)
    recovery: dict[str, Any] = {"source": source}
    if truth:
        recovery.update(truth_recovery(joined, pd.read_parquet(truth), settings.n_latents))
        log.info("planted truth: |rho(z1, density)| = %.3f; signs recovered: %s; "
                 "field moments recovered by a later latent: %s (n_map blind: %s)",
                 recovery["top_latent_abs_rho_density_map"], recovery["all_signs_recovered"],
                 recovery["anisotropy"]["recovered"], recovery["anisotropy"]["count_blind"])
    write_json(recovery, truth_report)
    return recovery


def parity(env_table: PathLike, truth_report: PathLike, *, moments_table: PathLike,
           out_csv: PathLike, out_md: PathLike, out_html: PathLike, source: str) -> Any:
    """The paper's headline numbers beside ours (``tables/parity.*``), from the tables of
    the stats step; the HTML copy is the report's."""
    from galforge.environment.parity import TITLE, parity_from_files
    from galforge.parity import write_parity

    table = parity_from_files(env_table, truth_report, moments_table, source=source)
    write_parity(table, out_csv, out_md, out_html, title=TITLE)
    log.info("parity table: %d rows", len(table))
    return table


def figures(*, catalog: PathLike, maps: PathLike, model: PathLike, latents: PathLike, kl: PathLike,
            envparams: PathLike, env_table: PathLike, prop_table: PathLike,
            moments_table: PathLike, metrics: PathLike, outdir: PathLike, cfg: dict[str, Any],
            truth: PathLike | None = None) -> list[Path]:
    """Every figure of the study (PDF + PNG, stamped with the provenance of ``cfg``)."""
    from galforge.environment.figure_set import make_figures

    return make_figures(
        catalog=catalog, maps=maps, model=model, latents=latents, kl=kl, envparams=envparams,
        env_table=env_table, prop_table=prop_table, moments_table=moments_table,
        metrics=metrics, truth=truth, outdir=outdir, cfg=cfg,
    )
