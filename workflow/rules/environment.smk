# Environment study (Gim, Moon, Yoon): VAE on neighbour-count maps around SDSS DR7
# volume-limited galaxies: mock or archive catalog -> maps and environment parameters ->
# the VAE -> ranked latents -> statistics and truth recovery -> figures.


# ---------------------------------------------------------------- this run's paths
# (values, not functions: the configuration is fixed when the workflow is read)

_ENV_CATALOG = config["environment"]["catalog"]
#: The mock's truth file, on the mock only: it joins the statistics and the figures.
ENVIRONMENT_TRUTH = (
    {"truth": res("environment", "mock/truth.parquet")}
    if config["source"] == "mock" and not _ENV_CATALOG["path"]
    else {}
)
#: Cache path of the SDSS DR7 galaxy table for this run's redshift range.
ENVIRONMENT_ARCHIVE_TABLE = (
    f"{CACHE}/sdss/dr7_galaxies_z{_ENV_CATALOG['zmin']}-{_ENV_CATALOG['zmax']}.fits"
)
#: The galaxy table that environment_catalog reads (yours, the mock's, or the archive's).
ENVIRONMENT_RAW_CATALOG = _ENV_CATALOG["path"] or (
    res("environment", "mock/sdss_dr7_galaxies.fits")
    if config["source"] == "mock"
    else ENVIRONMENT_ARCHIVE_TABLE
)
#: Figures of the environment study besides the mock-only truth figure.
ENVIRONMENT_FIGURES = [
    "fig1_target_example",
    "fig3_latents_vs_environment",
    "fig4_latents_vs_properties",
    "fig5_latent_traversals",
    "fig6_correlation_heatmaps",
    "loss_curves",
    "kl_spectrum",
    "latents_vs_moments",
]

STUDY_TARGETS["environment"] = [
    res("environment", "catalog.parquet"),
    res("environment", "maps.h5"),
    res("environment", "envparams.parquet"),
    res("environment", "tables/latents_vs_environment.csv"),
    res("environment", "tables/latents_vs_properties.csv"),
    res("environment", "tables/latents_vs_moments.csv"),
    res("environment", "tables/truth_recovery.json"),
    res("environment", "tables/parity.csv"),
    res("environment", "figures/fig6_correlation_heatmaps.png"),
]


# ---------------------------------------------------------------- rules
rule environment_mock:
    output:
        catalog=res("environment", "mock/sdss_dr7_galaxies.fits"),
        truth=res("environment", "mock/truth.parquet"),
    params:
        config=cli_config("environment", "mock"),
    log:
        logfile("environment", "mock"),
    benchmark:
        benchfile("environment", "mock")
    conda:
        "../../envs/environment.yaml"
    shell:
        "galforge environment-mock --config {params.config:q} --no-progress"
        " --catalog {output.catalog:q} --truth {output.truth:q} > {log:q} 2>&1"


rule environment_fetch:
    input:
        info=f"{MPAJHU}/gal_info_dr7_v5_2.fit.gz",
        lgm=f"{MPAJHU}/totlgm_dr7_v5_2.fit.gz",
        sfr=f"{MPAJHU}/gal_totsfr_dr7_v5_2.fits.gz",
        specsfr=f"{MPAJHU}/gal_totspecsfr_dr7_v5_2.fits.gz",
    output:
        ENVIRONMENT_ARCHIVE_TABLE,
    params:
        config=cli_config("environment", "catalog", "archive"),
    log:
        f"{ENVIRONMENT_ARCHIVE_TABLE}.log",
    conda:
        "../../envs/archives.yaml"
    localrule: True
    shell:
        "galforge environment-fetch --config {params.config:q} --no-progress"
        " --mpajhu-info {input.info:q} --mpajhu-lgm {input.lgm:q}"
        " --mpajhu-sfr {input.sfr:q} --mpajhu-specsfr {input.specsfr:q}"
        " --out {output:q} > {log:q} 2>&1"


rule environment_catalog:
    input:
        ENVIRONMENT_RAW_CATALOG,
    output:
        catalog=res("environment", "catalog.parquet"),
        report=res("environment", "catalog_report.json"),
    params:
        config=cli_config("environment", "catalog"),
    log:
        logfile("environment", "catalog"),
    benchmark:
        benchfile("environment", "catalog")
    conda:
        "../../envs/environment.yaml"
    shell:
        "galforge environment-catalog --config {params.config:q}"
        " --raw {input:q} --out {output.catalog:q} --report {output.report:q} > {log:q} 2>&1"


rule environment_maps:
    input:
        res("environment", "catalog.parquet"),
    output:
        maps=res("environment", "maps.h5"),
        params=res("environment", "envparams.parquet"),
        report=res("environment", "maps_report.json"),
    params:
        config=cli_config("environment", "catalog", "maps", "footprint", "envparams"),
    threads: 2
    resources:
        mem_mb=4000,
    log:
        logfile("environment", "maps"),
    benchmark:
        benchfile("environment", "maps")
    conda:
        "../../envs/environment.yaml"
    shell:
        "galforge environment-maps --config {params.config:q} --no-progress"
        " --catalog {input:q} --maps {output.maps:q} --params {output.params:q}"
        " --report {output.report:q} > {log:q} 2>&1"


# One thread: on a CPU-only machine the training jobs share the cores (gpu=2 lets two run
# at once), and two intra-op threads per job then cost twice the time. A workstation without
# GPUs can give it more: --set-threads environment_train=8.
rule environment_train:
    input:
        res("environment", "maps.h5"),
    output:
        model=res("environment", "model/model.pt"),
        metrics=res("environment", "model/metrics.csv"),
        summary=res("environment", "model/training.json"),
    params:
        config=cli_config("environment", "model", "train", "split"),
        workdir=res("environment", "model/work"),
    threads: 1
    priority: TRAIN_PRIORITY["environment"]
    resources:
        gpu=1,
        mem_mb=8000,
    log:
        logfile("environment", "train"),
    benchmark:
        benchfile("environment", "train")
    conda:
        "../../envs/environment.yaml"
    shell:
        "galforge environment-train --config {params.config:q} --no-progress --threads {threads}"
        " --maps {input:q} --model {output.model:q} --metrics {output.metrics:q}"
        " --summary {output.summary:q} --workdir {params.workdir:q} > {log:q} 2>&1"


rule environment_latents:
    input:
        model=res("environment", "model/model.pt"),
        maps=res("environment", "maps.h5"),
    output:
        latents=res("environment", "latents.parquet"),
        kl=res("environment", "latent_kl.json"),
    params:
        config=cli_config("environment"),
    log:
        logfile("environment", "latents"),
    benchmark:
        benchfile("environment", "latents")
    conda:
        "../../envs/environment.yaml"
    shell:
        "galforge environment-latents --config {params.config:q}"
        " --model {input.model:q} --maps {input.maps:q}"
        " --out {output.latents:q} --kl {output.kl:q} > {log:q} 2>&1"


rule environment_stats:
    input:
        latents=res("environment", "latents.parquet"),
        envparams=res("environment", "envparams.parquet"),
        catalog=res("environment", "catalog.parquet"),
        **ENVIRONMENT_TRUTH,
    output:
        env_csv=res("environment", "tables/latents_vs_environment.csv"),
        env_md=res("environment", "tables/latents_vs_environment.md"),
        prop_csv=res("environment", "tables/latents_vs_properties.csv"),
        prop_md=res("environment", "tables/latents_vs_properties.md"),
        moments_csv=report(
            res("environment", "tables/latents_vs_moments.csv"),
            caption="../report/environment_moments_table.rst",
            category="Environment",
            labels={"figure": "Latents vs the maps' moments (table)"},
        ),
        moments_md=res("environment", "tables/latents_vs_moments.md"),
        truth=res("environment", "tables/truth_recovery.json"),
    params:
        config=cli_config("environment", "stats"),
        truth=lambda wildcards, input: f"--truth {input.truth}" if "truth" in input.keys() else "",
    log:
        logfile("environment", "stats"),
    benchmark:
        benchfile("environment", "stats")
    conda:
        "../../envs/environment.yaml"
    shell:
        "galforge environment-stats --config {params.config:q}"
        " --latents {input.latents:q} --envparams {input.envparams:q}"
        " --catalog {input.catalog:q} {params.truth}"
        " --env-table {output.env_csv:q} --env-table-md {output.env_md:q}"
        " --prop-table {output.prop_csv:q} --prop-table-md {output.prop_md:q}"
        " --moments-table {output.moments_csv:q} --moments-table-md {output.moments_md:q}"
        " --truth-report {output.truth:q} > {log:q} 2>&1"


# The paper's headline numbers beside ours: a table in the report (its HTML copy).
rule environment_parity:
    input:
        env_table=res("environment", "tables/latents_vs_environment.csv"),
        truth=res("environment", "tables/truth_recovery.json"),
        moments=res("environment", "tables/latents_vs_moments.csv"),
    output:
        csv=res("environment", "tables/parity.csv"),
        md=res("environment", "tables/parity.md"),
        html=report(
            res("environment", "tables/parity.html"),
            caption="../report/environment_parity.rst",
            category="Environment",
            labels={"figure": "Paper vs ours (table)"},
        ),
    params:
        config=cli_config("environment"),
    log:
        logfile("environment", "parity"),
    benchmark:
        benchfile("environment", "parity")
    conda:
        "../../envs/environment.yaml"
    shell:
        "galforge environment-parity --config {params.config:q}"
        " --env-table {input.env_table:q} --truth-report {input.truth:q}"
        " --moments-table {input.moments:q} --out {output.csv:q} --out-md {output.md:q} --out-html {output.html:q} > {log:q} 2>&1"


rule environment_figures:
    input:
        catalog=res("environment", "catalog.parquet"),
        maps=res("environment", "maps.h5"),
        model=res("environment", "model/model.pt"),
        latents=res("environment", "latents.parquet"),
        kl=res("environment", "latent_kl.json"),
        envparams=res("environment", "envparams.parquet"),
        env_table=res("environment", "tables/latents_vs_environment.csv"),
        prop_table=res("environment", "tables/latents_vs_properties.csv"),
        moments_table=res("environment", "tables/latents_vs_moments.csv"),
        metrics=res("environment", "model/metrics.csv"),
        **ENVIRONMENT_TRUTH,
    output:
        fig1=report(
            res("environment", "figures/fig1_target_example.png"),
            caption="../report/environment_fig1.rst",
            category="Environment",
            labels={"figure": "Fig 1: one target"},
        ),
        fig3=report(
            res("environment", "figures/fig3_latents_vs_environment.png"),
            caption="../report/environment_fig3.rst",
            category="Environment",
            labels={"figure": "Fig 3: latents vs environment"},
        ),
        fig4=report(
            res("environment", "figures/fig4_latents_vs_properties.png"),
            caption="../report/environment_fig4.rst",
            category="Environment",
            labels={"figure": "Fig 4: latents vs galaxy properties"},
        ),
        fig5=report(
            res("environment", "figures/fig5_latent_traversals.png"),
            caption="../report/environment_fig5.rst",
            category="Environment",
            labels={"figure": "Fig 5: latent traversals"},
        ),
        fig6=report(
            res("environment", "figures/fig6_correlation_heatmaps.png"),
            caption="../report/environment_fig6.rst",
            category="Environment",
            labels={"figure": "Fig 6: rho and normalised MI"},
        ),
        loss=report(
            res("environment", "figures/loss_curves.png"),
            caption="../report/environment_loss.rst",
            category="Environment",
            labels={"figure": "Training loss"},
        ),
        kl=report(
            res("environment", "figures/kl_spectrum.png"),
            caption="../report/environment_kl.rst",
            category="Environment",
            labels={"figure": "KL per latent"},
        ),
        moments=report(
            res("environment", "figures/latents_vs_moments.png"),
            caption="../report/environment_moments.rst",
            category="Environment",
            labels={"figure": "Latents vs the maps' dipole and quadrupole"},
        ),
        pdfs=expand(res("environment", "figures/{stem}.pdf"), stem=ENVIRONMENT_FIGURES),
        **(truth_figure("environment", "Environment") if ENVIRONMENT_TRUTH else {}),
    params:
        config=cli_config(
            "environment", "catalog", "mock", "archive", "maps", "footprint", "envparams",
            "model", "train", "split", "stats",
        ),
        truth=lambda wildcards, input: f"--truth {input.truth}" if "truth" in input.keys() else "",
        outdir=lambda wildcards, output: Path(output.fig1).parent,
    log:
        logfile("environment", "figures"),
    benchmark:
        benchfile("environment", "figures")
    conda:
        "../../envs/environment.yaml"
    shell:
        "galforge environment-figures --config {params.config:q}"
        " --catalog {input.catalog:q} --maps {input.maps:q} --model {input.model:q}"
        " --latents {input.latents:q} --kl {input.kl:q} --envparams {input.envparams:q}"
        " --env-table {input.env_table:q} --prop-table {input.prop_table:q}"
        " --moments-table {input.moments_table:q} --metrics {input.metrics:q} {params.truth} --outdir {params.outdir:q} > {log:q} 2>&1"
