"""Cosmology helpers shared by every study.

Distances are *h-scaled*: the background is a flat ΛCDM model with
``H0 = 100 h km/s/Mpc``, so every comoving distance is in h⁻¹Mpc, as in the
seed papers. Absolute magnitudes computed with it are ``M - 5 log10 h``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # astropy.cosmology takes ~1.3 s to import: only when a distance is needed
    from astropy.cosmology import FlatLambdaCDM

#: Speed of light in km/s (CODATA, exact).
C_KMS = 299_792.458


@dataclass(frozen=True)
class Cosmology:
    """Flat ΛCDM in h-scaled units.

    Parameters
    ----------
    Om0:
        Matter density parameter today.
    """

    Om0: float = 0.3

    @cached_property
    def astropy(self) -> FlatLambdaCDM:
        """The equivalent :class:`astropy.cosmology.FlatLambdaCDM` with H0 = 100."""
        from astropy.cosmology import FlatLambdaCDM

        return FlatLambdaCDM(H0=100.0, Om0=self.Om0, Tcmb0=0.0)

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        z = np.linspace(0.0, 2.0, 20001)
        return z, self.astropy.comoving_distance(z).value

    def comoving_distance(self, z: np.ndarray | float) -> np.ndarray:
        """Line-of-sight comoving distance in h⁻¹Mpc (astropy, exact)."""
        return np.asarray(self.astropy.comoving_distance(np.asarray(z, dtype=float)).value)

    def z_at_distance(self, chi: np.ndarray | float) -> np.ndarray:
        """Redshift at comoving distance ``chi`` (h⁻¹Mpc), by interpolation (|Δz| < 1e-8)."""
        z, d = self._table
        chi = np.asarray(chi, dtype=float)
        if np.any(chi < 0) or np.any(chi > d[-1]):
            raise ValueError(f"comoving distance outside 0..{d[-1]:.0f} h^-1 Mpc")
        return np.interp(chi, d, z)

    def distance_modulus(self, z: np.ndarray | float) -> np.ndarray:
        """Distance modulus ``m - (M - 5 log10 h)`` at redshift ``z``."""
        z = np.asarray(z, dtype=float)
        dl = (1.0 + z) * self.comoving_distance(z)  # h^-1 Mpc
        return 5.0 * np.log10(dl) + 25.0

    def hubble(self, z: np.ndarray | float) -> np.ndarray:
        """H(z) in h km/s/Mpc."""
        z = np.asarray(z, dtype=float)
        return 100.0 * np.sqrt(self.Om0 * (1 + z) ** 3 + 1.0 - self.Om0)
