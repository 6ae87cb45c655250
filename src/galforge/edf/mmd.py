"""Two-sample distances between galaxies: the seed's linear MMD and a Gaussian-kernel MMD.

Both act on standardised features (the flow's μ/σ), and both are *squared* MMDs:

* :func:`linear_mmd`: ``||mean(X) - mean(Y)||²``, the MMD of the linear kernel
  ``k(x, y) = x·y`` (GalacticFlow's ``linear_MMD``); it sees only the means;
* :func:`kernel_mmd`: the biased (V-statistic) estimate of MMD² with the Gaussian kernel
  ``k(x, y) = exp(-|x - y|² / (2 h²))`` (Gretton et al. 2012, Eq. 5), always >= 0, so
  that a ratio to the noise floor is defined; ``h`` from :func:`median_bandwidth` (the
  median heuristic: the median distance between the reference sample's points).

For two samples of size n from one distribution the V-statistic has expectation
``2 (E k(x, x) - E k(x, x')) / n``: the noise floor, which the evaluation measures with
two independent true samples of the same size.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["kernel_mmd", "linear_mmd", "median_bandwidth", "sq_distances"]

#: Most points the median heuristic looks at.
MEDIAN_POINTS = 2000


def _t(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x,
                           dtype=torch.float64)


def linear_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """``||mean(x) - mean(y)||²`` of (n, d) and (m, d) samples."""
    d = np.asarray(x, dtype=np.float64).mean(axis=0) - np.asarray(y, dtype=np.float64).mean(axis=0)
    return float(d @ d)


def sq_distances(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (n, m), float64, clipped at 0."""
    a, b = _t(x), _t(y)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min_(0.0)


def median_bandwidth(x: np.ndarray, seed: int = 0) -> float:
    """The median heuristic: median distance between distinct points of (up to
    :data:`MEDIAN_POINTS` of) ``x``."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) > MEDIAN_POINTS:
        x = x[np.random.default_rng(seed).choice(len(x), MEDIAN_POINTS, replace=False)]
    d = sq_distances(x, x)
    iu = torch.triu_indices(len(x), len(x), offset=1)
    h = float(torch.sqrt(torch.median(d[iu[0], iu[1]])))
    if not h > 0:
        raise ValueError("the median heuristic gave a zero bandwidth (identical points)")
    return h


def kernel_mmd(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Biased estimate of the Gaussian-kernel MMD² between (n, d) and (m, d) samples."""
    g = -0.5 / float(bandwidth) ** 2
    kxx = torch.exp(sq_distances(x, x) * g).mean()
    kyy = torch.exp(sq_distances(y, y) * g).mean()
    kxy = torch.exp(sq_distances(x, y) * g).mean()
    return float(kxx + kyy - 2.0 * kxy)
