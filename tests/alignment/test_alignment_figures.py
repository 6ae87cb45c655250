"""The alignment figures: every stem written as PDF + PNG from small fabricated inputs;
the Samuroff et al. (2021) measurement drawn beside ours (archive)."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from conftest import shared_data_path
from galforge.alignment.catalog import write_catalog
from galforge.alignment.figures import (
    FIGURES,
    TRUTH_FIGURE,
    _lambert,
    make_figures,
    radial_frame_axes,
)


def test_lambert_projection_is_axial_and_maps_the_equator_to_radius_sqrt2():
    v = np.array([[0.0, 0, 1], [0, 0, -1], [1, 0, 0], [0.6, 0, -0.8]])
    xy = _lambert(v)
    np.testing.assert_allclose(xy[0], [0, 0])
    np.testing.assert_allclose(xy[1], [0, 0])  # -z folded onto +z
    np.testing.assert_allclose(np.hypot(*xy[2]), np.sqrt(2))
    np.testing.assert_allclose(xy[3], _lambert(-v[3:])[0])


def test_radial_frame_puts_the_radial_direction_at_the_pole():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(50, 3))
    out = radial_frame_axes(d / np.linalg.norm(d, axis=1, keepdims=True), 3.0 * d)
    np.testing.assert_allclose(out, np.tile([0.0, 0, 1], (50, 1)), atol=1e-12)
    m = rng.normal(size=(50, 3))
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    r = radial_frame_axes(m, d)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1.0)  # a rotation: lengths kept
    np.testing.assert_allclose(np.abs(r[:, 2]),
                               np.abs(np.einsum("ni,ni->n", m, d)) / np.linalg.norm(d, axis=1))


def _inputs(tmp_path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    rp = np.geomspace(0.1, 10, 5)
    pd.DataFrame({"rp": rp, "wgg": 10 / rp, "wgg_err": 1 / rp, "wgp": 0.5 / rp,
                  "wgp_err": 0.2 / rp}).to_csv(tmp_path / "wgp.csv", index=False)
    checks = {name: {"wgp_model": (0.4 / rp).tolist(), "wgp_model_draws": 3,
                     "wgp_model_draw_scatter": (0.1 / rp).tolist(),
                     "wgp_fraction_within_2sigma": 0.8, "ks_p_q": 0.3, "ks_p_s": 0.02}
              for name in ("gan", "diffusion")}
    (tmp_path / "checks.json").write_text(json.dumps(checks))
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4],
                  "val_loss": [1.1, 0.6, 0.5], "train_gp": [0.1, 0.05, 0.01],
                  "val_gp": [0.1, 0.04, 0.02]}).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.5],
                  "val_loss": [2.1, 1.7]}).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "so3.json").write_text(json.dumps({"blobs2": {"mmd_ratio": 1.3},
                                                   "pass_blobs2": True}))
    with h5py.File(tmp_path / "so3.h5", "w") as f:
        f["blobs2/model"] = Rotation.random(50, random_state=0).as_matrix()
        f["blobs2/truth"] = Rotation.random(50, random_state=1).as_matrix()
    r = np.geomspace(0.1, 10, 6)
    pd.DataFrame({"r": r, "ed": 0.1 / r, "ed_err": 0.02 / r, "ee": 0.05 / r, "ee_err": 0.01 / r,
                  "ed_pairs": 100, "ee_pairs": 50}).to_csv(tmp_path / "ed.csv", index=False)
    group = np.repeat(np.arange(n // 6), 6)
    central = np.tile([True] + [False] * 5, n // 6)
    frames = Rotation.random(n, random_state=seed).as_matrix()
    cols = {"subhalo_id": np.arange(n), "group": group, "central": central,
            "log_mstar": rng.uniform(9, 11, n), "pos": rng.random((n, 3)) * 20.0,
            "e1": rng.normal(0, 0.2, n), "e2": rng.normal(0, 0.2, n),
            "star_axes_simple": frames, "star_q_simple": rng.uniform(0.3, 1, n),
            "star_s_simple": rng.uniform(0.1, 0.6, n)}
    write_catalog(tmp_path / "cat.h5", cols, {"box": 20.0, "shape_method": "simple",
                                              "line_of_sight": "z", "smoothing": [0.5, 1.0]})
    mis = {"subhalo_id": cols["subhalo_id"], "central": central, "log_mstar": cols["log_mstar"]}
    for k in ("angle_dm", "angle_central", "angle_radial", "angle_tidal_0", "angle_tidal_1"):
        mis[k] = np.degrees(np.arccos(rng.random(n)))
    pd.DataFrame(mis).to_csv(tmp_path / "mis.csv", index=False)
    for name in ("gan", "diffusion"):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["subhalo_id"] = np.arange(n)[::-1]
            f["frame"] = Rotation.random(n, random_state=seed + 1).as_matrix()
            for k in ("q", "s", "e1", "e2"):
                f[k] = rng.random(n)
    truth = {"wgp_mock": {"wgp_rp": rp.tolist(), "wgp_measured": (0.5 / rp).tolist(),
                          "wgp_jackknife_err": (0.2 / rp).tolist(),
                          "wgp_expected": (0.45 / rp).tolist(),
                          "wgp_expected_sem": (0.05 / rp).tolist(),
                          "wgp_fraction_within_1sigma": 1.0},
             "pass_wgp_mock": True, "pass_gan_wgp": False}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    return {"wgp": tmp_path / "wgp.csv", "checks": tmp_path / "checks.json",
            "metrics": tmp_path / "m.csv", "diffusion_metrics": tmp_path / "d.csv",
            "so3_report": tmp_path / "so3.json",
            "so3_samples": tmp_path / "so3.h5", "ed_ee": tmp_path / "ed.csv",
            "misalignments": tmp_path / "mis.csv", "catalog": tmp_path / "cat.h5",
            "generated": {k: tmp_path / f"{k}.h5" for k in ("gan", "diffusion")},
            "cfg": {"run": "t", "source": "mock", "seed": 1}}


def _names(stems):
    return sorted(f"{s}.{e}" for s in stems for e in ("pdf", "png"))


def test_make_figures_writes_every_stem(tmp_path):
    written = make_figures(**_inputs(tmp_path), outdir=tmp_path / "fig",
                           truth=tmp_path / "truth.json")
    assert sorted(p.name for p in written) == _names((*FIGURES, TRUTH_FIGURE))
    assert all(p.stat().st_size > 1000 for p in written)


@pytest.mark.archive
def test_wgp_figure_draws_the_samuroff_measurement(tmp_path, monkeypatch):
    import galforge.alignment.figures as figs

    seen = {}
    orig = figs._fig_wgp

    def spy(wgp, checks, samuroff=None):
        seen["samuroff"] = samuroff
        fig = orig(wgp, checks, samuroff)
        seen["labels"] = fig.axes[0].get_legend_handles_labels()[1]
        return fig

    monkeypatch.setattr(figs, "_fig_wgp", spy)
    path = shared_data_path("ia/2pt_tng_fidcovw_iteration4.fits")
    written = make_figures(**_inputs(tmp_path), outdir=tmp_path / "fig", samuroff=path)
    assert sorted(p.name for p in written) == _names(FIGURES)  # no truth: no truth figure
    assert len(seen["samuroff"]["rp"]) == 12
    assert any(lab.startswith("Samuroff et al. (2021): TNG300-1, z = 0") for lab in seen["labels"])


def test_the_workflow_lists_the_same_figure_stems():
    import ast
    import re
    from pathlib import Path

    smk = (Path(__file__).parents[2] / "workflow/rules/alignment.smk").read_text()
    m = re.search(r"^ALIGNMENT_FIGURES = (\(.*?\))\n", smk, re.S | re.M)
    assert m and ast.literal_eval(m[1]) == FIGURES
    assert f'("{TRUTH_FIGURE}",)' in smk
    for stem in (*FIGURES, TRUTH_FIGURE, "parity"):
        assert (Path(__file__).parents[2] / f"workflow/report/alignment_{stem}.rst").is_file()
