# Exsitu study (Angeloudi et al., ML4PS 2024): TNG100 galaxies at z = 0 and 0.1 -> the
# sample, its lines of sight and galaxy-wise split -> five observable maps and the ex-situ
# map per projection (chunked HDF5) -> the conditional VAE -> sampled predictions from the
# encoder, the conditional MAF on the latents and the prior -> per-pixel errors, baseline,
# calibration, the planted-truth checks -> the figures.


# ---------------------------------------------------------------- this run's paths
# (values, not functions: the configuration is fixed when the workflow is read)

_EXSITU_MOCK = config["source"] == "mock"
#: The TNG copy the study reads: the study's own mock, tng.base_path (local route), or none
#: (the web-API route: source = archive, tng.base_path null; TNG_API_KEY at run time).
EXSITU_BASE = res("exsitu", "mock/TNG100-1/output") if _EXSITU_MOCK else config["tng"]["base_path"]
_EXSITU_API = not EXSITU_BASE
#: --base-path of the sample and maps rules (empty on the API route).
EXSITU_BASE_ARG = f"--base-path {EXSITU_BASE}" if EXSITU_BASE else ""
#: The mock's truth (links one galaxy across snapshots; mock runs only).
EXSITU_TRUTH = {"truth": res("exsitu", "mock/TNG100-1/truth.hdf5")} if _EXSITU_MOCK else {}
#: The API route's download shards (subhalo id mod tng.n_shards): their manifests.
EXSITU_FETCHED = (
    {"fetched": expand(res("exsitu", "fetch/shard_{shard}.json"), shard=range(config["tng"]["n_shards"]))}
    if _EXSITU_API
    else {}
)
#: The tng section travels with the rules that read TNG on the API route.
EXSITU_TNG = {"tng": config["tng"]} if _EXSITU_API else {}
EXSITU_SAMPLE_CONFIG = json.dumps(
    {**json.loads(cli_config("exsitu", "sample", "split")), **EXSITU_TNG}, sort_keys=True, separators=(",", ":")
)
EXSITU_MAPS_CONFIG = json.dumps(
    {**json.loads(cli_config("exsitu", "maps")), **EXSITU_TNG}, sort_keys=True, separators=(",", ":")
)

STUDY_TARGETS["exsitu"] = [
    res("exsitu", "sample.parquet"),
    res("exsitu", "maps.h5"),
    res("exsitu", "tables/errors.csv"),
    res("exsitu", "tables/truth_recovery.json"),
    res("exsitu", "tables/parity.csv"),
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
        config=EXSITU_SAMPLE_CONFIG,
        base=EXSITU_BASE_ARG,
        truth=lambda w, input: f"--truth {input.truth}" if "truth" in input.keys() else "",
    log:
        logfile("exsitu", "sample"),
    benchmark:
        benchfile("exsitu", "sample")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-sample --config {params.config:q} {params.base}"
        " {params.truth} --out {output.sample:q} --report {output.report:q} > {log:q} 2>&1"


if _EXSITU_API:

    # The web-API route: the sample's cutouts, one download job per shard (cached).
    rule exsitu_fetch:
        input:
            res("exsitu", "sample.parquet"),
        output:
            res("exsitu", "fetch/shard_{shard}.json"),
        params:
            config=EXSITU_MAPS_CONFIG,
        wildcard_constraints:
            shard="[0-9]+",
        log:
            logfile("exsitu", "fetch_{shard}"),
        benchmark:
            benchfile("exsitu", "fetch_{shard}")
        conda:
            "../../envs/exsitu.yaml"
        shell:
            "galforge exsitu-fetch --config {params.config:q} --sample {input:q}"
            " --shard {wildcards.shard} --out {output:q} > {log:q} 2>&1"


rule exsitu_maps:
    input:
        sample=res("exsitu", "sample.parquet"),
        **({"base": EXSITU_BASE} if _EXSITU_MOCK else {}),
        **EXSITU_FETCHED,
    output:
        maps=res("exsitu", "maps.h5"),
        report=res("exsitu", "maps_report.json"),
    params:
        config=EXSITU_MAPS_CONFIG,
        base=EXSITU_BASE_ARG,
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
        "galforge exsitu-maps --config {params.config:q} --no-progress {params.base}"
        " --sample {input.sample:q} --out {output.maps:q} --report {output.report:q}"
        " > {log:q} 2>&1"


#: The CVAE grid (latent size x beta): one point (demo) trains model/cvae.pt itself; more
#: (the paper preset) train model/grid/<point>/ as parallel GPU jobs and exsitu_select keeps
#: the best by validation error.
from galforge.exsitu.settings import CVAESettings, GridSettings, grid_points, with_point

EXSITU_GRID = grid_points(GridSettings.from_dict(config["exsitu"]["grid"]),
                          CVAESettings.from_dict(config["exsitu"]["model"]))
_EXSITU_ONE_POINT = len(EXSITU_GRID) == 1
EXSITU_TRAIN_DIR = res("exsitu", "model") if _EXSITU_ONE_POINT else res("exsitu", "model/grid/{point}")


# One thread: on a CPU-only machine the training jobs share the cores.
rule exsitu_train:
    input:
        res("exsitu", "maps.h5"),
    output:
        model=f"{EXSITU_TRAIN_DIR}/cvae.pt",
        metrics=f"{EXSITU_TRAIN_DIR}/cvae_metrics.csv",
        summary=f"{EXSITU_TRAIN_DIR}/cvae_summary.json",
    params:
        # the grid point's latent size and beta replace exsitu.model's
        config=lambda w: with_point(cli_config("exsitu", "model", "train"), EXSITU_GRID.get(w.get("point"))),
        workdir=f"{EXSITU_TRAIN_DIR}/work",
    wildcard_constraints:
        point="z[0-9]+_beta[-+.0-9e]+",
    threads: 1
    priority: TRAIN_PRIORITY["exsitu"]
    resources:
        gpu=1,
    log:
        logfile("exsitu", "train" if _EXSITU_ONE_POINT else "train_{point}"),
    benchmark:
        benchfile("exsitu", "train" if _EXSITU_ONE_POINT else "train_{point}")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-train --config {params.config:q} --no-progress --threads {threads}"
        " --maps {input:q} --model {output.model:q} --metrics {output.metrics:q}"
        " --summary {output.summary:q} --workdir {params.workdir:q} > {log:q} 2>&1"


if not _EXSITU_ONE_POINT:

    rule exsitu_select:
        input:
            models=expand(res("exsitu", "model/grid/{point}/cvae.pt"), point=EXSITU_GRID),
            metrics=expand(res("exsitu", "model/grid/{point}/cvae_metrics.csv"), point=EXSITU_GRID),
            summaries=expand(res("exsitu", "model/grid/{point}/cvae_summary.json"), point=EXSITU_GRID),
        output:
            model=res("exsitu", "model/cvae.pt"),
            metrics=res("exsitu", "model/cvae_metrics.csv"),
            summary=res("exsitu", "model/cvae_summary.json"),
            selection=res("exsitu", "tables/grid_selection.json"),
        params:
            config=cli_config("exsitu"),
            points=list(EXSITU_GRID),
        log:
            logfile("exsitu", "select"),
        benchmark:
            benchfile("exsitu", "select")
        conda:
            "../../envs/exsitu.yaml"
        shell:
            "galforge exsitu-select --config {params.config:q} --points {params.points}"
            " --models {input.models:q} --metrics {input.metrics:q}"
            " --summaries {input.summaries:q} --model {output.model:q}"
            " --out-metrics {output.metrics:q} --summary {output.summary:q}"
            " --selection {output.selection:q} > {log:q} 2>&1"


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
    priority: TRAIN_PRIORITY["exsitu"]
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


# The paper's headline numbers beside ours: a table in the report (its HTML copy).
rule exsitu_parity:
    input:
        evaluation=res("exsitu", "tables/evaluation.json"),
        truth=res("exsitu", "tables/truth_recovery.json"),
        sample=res("exsitu", "sample_report.json"),
    output:
        csv=res("exsitu", "tables/parity.csv"),
        md=res("exsitu", "tables/parity.md"),
        html=report(
            res("exsitu", "tables/parity.html"),
            caption="../report/exsitu_parity.rst",
            category="Exsitu",
            labels={"figure": "Paper vs ours (table)"},
        ),
    params:
        config=cli_config("exsitu"),
    log:
        logfile("exsitu", "parity"),
    benchmark:
        benchfile("exsitu", "parity")
    conda:
        "../../envs/exsitu.yaml"
    shell:
        "galforge exsitu-parity --config {params.config:q} --evaluation {input.evaluation:q}"
        " --truth-report {input.truth:q} --sample-report {input.sample:q}"
        " --out {output.csv:q} --out-md {output.md:q} --out-html {output.html:q} > {log:q} 2>&1"


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
