"""Running the repository's workflow from tests: the Snakemake command and the tiny run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake_env(**extra: str) -> dict[str, str]:
    """This process's environment for a Snakemake run: this interpreter's scripts first on
    PATH (the rules call ``galforge``), no real TNG key, and ``extra`` on top."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("TNG_API_KEY", None)
    env.update(extra)
    return env


def run_snakemake(*args: str, cwd: Path = REPO, timeout: int = 600,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, env=env or snakemake_env(), capture_output=True,
        text=True, timeout=timeout,
    )


def default_studies() -> list[str]:
    """The ``studies`` of the repository's ``config.yaml``."""
    return list(yaml.safe_load((REPO / "config.yaml").read_text())["studies"])


def write_tiny_config(folder: Path, run: str = "ci") -> Path:
    """The repository's ``config.yaml`` at ``scale: tiny`` with its cache in ``folder``."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(run=run, scale="tiny", cache_dir=str(folder / "cache"))
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def workflow_args(folder: Path) -> tuple[str, ...]:
    """The repository's Snakefile run in ``folder`` with the config written there."""
    return ("-s", str(REPO / "Snakefile"), "-d", str(folder),
            "--configfile", str(folder / "config.yaml"))


def rules_claiming_a_gpu(studies: list[str] | None = None) -> set[str]:
    """Names of the rules whose resources claim a GPU (``gpu=1``, or ``gpu=<n>``), of every
    rules file or of the given studies' (``workflow/rules/<study>.smk``)."""
    names = set()
    rules = REPO / "workflow" / "rules"
    for smk in ([rules / f"{s}.smk" for s in studies] if studies is not None
                else rules.glob("*.smk")):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", smk.read_text(), re.M):
            if re.search(r"^\s+gpu=\S", body, re.M):  # gpu=1, or gpu=<devices> (edf)
                names.add(name)
    return names
