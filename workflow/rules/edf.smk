# eDF study (GalacticFlow, Wolf & Buck): the conditional spline flow of NIHAO star particles.
# Galaxies (mock, archive or yours) -> cleaned, rotated eDF table with the conditions.


# ---------------------------------------------------------------- this run's paths
# (values, not functions: the configuration is fixed when the workflow is read)

_EDF_SOURCE = config["edf"]["source"]
_EDF_ON_MOCK = config["source"] == "mock" and not _EDF_SOURCE["path"]
#: The mock's truth file, on the mock only.
EDF_TRUTH = {"truth": res("edf", "mock/truth.json")} if _EDF_ON_MOCK else {}
#: The galaxies edf_table reads: yours, the mock's folder, or the archive's.
EDF_GALAXIES = _EDF_SOURCE["path"] or (
    res("edf", "mock/galaxies")
    if config["source"] == "mock"
    else f"{CACHE}/zenodo/{config['edf']['archive']['record']}/galaxies"
)

STUDY_TARGETS["edf"] = [
    res("edf", "edf.h5"),
    res("edf", "galaxies.csv"),
    res("edf", "cut_report.json"),
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
