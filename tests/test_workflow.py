"""The Snakemake workflow: lint, dry runs (local and SLURM), config errors, a tiny end-to-end run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from galforge.alignment.figures import FIGURES as ALIGNMENT_FIGURES
from galforge.config import _deep_merge
from galforge.edf.figure_set import FIGURES as EDF_FIGURES
from galforge.environment.catalog import read_catalog
from galforge.environment.envparams import read_envparams
from galforge.environment.figure_set import FIGURES as ENVIRONMENT_FIGURES
from galforge.environment.maps import read_maps
from galforge.exsitu.figures import FIGURES as EXSITU_FIGURES
from galforge.parity import read_parity
from galforge.spectra.figure_set import FIGURES as SPECTRA_FIGURES
from galforge.studies import study_names
from snakemake_runs import rules_claiming_a_gpu, run_snakemake, workflow_args


def test_lint_is_clean():
    out = run_snakemake("--lint")
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr, (
        out.stdout + out.stderr
    )


def jobs_of(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def dry_run(workdir: Path, *args: str) -> str:
    """``snakemake -n`` of the repository's workflow and config.yaml in an empty work folder."""
    return jobs_of(run_snakemake("-n", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
                                 "--configfile", str(REPO / "config.yaml"), *args))


def test_dry_run_lists_the_environment_jobs(tmp_path):
    text = dry_run(tmp_path, "--cores", "2")
    for rule in ("environment_mock", "environment_catalog", "environment_maps", "environment_train",
                 "environment_latents", "environment_stats", "environment_figures"):
        assert f"rule {rule}:" in text
    assert "environment_fetch" not in text


def test_dry_run_lists_the_spectra_jobs(tmp_path):
    text = dry_run(tmp_path, "--cores", "2", "--config", "studies=[spectra]")
    for rule in ("spectra_mock", "spectra_preprocess_shard", "spectra_preprocess", "spectra_train",
                 "spectra_bic", "spectra_analysis", "spectra_figures"):
        assert f"rule {rule}:" in text
    assert "environment_" not in text and "spectra_fetch" not in text
    # one training job per model of the grid and seed (demo: 4 latent sizes x 2 condition
    # sets x 3 seeds)
    assert "wildcards: model=vae-d6, repeat=2" in text
    assert "wildcards: model=cvae-ssfr+z-d3, repeat=0" in text
    assert text.count("rule spectra_train:") == 24
    assert "models/vae-d4/r1/model.pt" in text


def test_dry_run_on_the_archive_fetches_gswlc_and_spectra_shards(tmp_path):
    text = dry_run(tmp_path, "--cores", "2", "--config", "studies=[spectra]", "source=archive")
    for rule in ("spectra_fetch_gswlc", "archives_fetch_mpajhu", "spectra_targets",
                 "spectra_fetch_shard"):
        assert f"rule {rule}:" in text
    assert "spectra_mock" not in text and "truth_recovery.png" not in text
    assert text.count("rule spectra_fetch_shard:") == 16  # archive.n_shards


def test_dry_run_on_the_archive_fetches_the_sdss_table(tmp_path):
    text = dry_run(tmp_path, "--cores", "2", "--config", "source=archive")
    assert "rule environment_fetch:" in text and "rule archives_fetch_mpajhu:" in text
    # one MPA-JHU rule for both studies: the file both read is fetched by one job
    assert text.count("output: resources/archives/mpajhu/gal_info_dr7_v5_2.fit.gz") == 1
    assert "environment_mock" not in text and "truth_recovery.png" not in text
    assert "resources/archives/sdss/dr7_galaxies_z0.02-0.07.fits" in text


def test_slurm_profile_dry_run_works_without_a_cluster(tmp_path):
    text = dry_run(tmp_path, "--profile", str(REPO / "workflow/profiles/slurm"))
    assert "rule environment_maps:" in text and "rule environment_train:" in text
    text = dry_run(tmp_path, "--profile", str(REPO / "workflow/profiles/slurm"), "--config",
                   "source=archive")
    assert "rule environment_fetch:" in text


def test_download_rules_are_local_and_training_rules_claim_a_gpu():
    """Downloads stay on the submit host (clusters' compute nodes are often offline);
    every training rule declares gpu=1 so --resources gpu=N and the SLURM GPU partition apply."""
    import re

    seen = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", smk.read_text(), re.M):
            seen.add(name)
            if "fetch" in name:
                assert "localrule: True" in body, f"{name} must be a local rule"
            if "train" in name:
                assert re.search(r"gpu=1", body), f"{name} must declare resources gpu=1"
    assert {"environment_fetch", "archives_fetch_mpajhu", "environment_train",
            "spectra_fetch_shard", "spectra_fetch_gswlc", "spectra_train"} <= seen
    # the SLURM test (tests/test_slurm.py) expects every such rule in the gpu partition
    assert {name for name in seen if "train" in name} <= rules_claiming_a_gpu()


def test_local_profile_dry_run(tmp_path):
    text = dry_run(tmp_path, "--profile", str(REPO / "workflow/profiles/local"))
    assert "rule environment_catalog:" in text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"environment": {"catalog": {"zmax": "high"}}}, "environment.catalog.zmax"),
        ({"environment": {"maps": {"npix": -3}}}, "environment.maps"),
        ({"enviroment": {}}, "enviroment: unknown key"),
        ({"spectra": {"grid": {"conditions": [["sfr", "mass"]]}}}, "spectra.grid.conditions"),
        ({"spectra": {"model": {"activation": "swish"}}}, "spectra.model.activation = 'swish'"),
        ({"environment": {"model": {"latent_dim": 0}}}, "environment.model.latent_dim"),
        ({"environment": {"maps": {"npix": 32}, "model": {"npix": 64}}}, "environment.model.npix = 64 must equal maps.npix (32)"),
        ({"spectra": {"grid": {"latent_dims": [0]}}}, "spectra.grid.latent_dims"),
    ],
)
def test_config_errors_stop_before_any_job(tmp_path, override, message):
    cfg = _deep_merge(yaml.safe_load((REPO / "config.yaml").read_text()), override)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = run_snakemake("-n", "--cores", "1", "--configfile", str(path))
    assert out.returncode != 0
    assert message in out.stdout + out.stderr
    assert "Job stats" not in out.stdout + out.stderr


@pytest.mark.workflow
def test_tiny_end_to_end_run(tiny_local_run, tmp_path):
    run_dir = tiny_local_run
    res = run_dir / "results" / "ci" / "environment"
    cat = read_catalog(res / "catalog.parquet")
    report = json.loads((res / "maps_report.json").read_text())
    written = read_maps(res / "maps.h5")
    maps, ids = written["maps"], written["ids"]
    assert maps.shape[1:] == (64, 64) and len(ids) == len(maps) > 0
    assert set(ids) <= set(cat["id"]) and report["kept"] == len(ids)
    assert maps.sum() > 0 and np.isfinite(maps).all()
    params = read_envparams(res / "envparams.parquet")
    assert list(params["id"]) == list(ids)
    for name in ("mock", "catalog", "maps", "train", "latents", "stats", "parity", "figures"):
        assert (res / "logs" / f"{name}.log").exists()
        assert (res / "benchmarks" / f"{name}.tsv").exists()
    for stem in (*ENVIRONMENT_FIGURES, "truth_recovery"):
        for ext in ("pdf", "png"):
            assert (res / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    for table in ("latents_vs_environment", "latents_vs_properties"):
        csv = pd.read_csv(res / "tables" / f"{table}.csv")
        assert {"rho", "p", "nmi", "ks_D", "rho_lo", "rho_hi"} <= set(csv.columns) and len(csv) > 0
        assert (res / "tables" / f"{table}.md").read_text().startswith("|")
    assert json.loads((res / "tables" / "truth_recovery.json").read_text())["source"] == "mock"
    moments = pd.read_csv(res / "tables" / "latents_vs_moments.csv")
    assert {"moment", "variable", "rho", "rank"} <= set(moments.columns) and len(moments) > 0
    check_parity_table(res, n_rows=5)
    check_tiny_spectra_outputs(run_dir / "results" / "ci" / "spectra")
    check_tiny_edf_outputs(run_dir / "results" / "ci" / "edf")
    for study in ("exsitu", "alignment"):  # their tiny runs: every step ran, the checks written
        truth = json.loads((run_dir / "results" / "ci" / study / "tables" /
                            "truth_recovery.json").read_text())
        assert any(k.startswith("pass_") for k in truth), (study, truth)
    # nothing outside results/<run>/ and the cache
    assert {p.name for p in run_dir.iterdir()} <= {"results", "cache", ".snakemake", "config.yaml"}
    # the HTML report, with every figure's caption
    out = run_snakemake(*workflow_args(run_dir), "--cores", "1",
                        "--report", str(tmp_path / "report.html"))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000


def check_parity_table(res: Path, n_rows: int | None) -> None:
    """The paper-vs-ours table of a mock run: CSV, Markdown and the report's HTML copy
    (``n_rows`` rows, or any number when ``None``)."""
    table = read_parity(res / "tables" / "parity.csv")
    assert (n_rows is None or len(table) == n_rows) and len(table) and set(table["source"]) == {"mock"}
    assert (table["paper"] != "").all() and (table["ours"] != "").all()
    assert (res / "tables" / "parity.md").read_text().startswith("| quantity")
    assert "<table" in (res / "tables" / "parity.html").read_text()


def check_tiny_spectra_outputs(res: Path, seed: int = 42) -> None:
    """What the tiny run of the spectra study must leave (grid: VAE and CVAE, d = 1, 2,
    two training seeds each)."""
    from galforge.spectra.analysis import read_latent_catalog
    from galforge.spectra.bic import read_bic_summary, read_bic_table
    from galforge.spectra.model_ids import repeat_seeds
    from galforge.spectra.steps import read_rejects
    from galforge.spectra.store import read_spectra_file

    data = read_spectra_file(res / "spectra.h5")
    assert data.flux.shape[1] == 4000 and np.isfinite(data.flux).all()
    report = json.loads((res / "preprocess_report.json").read_text())
    assert report["n_spectra"] == len(data.key) > 100
    assert {"not_galaxy", "z_range"} <= set(report["rejected_by_code"])
    rejects = read_rejects([res / "rejects.csv"])
    assert len(rejects) == report["n_rejected"] and (rejects["reason"] != "").all()
    models = ["cvae-ssfr-d1", "cvae-ssfr-d2", "vae-d1", "vae-d2"]
    bic = read_bic_table(res / "tables" / "bic.csv")  # one row per model and seed
    assert sorted(bic["model_id"]) == sorted(models * 2)
    runs = set(zip(bic["repeat"], bic["seed"], strict=True))
    assert sorted(runs) == list(enumerate(repeat_seeds(seed, 2)))
    summary = read_bic_summary(res / "tables" / "bic_summary.csv")
    assert sorted(summary["model_id"]) == models and (summary["n_seeds"] == 2).all()
    for table in ("bic", "bic_summary"):
        assert (res / "tables" / f"{table}.md").read_text().startswith("|")
    cat, _ = read_latent_catalog(res / "latent_catalog.parquet", all_columns=True)
    vae = summary[(summary["kind"] == "vae") & summary["best_in_kind"]]
    best = int(vae["latent_dim"].item())
    mean = bic[(bic["kind"] == "vae")].groupby("latent_dim")["bic"].mean()
    assert best == mean.idxmin()  # chosen by the mean over the seeds
    assert list(cat["key"]) == list(data.key) and f"D{best}" in cat and f"D{best + 1}" not in cat
    pca = pd.read_csv(res / "tables" / "pca_variance.csv")
    assert len(pca) == best and np.isclose(pca["cumulative"].iloc[-1], 1.0)
    mi = pd.read_csv(res / "tables" / "mi.csv")
    assert {"true_log_age", "log_mstar", "oh_p50"} <= set(mi["property"])
    shap = json.loads((res / "tables" / "shap_additivity.json").read_text())
    assert shap["relative_additivity_error"] < 0.01
    truth = json.loads((res / "tables" / "truth_recovery.json").read_text())
    assert truth["n_planted"] == 4 and truth["source"] == "mock"
    assert truth["bic_best_latent_dim"] == best and truth["bic_n_seeds"] == 2
    assert set(truth["bic_best_latent_dim_per_seed"]) == {str(s) for s in repeat_seeds(seed, 2)}
    assert truth["best_vae"] == vae["model_id"].item()
    assert truth["best_vae_repeat"] == vae["representative_repeat"].item()
    check_parity_table(res, n_rows=4)
    for name in ("mock", "preprocess-000", "preprocess", "train-vae-d1-r0", "train-vae-d1-r1",
                 "bic", "analysis", "parity", "figures"):
        assert (res / "logs" / f"{name}.log").exists()
    # third-party INFO chatter stays out of the rule logs (fontTools wrote ~1,300 lines)
    assert "fontTools" not in (res / "logs" / "figures.log").read_text()
    for stem in (*SPECTRA_FIGURES, "truth_recovery"):
        for ext in ("pdf", "png"):
            assert (res / "figures" / f"{stem}.{ext}").stat().st_size > 1000


def check_tiny_edf_outputs(res: Path) -> None:
    """What the tiny run of the edf study must leave (2 folds + the all-galaxies model)."""
    from galforge.edf.table import read_edf_table

    table = read_edf_table(res / "edf.h5", stars=False)
    cut = json.loads((res / "cut_report.json").read_text())
    assert table.n_galaxies == cut["galaxies_kept"] > 0 and cut["galaxies_dropped_min_stars"]
    assert pd.read_csv(res / "galaxies.csv")["index"].tolist() == list(range(table.n_galaxies))
    for model in ("cv00", "cv01", "all"):
        assert (res / "models" / model / "model.pt").stat().st_size > 1000
        assert (res / "logs" / f"train-{model}.log").exists()
    held = pd.read_csv(res / "tables" / "heldout.csv")
    assert len(held) == table.n_galaxies and (held["mmd_floor"] > 0).all()
    truth = json.loads((res / "tables" / "truth_recovery.json").read_text())
    assert truth["source"] == "mock" and truth["n_heldout"] == len(held)
    assert {"pass_heldout", "pass_mmd_rises_with_dlogm", "pass_inclination"} <= set(truth)
    check_parity_table(res, n_rows=6)
    for stem in (*EDF_FIGURES, "truth_recovery"):
        for ext in ("pdf", "png"):
            assert (res / "figures" / f"{stem}.{ext}").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.workflow
def test_the_readme_run_recovers_the_planted_truth_of_every_study(tmp_path):
    """Issue acceptance: the README's run command (``snakemake --cores 8 --resources gpu=2``,
    then ``--report``) on the default configuration (mock, demo, every listed study) in a clean
    folder builds everything and the report, and recovers the mock's planted truth.

    environment: the top-ranked latent has |Spearman rho| >= 0.9 with the true density at
    the maps' scale, the planted density dependence of stellar mass, g - r and sSFR
    shows up in the top latent's correlations with the planted sign, and latents after z1
    track both components of the planted dipole of the true field (|rho| >= 0.5), which
    the map count does not (|rho| < 0.2).
    spectra: the minimum of the VAEs' BIC averaged over the training seeds (at least 3)
    sits within 1 of the 4 planted parameters, every
    planted parameter reaches a shuffle-normalised MI >= 2 with some D, and the mean |SHAP|
    of the D most informative about each line-driving parameter peaks within 20 A of a
    planted emission line.
    edf: at least 80 % of the held-out galaxies have a kernel MMD within 3 noise floors of a
    fresh mock draw and below the nearest neighbour's in log M*, the MMD against data
    galaxies rises with |d log M*| (Spearman >= 0.3), every spin axis is recovered within 1°.
    exsitu: test-set per-pixel error of the flow-sampled maps <= 0.10 and below the radial
    mean-map baseline and the prior's, integrated f_ex Spearman >= 0.8, 68 % coverage within
    10 points. alignment: the mock's measured w_g+ within 1 sigma of the planted one in
    >= 80 % of r_p bins; GAN and diffusion catalogs: w_g+ within 2 sigma in >= 70 % of bins,
    satellites' mean cos^2 within 0.02 of the truth, axis-ratio KS p > 0.01; the SO(3)
    benchmark within 2x its noise floor. (Every pass_<check> flag of every study is True.)

    The wall time is printed (``pytest -s``); the README's Performance section records it.
    """
    import time

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    assert cfg["scale"] == "demo" and cfg["source"] == "mock"
    assert set(cfg["studies"]) == set(study_names())  # every registered study
    cfg.update(run="accept", cache_dir=str(tmp_path / "cache"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    common = ("-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
              "--configfile", str(tmp_path / "config.yaml"))
    t0 = time.perf_counter()
    out = run_snakemake(*common, "--cores", "8", "--resources", "gpu=2", timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    rep = run_snakemake(*common, "--report", str(tmp_path / "report.html"))
    assert rep.returncode == 0, rep.stdout[-4000:] + rep.stderr[-4000:]
    print(f"README run command (demo, every listed study): {time.perf_counter() - t0:.0f} s")
    assert (tmp_path / "report.html").stat().st_size > 100_000

    res = tmp_path / "results" / "accept"
    env = json.loads((res / "environment/tables/truth_recovery.json").read_text())
    assert env["top_latent_abs_rho_density_map"] >= 0.9, env
    assert env["all_signs_recovered"], env["planted_signs"]
    assert env["pass_top_latent"] and env["pass_signs"], env
    assert env["pass_anisotropy"], env["anisotropy"]
    # every study of the run writes its planted-truth checks, one pass_<check> flag each
    for study in cfg["studies"]:
        truth = json.loads((res / study / "tables/truth_recovery.json").read_text())
        flags = {k: v for k, v in truth.items() if k.startswith("pass_")}
        assert flags and all(v is True for v in flags.values()), (study, flags)

    rec = json.loads((res / "spectra/tables/truth_recovery.json").read_text())
    assert rec["n_planted"] == 4
    assert abs(rec["bic_best_latent_dim"] - 4) <= 1, rec  # the minimum of the mean BIC
    assert rec["bic_n_seeds"] >= 3 and len(rec["bic_best_latent_dim_per_seed"]) >= 3, rec
    assert rec["pass_bic"] and rec["pass_mi"], rec
    assert all(v["nmi"] >= 2 for v in rec["best_nmi"].values()), rec["best_nmi"]
    assert set(rec["shap_peaks"]) == {"log_ssfr", "log_u"}, rec
    assert all(v["distance"] <= 20 for v in rec["shap_peaks"].values()), rec["shap_peaks"]
    assert rec["pass_shap"] and rec["shap_relative_additivity_error"] < 0.01, rec
    edf = json.loads((res / "edf/tables/truth_recovery.json").read_text())
    assert edf["fraction_heldout_passing"] >= 0.8 and edf["inclination_error_deg_max"] < 1.0, edf
    for study, stems in (("environment", (*ENVIRONMENT_FIGURES, "truth_recovery")),
                         ("spectra", (*SPECTRA_FIGURES, "truth_recovery")),
                         ("edf", (*EDF_FIGURES, "truth_recovery")),
                         ("exsitu", (*EXSITU_FIGURES, "truth_recovery")),
                         ("alignment", ALIGNMENT_FIGURES)):
        for stem in stems:
            assert (res / study / "figures" / f"{stem}.png").stat().st_size > 1000, (study, stem)
    for study in cfg["studies"]:
        check_parity_table(res / study, n_rows=None)


def test_report_captions_are_clean_restructuredtext():
    """Snakemake renders the captions with docutils: a stray ``|x|`` (a substitution
    reference) or a broken table prints errors into the report."""
    import docutils.core
    import docutils.utils

    for caption in sorted((REPO / "workflow" / "report").glob("*.rst")):
        try:
            docutils.core.publish_string(
                caption.read_text(), writer_name="null",
                settings_overrides={"report_level": 2, "halt_level": 2})
        except docutils.utils.SystemMessage as exc:
            pytest.fail(f"{caption.name}: {exc}")
