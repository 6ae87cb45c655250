# Shared helpers of the workflow: configuration, paths, and the CLI's --config value.
# Rules stay thin: every rule calls one `galforge` subcommand.
import json
import re
from pathlib import Path

from snakemake.utils import validate

from galforge.config import ConfigError, config_hash, resolve_config, study_settings
from galforge.studies import study as registered_study
from galforge.studies import study_names

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

    Only the listed sections of the study travel (with the sections their values are
    follow, the study settings' ``ties``), so that a rule
    reruns when, and only when, its own settings change (Snakemake's params rerun
    trigger). ``study`` None: the global keys only (shared archive rules).
    """
    sub = {k: config[k] for k in GLOBAL_KEYS}
    if study is None:
        sub["studies"] = []
        return json.dumps(sub, sort_keys=True, separators=(",", ":"))
    linked = registered_study(study).settings_class().linked()
    wanted = list(sections)
    for s in sections:
        wanted += [x for x in linked.get(s, ()) if x not in wanted]
    sub["studies"] = [study]
    sub[study] = {s: config[study][s] for s in wanted}  # no sections: the globals only
    return json.dumps(sub, sort_keys=True, separators=(",", ":"))


def study_enabled(study):
    return study in config["studies"]


#: Each study's rules file registers the list of its final outputs here.
STUDY_TARGETS = {}


def all_targets():
    """The final outputs of every enabled study (rule `all`)."""
    targets = []
    for study in config["studies"]:
        targets += STUDY_TARGETS[study]
    return targets


def truth_figure(study, category):
    """A study's planted-truth figure (mock runs only), as named outputs of its figures rule."""
    return {
        "truth_png": report(
            res(study, "figures/truth_recovery.png"),
            caption=f"../report/{study}_truth.rst",
            category=category,
            labels={"figure": "Planted truth recovered"},
        ),
        "truth_pdf": res(study, "figures/truth_recovery.pdf"),
    }


# Which training job takes a free `gpu` slot first. `--resources gpu=2` lets two training
# jobs run at once, and on a CPU-only machine they are the two cores' main load, so the
# slots are the default run's bottleneck: a study whose training is followed by a long chain
# of jobs (maps of latents, statistics, evaluation, figures) trains first, and the studies
# with the shortest chain after their training train last, so that the run does not end on a
# long chain with one core idle. (The demo run on 2 cores ended on the environment study's
# latents -> statistics -> figures for 146 s when its training waited behind 24 spectra jobs.)
TRAIN_PRIORITY = {
    "environment": 50,
    "exsitu": 40,
    "edf": 30,
    "spectra": 20,
    "alignment": 10,
}
