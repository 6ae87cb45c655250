"""Reading star particles: the .npy folder, one table, and errors that name file and star."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galforge.archives.zenodo import NIHAO_COLUMNS, npy_name
from galforge.edf.readers import galaxy_order, read_galaxies, read_npy_folder, read_table
from galforge.io import InputError


def _stars(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(len(NIHAO_COLUMNS), n))
    s[6] = np.abs(s[6]) * 0.01  # Z
    s[9] = 1e5 * (1 + np.abs(s[9]))  # mass
    s[10] = np.abs(s[10]) * 3  # age
    return s


def _write(folder, prefix, gid, m_dm, arr):
    folder.mkdir(exist_ok=True)
    np.save(folder / npy_name(prefix, gid, m_dm), arr)


def test_a_folder_reads_in_numeric_id_order(tmp_path):
    for gid, n in ((66, 30), (5, 20), (20, 10)):
        _write(tmp_path, "g", gid, 1e11 * gid, _stars(n, gid))
    gals = read_npy_folder(tmp_path)
    assert [g.galaxy_id for g in gals] == ["5", "20", "66"]  # not the text order 20, 5, 66
    assert [len(g.stars) for g in gals] == [20, 10, 30]
    assert gals[0].m_dm == pytest.approx(5e11)
    np.testing.assert_array_equal(gals[0].stars, _stars(20, 5).T)


def test_text_ids_sort_as_text():
    assert galaxy_order(["b2", "a10", "a9"]) == [1, 2, 0]
    assert galaxy_order(["10", "9", "-1"]) == [2, 1, 0]


@pytest.mark.parametrize(("arr", "message"), [
    (np.zeros((10, 5)), r"shape \(10, 5\)"),
    (np.zeros((11, 0)), r"shape \(11, 0\)"),
    (np.array([["a"] * 3] * 11), "dtype"),
])
def test_bad_arrays_name_the_file(tmp_path, arr, message):
    _write(tmp_path, "g", 1, 1e11, arr)
    with pytest.raises(InputError, match=rf"g_1_1\.0000e\+11\.npy.*{message}"):
        read_npy_folder(tmp_path)


def test_bad_values_name_file_column_and_star(tmp_path):
    arr = _stars(12)
    arr[4, 7] = np.nan
    _write(tmp_path, "g", 3, 1e11, arr)
    with pytest.raises(InputError, match=r"g_3_.*column 'vy' of star 7 is nan"):
        read_npy_folder(tmp_path)
    arr = _stars(12)
    arr[9, 2] = -1.0
    _write(tmp_path, "g", 3, 1e11, arr)
    with pytest.raises(InputError, match=r"column 'mass' of star 2"):
        read_npy_folder(tmp_path)
    arr = _stars(12)
    arr[7, 0] = -np.inf  # a metal-free particle: allowed, the cleaning removes it
    _write(tmp_path, "g", 3, 1e11, arr)
    assert np.isneginf(read_npy_folder(tmp_path)[0].stars[0, 7])


def test_bad_names_and_empty_folders_are_named(tmp_path):
    with pytest.raises(InputError, match="holds no .npy file"):
        read_npy_folder(tmp_path)
    np.save(tmp_path / "galaxy.npy", _stars(3))
    with pytest.raises(InputError, match=r"galaxy\.npy.*<prefix>_<id>_<M_dm>"):
        read_npy_folder(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        read_galaxies(tmp_path / "nope")


def test_duplicate_ids_are_refused(tmp_path):
    _write(tmp_path, "a", 4, 1e11, _stars(3))
    _write(tmp_path, "b", 4, 2e11, _stars(3))
    with pytest.raises(InputError, match="galaxy id '4' appears twice"):
        read_npy_folder(tmp_path)


def test_one_table_reads_like_the_folder(tmp_path):
    rows = []
    for gid, n in (("b", 5), ("a", 4)):
        df = pd.DataFrame(_stars(n, len(gid)).T, columns=list(NIHAO_COLUMNS))
        df["halo"] = gid
        df["mdm"] = 3e11
        rows.append(df)
    table = pd.concat(rows)
    table.to_parquet(tmp_path / "stars.parquet")
    gals = read_galaxies(tmp_path / "stars.parquet", "halo", "mdm")
    assert [g.galaxy_id for g in gals] == ["a", "b"]
    assert [len(g.stars) for g in gals] == [4, 5] and gals[0].m_dm == 3e11
    table.drop(columns=["age"]).to_csv(tmp_path / "stars.csv", index=False)
    with pytest.raises(InputError, match=r"stars\.csv: column 'age' missing"):
        read_table(tmp_path / "stars.csv", "halo")
    table.assign(mdm=np.arange(len(table))).to_csv(tmp_path / "two.csv", index=False)
    with pytest.raises(InputError, match="one positive value per galaxy"):
        read_table(tmp_path / "two.csv", "halo", "mdm")
    assert np.isnan(read_table(tmp_path / "two.csv", "halo")[0].m_dm)
