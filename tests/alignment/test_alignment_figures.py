"""The alignment figures: every stem written as PDF + PNG from small inputs."""

import json

import h5py
import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from galforge.alignment.figures import FIGURES, _lambert, make_figures


def test_lambert_projection_is_axial_and_maps_the_equator_to_radius_sqrt2():
    v = np.array([[0.0, 0, 1], [0, 0, -1], [1, 0, 0], [0.6, 0, -0.8]])
    xy = _lambert(v)
    np.testing.assert_allclose(xy[0], [0, 0])
    np.testing.assert_allclose(xy[1], [0, 0])  # -z folded onto +z
    np.testing.assert_allclose(np.hypot(*xy[2]), np.sqrt(2))
    np.testing.assert_allclose(xy[3], _lambert(-v[3:])[0])


def test_make_figures_writes_every_stem(tmp_path):
    rp = np.geomspace(0.1, 10, 5)
    pd.DataFrame({"rp": rp, "wgg": 10 / rp, "wgg_err": 1 / rp, "wgp": 0.5 / rp,
                  "wgp_err": 0.2 / rp}).to_csv(tmp_path / "wgp.csv", index=False)
    checks = {"gan": {"wgp_model": (0.4 / rp).tolist(), "wgp_model_draws": 3,
                      "wgp_model_draw_scatter": (0.1 / rp).tolist(),
                      "wgp_fraction_within_2sigma": 0.8}}
    (tmp_path / "checks.json").write_text(json.dumps(checks))
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4],
                  "val_loss": [1.1, 0.6, 0.5], "train_gp": [0.1, 0.05, 0.01],
                  "val_gp": [0.1, 0.04, 0.02]}).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "so3.json").write_text(json.dumps({"blobs2": {"mmd_ratio": 1.3},
                                                   "pass_blobs2": True}))
    with h5py.File(tmp_path / "so3.h5", "w") as f:
        f["blobs2/model"] = Rotation.random(50, random_state=0).as_matrix()
        f["blobs2/truth"] = Rotation.random(50, random_state=1).as_matrix()
    written = make_figures(wgp=tmp_path / "wgp.csv", checks=tmp_path / "checks.json",
                           metrics=tmp_path / "m.csv", so3_report=tmp_path / "so3.json",
                           so3_samples=tmp_path / "so3.h5", outdir=tmp_path / "fig",
                           cfg={"run": "t", "source": "mock", "seed": 1})
    assert sorted(p.name for p in written) == sorted(f"{s}.{e}" for s in FIGURES
                                                     for e in ("pdf", "png"))
    assert all(p.stat().st_size > 1000 for p in written)
