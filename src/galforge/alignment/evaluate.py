"""The generated catalogs against the simulation: the issue's acceptance checks.

For a model's catalog (frames, q, s of the same galaxies, :func:`galforge.alignment.
training.read_generated`), beside the simulation's measured shapes:

* ``wgp``: the model's w_g+ (the mean over the catalog's draws, ``e1_draws``: one
  draw's scatters by several jackknife errors at small r_p) within 2σ (the simulation's
  jackknife error) of the simulation's in at least 70 % of the r_p bins;
* ``cos2_satellites``: the satellites' mean cos² of the angle between the major axis and
  the direction to their central within 0.02 of the simulation's;
* ``axis_ratios``: two-sample KS p-values of q and of s above 0.01.

Randomly oriented galaxies (:func:`random_catalog`) must fail them (a test).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["model_checks", "random_catalog"]


def _cos2_satellites(cols: dict[str, np.ndarray], major: np.ndarray, box: float) -> float:
    from galforge.alignment.correlations import misalignments

    c = dict(cols)
    c["star_axes_simple"] = major
    ang = misalignments(c, box, "simple")["angle_radial"]
    sat = ~cols["central"].astype(bool) & np.isfinite(ang)
    return float(np.mean(np.cos(np.radians(ang[sat])) ** 2))


def model_checks(cols: dict[str, np.ndarray], attrs: dict[str, Any], gen: dict[str, Any],
                 settings: Any) -> dict[str, Any]:
    """The three checks of one generated catalog (``settings``: StatsSettings)."""
    from scipy.stats import ks_2samp

    from galforge.alignment.correlations import projected_correlations

    row = {int(s): i for i, s in enumerate(cols["subhalo_id"])}
    r = np.array([row[int(s)] for s in gen["subhalo_id"]])
    sub = {k: v[r] for k, v in cols.items()}
    box, los = float(attrs["box"]), "xyz".index(attrs["line_of_sight"])
    method = attrs["shape_method"]
    shape = sub["log_mstar"] >= settings.shape_log_mstar_min
    edges = np.geomspace(settings.rp_min, settings.rp_max, settings.n_rp + 1)

    def wgp(e1: np.ndarray, e2: np.ndarray) -> dict[str, np.ndarray]:
        return projected_correlations(cols["pos"], sub["pos"][shape], e1[shape], e2[shape],
                                      box=box, rp_edges=edges, pi_max=settings.pi_max,
                                      n_pi=settings.n_pi, los=los, jackknife=settings.jackknife,
                                      responsivity=settings.responsivity, corr="g+")

    sim = wgp(sub["e1"], sub["e2"])
    e1s, e2s = gen.get("e1_draws", gen["e1"][None]), gen.get("e2_draws", gen["e2"][None])
    draws = np.array([wgp(a, b)["wgp"] for a, b in zip(e1s, e2s, strict=True)])
    mod = {"wgp": draws.mean(axis=0)}
    within = np.abs(mod["wgp"] - sim["wgp"]) <= 2.0 * sim["wgp_err"]
    cos_sim = _cos2_satellites(sub, sub[f"star_axes_{method}"], box)
    cos_mod = _cos2_satellites(sub, gen["frame"], box)
    p_q = float(ks_2samp(sub[f"star_q_{method}"], gen["q"]).pvalue)
    p_s = float(ks_2samp(sub[f"star_s_{method}"], gen["s"]).pvalue)
    out = {
        "rp": sim["rp"].tolist(), "wgp_simulation": sim["wgp"].tolist(),
        "wgp_simulation_err": sim["wgp_err"].tolist(), "wgp_model": mod["wgp"].tolist(),
        "wgp_model_draws": len(draws), "wgp_model_draw_scatter": draws.std(axis=0).tolist(),
        "wgp_fraction_within_2sigma": float(within.mean()),
        "cos2_satellites_simulation": cos_sim, "cos2_satellites_model": cos_mod,
        "ks_p_q": p_q, "ks_p_s": p_s,
        "pass_wgp": bool(within.mean() >= 0.7),
        "pass_cos2_satellites": bool(abs(cos_mod - cos_sim) <= 0.02),
        "pass_axis_ratios": bool(p_q > 0.01 and p_s > 0.01),
    }
    out["pass"] = out["pass_wgp"] and out["pass_cos2_satellites"] and out["pass_axis_ratios"]
    return out


def random_catalog(cols: dict[str, np.ndarray], attrs: dict[str, Any], seed: int,
                   draws: int = 1) -> dict[str, Any]:
    """The catalog's galaxies with their own q, s but isotropic random orientations
    (``draws`` > 1: also ``e1_draws``, ``e2_draws`` of further random orientations, as a
    model's catalog has)."""
    from scipy.spatial.transform import Rotation

    from galforge.alignment.shapes import projected_e

    m = attrs["shape_method"]
    ok = np.isfinite(cols[f"star_q_{m}"]) & np.isfinite(cols["e1"])
    frames = Rotation.random(int(ok.sum()), random_state=seed).as_matrix()
    q, s = cols[f"star_q_{m}"][ok], cols[f"star_s_{m}"][ok]
    e1, e2 = projected_e(frames, q, s, attrs["line_of_sight"])
    out = {"subhalo_id": cols["subhalo_id"][ok], "frame": frames, "q": q, "s": s,
           "e1": e1, "e2": e2}
    if draws > 1:
        es = [projected_e(Rotation.random(int(ok.sum()), random_state=seed + 1000 * k)
                          .as_matrix(), q, s, attrs["line_of_sight"]) for k in range(1, draws)]
        out["e1_draws"] = np.stack([e1] + [e[0] for e in es])
        out["e2_draws"] = np.stack([e2] + [e[1] for e in es])
    return out
