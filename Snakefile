# galforge: five galaxy machine-learning studies, from the public archives to every figure.
#   snakemake --cores 8 --resources gpu=2            (workstation)
#   snakemake --profile workflow/profiles/slurm      (SLURM cluster)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    run=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


include: "workflow/rules/archives.smk"


# one rules file per registered study (galforge.studies.REGISTRY)
for _study in study_names():

    include: f"workflow/rules/{_study}.smk"


rule all:
    input:
        all_targets(),
    default_target: True
    localrule: True
