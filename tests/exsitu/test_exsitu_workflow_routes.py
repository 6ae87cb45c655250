"""The exsitu rules, continued (two dry runs a file, each file under a minute): the web-API
route of the archive, and the paper preset's grid of latent sizes x beta."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import REPO
from snakemake_runs import run_snakemake


def _dry(workdir: Path, *config: str):
    return run_snakemake("-n", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
                         "--configfile", str(REPO / "config.yaml"), "--cores", "2",
                         "--config", "studies=[exsitu]", *config)


def test_the_archive_without_a_local_copy_reads_the_web_api_in_shards(tmp_path) -> None:
    out = _dry(tmp_path, "source=archive", "-p")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert text.count("rule exsitu_fetch:") == 16 and "exsitu_mock" not in text  # tng.n_shards
    for shard in range(16):
        assert f"fetch/shard_{shard}.json" in text
    # no --base-path: the sample and maps steps get the tng section (its web API) instead
    for step in ("exsitu-sample", "exsitu-maps", "exsitu-fetch"):
        line = next(x for x in text.splitlines() if f"galforge {step} " in x)
        assert "--base-path" not in line and '"api_url"' in line, line
    assert "rule exsitu_train:" in text and "rule exsitu_parity:" in text


def test_the_paper_preset_trains_the_grid_in_parallel_gpu_jobs_and_selects(tmp_path) -> None:
    out = _dry(tmp_path, "scale=paper", "-p")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    jobs = re.findall(r"rule exsitu_train:\n(.*?)\n\n", text + "\n\n", flags=re.S)
    assert len(jobs) == 9, text
    points = set()
    for job in jobs:
        point = re.search(r"wildcards: point=(z(\d+)_beta(\S+))", job)
        assert point, job
        points.add((int(point.group(2)), float(point.group(3))))
        assert "gpu=1" in job
        assert f"model/grid/{point.group(1)}/cvae.pt" in job
        # the job's settings carry its point
        cfg = json.loads(re.search(r"--config '(\{.*?\})'", job).group(1))
        assert cfg["exsitu"]["model"]["latent_dim"] == int(point.group(2))
        assert cfg["exsitu"]["model"]["beta"] == float(point.group(3))
    assert points == {(d, b) for d in (5, 10, 20) for b in (7e-6, 7e-5, 7e-4)}
    assert text.count("rule exsitu_select:") == 1
    assert "tables/grid_selection.json" in text
