"""Classic environment parameters: the fast path equals an independent brute force."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galforge.cosmology import C_KMS, Cosmology
from galforge.environment.envparams import EnvParamsSettings, compute_envparams
from galforge.environment.footprint import Footprint, select_targets
from galforge.environment.maps import MapSettings, brute_force_map, compute_maps
from galforge.io import InputError
from galforge.settings import SettingsError

COSMO = Cosmology(0.3)
REPO = Path(__file__).resolve().parents[2]
DR7 = "sdss/vollim_dr7_cbp_102709.fits"


def shared_data_path(relpath: str) -> Path:
    """A real data sample under ``$GALFORGE_SHARED_DATA`` or ``../shared/data``.

    Skips with the reason when absent; fails instead when ``CI=true``.
    """
    env = os.environ.get("GALFORGE_SHARED_DATA")
    bases = ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]
    for base in bases:
        if (base / relpath).exists():
            return base / relpath
    msg = f"shared data {relpath!r} not found under {', '.join(str(b) for b in bases)}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + " (CI=true: real-data tests must not skip)")
    pytest.skip(msg)


def clustered(seed: int = 3, n_field: int = 2500, n_clumps: int = 100):
    """Field galaxies plus Gaussian clumps in a 30° × 25° patch, 0.01 < z < 0.08."""
    rng = np.random.default_rng(seed)
    chi_lo, chi_hi = COSMO.comoving_distance(np.array([0.01, 0.08]))

    def uniform(n):
        a = np.radians(rng.uniform(150, 180, n))
        sd = rng.uniform(0, np.sin(np.radians(25)), n)
        chi = rng.uniform(chi_lo**3, chi_hi**3, n) ** (1 / 3)
        cd = np.sqrt(1 - sd**2)
        return np.column_stack([chi * cd * np.cos(a), chi * cd * np.sin(a), chi * sd])

    cen = uniform(n_clumps)
    k = rng.integers(5, 120, n_clumps)
    sig = rng.uniform(0.3, 2.0, n_clumps)
    pos = np.concatenate([uniform(n_field)] + [c + s * rng.standard_normal((m, 3))
                                               for c, s, m in zip(cen, sig, k, strict=True)])
    chi = np.linalg.norm(pos, axis=1)
    ra = np.degrees(np.arctan2(pos[:, 1], pos[:, 0])) % 360
    dec = np.degrees(np.arcsin(pos[:, 2] / chi))
    z = COSMO.z_at_distance(chi)
    keep = (z > 0.01) & (z < 0.08)
    return ra[keep], dec[keep], z[keep]


def brute_envparams(i, ra, dec, z, ns=(5,), radii=(1.0, 2.0, 5.0), r_max=10.0, dv=1000.0):
    """Reference: angular separations by the haversine formula, r_p = D_t tan θ."""
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = a[i], d[i]
    hav = np.sin((d - d0) / 2) ** 2 + np.cos(d) * np.cos(d0) * np.sin((a - a0) / 2) ** 2
    theta = 2 * np.arcsin(np.sqrt(np.clip(hav, 0, 1)))
    dist = float(COSMO.comoving_distance(z[i]))
    vel = C_KMS * np.abs(z - z[i]) / (1 + z[i])
    ok = (vel <= dv) & (theta < np.pi / 2)
    ok[i] = False
    rp = np.sort(dist * np.tan(theta[ok]))
    rp = rp[rp <= r_max]
    out = {"d_nn": rp[0] if rp.size else np.nan}
    for n in ns:
        dn = rp[n - 1] if rp.size >= n else np.nan
        out[f"d_{n}"] = dn
        out[f"sigma_{n}"] = n / (math.pi * dn**2)
    for r in radii:
        out[f"n_r{r:g}"] = int((rp <= r).sum())
    return out


def compare(df, ra, dec, z, rows, **kw):
    ns = kw.get("ns", (5,))
    near_edge = 0
    for k, i in enumerate(rows):
        ref = brute_envparams(i, ra, dec, z, **kw)
        row = df.iloc[k]
        assert row["id"] == i
        for col, val in ref.items():
            if col.startswith("n_r"):
                assert row[col] == val, (i, col, row[col], val)
            elif np.isnan(val):
                assert np.isnan(row[col]), (i, col)
            else:
                assert row[col] == pytest.approx(val, rel=1e-9), (i, col)
        assert row["n_map"] == brute_force_map(i, ra, dec, z, cosmology=COSMO).sum()
        near_edge += any(np.isnan(ref[f"d_{n}"]) for n in ns)
    for n in ns:
        with np.errstate(divide="ignore"):
            assert np.allclose(df[f"log_sigma_{n}"], np.log10(df[f"sigma_{n}"]), equal_nan=True)
    return near_edge


def test_envparams_equal_brute_force_clustered():
    ra, dec, z = clustered()
    rows = np.sort(np.random.default_rng(1).choice(ra.size, 250, replace=False))
    df = compute_envparams(ra, dec, z, targets=rows, cosmology=COSMO, progress=False)
    assert list(df.columns) == ["id", "d_nn", "d_5", "sigma_5", "log_sigma_5", "n_r1", "n_r2",
                                "n_r5", "n_map"]
    assert len(df) == 250
    n_nan = compare(df, ra, dec, z, rows)
    assert n_nan < 200  # most targets have 5 neighbours within r_max
    assert (df["n_r5"] > 0).mean() > 0.5


@pytest.mark.archive
def test_envparams_equal_brute_force_dr7():
    from astropy.table import Table

    t = Table.read(shared_data_path(DR7))
    ra, dec, z = (np.asarray(t[c], dtype=np.float64) for c in ("ra", "dec", "z"))
    sel = (z >= 0.02) & (z <= 0.08)
    ra, dec, z = ra[sel], dec[sel], z[sel]
    ok, _ = select_targets(ra, dec, z, Footprint.from_catalog(ra, dec), MapSettings(), COSMO,
                           zmin=0.02, zmax=0.08)
    rows = np.sort(np.random.default_rng(2).choice(np.flatnonzero(ok), 220, replace=False))
    settings = EnvParamsSettings(n_neighbours=(1, 3, 5, 10), radii_mpc=(0.5, 1, 2, 5), r_max_mpc=8)
    df = compute_envparams(ra, dec, z, targets=rows, settings=settings, cosmology=COSMO,
                           progress=False)
    assert {"n_r0.5", "n_r1", "d_10", "sigma_3", "log_sigma_10"} <= set(df.columns)
    compare(df, ra, dec, z, rows, ns=(1, 3, 5, 10), radii=(0.5, 1.0, 2.0, 5.0), r_max=8.0)
    assert np.array_equal(df["d_nn"].to_numpy(), df["d_1"].to_numpy(), equal_nan=True)


def test_n_map_equals_map_totals_and_nan_semantics():
    ra, dec, z = clustered(seed=5, n_field=1500, n_clumps=40)
    # an isolated target far from everything, and one with 2 close neighbours
    ra = np.concatenate([ra, [100.0, 120.0, 120.01, 120.02]])
    dec = np.concatenate([dec, [60.0, 60.0, 60.0, 60.01]])
    z = np.concatenate([z, [0.05, 0.05, 0.0501, 0.0499]])
    n = ra.size
    rows = np.concatenate([np.arange(0, n - 4, 7), [n - 4, n - 3]])
    df = compute_envparams(ra, dec, z, targets=rows, cosmology=COSMO, progress=False)
    maps = [m for _, m in compute_maps(ra, dec, z, targets=rows, cosmology=COSMO, progress=False)]
    assert np.array_equal(df["n_map"].to_numpy(), np.concatenate(maps).sum(axis=(1, 2)))
    iso, pair = df.iloc[-2], df.iloc[-1]
    assert np.isnan(iso["d_nn"]) and np.isnan(iso["sigma_5"]) and iso["n_r5"] == 0
    assert iso["n_map"] == 0
    assert 0 < pair["d_nn"] < 1 and np.isnan(pair["d_5"]) and np.isnan(pair["log_sigma_5"])
    assert pair["n_r1"] == 2
    # sigma_N is N / (pi d_N^2)
    good = df["d_5"].notna()
    assert np.allclose(df.loc[good, "sigma_5"], 5 / (np.pi * df.loc[good, "d_5"] ** 2))
    assert pd.api.types.is_integer_dtype(df["n_r1"]) and pd.api.types.is_integer_dtype(df["n_map"])


def test_settings_and_errors():
    s = EnvParamsSettings()
    assert s.n_neighbours == (5,) and s.radii_mpc == (1.0, 2.0, 5.0) and s.r_max_mpc == 10.0
    assert EnvParamsSettings.from_dict({"n_neighbours": [3, 5], "radii_mpc": [1]}).n_neighbours == (3, 5)
    with pytest.raises(SettingsError, match="rmax: unknown key"):
        EnvParamsSettings.from_dict({"rmax": 5})
    with pytest.raises(SettingsError, match="radii_mpc"):
        EnvParamsSettings(radii_mpc=(1.0, 12.0))
    with pytest.raises(SettingsError, match="n_neighbours"):
        EnvParamsSettings(n_neighbours=(0,))
    with pytest.raises(SettingsError, match="r_max_mpc"):
        EnvParamsSettings(r_max_mpc=-1.0)
    with pytest.raises(InputError, match="empty"):
        compute_envparams([], [], [], progress=False)
    with pytest.raises(InputError, match="no targets"):
        compute_envparams([1.0], [0.0], [0.05], targets=[False], progress=False)
    with pytest.raises(InputError, match="row 1"):
        compute_envparams([1.0, np.nan], [0.0, 0.0], [0.05, 0.05], progress=False)
