"""The edf steps on tiny inputs, and each file's writer and reader round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galforge.archives.zenodo import NIHAO_COLUMNS
from galforge.cli import main
from galforge.config import resolve_config
from galforge.edf import steps
from galforge.edf.clean import CUTS
from galforge.edf.settings import EdfSettings
from galforge.edf.table import read_edf_table
from galforge.io import InputError

TINY = EdfSettings.from_dict(resolve_config({"scale": "tiny"})["edf"])


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    """The tiny mock, through the mock and table steps."""
    root = tmp_path_factory.mktemp("edf")
    steps.mock(root / "galaxies", root / "truth.json", settings=TINY.mock, seed=42)
    rep = steps.table(root / "galaxies", root / "edf.h5", root / "galaxies.csv",
                      root / "cut_report.json", clean=TINY.clean, progress=False)
    return root, rep


def test_the_table_step_writes_table_index_and_cut_report(tiny_table):
    root, rep = tiny_table
    tab = read_edf_table(root / "edf.h5")
    n_mock = TINY.mock.n_galaxies + TINY.mock.n_sparse
    assert rep["galaxies_read"] == n_mock
    assert rep["galaxies_kept"] == tab.n_galaxies == TINY.mock.n_galaxies  # sparse dropped
    assert len(rep["galaxies_dropped_min_stars"]) == TINY.mock.n_sparse
    # every star read is kept, cut, or in a dropped galaxy
    assert rep["stars_read"] == (rep["stars_kept"] + sum(rep["removed"].values())
                                 + rep["removed_in_dropped_galaxies"])
    assert rep["removed"]["top_z"] == 10 * n_mock and rep["removed"]["feh"] > 0
    assert rep["removed"]["ofe"] > 0
    assert tab.stars.shape == (rep["stars_kept"], len(NIHAO_COLUMNS))
    assert tab.stars.dtype == np.float32 and tab.galaxy.shape == (rep["stars_kept"],)
    ids = tab.galaxies["galaxy_id"].tolist()
    assert ids == sorted(ids, key=int)  # ordered by id
    for i in range(tab.n_galaxies):
        stars = tab.stars_of(i)
        assert len(stars) == tab.galaxies["n_stars"].iloc[i]
        assert (tab.galaxy[tab.galaxies["offset"].iloc[i]:][:len(stars)] == i).all()
        assert np.log10(stars[:, 9].sum()) == pytest.approx(np.log10(tab.galaxies["mstar"].iloc[i]),
                                                           abs=1e-4)
        np.testing.assert_allclose(tab.rotation[i] @ tab.rotation[i].T, np.eye(3), atol=1e-9)
    assert set(f"removed_{c}" for c in CUTS) <= set(tab.galaxies.columns)
    index = pd.read_csv(root / "galaxies.csv", dtype={"galaxy_id": str})
    assert index["index"].tolist() == list(range(tab.n_galaxies))
    assert index["galaxy_id"].tolist() == ids
    np.testing.assert_allclose(index["mstar"], tab.galaxies["mstar"])
    assert json.loads((root / "cut_report.json").read_text()) == rep


def test_the_table_reader_refuses_other_files(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match=r"x\.h5: not a readable HDF5"):
        read_edf_table(tmp_path / "x.h5")
    import h5py

    with h5py.File(tmp_path / "y.h5", "w") as h5:
        h5["stars"] = np.zeros((1, 11))
    with pytest.raises(InputError, match=r"y\.h5: not a galforge eDF table"):
        read_edf_table(tmp_path / "y.h5")


def test_a_failed_table_step_leaves_no_output(tmp_path):
    bad = tmp_path / "galaxies"
    bad.mkdir()
    np.save(bad / "g_1_1e11.npy", np.zeros((11, 600)))  # every particle at r = 0, Z = 0
    with pytest.raises(InputError, match="no galaxy is left"):
        steps.table(bad, tmp_path / "edf.h5", tmp_path / "i.csv", tmp_path / "r.json",
                    clean=TINY.clean, progress=False)
    assert not list(tmp_path.glob("edf.h5*")) and not (tmp_path / "r.json").exists()


def test_the_cli_runs_mock_and_table(tmp_path):
    cfg = json.dumps({"scale": "tiny", "seed": 3})
    assert main(["edf-mock", "--config", cfg, "--folder", str(tmp_path / "g"),
                 "--truth", str(tmp_path / "t.json")]) in (0, None)
    assert main(["edf-table", "--config", cfg, "--no-progress", "--galaxies", str(tmp_path / "g"),
                 "--out", str(tmp_path / "e.h5"), "--index", str(tmp_path / "i.csv"),
                 "--report", str(tmp_path / "r.json")]) in (0, None)
    assert read_edf_table(tmp_path / "e.h5", stars=False).n_galaxies == TINY.mock.n_galaxies
