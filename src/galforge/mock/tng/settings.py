"""Settings of the mock TNG universe (light: the configuration checker imports it without numpy).

:class:`MockTNGSettings` configures :mod:`galforge.mock.tng`; the physics behind each
field is in that package's docstring. :data:`SIZES` holds the three sizes
(``tiny`` for tests, ``demo`` for the studies' demo runs, ``paper`` for TNG100-like
numbers), as overrides of the defaults; a study that runs the mock may override
them further in its own presets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from galforge.settings import Settings, SettingsError, integer, number, numbers

__all__ = ["SIZES", "MockTNGSettings", "mock_tng_settings"]


@dataclass(frozen=True)
class MockTNGSettings(Settings):
    """Configuration of the mock TNG universe (see :mod:`galforge.mock.tng`)."""

    # volume and halos
    box_size: float = number(40.0, "side of the periodic box [h^-1 Mpc]", lo=4.0, hi=300.0)
    cell_size: float = number(1.0, "cell of the lognormal density field [h^-1 Mpc]",
                              lo=0.25, hi=10.0)
    log_mhalo_min: float = number(10.6, "lowest host-halo log10 M200c [Msun/h]", lo=9.5, hi=13.5)
    log_mhalo_max: float = number(15.0, "highest host-halo log10 M200c [Msun/h]", lo=11.0, hi=16.0)
    kappa_halo: float = number(3.0, "Dimroth-Watson kappa of halo major axes about the tidal "
                               "stretching axis", lo=0.0, hi=50.0)
    tidal_smoothing: float = number(2.0, "Gaussian smoothing of the tidal field [h^-1 Mpc]",
                                    lo=0.0, hi=20.0)
    # satellites: dN/dln(mu) = sat_amplitude mu^-sat_slope exp(-sat_cutoff mu^3), mu = m_infall/M200
    sat_amplitude: float = number(0.07, "satellite mass function amplitude", lo=0.0, hi=2.0)
    sat_slope: float = number(0.9, "satellite mass function slope", lo=0.1, hi=1.5)
    sat_cutoff: float = number(6.0, "satellite mass function exponential cut-off", lo=0.1, hi=50.0)
    sat_dm_retained: float = number(0.2, "fraction of a satellite's infall DM mass kept",
                                    lo=0.0, hi=1.0)
    # stellar-to-halo relation (Moster et al. 2013 form, masses in Msun)
    shmr_log_m1: float = number(11.8, "log10 M1 of the stellar-to-halo relation [Msun]",
                                lo=10.0, hi=13.0)
    shmr_norm: float = number(0.03, "normalisation N of the relation", lo=0.001, hi=0.2)
    shmr_beta: float = number(1.1, "low-mass slope beta", lo=0.1, hi=4.0)
    shmr_gamma: float = number(0.608, "high-mass slope gamma", lo=0.1, hi=2.0)
    shmr_scatter: float = number(0.15, "log-normal scatter of M* at fixed halo mass [dex]",
                                 lo=0.0, hi=1.0)
    log_mstar_min: float = number(9.0, "lightest galaxy written, log10 M* [Msun]", lo=7.0, hi=12.0)
    log_mstar_max: float = number(12.4, "stellar masses are capped here, log10 M* [Msun]",
                                  lo=10.0, hi=12.6)
    # sizes: log10 R_half,insitu [kpc] = size_log_r0 + size_slope (log M* - 10) + N(0, size_scatter)
    size_log_r0: float = number(0.55, "log10 in-situ half-mass radius at M* = 1e10 [kpc]",
                                lo=-1.0, hi=1.5)
    size_slope: float = number(0.25, "slope of the mass-size relation", lo=-0.5, hi=1.0)
    size_scatter: float = number(0.15, "scatter of the mass-size relation [dex]", lo=0.0, hi=1.0)
    exsitu_size_ratio: float = number(2.0, "ex-situ / in-situ half-mass radius", lo=0.5, hi=10.0)
    disk_dispersion: float = number(0.12, "in-situ velocity dispersion / circular velocity",
                                    lo=0.0, hi=1.0)
    exsitu_dispersion: float = number(0.55, "ex-situ velocity dispersion / circular velocity",
                                      lo=0.05, hi=2.0)
    # ex-situ fraction: logit f_ex ~ N(fex_logit_a + fex_logit_b (log M* - 10), fex_logit_scatter)
    fex_logit_a: float = number(-2.2, "logit of the ex-situ fraction at M* = 1e10", lo=-8.0, hi=4.0)
    fex_logit_b: float = number(1.6, "slope of logit f_ex per dex of M*", lo=-5.0, hi=5.0)
    fex_logit_scatter: float = number(0.6, "scatter of logit f_ex", lo=0.0, hi=3.0)
    formed_outside_fraction: float = number(
        0.02, "fraction of ex-situ stars formed outside any galaxy", lo=0.0, hi=1.0)
    merger_snap_min: int = integer(50, "earliest snapshot of a merger", lo=3, hi=98)
    # shapes: q = b/a ~ N(q_mean, q_sigma), s/q ~ N(s_over_q_mean, s_over_q_sigma), clipped
    q_mean: float = number(0.75, "mean intermediate-to-major axis ratio", lo=0.1, hi=1.0)
    q_sigma: float = number(0.12, "scatter of q", lo=0.0, hi=1.0)
    s_over_q_mean: float = number(0.6, "mean minor-to-intermediate axis ratio", lo=0.1, hi=1.0)
    s_over_q_sigma: float = number(0.1, "scatter of s/q", lo=0.0, hi=1.0)
    # planted alignment: kappa = kappa_*_0 + kappa_*_slope (log M* - 10), clipped to [0, 50]
    kappa_cen_0: float = number(3.0, "kappa of centrals about the halo major axis at M* = 1e10",
                                lo=0.0, hi=50.0)
    kappa_cen_slope: float = number(1.5, "its change per dex of M*", lo=-20.0, hi=20.0)
    kappa_sat_0: float = number(2.0, "kappa of satellites' major axes about the direction to "
                                "the central at M* = 1e10", lo=0.0, hi=50.0)
    kappa_sat_slope: float = number(1.0, "its change per dex of M*", lo=-20.0, hi=20.0)
    # particles
    stars_at_1e10: float = number(100.0, "star particles of a 1e10 Msun galaxy", lo=8.0, hi=1e6)
    stars_slope: float = number(0.5, "star particles grow as M*^stars_slope", lo=0.0, hi=1.0)
    stars_min: int = integer(24, "fewest star particles per galaxy", lo=4, hi=100000)
    stars_max: int = integer(2000, "most star particles per galaxy", lo=8, hi=10_000_000)
    wind_fraction: float = number(0.01, "wind particles per star particle", lo=0.0, hi=0.2)
    log_dm_particle_mass: float = number(9.6, "log10 DM particle mass [Msun/h]", lo=5.0, hi=11.0)
    fuzz_fraction: float = number(0.03, "DM of a group outside its subhaloes", lo=0.0, hi=0.5)
    outer_fuzz_fraction: float = number(0.02, "DM particles outside any group, per group "
                                        "particle", lo=0.0, hi=1.0)
    # files
    groupcat_chunks: int = integer(4, "group-catalog chunks (chunk 1 is empty)", lo=3, hi=64)
    snapshot_chunks: int = integer(3, "snapshot chunks (the last holds no stars)", lo=2, hi=64)
    tree_min_log_mstar: float = number(9.0, "galaxies in the SubLink tree: log10 M* above",
                                       lo=7.0, hi=13.0)
    tree_first_snap: int = integer(50, "earliest snapshot in the SubLink tree", lo=0, hi=99)
    # expected w_g+ of the planted model (line of sight = z axis)
    wgp_rp_min: float = number(0.1, "smallest r_p bin edge [h^-1 Mpc]", lo=0.01, hi=10.0)
    wgp_rp_max: float = number(10.0, "largest r_p bin edge [h^-1 Mpc]", lo=0.1, hi=100.0)
    wgp_bins: int = integer(8, "logarithmic r_p bins", lo=1, hi=50)
    wgp_pi_max: float = number(10.0, "line-of-sight half-depth Pi_max [h^-1 Mpc]", lo=0.1, hi=100.0)
    wgp_shape_log_mstar: float = number(10.0, "shape sample: log10 M* above", lo=7.0, hi=13.0)
    wgp_realisations: int = integer(200, "Monte-Carlo orientation realisations", lo=2, hi=100000)

    def check(self) -> None:
        """Ordered ranges, and a projected depth and r_p range that fit in the box."""
        for lo, hi in (("log_mhalo_min", "log_mhalo_max"), ("log_mstar_min", "log_mstar_max"),
                       ("wgp_rp_min", "wgp_rp_max"), ("stars_min", "stars_max")):
            if not getattr(self, lo) < getattr(self, hi):
                raise SettingsError(hi, f"= {getattr(self, hi)} must exceed {lo} = "
                                        f"{getattr(self, lo)}")
        if 2.0 * self.wgp_pi_max > self.box_size:
            raise SettingsError("wgp_pi_max", f"= {self.wgp_pi_max}: 2 Pi_max must fit in the "
                                              f"box ({self.box_size} h^-1 Mpc)")
        if 2.0 * self.wgp_rp_max > self.box_size:
            raise SettingsError("wgp_rp_max", f"= {self.wgp_rp_max}: 2 r_p,max must fit in the "
                                              f"box ({self.box_size} h^-1 Mpc)")
        if self.cell_size * 8 > self.box_size:
            raise SettingsError("cell_size", "the box must hold at least 8 cells per side")


#: The three sizes: overrides of :class:`MockTNGSettings` (measured numbers in the
#: package docstring of :mod:`galforge.mock.tng`).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "box_size": 15.0, "log_mhalo_min": 11.0, "log_mstar_min": 8.5,
        "stars_at_1e10": 60.0, "stars_min": 16, "stars_max": 300,
        "log_dm_particle_mass": 10.0, "groupcat_chunks": 3, "snapshot_chunks": 3,
        "tree_min_log_mstar": 9.5, "tree_first_snap": 80, "merger_snap_min": 80,
        "wgp_rp_max": 4.0, "wgp_bins": 5, "wgp_pi_max": 5.0, "wgp_shape_log_mstar": 9.5,
        "wgp_realisations": 50,
    },
    "demo": {"tree_min_log_mstar": 10.0},
    "paper": {
        "box_size": 75.0, "stars_at_1e10": 200.0, "stars_min": 32,
        "log_dm_particle_mass": 9.4, "groupcat_chunks": 8, "snapshot_chunks": 8,
        "tree_min_log_mstar": 10.0, "wgp_rp_max": 20.0, "wgp_bins": 10, "wgp_pi_max": 20.0,
    },
}


def mock_tng_settings(size: str, overrides: dict[str, Any] | None = None) -> MockTNGSettings:
    """The settings of size ``tiny``/``demo``/``paper`` with ``overrides`` applied.

    Raises
    ------
    SettingsError
        For an unknown size or a bad override (naming the key).
    """
    if size not in SIZES:
        raise SettingsError("size", f"= {size!r}; choose one of {', '.join(SIZES)}")
    return MockTNGSettings.from_dict({**SIZES[size], **(overrides or {})})


#: Snapshot numbers a mock may hold (TNG's 0..99).
SNAPSHOT_RANGE = (0, 99)


def check_snapshots(snapshots: Any) -> tuple[int, ...]:
    """Sorted unique snapshot numbers in 0..99 (a SettingsError names the bad one)."""
    check = numbers(None, integer=True, lo=SNAPSHOT_RANGE[0], hi=SNAPSHOT_RANGE[1],
                    min_length=1).metadata["check"]
    try:
        values = check(list(snapshots))
    except (TypeError, ValueError) as exc:
        raise SettingsError("snapshots", str(exc)) from None
    return tuple(sorted({int(v) for v in values}))
