"""Benchmark of the rest-frame resampling (the spectra study's fast path) against spectres.

Run as a script (``python tests/benchmarks/bench_resample.py [--n 20000] [--big 320000]``)
or under pytest (``pytest tests/benchmarks/bench_resample.py``; not collected by
default). Real use has a different rest-frame input grid per spectrum (each its
own redshift), so spectres is called once per spectrum. On the SAME input —
SDSS-like spectra of 3840 observed pixels on the SDSS grid (``log10 λ = 3.5797 +
1e-4 i``), each with its own ``z`` in [0.01, 0.1), resampled with errors onto the
study's 4000 rest-frame pixels over 3400-8400 Å, fill NaN — it times, in one run
on one core (thread variables set to 1 before numpy is imported):

* spectres' Python variant (``spectres.spectres``), one call per spectrum;
* spectres' numba variant (``spectres.spectral_resampling_numba.spectres_numba``),
  one call per spectrum, after a warm-up call (compilation not timed);
* galforge (:func:`galforge.spectra.resample.resample_shifted_loglam`), all spectra in
  one call (it works in blocks internally);

prints spectra per second and the ratios, and checks that the outputs agree
(NaN pattern identical, finite values within 1e-6 relative). Then it times
``--big`` spectra (default 320,000) through the galforge path on 2 worker
processes (one core each), chunk by chunk, and says whether that meets 2 minutes.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
try:
    import galforge  # noqa: F401
except ImportError:  # pragma: no cover - run from a checkout without install
    sys.path.insert(0, str(REPO / "src"))

from galforge.spectra.resample import SDSS_DLOGLAM, resample_shifted_loglam  # noqa: E402

N_OLD = 3840
K0 = 35797  # log10 λ0 = 3.5797 (3800 Å)
NEW_WAVE = np.logspace(np.log10(3400.0), np.log10(8400.0), 4000)
LOGLAM = (K0 + np.arange(N_OLD)) * SDSS_DLOGLAM
RTOL = 1e-6


def make_input(n: int, seed: int = 2024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``z (n,)``, ``flux (n, 3840)``, ``err (n, 3840)``: continuum + lines + noise."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.01, 0.1, n)
    lam = 10.0**LOGLAM
    slope = rng.uniform(-1.5, 0.5, n)[:, None]
    cont = 10.0 * (lam[None, :] / 6000.0) ** slope
    line = 30.0 * np.exp(-0.5 * ((lam[None, :] / (1 + z[:, None]) - 6564.6) / 2.5) ** 2)
    err = rng.uniform(0.5, 1.5, (n, 1)) * (1.0 + 0.3 * rng.random((n, N_OLD)))
    flux = cont + line + err * rng.standard_normal((n, N_OLD))
    return z, flux, err


def agree(got: np.ndarray, ref: np.ndarray) -> tuple[bool, float]:
    same_nan = bool(np.array_equal(np.isnan(got), np.isnan(ref)))
    fin = np.isfinite(ref)
    rel = np.abs(got[fin] - ref[fin]) / np.maximum(np.abs(ref[fin]), 1e-300)
    worst = float(rel.max()) if rel.size else 0.0
    return same_nan and worst <= RTOL, worst


def time_spectres(z, flux, err, numba: bool) -> tuple[float, np.ndarray, np.ndarray]:
    if numba:
        from spectres.spectral_resampling_numba import spectres_numba as fn

        kw = {"fill": np.nan, "verbose": False}
        fn(NEW_WAVE, 10.0**LOGLAM / (1 + z[0]), flux[0], err[0], **kw)  # compile
    else:
        from spectres import spectres as fn

        kw = {"fill": None, "verbose": False}
    out_f = np.empty((z.size, NEW_WAVE.size))
    out_e = np.empty_like(out_f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for i in range(z.size):
            out_f[i], out_e[i] = fn(NEW_WAVE, 10.0**LOGLAM / (1 + z[i]), flux[i], err[i], **kw)
        dt = time.perf_counter() - t0
    return dt, out_f, out_e


def time_galforge(z, flux, err, repeats: int = 3) -> tuple[float, np.ndarray, np.ndarray]:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f, e, _ = resample_shifted_loglam(NEW_WAVE, LOGLAM, z, flux, err)
        best = min(best, time.perf_counter() - t0)
    return best, f, e


def _worker(args: tuple[int, int, int, int]) -> tuple[float, int]:
    """Resample ``n`` spectra in chunks (input block made once, new z per chunk)."""
    wid, n, chunk, seed = args
    z, flux, err = make_input(chunk, seed=seed + wid)
    rng = np.random.default_rng(seed + 100 + wid)
    done = 0
    t0 = time.perf_counter()
    while done < n:
        k = min(chunk, n - done)
        zc = rng.uniform(0.01, 0.1, k)
        f, e, _ = resample_shifted_loglam(NEW_WAVE, LOGLAM, zc, flux[:k], err[:k])
        done += k
    return time.perf_counter() - t0, done


def run_big(n_total: int, workers: int = 2, chunk: int = 4000) -> dict:
    per = [n_total // workers + (i < n_total % workers) for i in range(workers)]
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    with ctx.Pool(workers) as pool:
        res = pool.map(_worker, [(i, per[i], chunk, 7) for i in range(workers)])
    wall = time.perf_counter() - t0
    return {"n": sum(d for _, d in res), "wall_s": wall,
            "worker_s": [t for t, _ in res], "rate": n_total / wall}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="spectra for the galforge timing")
    p.add_argument("--n-numba", type=int, default=2000)
    p.add_argument("--n-python", type=int, default=30)
    p.add_argument("--big", type=int, default=320_000, help="0 skips the 2-core run")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    z, flux, err = make_input(args.n)
    print(f"input: {args.n:,} spectra x {N_OLD} px -> {NEW_WAVE.size} px with errors, each its "
          f"own z in [0.01, 0.1) (built in {time.perf_counter() - t0:.1f} s); one core")
    n_py, n_nb = min(args.n_python, args.n), min(args.n_numba, args.n)

    t_py, py_f, py_e = time_spectres(z[:n_py], flux[:n_py], err[:n_py], numba=False)
    t_nb, nb_f, nb_e = time_spectres(z[:n_nb], flux[:n_nb], err[:n_nb], numba=True)
    t_gf, gf_f, gf_e = time_galforge(z, flux, err)
    r_py, r_nb, r_gf = n_py / t_py, n_nb / t_nb, args.n / t_gf
    ok_py = [agree(gf_f[:n_py], py_f), agree(gf_e[:n_py], py_e)]
    ok_nb = [agree(gf_f[:n_nb], nb_f), agree(gf_e[:n_nb], nb_e)]
    print(f"spectres (Python): {r_py:10,.1f} spectra/s  ({n_py} spectra, {t_py:.2f} s)")
    print(f"spectres (numba) : {r_nb:10,.1f} spectra/s  ({n_nb} spectra, {t_nb:.2f} s)")
    print(f"galforge         : {r_gf:10,.1f} spectra/s  ({args.n:,} spectra, {t_gf:.2f} s, "
          f"best of 3)")
    print(f"ratio galforge / spectres numba : {r_gf / r_nb:6.1f}x  (goal >= 3x)")
    print(f"ratio galforge / spectres Python: {r_gf / r_py:6.0f}x")
    print(f"outputs agree with spectres Python (flux, err): "
          f"{ok_py[0][0]}, {ok_py[1][0]} (worst rel. diff {max(ok_py[0][1], ok_py[1][1]):.2g})")
    print(f"outputs agree with spectres numba  (flux, err): "
          f"{ok_nb[0][0]}, {ok_nb[1][0]} (worst rel. diff {max(ok_nb[0][1], ok_nb[1][1]):.2g})")
    res = {"rate_python": r_py, "rate_numba": r_nb, "rate_galforge": r_gf,
           "ratio_numba": r_gf / r_nb, "ratio_python": r_gf / r_py,
           "agree": all(a for a, _ in ok_py + ok_nb)}
    if args.big:
        big = run_big(args.big, args.workers)
        verdict = "meets" if big["wall_s"] <= 120 else "MISSES"
        print(f"{big['n']:,} spectra on {args.workers} worker processes (1 core each, chunks of "
              f"4,000): {big['wall_s']:.1f} s wall incl. process start "
              f"(workers {', '.join(f'{t:.1f}' for t in big['worker_s'])} s), "
              f"{big['rate']:,.0f} spectra/s; {verdict} the 2-minute goal")
        res["big"] = big
    return res


def test_bench_resample():
    """Under pytest: smaller sizes; outputs agree and galforge beats spectres' numba variant."""
    pytest = __import__("pytest")
    pytest.importorskip("spectres")
    pytest.importorskip("numba")
    r = main(["--n", "4000", "--n-numba", "1000", "--n-python", "10", "--big", "40000"])
    assert r["agree"]
    assert r["ratio_numba"] > 1.0


if __name__ == "__main__":
    main()
