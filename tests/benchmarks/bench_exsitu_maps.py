"""Benchmark of the exsitu map maker: all six maps of every projection of the demo galaxies
(:func:`galforge.exsitu.maps.raw_maps`, one ``np.bincount`` per weighted sum over every view
of a galaxy at once) against ``scipy.stats.binned_statistic_2d`` called one map and one
statistic at a time per projection (the authors' approach), on the same particles.

Run as a script (``python tests/benchmarks/bench_exsitu_maps.py [--sample S --base B]``) or
under pytest (``pytest tests/benchmarks/bench_exsitu_maps.py``; not collected by default).
Without ``--sample``/``--base`` it writes the exsitu demo mock and its sample (both
snapshots). Particles are read and projected once, outside both timings; then one run of
each; both maps agree (checked) before the ratio and the projections per second print.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _scipy_maps(x, y, vlos, p, edges, z_sun):
    """The six maps of one projection, one binned_statistic_2d call per map and statistic."""
    from scipy.stats import binned_statistic_2d

    def stat(values, statistic):
        return binned_statistic_2d(x, y, values, statistic, bins=[edges, edges]).statistic

    mass = stat(p.mass, "sum")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_v = stat(p.mass * vlos, "sum") / mass
        out = [np.log10(mass / (edges[1] - edges[0]) ** 2), mean_v,
               np.sqrt(np.maximum(stat(p.mass * vlos**2, "sum") / mass - mean_v**2, 0)),
               np.log10(stat(p.mass * p.metallicity, "sum") / mass / z_sun),
               stat(p.mass * p.age, "sum") / mass, stat(p.mass * p.ex_situ, "sum") / mass]
    return np.stack(out)


def run(sample_path: Path | None = None, base: Path | None = None, seed: int = 42) -> float:
    import pandas as pd

    from galforge.archives.tng_local import LocalTNG
    from galforge.exsitu import maps as mp
    from galforge.exsitu import steps
    from galforge.exsitu.presets import PRESETS
    from galforge.exsitu.settings import ExsituSettings
    from galforge.exsitu.views import polyhedron_vertices

    s = ExsituSettings.from_dict(PRESETS["demo"])
    tmp = None
    if sample_path is None:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name) / "TNG100-1"
        steps.mock(root, s.mock, seed=seed, snapshots=s.sample.snapshots)
        base = root / "output"
        sample_path = Path(tmp.name) / "sample.parquet"
        steps.sample(base, sample_path, Path(tmp.name) / "s.json", settings=s.sample,
                     split=s.split, seed=seed, truth=root / "truth.hdf5")
    try:
        t = pd.read_parquet(sample_path)
        work = []
        for snap, rows in t.groupby("snapshot"):
            rows = rows.sort_values("subhalo_id")
            for r, gal in zip(rows.itertuples(), LocalTNG(base, int(snap)).iter_galaxies(
                    rows["subhalo_id"]), strict=True):
                p = mp.particles_of(gal, s.maps.systemic_fraction)
                work.append((p, polyhedron_vertices(int(r.n_views)),
                             s.maps.extent_rhalf * r.r_half_kpc))
        n_proj = sum(len(v) for _, v, _ in work)
        npix, z_sun = s.maps.npix, s.maps.z_sun

        t0 = time.perf_counter()
        ours = [mp.raw_maps(p, v, h, npix, z_sun)[0] for p, v, h in work]
        t_ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        theirs = []
        for p, v, h in work:
            x, y, vlos = mp.project(p, v)
            edges = np.linspace(-h, h, npix + 1)
            theirs.append(np.stack([_scipy_maps(x[k], y[k], vlos[k], p, edges, z_sun)
                                    for k in range(len(v))]))
        t_peer = time.perf_counter() - t0

        for a, b in zip(ours, theirs, strict=True):
            b = np.where(np.isnan(a), np.nan, b)
            # sigma: ours sums deviations from the pixel mean (no cancellation); 1e-3 km/s
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-3, equal_nan=True)
        ratio = t_peer / t_ours
        print(f"{len(work)} galaxies, {n_proj} projections of {npix}x{npix}: galforge "
              f"{t_ours:.2f} s ({n_proj / t_ours:.0f} projections/s), binned_statistic_2d one "
              f"map and statistic at a time {t_peer:.2f} s ({n_proj / t_peer:.0f}/s): ratio "
              f"{ratio:.1f}x (same maps)")
        return ratio
    finally:
        if tmp is not None:
            tmp.cleanup()


def test_bench_exsitu_maps() -> None:
    assert run() > 1.0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=Path, default=None, help="an exsitu sample.parquet")
    ap.add_argument("--base", type=Path, default=None, help="the TNG copy's output/ folder")
    args = ap.parse_args()
    run(args.sample, args.base)
