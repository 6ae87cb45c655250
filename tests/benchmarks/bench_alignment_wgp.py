"""Benchmark of w_g+ with jackknife errors on a TNG100-size catalog (the alignment study).

Run as a script (``python tests/benchmarks/bench_alignment_wgp.py [--n 30000]``) or under
pytest (``pytest tests/benchmarks/bench_alignment_wgp.py``; not collected by default).

Input: ``n`` galaxies (30,000 by default) in a periodic 75 h⁻¹Mpc box, half in Gaussian
clumps, major axes pointing at their clump's centre (a w_g+ signal), 8 log r_p bins
0.1-20 h⁻¹Mpc, the shape sample all galaxies. Compared on the same input:

* galforge's path, MeasureIA's ``MeasureIABox`` (periodic, ±Π_max, 27 jackknife boxes),
  at Π_max = L/2 = 37.5 h⁻¹Mpc, where every nearest-image pair counts;
* TreeCorr's NG correlation, flat periodic metric in (x, y) with the 27 boxes as
  jackknife patches (TreeCorr's ``Rperp`` metric has no periodic box: at Π_max = L/2
  the projected correlation is the same sum), w_g+ = −ξ_t × pairs / RR.

Prints both w_g+ (they must agree to 1e-6 relative), both jackknife errors and the time
ratio. The timings are one run each, on whatever the machine has free.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

BOX = 75.0


def catalog(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.spatial.transform import Rotation

    from galforge.alignment.shapes import projected_e

    rng = np.random.default_rng(seed)
    n_cl = n // 2
    centres = rng.random((n // 20, 3)) * BOX
    k = rng.integers(0, len(centres), n_cl)
    pos = np.concatenate([centres[k] + rng.normal(scale=0.7, size=(n_cl, 3)),
                          rng.random((n - n_cl, 3)) * BOX])
    pos = np.mod(pos, BOX)
    frames = Rotation.random(n, random_state=seed).as_matrix()
    d = centres[k] - pos[:n_cl]
    d -= BOX * np.rint(d / BOX)
    a = d / np.linalg.norm(d, axis=1, keepdims=True)
    b = np.cross(a, rng.normal(size=(n_cl, 3)))
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    frames[:n_cl] = np.stack([a, b, np.cross(a, b)], axis=2)
    e1, e2 = projected_e(frames, rng.uniform(0.5, 0.9, n), rng.uniform(0.3, 0.5, n), "z")
    return pos, e1, e2


def run(n: int = 30_000) -> dict[str, float]:
    import treecorr

    from galforge.alignment.correlations import jackknife_regions, projected_correlations

    pos, e1, e2 = catalog(n)
    edges = np.geomspace(0.1, 20.0, 9)
    t0 = time.perf_counter()
    w = projected_correlations(pos, pos, e1, e2, box=BOX, rp_edges=edges, pi_max=BOX / 2,
                               n_pi=30, jackknife=27, corr="g+")
    t_mia = time.perf_counter() - t0
    t0 = time.perf_counter()
    patch = jackknife_regions(pos, BOX, 27)
    dens = treecorr.Catalog(x=pos[:, 0], y=pos[:, 1], patch=patch)
    shp = treecorr.Catalog(x=pos[:, 0], y=pos[:, 1], g1=e1, g2=e2, patch=patch)
    ng = treecorr.NGCorrelation(min_sep=edges[0], max_sep=edges[-1], nbins=8, bin_slop=0,
                                angle_slop=0, xperiod=BOX, yperiod=BOX, var_method="jackknife")
    ng.process(dens, shp, metric="Periodic")
    rr = n * n / BOX**3 * math.pi * np.diff(edges**2)
    w_tc = -ng.xi * ng.weight / rr
    err_tc = np.sqrt(ng.varxi) * ng.weight / rr
    t_tc = time.perf_counter() - t0
    rel = float(np.max(np.abs(w_tc - w["wgp"]) / np.maximum(np.abs(w["wgp"]), 1e-12)))
    print(f"{n} galaxies, 75 h^-1 Mpc box, Pi_max = L/2, 27 jackknife boxes")
    print("r_p        w_g+ MeasureIA   w_g+ TreeCorr   err MeasureIA   err TreeCorr")
    for k in range(8):
        print(f"{w['rp'][k]:8.3f}  {w['wgp'][k]:14.6g}  {w_tc[k]:14.6g}  "
              f"{w['wgp_err'][k]:13.4g}  {err_tc[k]:13.4g}")
    print(f"max relative difference {rel:.2e}; MeasureIA {t_mia:.1f} s, TreeCorr {t_tc:.1f} s, "
          f"ratio {t_mia / t_tc:.2f}")
    return {"max_rel_diff": rel, "t_measureia": t_mia, "t_treecorr": t_tc}


def test_bench_alignment_wgp():
    r = run(30_000)
    assert r["max_rel_diff"] < 1e-6


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=30_000)
    run(p.parse_args().n)
