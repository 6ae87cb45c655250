# Alignment study (Jagvaral, Lanusse, Mandelbaum et al.): TNG100 galaxies' shapes and
# orientations from their place in the cosmic web. So far: the mock TNG universe (or a
# local TNG copy, tng.base_path) -> the catalog (groups, shapes, tidal field, e1/e2) ->
# the statistics (w_gg, w_g+ with MeasureIA, ED/EE, misalignments; the planted w_g+ check);
# the catalog's FoF-group graphs -> the graph WGAN-GP and the GNN-conditioned SO(3)
# diffusion model -> generated catalogs and their checks; the SO(3) diffusion model's
# synthetic benchmark; the figures and the papers-vs-ours table.


from galforge.alignment.correlations import find_samuroff

# ---------------------------------------------------------------- this run's paths
# (values, not functions: the configuration is fixed when the workflow is read)

_ALIGNMENT_ON_MOCK = config["source"] == "mock"
#: The mock TNG simulation folder (its output/ is the base path), on the mock only.
ALIGNMENT_MOCK_SIM = res("alignment", f"mock/{config['tng']['simulation']}")
#: The catalog rule's input: the mock's folder, or nothing (tng.base_path, outside the run).
ALIGNMENT_SIM_INPUT = {"sim": ALIGNMENT_MOCK_SIM} if _ALIGNMENT_ON_MOCK else {}
#: --base-path of the catalog rule (empty: tng.base_path from the configuration).
ALIGNMENT_BASE_ARG = f"--base-path {ALIGNMENT_MOCK_SIM}/output" if _ALIGNMENT_ON_MOCK else ""
#: The global tng section travels with this study's rules only (the other studies' params
#: stay as cli_config writes them).
ALIGNMENT_TNG = {"tng": config["tng"]}

#: The planted truth: the stats rule's input (its check lands in stats.json) and the
#: evaluate rule's truth_recovery.json, on the mock only.
ALIGNMENT_TRUTH_ARGS = f"--truth {ALIGNMENT_MOCK_SIM}/truth.hdf5" if _ALIGNMENT_ON_MOCK else ""
ALIGNMENT_TRUTH_OUT = (
    {"truth_report": res("alignment", "tables/truth_recovery.json")} if _ALIGNMENT_ON_MOCK else {}
)
ALIGNMENT_TRUTH_REPORT_ARG = (
    f"--truth-report {res('alignment', 'tables/truth_recovery.json')}" if _ALIGNMENT_ON_MOCK else ""
)

#: The Samuroff et al. (2021) TNG300-1 w_g+ file, where this machine has it
#: ($GALFORGE_SHARED_DATA, ../shared/data beside the project, or cache_dir; never copied in):
#: drawn beside ours in the w_g+ figure and set beside it in the parity table.
ALIGNMENT_SAMUROFF = find_samuroff("../shared/data", config["cache_dir"])
ALIGNMENT_SAMUROFF_IN = {"samuroff": str(ALIGNMENT_SAMUROFF)} if ALIGNMENT_SAMUROFF else {}
ALIGNMENT_SAMUROFF_ARG = f"--samuroff {ALIGNMENT_SAMUROFF}" if ALIGNMENT_SAMUROFF else ""

#: Stems of the figures rule's outputs (galforge.alignment.figures.FIGURES; truth_recovery:
#: TRUTH_FIGURE, on the mock only).
ALIGNMENT_FIGURES = ("wgp", "gan_losses", "diffusion_losses", "so3_axes", "ed_ee",
                     "misalignments", "orientation_sphere", "axis_ratios")
ALIGNMENT_ALL_FIGURES = ALIGNMENT_FIGURES + (("truth_recovery",) if _ALIGNMENT_ON_MOCK else ())
#: The figures rule's captions and report labels, one per stem.
ALIGNMENT_FIGURE_LABELS = {
    "wgp": "w_g+ and w_gg: simulation vs GAN vs diffusion (and Samuroff et al. 2021)",
    "gan_losses": "Graph WGAN-GP training",
    "diffusion_losses": "SO(3) diffusion training",
    "so3_axes": "SO(3) benchmark: canonical axes",
    "ed_ee": "ED and EE correlations",
    "misalignments": "Misalignment angles by central/satellite and mass",
    "orientation_sphere": "Satellites' major axes about the direction to their central",
    "axis_ratios": "Axis ratios: simulation vs GAN vs diffusion",
    "truth_recovery": "Truth recovery (mock)",
}

STUDY_TARGETS["alignment"] = [
    res("alignment", "catalog.h5"),
    res("alignment", "tables/catalog.json"),
    res("alignment", "tables/wgp.csv"),
    res("alignment", "tables/ed_ee.csv"),
    res("alignment", "tables/stats.json"),
    *ALIGNMENT_TRUTH_OUT.values(),
    res("alignment", "generated/gan.h5"),
    res("alignment", "generated/diffusion.h5"),
    res("alignment", "tables/so3_benchmark.json"),
    res("alignment", "tables/model_checks.json"),
    res("alignment", "tables/parity.csv"),
    *[res("alignment", f"figures/{stem}.{ext}") for stem in ALIGNMENT_ALL_FIGURES
      for ext in ("png", "pdf")],
]


# ---------------------------------------------------------------- rules
rule alignment_mock_tng:
    output:
        directory(ALIGNMENT_MOCK_SIM),
    params:
        config=json.dumps({**json.loads(cli_config(None)), **ALIGNMENT_TNG}, sort_keys=True,
                          separators=(",", ":")),
    log:
        logfile("alignment", "mock_tng"),
    benchmark:
        benchfile("alignment", "mock_tng")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge mock-tng --config {params.config:q} --no-progress --out {output:q}"
        " > {log:q} 2>&1"


rule alignment_catalog:
    input:
        **ALIGNMENT_SIM_INPUT,
    output:
        catalog=res("alignment", "catalog.h5"),
        report=res("alignment", "tables/catalog.json"),
    params:
        config=json.dumps(
            {**json.loads(cli_config("alignment", "catalog", "shapes", "tidal")), **ALIGNMENT_TNG},
            sort_keys=True, separators=(",", ":")),
        base=ALIGNMENT_BASE_ARG,
    threads: 1
    log:
        logfile("alignment", "catalog"),
    benchmark:
        benchfile("alignment", "catalog")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge alignment-catalog --config {params.config:q} --no-progress {params.base}"
        " --out {output.catalog:q} --report {output.report:q} > {log:q} 2>&1"


rule alignment_stats:
    input:
        catalog=res("alignment", "catalog.h5"),
        **({"sim": ALIGNMENT_MOCK_SIM} if _ALIGNMENT_ON_MOCK else {}),
    output:
        wgp=res("alignment", "tables/wgp.csv"),
        ed_ee=res("alignment", "tables/ed_ee.csv"),
        misalignments=res("alignment", "tables/misalignments.csv"),
        summary=res("alignment", "tables/stats.json"),
    params:
        config=cli_config("alignment", "stats"),
        truth=ALIGNMENT_TRUTH_ARGS,
    threads: 1
    log:
        logfile("alignment", "stats"),
    benchmark:
        benchfile("alignment", "stats")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge alignment-stats --config {params.config:q} --no-progress"
        " --catalog {input.catalog:q} --wgp {output.wgp:q} --ed-ee {output.ed_ee:q}"
        " --misalignments {output.misalignments:q} --summary {output.summary:q}"
        " {params.truth} > {log:q} 2>&1"


rule alignment_train_gan:
    input:
        res("alignment", "catalog.h5"),
    output:
        model=res("alignment", "model/gan.pt"),
        metrics=res("alignment", "model/gan_metrics.csv"),
        generated=res("alignment", "generated/gan.h5"),
        summary=res("alignment", "model/gan.json"),
    params:
        config=cli_config("alignment", "graphs", "gan", "gan_train", "split"),
        workdir=res("alignment", "work/gan"),
    threads: 1
    priority: TRAIN_PRIORITY["alignment"]
    resources:
        gpu=1,
    log:
        logfile("alignment", "train_gan"),
    benchmark:
        benchfile("alignment", "train_gan")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge alignment-train-gan --config {params.config:q} --no-progress --threads {threads}"
        " --catalog {input:q} --model {output.model:q} --metrics {output.metrics:q}"
        " --generated {output.generated:q} --summary {output.summary:q}"
        " --workdir {params.workdir:q} > {log:q} 2>&1"


rule alignment_train_diffusion:
    input:
        res("alignment", "catalog.h5"),
    output:
        model=res("alignment", "model/diffusion.pt"),
        metrics=res("alignment", "model/diffusion_metrics.csv"),
        generated=res("alignment", "generated/diffusion.h5"),
        summary=res("alignment", "model/diffusion.json"),
    params:
        config=cli_config("alignment", "graphs", "diffusion", "diffusion_train", "split"),
        workdir=res("alignment", "work/diffusion"),
    threads: 1
    priority: TRAIN_PRIORITY["alignment"]
    resources:
        gpu=1,
    log:
        logfile("alignment", "train_diffusion"),
    benchmark:
        benchfile("alignment", "train_diffusion")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge alignment-train-diffusion --config {params.config:q} --no-progress"
        " --threads {threads} --catalog {input:q} --model {output.model:q}"
        " --metrics {output.metrics:q} --generated {output.generated:q}"
        " --summary {output.summary:q} --workdir {params.workdir:q} > {log:q} 2>&1"


rule alignment_so3_benchmark:
    output:
        report=res("alignment", "tables/so3_benchmark.json"),
        samples=res("alignment", "model/so3_benchmark_samples.h5"),
    params:
        config=cli_config("alignment", "so3_benchmark"),
    threads: 1
    priority: TRAIN_PRIORITY["alignment"]
    resources:
        gpu=1,
    log:
        logfile("alignment", "so3_benchmark"),
    benchmark:
        benchfile("alignment", "so3_benchmark")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge alignment-so3-benchmark --config {params.config:q} --no-progress"
        " --threads {threads} --out {output.report:q} --samples {output.samples:q} > {log:q} 2>&1"


rule alignment_evaluate:
    input:
        catalog=res("alignment", "catalog.h5"),
        gan=res("alignment", "generated/gan.h5"),
        diffusion=res("alignment", "generated/diffusion.h5"),
        stats=res("alignment", "tables/stats.json"),
        so3=res("alignment", "tables/so3_benchmark.json"),
    output:
        checks=res("alignment", "tables/model_checks.json"),
        **ALIGNMENT_TRUTH_OUT,
    params:
        config=cli_config("alignment", "stats"),
        truth=ALIGNMENT_TRUTH_REPORT_ARG,
    threads: 1
    log:
        logfile("alignment", "evaluate"),
    benchmark:
        benchfile("alignment", "evaluate")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge alignment-evaluate --config {params.config:q} --no-progress"
        " --catalog {input.catalog:q} --gan {input.gan:q} --diffusion {input.diffusion:q}"
        " --stats {input.stats:q}"
        " --so3 {input.so3:q} --out {output.checks:q} {params.truth} > {log:q} 2>&1"


rule alignment_figures:
    input:
        wgp=res("alignment", "tables/wgp.csv"),
        checks=res("alignment", "tables/model_checks.json"),
        metrics=res("alignment", "model/gan_metrics.csv"),
        diffusion_metrics=res("alignment", "model/diffusion_metrics.csv"),
        so3=res("alignment", "tables/so3_benchmark.json"),
        so3_samples=res("alignment", "model/so3_benchmark_samples.h5"),
        ed_ee=res("alignment", "tables/ed_ee.csv"),
        misalignments=res("alignment", "tables/misalignments.csv"),
        catalog=res("alignment", "catalog.h5"),
        gan=res("alignment", "generated/gan.h5"),
        diffusion=res("alignment", "generated/diffusion.h5"),
        **ALIGNMENT_TRUTH_OUT,
        **ALIGNMENT_SAMUROFF_IN,
    output:
        **{
            stem: report(
                res("alignment", f"figures/{stem}.png"),
                caption=f"../report/alignment_{stem}.rst",
                category="Alignment",
                labels={"figure": ALIGNMENT_FIGURE_LABELS[stem]},
            )
            for stem in ALIGNMENT_ALL_FIGURES
        },
        pdfs=expand(res("alignment", "figures/{stem}.pdf"), stem=ALIGNMENT_ALL_FIGURES),
    params:
        config=cli_config("alignment"),
        outdir=lambda wildcards, output: Path(output.wgp).parent,
        truth=ALIGNMENT_TRUTH_REPORT_ARG,
        samuroff=ALIGNMENT_SAMUROFF_ARG,
    threads: 1
    log:
        logfile("alignment", "figures"),
    benchmark:
        benchfile("alignment", "figures")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge alignment-figures --config {params.config:q} --no-progress"
        " --wgp {input.wgp:q} --checks {input.checks:q} --metrics {input.metrics:q}"
        " --diffusion-metrics {input.diffusion_metrics:q}"
        " --so3 {input.so3:q} --so3-samples {input.so3_samples:q}"
        " --ed-ee {input.ed_ee:q} --misalignments {input.misalignments:q}"
        " --catalog {input.catalog:q} --gan {input.gan:q} --diffusion {input.diffusion:q}"
        " {params.truth} {params.samuroff} --outdir {params.outdir:q} > {log:q} 2>&1"


rule alignment_parity:
    input:
        checks=res("alignment", "tables/model_checks.json"),
        wgp=res("alignment", "tables/wgp.csv"),
        so3=res("alignment", "tables/so3_benchmark.json"),
        **ALIGNMENT_TRUTH_OUT,
        **ALIGNMENT_SAMUROFF_IN,
    output:
        csv=res("alignment", "tables/parity.csv"),
        md=res("alignment", "tables/parity.md"),
        html=report(
            res("alignment", "tables/parity.html"),
            caption="../report/alignment_parity.rst",
            category="Alignment",
            labels={"table": "Paper vs ours"},
        ),
    params:
        config=cli_config("alignment"),
        truth=ALIGNMENT_TRUTH_REPORT_ARG,
        samuroff=ALIGNMENT_SAMUROFF_ARG,
    threads: 1
    log:
        logfile("alignment", "parity"),
    benchmark:
        benchfile("alignment", "parity")
    conda:
        "../../envs/alignment.yaml"
    shell:
        "galforge alignment-parity --config {params.config:q} --no-progress"
        " --checks {input.checks:q} --wgp {input.wgp:q}"
        " --so3 {input.so3:q} {params.truth} {params.samuroff}"
        " --out {output.csv:q} --out-md {output.md:q} --out-html {output.html:q} > {log:q} 2>&1"
