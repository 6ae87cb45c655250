# eDF study (GalacticFlow, Wolf & Buck): the conditional spline flow of NIHAO star particles.
# Galaxies (mock, archive or yours) -> cleaned, rotated eDF table with the conditions -> one
# training job per cross-validation model and the all-galaxies model -> MMDs on the held-out
# galaxies and the checks -> figures.


wildcard_constraints:
    edf_model=r"cv[0-9]+|all",


from galforge.train.distributed import launcher as train_launcher


# ---------------------------------------------------------------- this run's paths
# (values, not functions: the configuration is fixed when the workflow is read)

_EDF_SOURCE = config["edf"]["source"]
#: Cache folder of the authors' Zenodo record.
EDF_ZENODO = f"{CACHE}/zenodo/{config['edf']['archive']['record']}"
_EDF_ON_MOCK = config["source"] == "mock" and not _EDF_SOURCE["path"]
#: The mock's truth file, on the mock only.
EDF_TRUTH = {"truth": res("edf", "mock/truth.json")} if _EDF_ON_MOCK else {}
#: The galaxies edf_table reads: yours, the mock's folder, or the archive's.
EDF_GALAXIES = _EDF_SOURCE["path"] or (
    res("edf", "mock/galaxies")
    if config["source"] == "mock"
    else f"{EDF_ZENODO}/galaxies"
)

#: Every model: the cross-validation models (cv00, ...) and the all-galaxies model (all).
EDF_MODELS = study_settings(config, "edf").model_ids()
#: The model trained on every galaxy (galforge.edf.settings.ALL_MODEL).
EDF_ALL = "all"
#: The cross-validation models (the evaluation's).
EDF_CV_MODELS = [m for m in EDF_MODELS if m != EDF_ALL]
#: Devices of each training job (edf.train.devices > 1: data-parallel under torchrun).
_EDF_DEVICES = config["edf"]["train"]["devices"]
#: What runs a training job: galforge, or torchrun starting one galforge per device.
EDF_TRAIN_CMD = train_launcher(_EDF_DEVICES)
#: Figure stems of the edf study (galforge.edf.figure_set.FIGURES).
EDF_FIGURES = ("mmd_vs_dlogm", "corner_heldout", "density_maps", "marginals", "loss_curves")

STUDY_TARGETS["edf"] = [
    res("edf", "edf.h5"),
    res("edf", "galaxies.csv"),
    res("edf", "cut_report.json"),
    res("edf", "models/all/model.pt"),
    res("edf", "tables/heldout.csv"),
    res("edf", "tables/mmd_vs_dlogm.csv"),
    res("edf", "tables/truth_recovery.json"),
    res("edf", "tables/parity.csv"),
    *expand(res("edf", "figures/{stem}.{ext}"), stem=EDF_FIGURES, ext=("pdf", "png")),
    *(expand(res("edf", "figures/truth_recovery.{ext}"), ext=("pdf", "png")) if EDF_TRUTH else []),
]


# ---------------------------------------------------------------- rules
rule edf_mock:
    output:
        folder=directory(res("edf", "mock/galaxies")),
        truth=res("edf", "mock/truth.json"),
    params:
        config=cli_config("edf", "mock"),
    log:
        logfile("edf", "mock"),
    benchmark:
        benchfile("edf", "mock")
    conda:
        "../../envs/edf.yaml"
    shell:
        "galforge edf-mock --config {params.config:q} --no-progress"
        " --folder {output.folder:q} --truth {output.truth:q} > {log:q} 2>&1"


rule edf_fetch:
    output:
        galaxies=directory(f"{EDF_ZENODO}/galaxies"),
        manifest=f"{EDF_ZENODO}/record.json",
    params:
        config=cli_config("edf", "archive"),
    log:
        f"{EDF_ZENODO}/fetch.log",
    conda:
        "../../envs/archives.yaml"
    localrule: True
    shell:
        "galforge edf-fetch --config {params.config:q} --no-progress"
        " --galaxies {output.galaxies:q} --manifest {output.manifest:q} > {log:q} 2>&1"


rule edf_table:
    input:
        EDF_GALAXIES,
    output:
        table=res("edf", "edf.h5"),
        index=res("edf", "galaxies.csv"),
        report=res("edf", "cut_report.json"),
    params:
        config=cli_config("edf", "source", "clean"),
    log:
        logfile("edf", "table"),
    benchmark:
        benchfile("edf", "table")
    conda:
        "../../envs/edf.yaml"
    shell:
        "galforge edf-table --config {params.config:q} --no-progress"
        " --galaxies {input:q} --out {output.table:q} --index {output.index:q}"
        " --report {output.report:q} > {log:q} 2>&1"


# One thread: on a CPU-only machine the training jobs share the cores (gpu=2 lets two run at
# once). A workstation can give it more: --set-threads edf_train=8. With edf.train.devices =
# N > 1 a job claims N gpus and trains data-parallel, one process per device (torchrun).
rule edf_train:
    input:
        res("edf", "edf.h5"),
    output:
        model=res("edf", "models/{edf_model}/model.pt"),
        metrics=res("edf", "models/{edf_model}/metrics.csv"),
        summary=res("edf", "models/{edf_model}/training.json"),
    params:
        config=cli_config("edf", "model", "train", "split", "cv"),
        workdir=lambda wildcards: res("edf", f"models/{wildcards.edf_model}/work"),
        cmd=EDF_TRAIN_CMD,
    threads: 1
    priority: TRAIN_PRIORITY["edf"]
    resources:
        gpu=1 if _EDF_DEVICES == 1 else _EDF_DEVICES,
        mem_mb=8000,
    log:
        logfile("edf", "train-{edf_model}"),
    benchmark:
        benchfile("edf", "train-{edf_model}")
    conda:
        "../../envs/edf.yaml"
    shell:
        "{params.cmd} edf-train --config {params.config:q} --no-progress --threads {threads}"
        " --table {input:q} --model-id {wildcards.edf_model} --model {output.model:q}"
        " --metrics {output.metrics:q} --summary {output.summary:q}"
        " --workdir {params.workdir:q} > {log:q} 2>&1"


rule edf_evaluate:
    input:
        table=res("edf", "edf.h5"),
        models=expand(res("edf", "models/{m}/model.pt"), m=EDF_CV_MODELS),
        **EDF_TRUTH,
    output:
        heldout=res("edf", "tables/heldout.csv"),
        heldout_md=res("edf", "tables/heldout.md"),
        mmd=res("edf", "tables/mmd_vs_dlogm.csv"),
        truth=res("edf", "tables/truth_recovery.json"),
        samples=res("edf", "heldout_samples.h5"),
    params:
        config=cli_config("edf", "eval", "clean"),
        truth=lambda wildcards, input: f"--truth {input.truth}" if "truth" in input.keys() else "",
    threads: 1
    log:
        logfile("edf", "evaluate"),
    benchmark:
        benchfile("edf", "evaluate")
    conda:
        "../../envs/edf.yaml"
    shell:
        "galforge edf-evaluate --config {params.config:q} --no-progress --threads {threads}"
        " --table {input.table:q} --models {input.models:q} {params.truth}"
        " --heldout {output.heldout:q} --heldout-md {output.heldout_md:q}"
        " --mmd {output.mmd:q} --truth-report {output.truth:q}"
        " --samples {output.samples:q} > {log:q} 2>&1"


rule edf_figures:
    input:
        table=res("edf", "edf.h5"),
        heldout=res("edf", "tables/heldout.csv"),
        mmd=res("edf", "tables/mmd_vs_dlogm.csv"),
        samples=res("edf", "heldout_samples.h5"),
        checks=res("edf", "tables/truth_recovery.json"),
        metrics=expand(res("edf", "models/{m}/metrics.csv"), m=EDF_MODELS),
        **EDF_TRUTH,
    output:
        mmd=report(
            res("edf", "figures/mmd_vs_dlogm.png"),
            caption="../report/edf_mmd.rst",
            category="eDF",
            labels={"figure": "MMD vs d log M*"},
        ),
        corner=report(
            res("edf", "figures/corner_heldout.png"),
            caption="../report/edf_corner.rst",
            category="eDF",
            labels={"figure": "Corner plot: data vs flow"},
        ),
        maps=report(
            res("edf", "figures/density_maps.png"),
            caption="../report/edf_maps.rst",
            category="eDF",
            labels={"figure": "Face-on and edge-on density"},
        ),
        marginals=report(
            res("edf", "figures/marginals.png"),
            caption="../report/edf_marginals.rst",
            category="eDF",
            labels={"figure": "1-D marginals"},
        ),
        loss=report(
            res("edf", "figures/loss_curves.png"),
            caption="../report/edf_loss.rst",
            category="eDF",
            labels={"figure": "Training loss"},
        ),
        pdfs=expand(res("edf", "figures/{stem}.pdf"), stem=EDF_FIGURES),
        **(truth_figure("edf", "eDF") if EDF_TRUTH else {}),
    params:
        config=cli_config("edf", "source", "mock", "clean", "model", "train", "split", "cv", "eval"),
        truth=lambda wildcards, input: f"--truth {input.truth}" if "truth" in input.keys() else "",
        outdir=lambda wildcards, output: Path(output.mmd).parent,
    log:
        logfile("edf", "figures"),
    benchmark:
        benchfile("edf", "figures")
    conda:
        "../../envs/edf.yaml"
    shell:
        "galforge edf-figures --config {params.config:q}"
        " --table {input.table:q} --heldout {input.heldout:q} --mmd {input.mmd:q}"
        " --samples {input.samples:q} --truth-report {input.checks:q}"
        " --metrics {input.metrics:q} {params.truth} --outdir {params.outdir:q} > {log:q} 2>&1"


# The paper's headline numbers beside ours: a table in the report (its HTML copy). It times
# the all-galaxies flow's sampling, so it runs alone on one thread.
rule edf_parity:
    input:
        model=res("edf", f"models/{EDF_ALL}/model.pt"),
        training=res("edf", f"models/{EDF_ALL}/training.json"),
        truth=res("edf", "tables/truth_recovery.json"),
        mmd=res("edf", "tables/mmd_vs_dlogm.csv"),
        table=res("edf", "edf.h5"),
    output:
        csv=res("edf", "tables/parity.csv"),
        md=res("edf", "tables/parity.md"),
        html=report(
            res("edf", "tables/parity.html"),
            caption="../report/edf_parity.rst",
            category="eDF",
            labels={"figure": "Paper vs ours (table)"},
        ),
    params:
        config=cli_config("edf", "cv", "eval"),
    threads: 1
    log:
        logfile("edf", "parity"),
    benchmark:
        benchfile("edf", "parity")
    conda:
        "../../envs/edf.yaml"
    shell:
        "galforge edf-parity --config {params.config:q} --threads {threads}"
        " --model {input.model:q} --training {input.training:q} --truth-report {input.truth:q}"
        " --mmd {input.mmd:q} --table {input.table:q}"
        " --out {output.csv:q} --out-md {output.md:q} --out-html {output.html:q} > {log:q} 2>&1"
