"""Settings of the NIHAO-like star-particle mock (:mod:`galforge.mock.edf`); light, no numpy.

:class:`MockEdfSettings` holds the number of galaxies, the ranges of the two
planted galaxy parameters (halo mass and formation time), how many star particles
each galaxy gets, and the outliers the cleaning must remove. The physics that
turns the two parameters into stars is stated in :mod:`galforge.mock.edf`.
"""

from __future__ import annotations

from dataclasses import dataclass

from galforge.settings import Settings, SettingsError, integer, number, text

__all__ = ["MockEdfSettings"]


@dataclass(frozen=True)
class MockEdfSettings(Settings):
    """Configuration of the NIHAO-like mock galaxies (see :mod:`galforge.mock.edf`)."""

    n_galaxies: int = integer(100, "galaxies drawn (a Latin hypercube over log M_dm x t_form)",
                              lo=2, hi=10_000)
    log_mdm_min: float = number(9.7, "lowest log10 dark-matter halo mass [M_sun]", lo=8.0,
                                hi=13.5)
    log_mdm_max: float = number(12.3, "highest log10 dark-matter halo mass [M_sun]", lo=8.0,
                                hi=13.5)
    t_form_min: float = number(3.0, "latest formation time (median age of the disks' stars "
                               "scale with it) [Gyr ago]", lo=1.0, hi=10.0)
    t_form_max: float = number(9.0, "earliest formation time [Gyr ago]", lo=1.0, hi=10.0)
    n_stars_min: int = integer(2000, "star particles of the least massive halo", lo=10,
                               hi=10_000_000)
    n_stars_max: int = integer(200_000, "star particles of the most massive halo (log-linear "
                               "in log M_dm between)", lo=10, hi=10_000_000)
    n_sparse: int = integer(1, "extra galaxies with only sparse_stars particles (removed by "
                            "the cleaning's min_stars)", lo=0, hi=100)
    sparse_stars: int = integer(300, "star particles of each sparse galaxy", lo=10,
                                hi=100_000)
    junk_fraction: float = number(0.002, "fraction of outlier particles, half metal-free "
                                  "([Fe/H] = -10, [O/Fe] = -2), half oxygen-poor ([O/Fe] = "
                                  "-1.5): the cleaning removes them", lo=0.0, hi=0.2)
    prefix: str = text("mock", "file-name prefix: <prefix>_<id>_<M_dm>.npy")

    def check(self) -> None:
        for lo, hi in (("log_mdm_min", "log_mdm_max"), ("t_form_min", "t_form_max"),
                       ("n_stars_min", "n_stars_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise SettingsError(hi, f"= {getattr(self, hi)} must not be below {lo} = "
                                    f"{getattr(self, lo)}")
        if "_" in self.prefix or "/" in self.prefix:
            raise SettingsError("prefix", f"= {self.prefix!r} must hold no '_' or '/'")
