"""Benchmark of reading SDSS spectrum files: the direct binary-table path against astropy's.

Run as a script (``python tests/benchmarks/bench_read_spectra.py [--repeats 50]``) or under
pytest (``pytest tests/benchmarks/bench_read_spectra.py``; not collected by default). On the
SAME files — the real samples of ``shared/data/spectra`` (DR8+ lite and full, DR7 spSpec)
and a mock DR8+ lite file written here — it times :func:`galforge.spectra.readers.read_spectrum`
with the direct reads of :mod:`galforge.spectra.bintable` and with them switched off (every
table through astropy's ``hdu.data`` / ``hdu.columns``), prints milliseconds per file and
the ratio, and checks that both give identical spectra.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (conftest helpers)

from conftest import shared_data_dir  # noqa: E402
from galforge.spectra import readers  # noqa: E402
from galforge.spectra.readers import read_spectrum  # noqa: E402

REAL = {
    "real DR8+ lite": "spectra/spec-0266-51602-0001.fits",
    "real DR8+ full": "spectra/spec-0266-51630-0004.fits",
    "real DR7 spSpec": "spectra/spSpec-51630-0266-637.fit",
}


def _mock_file(folder: Path) -> Path:
    from galforge.mock.spectra import MockSpectraSettings, write_spectra_mock

    write_spectra_mock(MockSpectraSettings.from_dict({"n_spectra": 20}), folder, seed=0,
                       progress=False)
    return sorted((folder / "spectra").rglob("spec-*.fits*"))[0]


def _per_file_ms(path: Path, repeats: int) -> float:
    read_spectrum(path)
    t0 = time.perf_counter()
    for _ in range(repeats):
        read_spectrum(path)
    return (time.perf_counter() - t0) / repeats * 1e3


def _same(a: readers.SpectrumData, b: readers.SpectrumData) -> bool:
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if x.dtype != y.dtype or not np.array_equal(x, y):
                return False
        elif not (x == y or (x != x and y != y)):
            return False
    return True


def run(repeats: int = 50) -> dict[str, float]:
    base = shared_data_dir()
    files: dict[str, Path] = {}
    if base is not None:
        files |= {k: base / v for k, v in REAL.items() if (base / v).is_file()}
    else:
        print("shared/data not found: timing the mock file only")
    tmp = tempfile.TemporaryDirectory()
    files["mock DR8+ lite"] = _mock_file(Path(tmp.name))
    ratios = {}
    direct = readers.read_simple_table
    try:
        for name, path in files.items():
            fast_spec = read_spectrum(path)
            fast = _per_file_ms(path, repeats)
            readers.read_simple_table = lambda hdul, index: None
            slow_spec = read_spectrum(path)
            slow = _per_file_ms(path, repeats)
            readers.read_simple_table = direct
            if not _same(fast_spec, slow_spec):
                raise AssertionError(f"{name}: the two paths read different spectra")
            ratios[name] = slow / fast
            print(f"{name}: astropy tables {slow:.1f} ms/file, direct {fast:.1f} ms/file, "
                  f"ratio {ratios[name]:.1f}x (identical spectra)")
    finally:
        readers.read_simple_table = direct
        tmp.cleanup()
    return ratios


def test_bench_read_spectra() -> None:
    ratios = run(repeats=10)
    assert ratios and all(r > 0 for r in ratios.values())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    run(ap.parse_args().repeats)
