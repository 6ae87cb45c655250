"""The mock TNG universe: an IllustrisTNG simulation copy with planted truth.

:func:`write_mock_tng` writes, under a folder ``<sim>``, exactly the files a local TNG
copy has (layout: :mod:`galforge.archives.tng_layout`): group-catalog chunks, snapshot
chunks, the offsets file, the StellarAssembly files and a SubLink tree, for any TNG
snapshots asked for (99, z = 0, by default), plus ``<sim>/truth.hdf5`` with what was
planted. ``illustris_python`` reads it (base path ``<sim>/output``), and so does
:mod:`galforge.archives.tng_local`. Same settings and seed: the same bytes.

What is planted (z = 0; TNG's cosmology h = 0.6774, Ωm = 0.3089, Ωb = 0.0486,
σ8 = 0.8159, n_s = 0.9667):

* **Haloes**: M200c from the Sheth & Tormen (1999) mass function (Eisenstein & Hu linear
  spectrum; M200c = 0.8 × the Sheth-Tormen mass), above ``log_mhalo_min``, positioned by
  sampling a lognormal density field (``galforge.mock.lognormal``, cells of ``cell_size``)
  with probability ∝ 1 + δ; bulk velocities from linear theory (f = Ωm^0.55) plus
  50 km/s; NFW profiles, c200 of Duffy et al. (2008) with 0.1 dex scatter; triaxial with
  q_h ~ U(0.55, 0.9), s_h/q_h ~ U(0.6, 0.9); major axes Dimroth-Watson distributed
  (density ∝ exp(κ cos²θ)) with ``kappa_halo`` about the stretching axis of the linear
  tidal field (smoothed with ``tidal_smoothing``).
* **Galaxies**: one central per halo at its centre and satellites with infall mass
  ratios μ from dN/dlnμ = A μ^-α exp(-β μ³) (``sat_*``), NFW-distributed (c/2) within
  R200c, keeping ``sat_dm_retained`` of their DM. Stellar masses from the stellar-to-halo
  relation M*/M = 2N[(M/M1)^-β + (M/M1)^γ]^-1 (Moster et al. 2013 form; ``shmr_*``, scatter
  ``shmr_scatter`` dex; satellites from their infall mass), satellites kept above
  ``log_mstar_min``, masses capped at ``log_mstar_max``. Sizes: log10 R_in[kpc] =
  ``size_log_r0`` + ``size_slope`` (log M* − 10) ± ``size_scatter``; R_ex =
  ``exsitu_size_ratio`` R_in.
* **Stars of each galaxy**: an **in-situ** disk (exponential surface density of
  half-mass radius R_in, rotating about the minor axis at V_c R/(R + R_d/2), V_c = 1.2
  V200, dispersion ``disk_dispersion`` V_c, formation times t = t(z=10) + (t0 − t(z=10))
  Beta(2.5, 1.5), log Z/Z☉ = 0.1 + 0.25 (log M* − 10) ± 0.15) and an **ex-situ** spheroid
  (Hernquist of half-mass radius R_ex, dispersion ``exsitu_dispersion`` V_c, no rotation,
  formed before its progenitor merged: t ~ Beta(2, 2.5) between t(z=10) and the merger,
  log Z/Z☉ = −0.5 + 0.25 (log M*_prog − 10) ± 0.25), both flattened to the galaxy's axis
  ratios. The ex-situ fraction: logit f_ex ~ N(``fex_logit_a`` + ``fex_logit_b``
  (log M* − 10), ``fex_logit_scatter``); the ex-situ stars come from 1 + min(3,
  Poisson(2 f_ex)) progenitors merging at snapshots ``merger_snap_min`` .. the earliest
  snapshot written (mass ratios 10^U(−1.5, 0)); ``formed_outside_fraction`` of them formed
  outside any galaxy. Each star's InSitu flag is planted, so any projection's ex-situ map
  is known exactly. Star particles per galaxy: ``stars_at_1e10`` (M*/1e10)^``stars_slope``
  in [``stars_min``, ``stars_max``], all of one mass per galaxy, a multiple of 2^-16 in
  code units, so StellarMassExSitu / StellarMassTotal equals the planted (realised)
  fraction exactly and the StellarAssembly invariants hold exactly. ``wind_fraction``
  wind particles (GFM_StellarFormationTime ≤ 0) per star.
* **Shapes and planted alignment**: q ~ N(``q_mean``, ``q_sigma``), s/q ~
  N(``s_over_q_mean``, ``s_over_q_sigma``), clipped to [0.2, 0.98]; centrals' major axes
  Dimroth-Watson about their halo's major axis with κ = ``kappa_cen_0`` +
  ``kappa_cen_slope`` (log M* − 10), satellites' about the direction to their central with
  κ = ``kappa_sat_0`` + ``kappa_sat_slope`` (log M* − 10) (κ clipped to [0, 50]); the other
  axes turned uniformly about the major one.
* **Truth** (``truth.hdf5``): every galaxy's SubfindID at each written snapshot, halo,
  central flag, position, masses, planted and realised ex-situ fraction, sizes, q, s,
  axes, κ and reference axis; every halo; and w_g+(r_p) of the shape sample
  (log M* ≥ ``wgp_shape_log_mstar``) against every galaxy, along z
  (:mod:`galforge.mock.tng.alignment`): the mean of ``wgp_realisations`` Monte-Carlo
  realisations of the orientations, its standard error, the scatter of one realisation,
  and the value of the orientations written.

Sizes (:data:`~galforge.mock.tng.settings.SIZES`, seed 42): ``tiny`` a 15 h⁻¹Mpc box,
175 galaxies in 93 haloes (55 above 1e10 M☉, 82 satellites; ~9,900 star and ~8,500 DM
particles; written in about 2 s with two snapshots); ``demo`` a 40 h⁻¹Mpc box, 4,724
galaxies (3,014 above 1e9 M☉, 885 above 1e10, 50 above 1e11; 0.33 M star and 0.38 M DM
particles; ~6 s per snapshot); ``paper`` TNG100's 75 h⁻¹Mpc box, 32,646 galaxies (20,994
above 1e9 M☉, 6,425 above 1e10, 480 above 1e11; 4.5 M star and 5.3 M DM particles;
written only when asked). The mean ex-situ fraction is 0.22 above 1e10 M☉ and 0.43
above 1e11 M☉.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from galforge.io import InputError
from galforge.mock.tng.settings import MockTNGSettings, check_snapshots, mock_tng_settings

__all__ = ["MockTNG", "write_mock_tng"]


@dataclass(frozen=True)
class MockTNG:
    """Where a written mock lies and what it holds."""

    root: Path  # <sim>
    snapshots: tuple[int, ...]
    n_galaxies: int
    n_halos: int

    @property
    def base_path(self) -> Path:
        """``<sim>/output``: illustris_python's basePath and ``tng.base_path``."""
        return self.root / "output"

    @property
    def truth_path(self) -> Path:
        return self.root / "truth.hdf5"


def write_mock_tng(out: str | os.PathLike[str], settings: MockTNGSettings | str = "tiny", *,
                   seed: int = 42, snapshots: Sequence[int] = (99,)) -> MockTNG:
    """Write the mock TNG universe into the folder ``out`` (created; must not exist or be empty).

    Parameters
    ----------
    out : path
        The simulation folder ``<sim>`` (``<sim>/output`` is the base path).
    settings : MockTNGSettings or str
        Settings, or a size: ``"tiny"``, ``"demo"``, ``"paper"``.
    seed : int
        Master seed; the same settings and seed give the same bytes.
    snapshots : sequence of int
        TNG snapshot numbers to write (e.g. ``(91, 99)``); all mergers happen by the
        earliest, which must not precede ``merger_snap_min``.

    Returns
    -------
    MockTNG

    Raises
    ------
    InputError
        When ``out`` exists and is not empty, or a snapshot precedes ``merger_snap_min``.
    """
    from galforge.mock.tng.alignment import expected_wgp, pair_sums
    from galforge.mock.tng.model import draw_universe
    from galforge.mock.tng.particles import draw_particles
    from galforge.mock.tng.snapshot import build_snapshot, formation_subfind_ids
    from galforge.mock.tng.tree import build_tree
    from galforge.mock.tng.writers import (
        write_groupcat,
        write_offsets,
        write_snapshot,
        write_stellar_assembly,
        write_sublink,
    )

    s = mock_tng_settings(settings) if isinstance(settings, str) else settings
    snaps = check_snapshots(snapshots)
    if snaps[0] < s.merger_snap_min:
        raise InputError(f"snapshot {snaps[0]} precedes merger_snap_min = {s.merger_snap_min}: "
                         "lower merger_snap_min to write it")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; remove it or choose another")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        u = draw_universe(s, seed)
        stars, progs, dm = draw_particles(u, s, seed, last_merger_snap=min(snaps[0], 98))
        data = {snap: build_snapshot(u, stars, progs, dm, snap, seed) for snap in snaps}
        sub_gal_by_snap = {k: v.sub_gal for k, v in data.items()}
        for d in data.values():
            d.assembly_stars["SubfindIDAtFormation"] = formation_subfind_ids(
                stars, progs, d.star_index, u.n_galaxies, sub_gal_by_snap)
        tree = build_tree(u, stars, progs, data, s)
        base = tmp / "output"
        for d in data.values():
            fg, fs = write_groupcat(base, d, u.box, s.groupcat_chunks)
            fsnap = write_snapshot(base, d, u, s.snapshot_chunks)
            write_offsets(base, d, fg, fs, fsnap, tree)
            write_stellar_assembly(base, d)
        write_sublink(base, tree)
        # w_g+ of the planted model, along z, in h^-1 Mpc
        mstar = u.gal_mstar
        dens = np.flatnonzero(mstar >= 10.0**s.log_mstar_min)
        shape = np.flatnonzero(mstar >= 10.0**s.wgp_shape_log_mstar)
        edges = np.geomspace(s.wgp_rp_min, s.wgp_rp_max, s.wgp_bins + 1)
        pairs = pair_sums(u.gal_pos[shape] / 1000.0, u.gal_pos[dens] / 1000.0, s.box_size,
                          edges, s.wgp_pi_max, shape, dens)
        wgp = expected_wgp(u, shape, dens, pairs, s.wgp_realisations, seed)
        _write_truth(tmp / "truth.hdf5", u, s, seed, data, wgp, pairs, len(shape), len(dens))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MockTNG(root=out, snapshots=snaps, n_galaxies=u.n_galaxies, n_halos=u.n_halos)


def _write_truth(path: Path, u, s: MockTNGSettings, seed: int, data, wgp, pairs,  # noqa: ANN001
                 n_shape: int, n_dens: int) -> None:
    from galforge.mock.tng.model import H

    with h5py.File(path, "w") as f:
        f.attrs["seed"] = seed
        f.attrs["settings"] = json.dumps(s.to_dict(), sort_keys=True)
        f.attrs["snapshots"] = np.array(sorted(data), dtype=np.int32)
        f.attrs["description"] = (
            "Planted truth of the galforge mock TNG universe (galforge.mock.tng). galaxies/: "
            "one row per galaxy (generation order: each halo's central, then its satellites); "
            "SubfindID_SSS gives its subhalo at snapshot SSS. Positions ckpc/h (z = 0), "
            "masses Msun, radii physical kpc, axes unit vectors in the box frame. wgp/: "
            "w_g+ [h^-1 Mpc] along z, e+ > 0 for radial alignment.")
        g = f.create_group("galaxies")
        cols = {
            "halo": u.gal_halo, "central": u.gal_central, "pos": u.gal_pos, "vel": u.gal_vel,
            "mstar": u.gal_mstar, "log_mstar": np.log10(u.gal_mstar),
            "m_infall": u.gal_m_infall / H, "n_star": u.gal_n_star, "n_exsitu": u.gal_n_ex,
            "n_wind": u.gal_n_wind, "fex": u.gal_fex, "fex_drawn": u.gal_fex_drawn,
            "r_half_insitu": u.gal_r_in, "r_half_exsitu": u.gal_r_ex, "vc": u.gal_vc,
            "q": u.gal_q, "s": u.gal_s, "major_axis": u.gal_frame[:, :, 0],
            "intermediate_axis": u.gal_frame[:, :, 1], "minor_axis": u.gal_frame[:, :, 2],
            "kappa": u.gal_kappa, "reference_axis": u.gal_ref_axis,
        }
        for snap, d in sorted(data.items()):
            ids = np.empty(u.n_galaxies, dtype=np.int64)
            ids[d.sub_gal] = np.arange(d.n_sub)
            cols[f"SubfindID_{snap:03d}"] = ids
        for name, values in cols.items():
            g.create_dataset(name, data=np.asarray(values))
        h = f.create_group("halos")
        for name, values in {
            "pos": u.halo_pos, "vel": u.halo_vel, "m200c": u.halo_m200 / H,
            "r200c": u.halo_r200 / H, "concentration": u.halo_conc, "q": u.halo_q, "s": u.halo_s,
            "major_axis": u.halo_frame[:, :, 0], "tidal_axis": u.halo_tidal_axis,
        }.items():
            h.create_dataset(name, data=np.asarray(values))
        w = f.create_group("wgp")
        w.attrs["pi_max"] = s.wgp_pi_max
        w.attrs["line_of_sight"] = "z"
        w.attrs["n_shape"] = n_shape
        w.attrs["n_density"] = n_dens
        w.attrs["realisations"] = s.wgp_realisations
        w.create_dataset("rp_edges", data=pairs.rp_edges)
        w.create_dataset("rp_centres", data=pairs.rp_centres)
        w.create_dataset("n_pairs", data=pairs.n_pairs)
        for name, values in wgp.items():
            w.create_dataset(name, data=values)
