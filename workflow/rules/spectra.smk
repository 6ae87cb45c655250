# Spectra study (Iwasaki, Cooray, Takeuchi): VAE / CVAE on SDSS spectra x GSWLC.
# Data (mock or archive, sharded by plate) -> preprocessing -> one training job per model of
# the grid and repeat (training seed) -> BIC per seed and its mean -> PCA of the best VAE's
# latents, MI, SHAP -> figures.


wildcard_constraints:
    shard=r"[0-9]{3}",
    model=r"(vae|cvae-[a-z+]+)-d[0-9]+",
    repeat=r"[0-9]+",


# ---------------------------------------------------------------- this run's paths
# (values, not functions: the configuration is fixed when the workflow is read)

_SPECTRA_ON_MOCK = config["source"] == "mock"
#: The mock's truth file, on the mock only: it joins the analysis and the figures.
SPECTRA_TRUTH = {"truth": res("spectra", "mock/truth.parquet")} if _SPECTRA_ON_MOCK else {}
#: Shard labels: spectra are split by plate so that a cluster spreads them over jobs.
SPECTRA_SHARDS = [
    f"{i:03d}"
    for i in range(
        config["spectra"]["mock_shards"]
        if _SPECTRA_ON_MOCK
        else config["spectra"]["archive"]["n_shards"]
    )
]
#: One model per (condition set, latent size) of the grid: vae-d3, cvae-mstar+sfr-d2, ...
SPECTRA_MODELS = study_settings(config, "spectra").model_ids()
#: Every grid point is trained once per repeat (grid.seeds training seeds): models/<id>/r<repeat>/
SPECTRA_REPEATS = study_settings(config, "spectra").grid.repeats()
#: GSWLC and the MPA-JHU metallicities: the mock's files, or the archive's.
SPECTRA_CATALOGS = (
    {
        "gswlc": res("spectra", "mock/gswlc.fits"),
        "info": res("spectra", "mock/mpajhu/gal_info_dr7_v5_2.fit.gz"),
        "oh": res("spectra", "mock/mpajhu/gal_fiboh_dr7_v5_2.fits.gz"),
    }
    if _SPECTRA_ON_MOCK
    else {
        "gswlc": f"{CACHE}/gswlc/GSWLC-X2.dat",
        "info": f"{MPAJHU}/gal_info_dr7_v5_2.fit.gz",
        "oh": f"{MPAJHU}/gal_fiboh_dr7_v5_2.fits.gz",
    }
)
_SPECTRA_MANIFESTS = (
    res("spectra", "mock/manifests/shard-{shard}.csv")
    if _SPECTRA_ON_MOCK
    else res("spectra", "archive/manifests/shard-{shard}.csv")
)
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

STUDY_TARGETS["spectra"] = [
    res("spectra", "spectra.h5"),
    res("spectra", "tables/bic.csv"),
    res("spectra", "tables/bic_summary.csv"),
    res("spectra", "tables/pca_variance.csv"),
    res("spectra", "tables/mi.csv"),
    res("spectra", "tables/truth_recovery.json"),
    res("spectra", "tables/parity.csv"),
    res("spectra", "latent_catalog.parquet"),
    *expand(res("spectra", "figures/{stem}.{ext}"), stem=SPECTRA_FIGURES, ext=("pdf", "png")),
    *(
        expand(res("spectra", "figures/truth_recovery.{ext}"), ext=("pdf", "png"))
        if _SPECTRA_ON_MOCK
        else []
    ),
]


# ---------------------------------------------------------------- rules
rule spectra_mock:
    output:
        gswlc=res("spectra", "mock/gswlc.fits"),
        info=res("spectra", "mock/mpajhu/gal_info_dr7_v5_2.fit.gz"),
        oh=res("spectra", "mock/mpajhu/gal_fiboh_dr7_v5_2.fits.gz"),
        truth=res("spectra", "mock/truth.parquet"),
        manifests=expand(res("spectra", "mock/manifests/shard-{shard}.csv"), shard=SPECTRA_SHARDS),
    params:
        config=cli_config("spectra", "mock", "mock_shards"),
        root=lambda wildcards, output: Path(output.gswlc).parent,
    log:
        logfile("spectra", "mock"),
    benchmark:
        benchfile("spectra", "mock")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-mock --config {params.config:q} --no-progress --root {params.root:q}"
        " --manifests {output.manifests:q} > {log:q} 2>&1"


rule spectra_fetch_gswlc:
    output:
        f"{CACHE}/gswlc/GSWLC-X2.dat",
    params:
        config=cli_config("spectra"),
    log:
        f"{CACHE}/gswlc/fetch.log",
    conda:
        "../../envs/archives.yaml"
    localrule: True
    shell:
        "galforge spectra-fetch-gswlc --config {params.config:q} --no-progress"
        " --out {output:q} > {log:q} 2>&1"


rule spectra_targets:
    input:
        f"{CACHE}/gswlc/GSWLC-X2.dat",
    output:
        res("spectra", "archive/targets.parquet"),
    params:
        config=cli_config("spectra", "selection", "archive"),
    log:
        logfile("spectra", "targets"),
    benchmark:
        benchfile("spectra", "targets")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-targets --config {params.config:q} --gswlc {input:q}"
        " --out {output:q} > {log:q} 2>&1"


rule spectra_fetch_shard:
    input:
        res("spectra", "archive/targets.parquet"),
    output:
        res("spectra", "archive/manifests/shard-{shard}.csv"),
    params:
        config=cli_config("spectra", "archive"),
        dest=f"{CACHE}/sdss_spectra",
    log:
        logfile("spectra", "fetch-{shard}"),
    conda:
        "../../envs/archives.yaml"
    localrule: True
    shell:
        "galforge spectra-fetch --config {params.config:q} --no-progress --shard {wildcards.shard}"
        " --targets {input:q} --dest {params.dest:q} --manifest {output:q} > {log:q} 2>&1"


rule spectra_preprocess_shard:
    input:
        manifest=_SPECTRA_MANIFESTS,
        **SPECTRA_CATALOGS,
    output:
        spectra=res("spectra", "shards/shard-{shard}.h5"),
        rejects=res("spectra", "shards/rejects-{shard}.csv"),
    params:
        config=cli_config("spectra", "selection", "preprocess"),
    resources:
        mem_mb=4000,
    log:
        logfile("spectra", "preprocess-{shard}"),
    benchmark:
        benchfile("spectra", "preprocess-{shard}")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-preprocess-shard --config {params.config:q} --no-progress"
        " --manifest {input.manifest:q} --gswlc {input.gswlc:q} --mpajhu-info {input.info:q}"
        " --mpajhu-oh {input.oh:q} --out {output.spectra:q} --rejects {output.rejects:q}"
        " > {log:q} 2>&1"


rule spectra_preprocess:
    input:
        spectra=expand(res("spectra", "shards/shard-{shard}.h5"), shard=SPECTRA_SHARDS),
        rejects=expand(res("spectra", "shards/rejects-{shard}.csv"), shard=SPECTRA_SHARDS),
    output:
        spectra=res("spectra", "spectra.h5"),
        rejects=res("spectra", "rejects.csv"),
        report=res("spectra", "preprocess_report.json"),
    params:
        config=cli_config("spectra", "preprocess"),
    threads: 2
    resources:
        mem_mb=8000,
    log:
        logfile("spectra", "preprocess"),
    benchmark:
        benchfile("spectra", "preprocess")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-preprocess --config {params.config:q} --no-progress --threads {threads}"
        " --shards {input.spectra:q} --shard-rejects {input.rejects:q} --out {output.spectra:q}"
        " --rejects {output.rejects:q} --report {output.report:q} > {log:q} 2>&1"


rule spectra_train:
    input:
        res("spectra", "spectra.h5"),
    output:
        model=res("spectra", "models/{model}/r{repeat}/model.pt"),
        metrics=res("spectra", "models/{model}/r{repeat}/metrics.csv"),
        summary=res("spectra", "models/{model}/r{repeat}/training.json"),
        evaluation=res("spectra", "models/{model}/r{repeat}/evaluation.json"),
    params:
        config=cli_config("spectra", "model", "train", "split"),
        workdir=res("spectra", "models/{model}/r{repeat}/work"),
    threads: 1
    priority: TRAIN_PRIORITY["spectra"]
    resources:
        gpu=1,
        mem_mb=6000,
    log:
        logfile("spectra", "train-{model}-r{repeat}"),
    benchmark:
        benchfile("spectra", "train-{model}-r{repeat}")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-train --config {params.config:q} --no-progress --threads {threads}"
        " --model-id {wildcards.model} --repeat {wildcards.repeat} --spectra {input:q}"
        " --model {output.model:q}"
        " --metrics {output.metrics:q} --summary {output.summary:q}"
        " --evaluation {output.evaluation:q} --workdir {params.workdir:q} > {log:q} 2>&1"


rule spectra_bic:
    input:
        expand(
            res("spectra", "models/{model}/r{repeat}/evaluation.json"),
            model=SPECTRA_MODELS,
            repeat=SPECTRA_REPEATS,
        ),
    output:
        csv=res("spectra", "tables/bic.csv"),
        md=res("spectra", "tables/bic.md"),
        summary=res("spectra", "tables/bic_summary.csv"),
        summary_md=res("spectra", "tables/bic_summary.md"),
    params:
        config=cli_config("spectra", "grid"),
    log:
        logfile("spectra", "bic"),
    benchmark:
        benchfile("spectra", "bic")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-bic --config {params.config:q} --evaluations {input:q}"
        " --out {output.csv:q} --out-md {output.md:q} --summary {output.summary:q}"
        " --summary-md {output.summary_md:q} > {log:q} 2>&1"


rule spectra_analysis:
    input:
        spectra=res("spectra", "spectra.h5"),
        bic=res("spectra", "tables/bic.csv"),
        bic_summary=res("spectra", "tables/bic_summary.csv"),
        models=expand(
            res("spectra", "models/{model}/r{repeat}/model.pt"),
            model=SPECTRA_MODELS,
            repeat=SPECTRA_REPEATS,
        ),
        **SPECTRA_TRUTH,
    output:
        catalog=res("spectra", "latent_catalog.parquet"),
        pca=res("spectra", "tables/pca_variance.csv"),
        mi=res("spectra", "tables/mi.csv"),
        shap=res("spectra", "tables/shap_additivity.json"),
        truth=res("spectra", "tables/truth_recovery.json"),
        arrays=res("spectra", "analysis.h5"),
    params:
        config=cli_config("spectra", "grid", "analysis", "split"),
        models=lambda wildcards, input: Path(input.models[0]).parents[2],
        truth=lambda wildcards, input: f"--truth {input.truth}" if "truth" in input.keys() else "",
    threads: 2
    resources:
        mem_mb=8000,
    log:
        logfile("spectra", "analysis"),
    benchmark:
        benchfile("spectra", "analysis")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-analysis --config {params.config:q} --no-progress --threads {threads}"
        " --spectra {input.spectra:q} --bic {input.bic:q} --bic-summary {input.bic_summary:q}"
        " --models {params.models:q}"
        " {params.truth} --catalog {output.catalog:q} --pca {output.pca:q} --mi {output.mi:q}"
        " --shap {output.shap:q} --truth-report {output.truth:q} --arrays {output.arrays:q}"
        " > {log:q} 2>&1"


# The paper's headline numbers beside ours: a table in the report (its HTML copy).
rule spectra_parity:
    input:
        bic=res("spectra", "tables/bic_summary.csv"),
        pca=res("spectra", "tables/pca_variance.csv"),
        arrays=res("spectra", "analysis.h5"),
        truth=res("spectra", "tables/truth_recovery.json"),
    output:
        csv=res("spectra", "tables/parity.csv"),
        md=res("spectra", "tables/parity.md"),
        html=report(
            res("spectra", "tables/parity.html"),
            caption="../report/spectra_parity.rst",
            category="Spectra",
            labels={"figure": "Paper vs ours (table)"},
        ),
    params:
        config=cli_config("spectra"),
    log:
        logfile("spectra", "parity"),
    benchmark:
        benchfile("spectra", "parity")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-parity --config {params.config:q} --bic {input.bic:q}"
        " --pca {input.pca:q} --arrays {input.arrays:q} --truth-report {input.truth:q}"
        " --out {output.csv:q} --out-md {output.md:q} --out-html {output.html:q} > {log:q} 2>&1"


rule spectra_figures:
    input:
        spectra=res("spectra", "spectra.h5"),
        catalog=res("spectra", "latent_catalog.parquet"),
        bic=res("spectra", "tables/bic.csv"),
        bic_summary=res("spectra", "tables/bic_summary.csv"),
        pca=res("spectra", "tables/pca_variance.csv"),
        mi=res("spectra", "tables/mi.csv"),
        arrays=res("spectra", "analysis.h5"),
        metrics=expand(
            res("spectra", "models/{model}/r{repeat}/metrics.csv"),
            model=SPECTRA_MODELS,
            repeat=SPECTRA_REPEATS,
        ),
        **SPECTRA_TRUTH,
    output:
        fig1=report(
            res("spectra", "figures/fig1_latent_property_maps.png"),
            caption="../report/spectra_fig1.rst",
            category="Spectra",
            labels={"figure": "Fig 1: properties over the latent plane"},
        ),
        fig2=report(
            res("spectra", "figures/fig2_bic_grid.png"),
            caption="../report/spectra_fig2.rst",
            category="Spectra",
            labels={"figure": "Fig 2: BIC of the model grid"},
        ),
        fig3=report(
            res("spectra", "figures/fig3_component_sweeps.png"),
            caption="../report/spectra_fig3.rst",
            category="Spectra",
            labels={"figure": "Fig 3: spectra along each D"},
        ),
        fig4=report(
            res("spectra", "figures/fig4_mutual_information.png"),
            caption="../report/spectra_fig4.rst",
            category="Spectra",
            labels={"figure": "Fig 4: MI of D and properties"},
        ),
        fig5=report(
            res("spectra", "figures/fig5_cvae_condition_sweeps.png"),
            caption="../report/spectra_fig5.rst",
            category="Spectra",
            labels={"figure": "Fig 5: CVAE condition sweeps"},
        ),
        fig6=report(
            res("spectra", "figures/fig6_shap.png"),
            caption="../report/spectra_fig6.rst",
            category="Spectra",
            labels={"figure": "Fig 6: SHAP"},
        ),
        pca=report(
            res("spectra", "figures/pca_variance.png"),
            caption="../report/spectra_pca.rst",
            category="Spectra",
            labels={"figure": "PCA of the latents"},
        ),
        loss=report(
            res("spectra", "figures/loss_curves.png"),
            caption="../report/spectra_loss.rst",
            category="Spectra",
            labels={"figure": "Training loss"},
        ),
        pdfs=expand(res("spectra", "figures/{stem}.pdf"), stem=SPECTRA_FIGURES),
        **(truth_figure("spectra", "Spectra") if SPECTRA_TRUTH else {}),
    params:
        config=cli_config("spectra", "grid", "analysis"),
        truth=lambda wildcards, input: f"--truth {input.truth}" if "truth" in input.keys() else "",
        outdir=lambda wildcards, output: Path(output.fig1).parent,
    log:
        logfile("spectra", "figures"),
    benchmark:
        benchfile("spectra", "figures")
    conda:
        "../../envs/spectra.yaml"
    shell:
        "galforge spectra-figures --config {params.config:q} --spectra {input.spectra:q}"
        " --catalog {input.catalog:q} --bic {input.bic:q} --bic-summary {input.bic_summary:q}"
        " --pca {input.pca:q} --mi {input.mi:q}"
        " --arrays {input.arrays:q} --metrics {input.metrics:q} {params.truth}"
        " --outdir {params.outdir:q} > {log:q} 2>&1"
