"""Dipole and quadrupole moments of the neighbour-count maps, and the latents that follow them.

The paper's second finding is that the latents after the first "represent various
anisotropic and asymmetric structures oriented along different directions". A map's
own orientation, measured without any model, is its azimuthal moments about the
target (:func:`galforge.mock.environment.azimuthal_moments`, the one definition the
mock's planted truth uses too): over the disc inscribed in the square,

    dipole_cos, dipole_sin = Σ n cos θ / Σ n, Σ n sin θ / Σ n
    quad_cos, quad_sin     = Σ n cos 2θ / Σ n, Σ n sin 2θ / Σ n

with ``n`` the counts of the pixels, θ the position angle of each pixel centre from
east (x, the column index) towards north (y, the row index), and the target itself
never in the map. Normalised by the total, they carry the shape and orientation of the
neighbours, not their number: the map total (``n_map``) is blind to them by symmetry.

:func:`map_moments` measures them on maps, :func:`latents_vs_moments` ranks every
latent by its |Spearman ρ| with each (the table ``tables/latents_vs_moments.csv``), and
:func:`moment_summary` picks, per moment, the best latent after z1 beside the map
count's |ρ| (the parity table's rows and the figure's labels).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from galforge.io import InputError
from galforge.mock.environment import MOMENT_NAMES, azimuthal_moments
from galforge.stats import spearman

__all__ = [
    "COUNT_COLUMN",
    "MOMENT_LABELS",
    "MOMENT_NAMES",
    "latents_vs_moments",
    "map_moments",
    "moment_frame",
    "moment_summary",
    "read_moment_table",
]

#: Display names of the moments (figures, parity table).
MOMENT_LABELS: dict[str, str] = {
    "dipole_cos": "dipole cos θ",
    "dipole_sin": "dipole sin θ",
    "quad_cos": "quadrupole cos 2θ",
    "quad_sin": "quadrupole sin 2θ",
}
#: The map total: the table's comparison row (counting alone).
COUNT_COLUMN = "n_map"


def _disc_offsets(npix: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat pixel indices inside the inscribed disc and their centres' (x, y), in units of L."""
    c = (np.arange(npix) + 0.5) / npix - 0.5
    x, y = np.meshgrid(c, c)  # [iy, ix]: x east (columns), y north (rows)
    inside = (np.hypot(x, y) <= 0.5).ravel()
    idx = np.flatnonzero(inside)
    return idx, x.ravel()[idx], y.ravel()[idx]


def map_moments(maps: Any, chunk: int = 4096) -> np.ndarray:
    """Azimuthal moments of neighbour-count maps ``(N, npix, npix)``, shape ``(N, 4)``.

    Over the disc inscribed in the square (so a rotation of the map rotates the moments),
    in the order of :data:`MOMENT_NAMES`; NaN for a map with no neighbour in the disc.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        raise InputError(f"maps must have shape (N, npix, npix), got {maps.shape}")
    idx, x, y = _disc_offsets(maps.shape[1])
    flat = maps.reshape(len(maps), -1)
    out = [azimuthal_moments(flat[a : a + chunk, idx], x, y)
           for a in range(0, len(flat), chunk)]
    return np.concatenate(out) if out else np.zeros((0, len(MOMENT_NAMES)))


def moment_frame(ids: Any, moments: np.ndarray) -> pd.DataFrame:
    """``id`` and one column per moment (:data:`MOMENT_NAMES`)."""
    return pd.DataFrame({"id": np.asarray(ids, dtype=np.int64),
                         **{n: moments[:, k] for k, n in enumerate(MOMENT_NAMES)}})


def _latents(df: pd.DataFrame) -> list[str]:
    k = sum(1 for c in df.columns if c.startswith("z") and c[1:].isdigit())
    return [f"z{r + 1}" for r in range(k)]


def latents_vs_moments(joined: pd.DataFrame) -> pd.DataFrame:
    """Every latent (and the map count) against every moment, ranked by |Spearman ρ|.

    ``joined``: one row per target with the ranked latents ``z1..zK``, ``n_map`` and the
    map moments. Rows: ``moment``, ``variable`` (``z<k>`` or ``n_map``), ``latent`` (the
    KL rank k, 0 for the count), ``rho``, ``abs_rho``, ``p``, ``n`` and ``rank`` (1 = the
    latent with the largest |ρ| for that moment; the count is not ranked).
    """
    missing = [c for c in (*MOMENT_NAMES, COUNT_COLUMN) if c not in joined]
    zcols = _latents(joined)
    if missing or not zcols:
        raise InputError(f"latents vs moments: the table lacks {missing or 'latents z1..zK'}")
    rows = []
    for moment in MOMENT_NAMES:
        m = joined[moment].to_numpy(dtype=float)
        n = int(np.isfinite(m).sum())
        for k, col in enumerate([*zcols, COUNT_COLUMN]):
            rho, p = spearman(joined[col].to_numpy(dtype=float), m)
            rows.append({"moment": moment, "variable": col,
                         "latent": k + 1 if col != COUNT_COLUMN else 0,
                         "rho": rho, "abs_rho": abs(rho), "p": p, "n": n})
    table = pd.DataFrame(rows)
    lat = table["latent"] > 0
    table["rank"] = 0
    table.loc[lat, "rank"] = (table[lat].groupby("moment")["abs_rho"]
                              .rank(ascending=False, method="first").astype(int))
    return table


def read_moment_table(path: str | os.PathLike) -> pd.DataFrame:
    """The table written from :func:`latents_vs_moments` (``tables/latents_vs_moments.csv``)."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a latents-vs-moments table ({exc})") from None
    missing = {"moment", "variable", "latent", "rho", "abs_rho"} - set(table.columns)
    if missing:
        raise InputError(f"{path}: latents-vs-moments table lacks {sorted(missing)}")
    return table


def moment_summary(table: pd.DataFrame, *, exclude_top: bool = True) -> dict[str, dict[str, Any]]:
    """Per moment: the latent with the largest |ρ| (after z1 when ``exclude_top``), its ρ,
    and the map count's ρ, from a :func:`latents_vs_moments` table."""
    out: dict[str, dict[str, Any]] = {}
    for moment in MOMENT_NAMES:
        t = table[(table["moment"] == moment)].dropna(subset=["rho"])
        lat = t[t["latent"] > (1 if exclude_top else 0)]
        count = t[t["variable"] == COUNT_COLUMN]
        if lat.empty:
            continue
        best = lat.loc[lat["abs_rho"].idxmax()]
        out[moment] = {"latent": str(best["variable"]), "rho": float(best["rho"]),
                       "rho_n_map": float(count["rho"].iloc[0]) if len(count) else float("nan")}
    return out
