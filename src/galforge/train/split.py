"""The seeded train/validation split every study draws (and its ``split`` settings).

:func:`split_indices` permutes ``range(n)`` with a generator seeded by ``(seed, salt)``
and holds out the first ``round(val_fraction * n)`` rows (at least 1, at most
``n - 1``). The ``salt`` keeps each study's split stream apart from its other
draws; every study passes its own constant, so the rows a study holds out are the
ones it held out before the split was shared:

===========  ===========  ====================================================
study        salt         defined in
===========  ===========  ====================================================
environment  ``0x5EED``   :data:`galforge.environment.training.SPLIT_SALT`
spectra      ``0x5EC7``   :data:`galforge.spectra.training.SPLIT_SALT`
===========  ===========  ====================================================

This module imports neither torch nor NumPy at import time (the configuration checker
imports :class:`SplitSettings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from galforge.settings import Settings, number

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["SplitSettings", "split_indices"]


@dataclass(frozen=True)
class SplitSettings(Settings):
    """How a study's rows are split for training (its ``split`` section).

    The default fraction is the environment study's; a study with another default
    (spectra: 0.15) passes it where it declares the section.
    """

    val_fraction: float = number(
        0.1, "Fraction of the rows held out for validation (early stopping).",
        lo=0.0, hi=0.5, lo_open=True, hi_open=True)


def split_indices(
    n: int, val_fraction: float, seed: int, *, salt: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` rows into sorted train and validation indices.

    The permutation is drawn from ``default_rng(SeedSequence([seed, salt]))``; the
    first ``clip(round(val_fraction * n), 1, n - 1)`` rows of it are the validation
    rows. Both index arrays are sorted (int64).

    Raises
    ------
    ValueError
        If ``val_fraction`` is not in (0, 1) or ``n < 2`` (no split leaves a row on
        each side).
    """
    import numpy as np

    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    if n < 2:
        raise ValueError(f"need at least 2 rows to split, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(salt)]))
    perm = rng.permutation(n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
