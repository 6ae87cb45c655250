"""The environment study's workflow steps (galforge.environment.steps) and their files' readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from galforge.cosmology import Cosmology
from galforge.environment import steps
from galforge.environment.analysis import read_latent_kl, write_latent_kl
from galforge.environment.catalog import CatalogSettings, read_catalog
from galforge.environment.envparams import EnvParamsSettings, read_envparams
from galforge.environment.footprint import FootprintSettings
from galforge.environment.maps import MapSettings, read_maps
from galforge.io import InputError
from galforge.mock.settings import MockEnvironmentSettings
from mock_presets import ENVIRONMENT_MOCK

COSMO = Cosmology(Om0=0.3)


@pytest.fixture(scope="module")
def maps_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mock -> catalog -> maps at the tiny scale."""
    tmp = tmp_path_factory.mktemp("env")
    steps.mock(tmp / "raw.fits", tmp / "truth.parquet", settings=MockEnvironmentSettings.from_dict(ENVIRONMENT_MOCK["tiny"]),
               cosmology=COSMO, seed=5, config_hash="cafe")
    catalog = CatalogSettings()
    steps.catalog(tmp / "raw.fits", tmp / "catalog.parquet", tmp / "catalog_report.json",
                  settings=catalog, cosmology=COSMO)
    steps.maps(tmp / "catalog.parquet", tmp / "maps.h5", tmp / "envparams.parquet",
               tmp / "maps_report.json", catalog=catalog, maps=MapSettings(),
               footprint=FootprintSettings(), envparams=EnvParamsSettings(), cosmology=COSMO,
               progress=False)
    return tmp


def test_maps_step_writes_maps_and_parameters_of_the_same_targets(maps_run: Path) -> None:
    cat = read_catalog(maps_run / "catalog.parquet")
    maps = read_maps(maps_run / "maps.h5")
    params = read_envparams(maps_run / "envparams.parquet")
    report = json.loads((maps_run / "maps_report.json").read_text())
    assert len(maps["ids"]) == report["kept"] > 10
    assert set(maps["ids"]) <= set(cat["id"])
    np.testing.assert_array_equal(params["id"].to_numpy(), maps["ids"])
    np.testing.assert_array_equal(params["n_map"].to_numpy(),
                                  maps["maps"].sum(axis=(1, 2), dtype=np.int64))
    assert report["n_neighbours"] == int(maps["maps"].sum())
    # the coverage cut is counted, with its threshold
    assert report["removed_redshift_edge"] + report["removed_coverage"] + report["kept"] == \
        report["n_candidates"]
    assert report["removed_coverage"] > 0
    assert report["min_coverage"] == 0.95 and report["coverage_points"] == 16
    # one target's map alone, without the others
    tid = int(maps["ids"][3])
    one = read_maps(maps_run / "maps.h5", ids=[tid])
    np.testing.assert_array_equal(one["maps"][0], maps["maps"][3])
    with pytest.raises(InputError, match="no map of target id"):
        read_maps(maps_run / "maps.h5", ids=[-12345])
    with pytest.raises(InputError, match="at least"):
        read_maps(maps_run / "maps.h5", min_maps=len(maps["ids"]) + 1)


def test_readers_name_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(InputError, match=r"x\.h5: not a galforge maps file"):
        read_maps(tmp_path / "x.h5")
    with pytest.raises(InputError, match=r"nope\.parquet"):
        read_catalog(tmp_path / "nope.parquet")
    with pytest.raises(InputError, match=r"kl\.json"):
        read_latent_kl(tmp_path / "kl.json")
    write_latent_kl(np.array([2.0, 1.0]), np.array([1, 0]), tmp_path / "kl.json")
    kl, order = read_latent_kl(tmp_path / "kl.json")
    assert kl.tolist() == [2.0, 1.0] and order == [1, 0]
