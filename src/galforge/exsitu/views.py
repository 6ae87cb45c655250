"""Lines of sight from the vertices of regular polyhedra.

``n`` views: 1 the z axis; 2 the two poles (+-z, a digon); 3 the x, y and z axes (one vertex of
each antipodal pair of the octahedron); 4 the tetrahedron; 6 the octahedron; 8 the cube;
10 one vertex of each antipodal pair of the dodecahedron; 12 the icosahedron; 20 the
dodecahedron. Every set is a unit-vector array ``(n, 3)``, in the simulation box's frame
(galaxies are projected as they lie, as the authors did).
"""

from __future__ import annotations

from functools import cache
from itertools import product

import numpy as np

from galforge.exsitu.settings import VIEW_COUNTS

__all__ = ["polyhedron_vertices", "projection_basis"]

_PHI = (1.0 + 5.0**0.5) / 2.0


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _dodecahedron() -> np.ndarray:
    cube = list(product((-1.0, 1.0), repeat=3))
    ring = []
    for a, b in product((-1.0, 1.0), repeat=2):
        ring += [(0.0, a / _PHI, b * _PHI), (a / _PHI, b * _PHI, 0.0), (a * _PHI, 0.0, b / _PHI)]
    return _unit(np.array(cube + ring))


def _one_per_pair(v: np.ndarray) -> np.ndarray:
    """Keep one vertex of each antipodal pair (the first met with a positive leading sign)."""
    keep = []
    for x in v:
        if not any(np.allclose(x, -y) for y in keep):
            keep.append(x)
    return np.array(keep)


@cache
def polyhedron_vertices(n: int) -> np.ndarray:
    """The ``n`` lines of sight (unit vectors, ``(n, 3)``); ValueError for other ``n``."""
    if n not in VIEW_COUNTS:
        raise ValueError(f"{n} views: not one of {', '.join(map(str, VIEW_COUNTS))}")
    if n == 1:
        v = np.array([[0.0, 0.0, 1.0]])
    elif n == 2:
        v = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    elif n == 3:
        v = np.eye(3)
    elif n == 4:
        v = _unit(np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]))
    elif n == 6:
        v = np.concatenate([np.eye(3), -np.eye(3)])
    elif n == 8:
        v = _unit(np.array(list(product((-1.0, 1.0), repeat=3))))
    elif n == 12:
        pts = []
        for a, b in product((-1.0, 1.0), repeat=2):
            pts += [(0.0, a, b * _PHI), (a, b * _PHI, 0.0), (a * _PHI, 0.0, b)]
        v = _unit(np.array(pts))
    elif n == 20:
        v = _dodecahedron()
    else:  # 10
        v = _one_per_pair(_dodecahedron())
    v = np.ascontiguousarray(v, dtype=np.float64)
    v.setflags(write=False)
    return v


def projection_basis(los: np.ndarray) -> np.ndarray:
    """Orthonormal ``(e1, e2, n)`` rows for each line of sight ``n`` (``(V, 3, 3)``).

    ``e1`` is perpendicular to ``n`` and to the axis least aligned with it; the triad is
    right-handed, so the map's (x, y) = (r.e1, r.e2) and the line-of-sight velocity is v.n.
    """
    n = _unit(np.atleast_2d(los))
    ref = np.eye(3)[np.argmin(np.abs(n), axis=1)]
    e1 = _unit(np.cross(ref, n))
    e2 = np.cross(n, e1)
    return np.stack([e1, e2, n], axis=1)
