"""Benchmark of the TNG bulk path: star particles of 1,000 galaxies of the demo mock through
:meth:`galforge.archives.tng_local.LocalTNG.iter_galaxies` against one
``illustris_python.snapshot.loadSubhalo`` call per galaxy, on the same files.

Run as a script (``python tests/benchmarks/bench_tng_bulk.py [--galaxies 1000] [--mock DIR]``)
or under pytest (``pytest tests/benchmarks/bench_tng_bulk.py``; not collected by default).
It writes the demo mock TNG universe (snapshot 99; or uses ``--mock``, a folder written by
``galforge mock-tng``), reads every file once to warm the page cache, then times one run of
each: the bulk path (each snapshot chunk opened once, the offsets file read once; galaxies
converted to physical units with their in-situ flags joined) and the peer (raw arrays,
no conversion). Before printing the ratio it checks that both read the same particles.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIELDS = ["Coordinates", "Velocities", "Masses", "GFM_StellarFormationTime", "GFM_Metallicity",
          "GFM_InitialMass", "ParticleIDs", "Potential"]


def _warm(root: Path) -> int:
    return sum(len(p.read_bytes()) for p in root.rglob("*.hdf5"))


def run(n_galaxies: int = 1000, mock: Path | None = None, seed: int = 42) -> float:
    import illustris_python as il

    from galforge.archives.tng_local import LocalTNG
    from galforge.mock.tng import write_mock_tng

    tmp = None
    if mock is None:
        tmp = tempfile.TemporaryDirectory()
        t0 = time.perf_counter()
        root = write_mock_tng(Path(tmp.name) / "TNG100-1", "demo", seed=seed).root
        print(f"demo mock written in {time.perf_counter() - t0:.1f} s")
    else:
        root = Path(mock)
    try:
        base = root / "output"
        tng = LocalTNG(base, 99)
        rng = np.random.default_rng(seed)
        ids = np.sort(rng.choice(tng.n_subhalos, size=min(n_galaxies, tng.n_subhalos),
                                 replace=False))
        print(f"{len(ids)} of {tng.n_subhalos} galaxies; {_warm(root) / 2**20:.0f} MiB of files "
              "read once to warm the page cache")

        t0 = time.perf_counter()
        bulk = list(tng.iter_galaxies(ids, {"stars": FIELDS}))
        t_bulk = time.perf_counter() - t0

        t0 = time.perf_counter()
        peer = [il.snapshot.loadSubhalo(str(base), 99, int(i), "stars", fields=FIELDS)
                for i in ids]
        t_peer = time.perf_counter() - t0

        n = 0
        for gal, raw in zip(bulk, peer, strict=True):
            star = raw["GFM_StellarFormationTime"] > 0
            if not np.array_equal(gal.stars["ParticleIDs"], raw["ParticleIDs"][star]) or \
                    not np.allclose(gal.stars["Masses"], raw["Masses"][star].astype(float) * 1e10 / tng.h,
                                    rtol=1e-12, atol=0):
                raise AssertionError(f"subhalo {gal.subhalo_id}: the two paths read different "
                                     "particles")
            n += int(raw["count"])
        ratio = t_peer / t_bulk
        print(f"{n:,} star particles: bulk path {t_bulk:.2f} s (physical units, in-situ join), "
              f"loadSubhalo per galaxy {t_peer:.2f} s (raw): ratio {ratio:.1f}x "
              "(identical particles)")
        return ratio
    finally:
        if tmp is not None:
            tmp.cleanup()


def test_bench_tng_bulk() -> None:
    assert run(n_galaxies=300) > 1.0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--galaxies", type=int, default=1000)
    ap.add_argument("--mock", type=Path, default=None,
                    help="a mock written by `galforge mock-tng` (default: write the demo mock)")
    args = ap.parse_args()
    run(args.galaxies, args.mock)
