"""Shared pytest fixtures: the real archive samples, the repository root, the CI switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    """True on CI (``CI=true``), where tests that need shared data must not skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_data_dir() -> Path | None:
    """``$GALFORGE_SHARED_DATA`` or ``../shared/data`` from the repository root."""
    env = os.environ.get("GALFORGE_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


def shared_data_path(relpath: str) -> Path:
    """Path of a real archive sample; skip (or fail on CI) when it is absent."""
    base = shared_data_dir()
    path = base / relpath if base else None
    if path is None or not path.exists():
        msg = (
            f"real archive sample {relpath!r} not found under $GALFORGE_SHARED_DATA or "
            f"{REPO.parent / 'shared' / 'data'}"
        )
        if in_ci():
            pytest.fail(msg + " (CI=true: tests on real data must not skip)")
        pytest.skip(msg)
    return path


@pytest.fixture
def dr7_vollim() -> Path:
    """The real SDSS DR7 volume-limited sample (120,606 galaxies)."""
    return shared_data_path("sdss/vollim_dr7_cbp_102709.fits")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when CUDA is not available."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one local run of the tiny pipeline (``config.yaml`` at ``scale: tiny``,
    ``--cores 2``), shared by the tests that check it and compare other runs with it."""
    from snakemake_runs import run_snakemake, workflow_args, write_tiny_config

    folder = tmp_path_factory.mktemp("tiny-local")
    write_tiny_config(folder)
    out = run_snakemake(*workflow_args(folder), "--cores", "2", timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return folder
