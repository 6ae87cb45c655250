"""Scale presets of the environment study: overrides of the settings defaults.

``PRESETS[scale][section]`` overrides the defaults of
:mod:`galforge.environment.settings` (the only place a default lives); the user's
``config.yaml`` overrides both. ``tiny`` runs the tests in seconds, ``demo`` the
default run in minutes on 2 CPU cores, ``paper`` the paper's sizes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        # 119 deg^2: ~3.1k written, ~1.7k volume-limited (1.1k-2.5k over seeds 1-3);
        # ~0.5 s, 0.25 GB (seed 42, 2 CPU cores; counts vary through cosmic variance).
        "mock": {"ra_min": 150.0, "ra_max": 165.0, "dec_min": 0.0, "dec_max": 8.0,
                 "cell_size": 2.0},
        "model": {"latent_dim": 8, "channels": [8, 16, 16, 16], "hidden": 32, "norm": "batch"},
        "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3},
        "stats": {"n_latents": 4, "n_shuffles": 10, "n_boot": 20},
    },
    "demo": {
        # 699 deg^2: ~19.5k written, ~9.9k volume-limited; ~5 s, 0.6 GB.
        "mock": {"ra_min": 140.0, "ra_max": 170.0, "dec_min": 0.0, "dec_max": 24.0,
                 "cell_size": 1.0},
        # a few minutes for ~10k maps on 2 CPU cores
        "model": {"latent_dim": 32, "channels": [16, 32, 64, 64], "hidden": 128,
                  "norm": "batch"},
        # the validation loss is lowest at epoch 10 of 15 (seed 42; early stopping ended it
        # at 14 and restored epoch 10), so 10 epochs give the same model for 2/3 of the time.
        "train": {"epochs": 10, "batch_size": 64, "lr": 2e-3, "early_stopping_patience": 4,
                  "restore_best_weights": True, "checkpoint_every": 200},
        "stats": {"n_latents": 8, "n_shuffles": 50, "n_boot": 100},
    },
    "paper": {
        # 4494 deg^2 of the SDSS DR7 northern cap: ~133k written, ~68k volume-limited;
        # ~25 s, 1.6 GB.
        "mock": {"ra_min": 125.0, "ra_max": 240.0, "dec_min": 0.0, "dec_max": 43.0,
                 "cell_size": 1.0},
        # the model defaults are the paper's: 128 latents, our widths (the paper's were not
        # published)
        "model": {},
        "train": {"epochs": 100, "batch_size": 128, "lr": 1e-3, "scheduler": "plateau",
                  "early_stopping_patience": 10, "restore_best_weights": True,
                  "checkpoint_every": 1000},
        "stats": {"n_latents": 16, "n_shuffles": 50, "n_boot": 200},
    },
}
