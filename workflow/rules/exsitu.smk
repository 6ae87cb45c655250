# Exsitu study (Angeloudi et al., ML4PS 2024): TNG100 galaxies at z = 0 and 0.1 -> the
# sample, its lines of sight and galaxy-wise split -> five observable maps and the ex-situ
# map per projection (chunked HDF5) -> the conditional VAE -> sampled predictions from the
# encoder, the conditional MAF on the latents and the prior -> per-pixel errors, baseline,
# calibration, the planted-truth checks -> the figures.


# ---------------------------------------------------------------- this run's paths
# (values, not functions: the configuration is fixed when the workflow is read)

_EXSITU_MOCK = config["source"] == "mock"
#: The TNG copy the study reads: the study's own mock, or tng.base_path (local route).
EXSITU_BASE = res("exsitu", "mock/TNG100-1/output") if _EXSITU_MOCK else config["tng"]["base_path"]
#: The mock's truth (links one galaxy across snapshots; mock runs only).
EXSITU_TRUTH = {"truth": res("exsitu", "mock/TNG100-1/truth.hdf5")} if _EXSITU_MOCK else {}
if study_enabled("exsitu") and not EXSITU_BASE:
    raise WorkflowError("exsitu: source = archive needs tng.base_path (a local TNG copy); "
                        "the web-API route is not wired into this study yet")

STUDY_TARGETS["exsitu"] = [
    res("exsitu", "sample.parquet"),
    res("exsitu", "maps.h5"),
    res("exsitu", "tables/errors.csv"),
    res("exsitu", "tables/truth_recovery.json"),
    res("exsitu", "figures/fig2_examples.png"),
]


# ---------------------------------------------------------------- rules
rule exsitu_mock:
    output:
        directory(res("exsitu", "mock/TNG100-1/output")),
        truth=res("exsitu", "mock/TNG100-1/truth.hdf5"),
    params:
        config=cli_config("exsitu", "mock", "sample"),
        root=lambda w, output: str(Path(output.truth).parent),
    log:
        logfile("exsitu", "mock"),
    benchmark:
        benchfile("exsitu", "mock")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "rm -rf {params.root:q} && galforge exsitu-mock --config {params.config:q}"
        " --out {params.root:q} > {log:q} 2>&1"


rule exsitu_sample:
    input:
        **({"base": EXSITU_BASE} if _EXSITU_MOCK else {}),
        **EXSITU_TRUTH,
    output:
        sample=res("exsitu", "sample.parquet"),
        report=res("exsitu", "sample_report.json"),
    params:
        config=cli_config("exsitu", "sample", "split"),
        base=lambda w, input: input.get("base", EXSITU_BASE),
        truth=lambda w, input: f"--truth {input.truth}" if "truth" in input.keys() else "",
    log:
        logfile("exsitu", "sample"),
    benchmark:
        benchfile("exsitu", "sample")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-sample --config {params.config:q} --base-path {params.base:q}"
        " {params.truth} --out {output.sample:q} --report {output.report:q} > {log:q} 2>&1"


rule exsitu_maps:
    input:
        sample=res("exsitu", "sample.parquet"),
        **({"base": EXSITU_BASE} if _EXSITU_MOCK else {}),
    output:
        maps=res("exsitu", "maps.h5"),
        report=res("exsitu", "maps_report.json"),
    params:
        config=cli_config("exsitu", "maps"),
        base=lambda w, input: input.get("base", EXSITU_BASE),
    threads: 1
    resources:
        mem_mb=4000,
    log:
        logfile("exsitu", "maps"),
    benchmark:
        benchfile("exsitu", "maps")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-maps --config {params.config:q} --no-progress --base-path {params.base:q}"
        " --sample {input.sample:q} --out {output.maps:q} --report {output.report:q}"
        " > {log:q} 2>&1"


# One thread: on a CPU-only machine the training jobs share the cores.
rule exsitu_train:
    input:
        res("exsitu", "maps.h5"),
    output:
        model=res("exsitu", "model/cvae.pt"),
        metrics=res("exsitu", "model/cvae_metrics.csv"),
        summary=res("exsitu", "model/cvae_summary.json"),
    params:
        config=cli_config("exsitu", "model", "train"),
        workdir=res("exsitu", "model/work"),
    threads: 1
    resources:
        gpu=1,
    log:
        logfile("exsitu", "train"),
    benchmark:
        benchfile("exsitu", "train")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-train --config {params.config:q} --no-progress --threads {threads}"
        " --maps {input:q} --model {output.model:q} --metrics {output.metrics:q}"
        " --summary {output.summary:q} --workdir {params.workdir:q} > {log:q} 2>&1"


rule exsitu_train_flow:
    input:
        cvae=res("exsitu", "model/cvae.pt"),
        maps=res("exsitu", "maps.h5"),
    output:
        model=res("exsitu", "model/flow.pt"),
        metrics=res("exsitu", "model/flow_metrics.csv"),
        summary=res("exsitu", "model/flow_summary.json"),
    params:
        config=cli_config("exsitu", "flow", "flow_train"),
        workdir=res("exsitu", "model/flow_work"),
    threads: 1
    resources:
        gpu=1,
    log:
        logfile("exsitu", "train_flow"),
    benchmark:
        benchfile("exsitu", "train_flow")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-train-flow --config {params.config:q} --no-progress --threads {threads}"
        " --cvae {input.cvae:q} --maps {input.maps:q} --model {output.model:q}"
        " --metrics {output.metrics:q} --summary {output.summary:q}"
        " --workdir {params.workdir:q} > {log:q} 2>&1"


rule exsitu_predict:
    input:
        model=res("exsitu", "model/cvae.pt"),
        flow=res("exsitu", "model/flow.pt"),
        maps=res("exsitu", "maps.h5"),
    output:
        res("exsitu", "predictions.h5"),
    params:
        config=cli_config("exsitu", "predict"),
    threads: 2
    log:
        logfile("exsitu", "predict"),
    benchmark:
        benchfile("exsitu", "predict")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-predict --config {params.config:q} --threads {threads}"
        " --model {input.model:q} --flow {input.flow:q} --maps {input.maps:q} --out {output:q}"
        " > {log:q} 2>&1"


rule exsitu_evaluate:
    input:
        maps=res("exsitu", "maps.h5"),
        predictions=res("exsitu", "predictions.h5"),
    output:
        table=res("exsitu", "tables/errors.csv"),
        table_md=res("exsitu", "tables/errors.md"),
        report=res("exsitu", "tables/evaluation.json"),
        truth=res("exsitu", "tables/truth_recovery.json"),
    params:
        config=cli_config("exsitu"),
    log:
        logfile("exsitu", "evaluate"),
    benchmark:
        benchfile("exsitu", "evaluate")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-evaluate --config {params.config:q} --maps {input.maps:q}"
        " --predictions {input.predictions:q} --table {output.table:q}"
        " --table-md {output.table_md:q} --report {output.report:q}"
        " --truth-recovery {output.truth:q} > {log:q} 2>&1"


rule exsitu_figures:
    input:
        maps=res("exsitu", "maps.h5"),
        predictions=res("exsitu", "predictions.h5"),
        evaluation=res("exsitu", "tables/evaluation.json"),
        truth=res("exsitu", "tables/truth_recovery.json"),
        cvae_metrics=res("exsitu", "model/cvae_metrics.csv"),
        flow_metrics=res("exsitu", "model/flow_metrics.csv"),
    output:
        fig2=report(
            res("exsitu", "figures/fig2_examples.png"),
            caption="../report/exsitu_fig2.rst",
            category="Exsitu",
            labels={"figure": "Fig 2: examples across f_ex"},
        ),
        fig3=report(
            res("exsitu", "figures/fig3_residuals.png"),
            caption="../report/exsitu_fig3.rst",
            category="Exsitu",
            labels={"figure": "Fig 3: per-pixel residuals"},
        ),
        radius=report(
            res("exsitu", "figures/error_vs_radius.png"),
            caption="../report/exsitu_radius.rst",
            category="Exsitu",
            labels={"figure": "Error vs radius"},
        ),
        integrated=report(
            res("exsitu", "figures/integrated_fex.png"),
            caption="../report/exsitu_integrated.rst",
            category="Exsitu",
            labels={"figure": "Integrated f_ex"},
        ),
        coverage=report(
            res("exsitu", "figures/coverage.png"),
            caption="../report/exsitu_coverage.rst",
            category="Exsitu",
            labels={"figure": "Interval coverage"},
        ),
        loss=report(
            res("exsitu", "figures/loss_curves.png"),
            caption="../report/exsitu_loss.rst",
            category="Exsitu",
            labels={"figure": "Loss curves"},
        ),
        **(truth_figure("exsitu", "Exsitu") if _EXSITU_MOCK else {}),
    params:
        config=cli_config("exsitu"),
        outdir=lambda w, output: str(Path(output.fig2).parent),
        truth=lambda w, input: f"--truth {input.truth}" if _EXSITU_MOCK else "",
    log:
        logfile("exsitu", "figures"),
    benchmark:
        benchfile("exsitu", "figures")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-figures --config {params.config:q} --maps {input.maps:q}"
        " --predictions {input.predictions:q} --evaluation {input.evaluation:q}"
        " --cvae-metrics {input.cvae_metrics:q} --flow-metrics {input.flow_metrics:q}"
        " --outdir {params.outdir:q} {params.truth} > {log:q} 2>&1"
