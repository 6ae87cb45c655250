"""Scale presets of the edf study: overrides of the settings defaults.

``PRESETS[scale][section]`` overrides :mod:`galforge.edf.settings` (the only place a
default lives); the user's ``config.yaml`` overrides both. ``tiny`` runs the tests in
seconds, ``demo`` the study in minutes on 2 CPU cores, ``paper`` GalacticFlow's sizes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "mock": {"n_galaxies": 6, "log_mdm_min": 10.8, "log_mdm_max": 12.0,
                 "n_stars_min": 700, "n_stars_max": 1200, "n_sparse": 1,
                 "sparse_stars": 150},
        "clean": {"min_stars": 300},
        "model": {"n_layers": 2, "bins": 4, "hidden": 16, "mlp_layers": 2},
        "train": {"epochs": 1, "batch_size": 256, "lr": 3e-3, "optimizer": "adam",
                  "scheduler": "none"},
        "cv": {"mode": "kfold", "k": 2},
        "eval": {"n_stars": 200, "figure_stars": 600, "timing_stars": 2000},
    },
    "demo": {
        # 60 galaxies of 1,200-4,000 particles over log M_dm 10.8-12.3 (M* 10^8.8-10^11.3):
        # held-out galaxies need many training galaxies around them (with 24 the flow
        # interpolated worse, at the same cost)
        "mock": {"n_galaxies": 60, "log_mdm_min": 10.8, "log_mdm_max": 12.3,
                 "n_stars_min": 1200, "n_stars_max": 4000},
        # a flow of 288k parameters: 0.05 s a step of 512 stars on one idle core
        "model": {"n_layers": 6, "bins": 8, "hidden": 64, "mlp_layers": 3},
        # ~1,000 steps, the rate falling x0.98 every 10 steps (x0.13 in all): on 10 held-out
        # galaxies 100 % within 3 noise floors, 90 % also beating the nearest neighbour
        # (600 steps: 80 %, 80 %)
        "train": {"epochs": 5, "batch_size": 512, "lr": 3e-3, "gamma": 0.98},
        # the seed's scheme, smaller: 2 models leaving out 10 galaxies each, + all
        "cv": {"mode": "leave_out", "n_models": 2, "n_leave_out": 10},
        "eval": {"n_stars": 1000, "figure_stars": 4000, "timing_stars": 20_000},
    },
    "paper": {
        # the NIHAO sample's size: ~100 galaxies, 2e3-2e5 particles each
        "mock": {},
        "model": {},
        "train": {"amp": True, "amp_dtype": "bfloat16", "compile": True,
                  "checkpoint_every": 2000},
        "cv": {},
        "eval": {},
    },
}
