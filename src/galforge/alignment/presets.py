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
        "diffusion": {"hidden": 16, "layers": 1, "score_hidden": 32, "score_layers": 2,
                      "reverse_steps": 20},
        "diffusion_train": {"epochs": 2},
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
        # measured (seed 42, satellites' cos^2 0.460 in the simulation): sigma_eps 1.0 with
        # one noise draw per galaxy learnt nothing in 30 epochs (0.335); 0.5 / 0.3 / 0.2
        # with 8 draws 0.415 / 0.435 / 0.405 at 30 epochs; 0.3 at 40 epochs 0.478 (8 draws),
        # 0.467 (16 draws), at 50 epochs 0.489 (8 draws)
        "diffusion": {"hidden": 32, "layers": 2, "sigma_eps": 0.3, "repeats": 16},
        "diffusion_train": {"epochs": 40},
        "split": {},
        # ~15-30 ms per step on one shared core. Measured (seed 42, MMD / noise floor):
        # 600 steps at lr 1e-3 with 100 reverse steps gave 19 (blobs2), 6.0 (blobs4),
        # 1.8 (line); lr 1e-2 and 300 reverse steps (the sampler's discretisation was the
        # larger error) give 1.47, 1.36, 1.65 at 1,000 steps (blobs4 3.4 at 600)
        "so3_benchmark": {"steps": 1000, "lr": 1e-2, "reverse_steps": 300, "n_samples": 300},
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
        "diffusion": {},
        "diffusion_train": {"epochs": 500},
        "split": {},
        "so3_benchmark": {"steps": 20000, "n_samples": 2000},
    },
}
