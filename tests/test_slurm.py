"""The SLURM profile on a real SLURM: the tiny pipeline through ``workflow/profiles/slurm``.

Needs a running cluster with the partitions ``cpu`` (default) and ``gpu`` (with ``gpu``
GRES), as ``.ci/local-slurm.sh start`` sets up on one machine (root). Skipped with the
reason where ``sbatch`` is missing or no cluster answers; on CI (``CI=true``) it fails
instead, since ``.ci/run`` starts that cluster.

One run of the tiny pipeline of every default study, with a test switch that makes one
rule (``spectra_bic``) fail on its first attempt, checks:

- the run completes and every SLURM job completed, except that deliberate first attempt;
- the profile's ``retries`` resubmitted it as attempt 2 (the job's SLURM log) with the
  ``runtime`` and ``mem_mb`` of attempt 2 (120 min and 8000 MB against 60 min and 4000 MB:
  the profile's ``60 * attempt`` and ``4000 * attempt``), read from the jobs' own SLURM
  records (``scontrol show job``);
- every rule that claims ``gpu=1`` ran in the ``gpu`` partition with one GPU GRES and
  every other job in ``cpu`` (the plugin's partition selection from ``partitions.yaml``);
- its tables equal those of the tiny local run (numbers to a relative 1e-6; they were
  bit-identical when this test was written);
- a secret in the environment (``TNG_API_KEY``) reaches no log, output or SLURM log.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import REPO, in_ci
from galforge.cli import FAIL_ONCE_ENV
from galforge.edf.parity import TIMED
from snakemake_runs import (
    default_studies,
    rules_claiming_a_gpu,
    run_snakemake,
    snakemake_env,
    workflow_args,
    write_tiny_config,
)

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

#: A value no output may contain: set as TNG_API_KEY in every job's environment.
SECRET = "gf-slurm-test-secret-3b7e91d04c"
#: The rule made to fail once (cheap, and other jobs wait for it), and its command.
FAILING_RULE, FAILING_COMMAND = "spectra_bic", "spectra-bic"
#: Relative tolerance on the numbers of the tables against the local run.
RTOL = 1e-6


def _cluster_or_skip() -> None:
    """Skip (fail on CI) unless ``sbatch`` exists and the cluster has cpu and gpu partitions."""
    why = None
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        why = "sbatch/scontrol not found (start a one-node cluster: sudo .ci/local-slurm.sh start)"
    else:
        info = subprocess.run(["sinfo", "-h", "-o", "%R %T"], capture_output=True, text=True)
        parts = {line.split()[0] for line in info.stdout.splitlines() if line.split()[1:]
                 and re.match(r"idle|mixed|allocated", line.split()[1])}
        if info.returncode != 0 or not {"cpu", "gpu"} <= parts:
            why = (f"no SLURM cluster with idle partitions cpu and gpu answers (sinfo: "
                   f"{(info.stdout + info.stderr).strip()[:200]!r}); start one with "
                   "sudo .ci/local-slurm.sh start")
    if why:
        if in_ci():
            pytest.fail(why + " (CI=true: the slurm test must not skip)")
        pytest.skip(why)


def job_record(job_id: str) -> dict[str, str]:
    """``scontrol show job`` of one job as a dict (the cluster keeps finished jobs for
    ``MinJobAge``; .ci/local-slurm.sh sets an hour)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    assert out.returncode == 0, f"no SLURM record of job {job_id}: {out.stderr.strip()}"
    return dict(re.findall(r"(\S+?)=(\S*)", out.stdout))


def rule_of(record: dict[str, str]) -> str:
    """The rule of a job from the comment the plugin sets (``rule_<name>[_wildcards_...]``)."""
    comment = record.get("Comment", "")
    assert comment.startswith("rule_"), record
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def minutes(limit: str) -> int:
    """``TimeLimit`` ([days-]hh:mm:ss) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _cluster_or_skip()
    folder = tmp_path_factory.mktemp("tiny-slurm")
    write_tiny_config(folder)
    marker = folder / "fail-once.marker"
    env = snakemake_env(TNG_API_KEY=SECRET, **{FAIL_ONCE_ENV: f"{FAILING_COMMAND}:{marker}"})
    out = run_snakemake(
        *workflow_args(folder), "--profile", str(REPO / "workflow" / "profiles" / "slurm"),
        # a site without accounting (this one): squeue for job states, no account
        "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "5", "--slurm-keep-successful-logs",
        cwd=folder, env=env, timeout=1800,
    )
    ids = re.findall(r"submitted with SLURM jobid (\d+)", out.stdout + out.stderr)
    return {"folder": folder, "out": out, "marker": marker,
            "records": [job_record(i) for i in ids]}


def test_the_tiny_pipeline_runs_through_the_profile(slurm_run):
    out = slurm_run["out"]
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    records = slurm_run["records"]
    assert records, "no job was submitted to SLURM"
    failed = [r for r in records if r["JobState"] != "COMPLETED"]
    # the only job that did not complete is the deliberate first attempt
    assert [(rule_of(r), r["JobState"]) for r in failed] == [(FAILING_RULE, "FAILED")]
    ran = {rule_of(r) for r in records}
    for study in default_studies():
        # every study trains (alignment_train_gan, exsitu_train_flow, ...) and draws its figures
        assert any(r.startswith(f"{study}_train") for r in ran), (study, ran)
        assert f"{study}_figures" in ran, (study, ran)


def test_a_failed_job_is_retried_with_more_time_and_memory(slurm_run):
    assert slurm_run["marker"].exists(), "the test switch did not make the job fail"
    tries = sorted((r for r in slurm_run["records"] if rule_of(r) == FAILING_RULE),
                   key=lambda r: int(r["JobId"]))
    assert [r["JobState"] for r in tries] == ["FAILED", "COMPLETED"], tries
    first, second = tries
    logs = [Path(r["StdOut"]).read_text() for r in tries]  # the jobs' SLURM logs
    assert "returned non-zero exit status 75" in logs[0]  # the switch's status
    assert ("--attempt 1 " in logs[0], "--attempt 2 " in logs[1]) == (True, True)
    # the profile: runtime 60 * attempt minutes, mem_mb 4000 * attempt
    assert (minutes(first["TimeLimit"]), minutes(second["TimeLimit"])) == (60, 120)
    assert (first["MinMemoryNode"], second["MinMemoryNode"]) == ("4000M", "8000M")


def test_training_jobs_ran_in_the_gpu_partition_and_the_rest_in_cpu(slurm_run):
    gpu_rules = rules_claiming_a_gpu(default_studies())  # the studies of this run
    assert gpu_rules, "no rule claims gpu=1"
    seen = set()
    for r in slurm_run["records"]:
        rule = rule_of(r)
        where = (r["Partition"], "gpu:1" in r.get("TresPerJob", ""))
        if rule in gpu_rules:
            seen.add(rule)
            assert where == ("gpu", True), (rule, r["Partition"], r.get("TresPerJob"))
        else:
            assert r["Partition"] == "cpu" and "gpu" not in r.get("TresPerJob", ""), (
                rule, r["Partition"], r.get("TresPerJob"))
    assert seen == gpu_rules


def _same_json(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            if not k.startswith("seconds"):
                _same_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_json(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=RTOL,
                                                                  abs_tol=1e-12), where
    else:
        assert a == b, where


def test_its_tables_equal_the_local_runs(slurm_run, tiny_local_run):
    ours = slurm_run["folder"] / "results" / "ci"
    local = tiny_local_run / "results" / "ci"
    tables = sorted(p.relative_to(local) for p in local.glob("*/tables/*")
                    if p.suffix in (".csv", ".json"))
    assert len(tables) >= 10, tables
    for rel in tables:
        assert (ours / rel).exists(), f"the SLURM run did not write {rel}"
        if rel.suffix == ".csv":
            a, b = pd.read_csv(ours / rel), pd.read_csv(local / rel)
            if rel.name == "parity.csv":  # rows of wall-clock times differ between runs
                a, b = (t[~t["quantity"].isin(TIMED)].reset_index(drop=True) for t in (a, b))
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=RTOL, obj=str(rel))
        else:
            _same_json(json.loads((ours / rel).read_text()),
                       json.loads((local / rel).read_text()), str(rel))


def test_no_secret_reaches_a_log_or_an_output(slurm_run):
    folder: Path = slurm_run["folder"]
    out = slurm_run["out"]
    assert SECRET not in out.stdout + out.stderr
    slurm_logs = list((folder / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert slurm_logs, "the SLURM job logs were not kept"
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the secret is in {path}"
