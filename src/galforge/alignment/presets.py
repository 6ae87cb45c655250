"""Scale presets of the alignment study: overrides of the settings defaults.

The mock TNG sizes (:mod:`galforge.mock.tng`): tiny 15 h^-1 Mpc box, demo 40, paper 75
(TNG100's). Meshes keep cells of ~0.25-0.3 h^-1 Mpc at tiny/demo (the 0.1 h^-1 Mpc
smoothing is then below the cell: it is kept for the paper's set, and reported).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "catalog": {},
        "shapes": {},
        "tidal": {"mesh": 48},
        # the 15 h^-1 Mpc box: the tiny mock truth's binning
        "stats": {"rp_max": 4.0, "n_rp": 5, "pi_max": 5.0, "n_pi": 10, "jackknife": 8,
                  "shape_log_mstar_min": 9.5},
        "graphs": {},
        "gan": {"hidden": 16, "layers": 1},
        "gan_train": {"epochs": 2},
        "split": {},
        "so3_benchmark": {"densities": ["blobs2"], "hidden": 32, "layers": 2, "steps": 50,
                          "reverse_steps": 20, "n_samples": 100},
    },
    "demo": {
        "catalog": {},
        "shapes": {},
        "tidal": {"mesh": 128},
        "stats": {},
        "graphs": {},
        # about 2 s per epoch of the demo's 2,100 training groups on one thread (60-115 s
        # for the 30 epochs, 990 steps, under load); the critic's 400 warm-up steps are
        # 12 of them
        "gan": {"hidden": 32, "layers": 2},
        "gan_train": {"epochs": 30},
        "split": {},
        # ~30-60 ms per step on one shared core: within the demo's time, not its accuracy
        # (measured on blobs2: 1,500 steps MMD 3.9x the noise floor, 3,000 steps 1.4x)
        "so3_benchmark": {"steps": 600, "reverse_steps": 100, "n_samples": 300},
    },
    "paper": {
        "catalog": {},
        "shapes": {},
        "tidal": {},
        # TNG100's 75 h^-1 Mpc box: the paper mock truth's binning
        "stats": {"rp_max": 20.0, "n_rp": 10, "pi_max": 20.0, "n_pi": 40},
        "graphs": {},
        "gan": {},
        "gan_train": {"epochs": 500},
        "split": {},
        "so3_benchmark": {"steps": 20000, "n_samples": 2000},
    },
}
