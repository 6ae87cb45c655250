"""The sample: cuts and f_ex from the mock TNG (both snapshots), balanced views, the split."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from galforge.archives.tng_local import LocalTNG
from galforge.exsitu import sample as sp
from galforge.exsitu import steps
from galforge.exsitu.maps import read_maps
from galforge.exsitu.presets import PRESETS
from galforge.exsitu.settings import ExsituSettings, SampleSettings, SplitSettings
from galforge.io import InputError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> ExsituSettings:
    s = ExsituSettings.from_dict(PRESETS["tiny"])
    root = tmp_path_factory.mktemp("exsitu") / "TNG100-1"
    steps.mock(root, s.mock, seed=42, snapshots=s.sample.snapshots)
    return root, s


def test_selection_matches_the_catalogs_and_the_truth(tiny) -> None:
    root, s = tiny
    t = sp.select(root / "output", s.sample)
    assert set(t["snapshot"]) == {91, 99} and (t["snapshot"] == 91).sum() > 20
    assert np.all(t["log_mstar"] > 10) and np.all(t["fex"] < 0.85)
    with h5py.File(root / "truth.hdf5") as f:
        g = f["galaxies"]
        for snap in (91, 99):
            sid = g[f"SubfindID_{snap:03d}"][()]
            here = t[t["snapshot"] == snap]
            if snap == 99:  # the truth's f_ex is the z = 0 one
                rows = {int(x): i for i, x in enumerate(sid)}
                truth_fex = g["fex"][()][[rows[x] for x in here["subhalo_id"]]]
                np.testing.assert_allclose(here["fex"], truth_fex, rtol=1e-9)
                # every truth galaxy above the cut is selected (truth masses: z = 0)
                assert len(here) == int(np.sum((g["mstar"][()] > 1e10) & (sid >= 0)))
            # the catalog's f_ex is the mass fraction of the stars flagged ex situ
            tng = LocalTNG(root / "output", snap)
            for gal, fex in zip(tng.iter_galaxies(here["subhalo_id"]),
                                here.sort_values("subhalo_id")["fex"], strict=True):
                m = gal.stars["Masses"]
                assert abs(np.sum(m * (1 - gal.stars["InSitu"])) / m.sum() - fex) < 1e-6
    ids = sp.galaxy_ids(t, root / "truth.hdf5")
    assert np.all(ids >= 0)
    # one galaxy at both snapshots keeps one id: fewer ids than rows
    assert len(np.unique(ids)) < len(t)
    assert len(np.unique(sp.galaxy_ids(t))) == len(t)


def test_views_balance_the_fex_distribution() -> None:
    rng = np.random.default_rng(0)
    fex = np.concatenate([rng.uniform(0.0, 0.2, 900), rng.uniform(0.6, 0.8, 30)])
    s = SampleSettings(target_projections=2000, fex_bins=4)
    v = sp.balanced_views(fex, s)
    assert set(np.unique(v)) <= set(s.view_counts)
    assert v[fex > 0.6].min() > v[fex < 0.2].max()  # rare f_ex get more views
    common, rare = v[fex < 0.2].sum(), v[fex > 0.6].sum()
    assert rare / common > 3 * 30 / 900  # flatter than the galaxies' distribution
    assert v.sum() <= 2000 + 900  # each bin at most its aim (or 1 view each)


def test_split_is_by_galaxy_stratified_by_views_and_seeded() -> None:
    rng = np.random.default_rng(1)
    galaxy = np.repeat(np.arange(400), 2)  # each galaxy at two snapshots
    views = np.repeat(rng.choice([1, 3, 12], 400, p=[0.7, 0.2, 0.1]), 2)
    views[1::2] = np.where(rng.random(400) < 0.2, 1, views[1::2])  # may differ by snapshot
    split = sp.split_galaxies(galaxy, views, SplitSettings(), seed=7)
    for g in range(400):  # no galaxy in two splits
        assert len(set(split[galaxy == g])) == 1
    per_galaxy = split[::2]
    frac = {k: np.mean(per_galaxy == k) for k in sp.SPLITS}
    assert abs(frac["train"] - 0.75) < 0.03 and abs(frac["test"] - 0.15) < 0.03
    vmax = np.maximum(views[::2], views[1::2])
    for v in (1, 3, 12):  # each view count split alike
        assert abs(np.mean(per_galaxy[vmax == v] == "test") - 0.15) < 0.06
    np.testing.assert_array_equal(split, sp.split_galaxies(galaxy, views, SplitSettings(), 7))
    assert not np.array_equal(split, sp.split_galaxies(galaxy, views, SplitSettings(), 8))


def test_sample_and_maps_steps_on_the_tiny_mock(tiny, tmp_path) -> None:
    root, s = tiny
    t = steps.sample(root / "output", tmp_path / "sample.parquet", tmp_path / "s.json",
                     settings=s.sample, split=s.split, seed=42, truth=root / "truth.hdf5")
    for g, rows in t.groupby("galaxy_id"):
        assert rows["split"].nunique() == 1, g
    n = steps.make_maps(root / "output", tmp_path / "sample.parquet", tmp_path / "maps.h5",
                        tmp_path / "m.json", settings=s.maps, progress=False)
    m = read_maps(tmp_path / "maps.h5")
    assert n == t["n_views"].sum() == len(m.maps)
    assert m.maps.shape[1:] == (6, s.maps.npix, s.maps.npix)
    assert m.masks.mean() > 0.2  # the tiny preset's mock fills its maps
    on = m.masks
    fex_maps = m.maps[:, 5]
    assert fex_maps[on].min() >= 0 and fex_maps[on].max() <= 1
    # the mass-weighted mean of the ex-situ map follows the catalog's f_ex
    mass = 10 ** np.where(on, m.maps[:, 0], -np.inf)
    integrated = (mass * fex_maps).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
    assert np.corrcoef(integrated, m.meta["fex"])[0, 1] > 0.7
    for g in np.unique(m.meta["galaxy_id"]):
        assert len(set(m.meta["split"][m.meta["galaxy_id"] == g])) == 1
    with pytest.raises(InputError, match="no galaxy passes"):
        steps.sample(root / "output", tmp_path / "x.parquet", tmp_path / "x.json",
                     settings=s.sample.replace(log_mstar_min=12.9), split=s.split, seed=1)
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.slow
def test_train_predict_evaluate_steps_on_the_tiny_mock(tiny, tmp_path) -> None:
    pytest.importorskip("torch")
    import pandas as pd

    root, s = tiny
    steps.sample(root / "output", tmp_path / "sample.parquet", tmp_path / "s.json",
                 settings=s.sample, split=s.split, seed=42, truth=root / "truth.hdf5")
    steps.make_maps(root / "output", tmp_path / "sample.parquet", tmp_path / "maps.h5",
                    tmp_path / "m.json", settings=s.maps, progress=False)
    summary = steps.train(tmp_path / "maps.h5", tmp_path / "cvae.pt", tmp_path / "metrics.csv",
                          tmp_path / "cvae.json", tmp_path / "work", model=s.model,
                          train_settings=s.train, seed=42, progress=False)
    assert summary["epochs"] == s.train.epochs and np.isfinite(summary["best_val_loss"])
    fs = steps.train_flow(tmp_path / "cvae.pt", tmp_path / "maps.h5", tmp_path / "flow.pt",
                          tmp_path / "fm.csv", tmp_path / "flow.json", tmp_path / "fwork",
                          flow=s.flow, train_settings=s.flow_train, seed=42, progress=False)
    assert fs["epochs"] == s.flow_train.epochs and np.isfinite(fs["best_val_nll"])
    n = steps.predict(tmp_path / "cvae.pt", tmp_path / "maps.h5", tmp_path / "pred.h5",
                      settings=s.predict, seed=42, flow_in=tmp_path / "flow.pt")
    assert n == int((read_maps(tmp_path / "maps.h5", maps=False).meta["split"] == "test").sum())
    rep = steps.evaluate(tmp_path / "maps.h5", tmp_path / "pred.h5", tmp_path / "err.csv",
                         tmp_path / "err.md", tmp_path / "eval.json",
                         truth_out=tmp_path / "truth.json")
    table = pd.read_csv(tmp_path / "err.csv")
    assert list(table["source"]) == ["encoder", "flow", "prior", "baseline"]
    assert np.all((table["mean"] > 0) & (table["mean"] < 1))
    assert 0 <= rep["encoder"]["coverage68"] <= 1
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["source"] == "flow" and truth["error"] == rep["errors"]["flow"]["mean"]
    flags = {k for k in truth if k.startswith("pass_")}
    assert flags == {"pass_error", "pass_beats_baseline", "pass_flow_beats_prior",
                     "pass_integrated_fex", "pass_coverage68"}
    # 2 epochs at tiny: the checks are computed, not assumed
    assert truth["pass_error"] == (truth["error"] <= 0.10)
    from galforge.exsitu.figures import FIGURES, make_figures
    from galforge.provenance import Provenance

    written = make_figures(tmp_path / "maps.h5", tmp_path / "pred.h5", tmp_path / "eval.json",
                           tmp_path / "metrics.csv", tmp_path / "fm.csv", tmp_path / "figs",
                           Provenance(run="t", source="mock", config_hash="abc"),
                           truth_in=tmp_path / "truth.json")
    assert {p.stem for p in written} == {*FIGURES, "truth_recovery"}
    assert all(p.stat().st_size > 1000 for p in written)


def test_the_web_api_route_selects_and_maps_as_the_local_copy(tiny, tmp_path) -> None:
    """The API route's plumbing, its answers served from the mock's files."""
    root, s = tiny
    base = root / "output"

    class Client:
        def __init__(self, tng: LocalTNG) -> None:
            self.tng = tng

        def get_json(self, path: str) -> dict:
            return {"hubble": self.tng.h} if "snapshots" not in path else \
                {"redshift": 1 / self.tng.a - 1}

        def url(self, path: str) -> str:
            return path

    class Api:  # what ApiTNG answers, from the mock's files
        def __init__(self, snap: int) -> None:
            self.tng, self.sim, self.snap = LocalTNG(base, snap), "TNG100-1", snap
            self.client = Client(self.tng)

        def groupcat_field(self, group: str, field: str):
            assert group == "Subhalo"
            return self.tng.subhalos([field])[field]

        def stellar_assembly(self, kind: str):
            from galforge.archives.tng_layout import stellar_assembly_path
            return stellar_assembly_path(base, self.snap, kind)

        def iter_galaxies(self, ids, fields):
            assert fields == steps.MAP_FIELDS
            return self.tng.iter_galaxies(ids, fields)

    local = sp.select(base, s.sample)
    via_api = sp.select(None, s.sample, catalog=lambda snap: sp.api_catalog(Api(snap)))
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(local, via_api)
    steps.sample(None, tmp_path / "s.parquet", tmp_path / "s.json", settings=s.sample,
                 split=s.split, seed=42, api=Api)
    steps.make_maps(None, tmp_path / "s.parquet", tmp_path / "api.h5", tmp_path / "a.json",
                    settings=s.maps, progress=False, api=Api)
    steps.make_maps(base, tmp_path / "s.parquet", tmp_path / "local.h5", tmp_path / "l.json",
                    settings=s.maps, progress=False)
    np.testing.assert_array_equal(read_maps(tmp_path / "api.h5").maps,
                                  read_maps(tmp_path / "local.h5").maps)

    class NoRecord(Client):
        def get_json(self, path: str) -> dict:
            return {}

    bad = Api(99)
    bad.client = NoRecord(bad.tng)
    with pytest.raises(InputError, match="hubble"):
        sp.api_catalog(bad)
