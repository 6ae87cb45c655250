"""The exsitu rules: dry runs on the mock and on a local TNG copy (archive route)."""

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
    for rule in ("exsitu_mock", "exsitu_sample", "exsitu_maps"):
        assert f"rule {rule}:" in text
    assert "truth.hdf5" in text and "environment_" not in text


def test_dry_run_on_a_local_tng_copy_reads_tng_base_path(tmp_path) -> None:
    copy = tmp_path / "TNG100-1" / "output"
    copy.mkdir(parents=True)
    out = _dry(tmp_path, "source=archive", f"tng={json.dumps({'base_path': str(copy)})}")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "rule exsitu_sample:" in text and "rule exsitu_maps:" in text
    assert "exsitu_mock" not in text and "truth.hdf5" not in text


def test_the_archive_without_a_local_copy_stops_with_a_clear_error(tmp_path) -> None:
    out = _dry(tmp_path, "source=archive")
    assert out.returncode != 0
    assert "exsitu: source = archive needs tng.base_path" in out.stdout + out.stderr
