"""The exsitu rules: dry runs on the mock (the demo trains one CVAE) and on a local TNG
copy (archive route); the web-API route and the paper grid: test_exsitu_workflow_routes."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO
from snakemake_runs import run_snakemake


def _dry(workdir: Path, *config: str):
    return run_snakemake("-n", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
                         "--configfile", str(REPO / "config.yaml"), "--cores", "2",
                         "--config", "studies=[exsitu]", *config)


def test_dry_run_on_the_mock_lists_the_exsitu_jobs(tmp_path) -> None:
    out = _dry(tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for rule in ("exsitu_mock", "exsitu_sample", "exsitu_maps", "exsitu_train",
                 "exsitu_train_flow", "exsitu_predict", "exsitu_evaluate", "exsitu_parity",
                 "exsitu_figures"):
        assert f"rule {rule}:" in text, rule
    assert "truth.hdf5" in text and "environment_" not in text
    # the demo trains one point, straight into model/cvae.pt
    assert text.count("rule exsitu_train:") == 1 and "exsitu_select" not in text
    assert "exsitu/model/cvae.pt" in text and "model/grid/" not in text


def test_dry_run_on_a_local_tng_copy_reads_tng_base_path(tmp_path) -> None:
    copy = tmp_path / "TNG100-1" / "output"
    copy.mkdir(parents=True)
    out = _dry(tmp_path, "source=archive", f"tng={json.dumps({'base_path': str(copy)})}")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "rule exsitu_sample:" in text and "rule exsitu_maps:" in text
    assert "exsitu_mock" not in text and "truth.hdf5" not in text
