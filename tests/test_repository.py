"""The repository holds code and configuration, never a run's outputs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import REPO

#: Paths a run writes (results/<run>/, the archive cache, Snakemake's state, the report)
#: and file kinds that are run outputs wherever they sit (checkpoints, maps, spectra).
OUTPUT_PREFIXES = ("results/", "resources/", ".snakemake/", "report.html", ".ci-venv/", ".venv/")
OUTPUT_SUFFIXES = (".pt", ".ckpt", ".h5", ".hdf5", ".parquet")


def test_no_tracked_file_is_a_run_output():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert tracked, "git ls-files listed nothing"
    bad = [p for p in tracked if p.startswith(OUTPUT_PREFIXES) or p.endswith(OUTPUT_SUFFIXES)]
    assert not bad, f"run outputs are tracked: {bad[:10]}"
