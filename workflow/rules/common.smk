# Shared helpers of the workflow: configuration, paths, and the CLI's --config value.
# Rules stay thin: every rule calls one `galforge` subcommand.
import json
from pathlib import Path

from snakemake.utils import validate

from galforge.config import ConfigError, config_hash, resolve_config

try:
    _resolved = resolve_config(config)
except ConfigError as exc:
    raise WorkflowError(f"config: {exc}") from None
config.clear()
config.update(_resolved)
validate(config, "../schemas/config.schema.yaml")

RUN = config["run"]
CACHE = config["cache_dir"].rstrip("/")
CONFIG_HASH = config_hash(config)

#: Keys every CLI call receives besides its study's sections.
GLOBAL_KEYS = ("run", "source", "scale", "seed", "cosmology", "cache_dir")


def res(study, path):
    """Path of an output of ``study`` in this run: results/<run>/<study>/<path>."""
    return f"results/{RUN}/{study}/{path}"


def logfile(study, name):
    return res(study, f"logs/{name}.log")


def benchfile(study, name):
    return res(study, f"benchmarks/{name}.tsv")


def cli_config(study, *sections):
    """The resolved settings one rule needs, as JSON for `galforge ... --config`.

    Only the listed sections of the study travel, so that a rule reruns when, and
    only when, its own settings change (Snakemake's params rerun trigger).
    """
    sub = {k: config[k] for k in GLOBAL_KEYS}
    sub["studies"] = [study]
    sub[study] = {s: config[study][s] for s in sections}  # no sections: the globals only
    return json.dumps(sub, sort_keys=True, separators=(",", ":"))


def study_enabled(study):
    return study in config["studies"]


def all_targets():
    targets = []
    if study_enabled("environment"):
        targets += environment_targets()
    if study_enabled("spectra"):
        targets += spectra_targets()
    return targets


# ---------------------------------------------------------------- environment study


def environment_targets():
    return [
        res("environment", "catalog.parquet"),
        res("environment", "maps.h5"),
        res("environment", "envparams.parquet"),
        res("environment", "tables/latents_vs_environment.csv"),
        res("environment", "tables/latents_vs_properties.csv"),
        res("environment", "tables/truth_recovery.json"),
        res("environment", "figures/fig6_correlation_heatmaps.png"),
    ]


#: Figures of the environment study besides the mock-only truth figure.
ENVIRONMENT_FIGURES = [
    "fig1_target_example",
    "fig3_latents_vs_environment",
    "fig4_latents_vs_properties",
    "fig5_latent_traversals",
    "fig6_correlation_heatmaps",
    "loss_curves",
    "kl_spectrum",
]


def environment_on_mock():
    return config["source"] == "mock" and not config["environment"]["catalog"]["path"]


def environment_truth_figure():
    """The planted-truth figure, an output of environment_figures on the mock only."""
    if not environment_on_mock():
        return {}
    return {
        "truth_png": report(
            res("environment", "figures/truth_recovery.png"),
            caption="../report/environment_truth.rst",
            category="Environment",
            labels={"figure": "Planted truth recovered"},
        ),
        "truth_pdf": res("environment", "figures/truth_recovery.pdf"),
    }


def environment_figure_inputs(wildcards):
    inputs = {
        "catalog": res("environment", "catalog.parquet"),
        "maps": res("environment", "maps.h5"),
        "model": res("environment", "model/model.pt"),
        "latents": res("environment", "latents.parquet"),
        "kl": res("environment", "latent_kl.json"),
        "envparams": res("environment", "envparams.parquet"),
        "env_table": res("environment", "tables/latents_vs_environment.csv"),
        "prop_table": res("environment", "tables/latents_vs_properties.csv"),
        "metrics": res("environment", "model/metrics.csv"),
    }
    if environment_on_mock():
        inputs["truth"] = res("environment", "mock/truth.parquet")
    return inputs


def environment_stats_inputs(wildcards):
    """Inputs of environment_stats: the mock's truth file joins on the mock only."""
    inputs = {
        "latents": res("environment", "latents.parquet"),
        "envparams": res("environment", "envparams.parquet"),
        "catalog": res("environment", "catalog.parquet"),
    }
    if environment_on_mock():
        inputs["truth"] = res("environment", "mock/truth.parquet")
    return inputs


def environment_raw_catalog(wildcards):
    """The galaxy table that environment_catalog reads (yours, the mock's, or the archive's)."""
    cat = config["environment"]["catalog"]
    if cat["path"]:
        return cat["path"]
    if config["source"] == "mock":
        return res("environment", "mock/sdss_dr7_galaxies.fits")
    return environment_archive_table()


def environment_archive_table():
    """Cache path of the SDSS DR7 galaxy table for this run's redshift range."""
    cat = config["environment"]["catalog"]
    return f"{CACHE}/sdss/dr7_galaxies_z{cat['zmin']}-{cat['zmax']}.fits"


# ---------------------------------------------------------------- spectra study


def spectra_on_mock():
    return config["source"] == "mock"


#: Figure stems of the spectra study (galforge.spectra.figure_set.FIGURES).
SPECTRA_FIGURES = (
    "fig1_latent_property_maps",
    "fig2_bic_grid",
    "fig3_component_sweeps",
    "fig4_mutual_information",
    "fig5_cvae_condition_sweeps",
    "fig6_shap",
    "pca_variance",
    "loss_curves",
)


def spectra_targets():
    targets = [
        res("spectra", "spectra.h5"),
        res("spectra", "tables/bic.csv"),
        res("spectra", "tables/pca_variance.csv"),
        res("spectra", "tables/mi.csv"),
        res("spectra", "tables/truth_recovery.json"),
        res("spectra", "latent_catalog.parquet"),
    ]
    targets += expand(res("spectra", "figures/{stem}.{ext}"), stem=SPECTRA_FIGURES,
                      ext=("pdf", "png"))
    if spectra_on_mock():
        targets += expand(res("spectra", "figures/truth_recovery.{ext}"), ext=("pdf", "png"))
    return targets


def spectra_truth_figure():
    """The mock's planted-truth figure (mock only)."""
    if not spectra_on_mock():
        return {}
    return {
        "truth_png": report(
            res("spectra", "figures/truth_recovery.png"),
            caption="../report/spectra_truth.rst",
            category="Spectra",
            labels={"figure": "Planted truth recovered"},
        ),
        "truth_pdf": res("spectra", "figures/truth_recovery.pdf"),
    }


def spectra_figure_inputs(wildcards):
    inputs = {
        "spectra": res("spectra", "spectra.h5"),
        "catalog": res("spectra", "latent_catalog.parquet"),
        "bic": res("spectra", "tables/bic.csv"),
        "pca": res("spectra", "tables/pca_variance.csv"),
        "mi": res("spectra", "tables/mi.csv"),
        "arrays": res("spectra", "analysis.h5"),
        "metrics": expand(res("spectra", "models/{model}/metrics.csv"), model=spectra_model_ids()),
    }
    if spectra_on_mock():
        inputs["truth"] = res("spectra", "mock/truth.parquet")
    return inputs


def spectra_shards():
    """Shard labels: spectra are split by plate so that a cluster spreads them over jobs."""
    if spectra_on_mock():
        n = config["spectra"]["mock_shards"]
    else:
        n = config["spectra"]["archive"]["n_shards"]
    return [f"{i:03d}" for i in range(n)]


def spectra_model_ids():
    """One model per (condition set, latent size) of the grid: vae-d3, cvae-mstar+sfr-d2, ..."""
    from galforge.spectra.model_settings import grid_model_ids

    grid = config["spectra"]["grid"]
    return grid_model_ids(grid["conditions"], grid["latent_dims"])


def spectra_catalog_inputs(wildcards):
    """GSWLC and the MPA-JHU metallicities: the mock's files, or the archive's."""
    if spectra_on_mock():
        return {
            "gswlc": res("spectra", "mock/gswlc.fits"),
            "info": res("spectra", "mock/mpajhu/gal_info_dr7_v5_2.fit.gz"),
            "oh": res("spectra", "mock/mpajhu/gal_fiboh_dr7_v5_2.fits.gz"),
        }
    return {
        "gswlc": f"{CACHE}/gswlc/GSWLC-X2.dat",
        "info": f"{CACHE}/mpajhu/gal_info_dr7_v5_2.fit.gz",
        "oh": f"{CACHE}/mpajhu/gal_fiboh_dr7_v5_2.fits.gz",
    }


def spectra_shard_inputs(wildcards):
    inputs = spectra_catalog_inputs(wildcards)
    where = "mock" if spectra_on_mock() else "archive"
    inputs["manifest"] = res("spectra", f"{where}/manifests/shard-{wildcards.shard}.csv")
    return inputs


def spectra_analysis_inputs(wildcards):
    inputs = {
        "spectra": res("spectra", "spectra.h5"),
        "bic": res("spectra", "tables/bic.csv"),
        "models": expand(res("spectra", "models/{model}/model.pt"), model=spectra_model_ids()),
    }
    if spectra_on_mock():
        inputs["truth"] = res("spectra", "mock/truth.parquet")
    return inputs
