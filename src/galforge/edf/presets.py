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
        "eval": {"n_stars": 200, "figure_stars": 600},
    },
    "demo": {
        # 24 galaxies of 2,000-8,000 particles over log M_dm 10.8-12.3 (M* 10^8.8-10^11.3)
        "mock": {"n_galaxies": 24, "log_mdm_min": 10.8, "log_mdm_max": 12.3,
                 "n_stars_min": 2000, "n_stars_max": 8000},
        # a flow of 288k parameters: ~0.1 s a step of 1024 stars on one busy core
        "model": {"n_layers": 6, "bins": 8, "hidden": 64, "mlp_layers": 3},
        "train": {"epochs": 8, "lr": 3e-3},
        # 3 folds: every galaxy is held out once; 3 + 1 training jobs
        "cv": {"mode": "kfold", "k": 3},
        "eval": {"n_stars": 1000, "figure_stars": 4000},
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
