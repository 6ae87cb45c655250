"""The tidal field: a density mesh (cloud-in-cell), Gaussian smoothing, the tidal tensor by FFT.

Conventions: positions and the box in h⁻¹Mpc (comoving); the overdensity
``δ = ρ/ρ̄ − 1`` on a ``mesh³`` grid by cloud-in-cell assignment (no deconvolution of
the CIC window: the smallest smoothing used is at least a cell at the paper's 1024³ of
75 h⁻¹Mpc); smoothed with a Gaussian ``exp(−k²R²/2)``; the potential solves
``∇²φ = δ`` (units 4πGρ̄a² = 1), and the tidal tensor is ``T_ij = ∂_i∂_j φ``, in Fourier
``T_ij(k) = k_i k_j/k² δ(k) W(kR)`` (k = 0 dropped), so ``tr T = δ_R``. Its
eigenvalues are sorted ``λ₁ ≥ λ₂ ≥ λ₃`` with eigenvectors as columns (axial); the
direction of λ₃ is the one of stretching (the axis galaxies align with), of λ₁ of
compression. Values at the galaxies by trilinear (CIC) interpolation.

Two routes to the density:

* **particles** (:func:`density_from_snapshot`, the local copy and the mock): every
  snapshot chunk's DM ``Coordinates`` streamed into the mesh, one chunk at a time
  (memory: one chunk plus the mesh); DM particles all have the ``MassTable`` mass.
* **halos** (:func:`density_from_halos`, the web-API route, where the snapshot is
  terabytes): the group catalog's FoF groups deposited as points at ``GroupPos`` with
  ``GroupMass``. The approximation: all the mass in haloes, at their centres; the mass
  outside FoF groups and the haloes' extent are missing, so the field is the haloes'
  (biased) field, close to the particles' once smoothed over scales larger than the
  haloes (how far on the mock: :func:`compare_routes`, in the catalog step's report).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["cic_deposit", "overdensity", "tidal_tensor", "interpolate", "tidal_at",
           "density_from_snapshot", "density_from_halos", "eig_sorted", "COMPONENTS"]

#: The six independent components of the symmetric tensor, in this order.
COMPONENTS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _cells(pos: np.ndarray, box: float, mesh: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower cell index (n, 3) and the fraction towards the next one, for CIC."""
    g = np.mod(np.asarray(pos, dtype=np.float64), box) * (mesh / box) - 0.5
    i0 = np.floor(g)
    return i0.astype(np.int64) % mesh, g - i0


def cic_deposit(rho: np.ndarray, pos: np.ndarray, box: float,
                weights: np.ndarray | float = 1.0) -> None:
    """Add particles at ``pos`` (h⁻¹Mpc) with ``weights`` to the periodic mesh ``rho``."""
    mesh = rho.shape[0]
    if len(pos) == 0:
        return
    i0, f = _cells(pos, box, mesh)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (len(pos),))
    flat = rho.reshape(-1)
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1.0 - f[:, 0]
        ix = (i0[:, 0] + dx) % mesh
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1.0 - f[:, 1]
            iy = (i0[:, 1] + dy) % mesh
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1.0 - f[:, 2]
                iz = (i0[:, 2] + dz) % mesh
                idx = (ix * mesh + iy) * mesh + iz
                flat += np.bincount(idx, weights=w * wx * wy * wz, minlength=flat.size)


def interpolate(field: np.ndarray, pos: np.ndarray, box: float) -> np.ndarray:
    """The periodic mesh ``field`` at ``pos`` by trilinear (CIC) interpolation."""
    mesh = field.shape[0]
    i0, f = _cells(pos, box, mesh)
    out = np.zeros(len(pos))
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1.0 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1.0 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1.0 - f[:, 2]
                out += wx * wy * wz * field[(i0[:, 0] + dx) % mesh, (i0[:, 1] + dy) % mesh,
                                            (i0[:, 2] + dz) % mesh]
    return out


def overdensity(rho: np.ndarray) -> np.ndarray:
    """``ρ/ρ̄ − 1`` (an empty mesh is an error)."""
    mean = rho.mean()
    if not mean > 0:
        raise ValueError("the density mesh is empty: no particles were deposited")
    return rho / mean - 1.0


def _kvectors(mesh: int, box: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = 2.0 * np.pi * np.fft.fftfreq(mesh, d=box / mesh)
    kz = 2.0 * np.pi * np.fft.rfftfreq(mesh, d=box / mesh)
    return k[:, None, None], k[None, :, None], kz[None, None, :]


def tidal_tensor(delta: np.ndarray, box: float, smoothing: float | None = None
                 ) -> Iterable[tuple[tuple[int, int], np.ndarray]]:
    """The components ``((i, j), T_ij)`` of the tidal tensor of ``delta`` (one at a time)."""
    mesh = delta.shape[0]
    dk = np.fft.rfftn(delta)
    kx, ky, kz = _kvectors(mesh, box)
    k2 = kx * kx + ky * ky + kz * kz
    k2[0, 0, 0] = 1.0
    dk = dk / k2
    dk[0, 0, 0] = 0.0
    if smoothing:
        dk = dk * np.exp(-0.5 * k2 * smoothing * smoothing)
    kv = (kx, ky, kz)
    for i, j in COMPONENTS:
        yield (i, j), np.fft.irfftn(dk * kv[i] * kv[j], s=delta.shape, axes=(0, 1, 2))


def eig_sorted(tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of symmetric (n, 3, 3) tensors."""
    lam, vec = np.linalg.eigh(tensors)
    return lam[:, ::-1], vec[:, :, ::-1]


def tidal_at(delta: np.ndarray, box: float, pos: np.ndarray, smoothing: Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Tidal eigenvalues (n, n_scales, 3) and eigenvectors (n, n_scales, 3, 3) at ``pos``."""
    n = len(pos)
    lam = np.empty((n, len(smoothing), 3))
    vec = np.empty((n, len(smoothing), 3, 3))
    for k, r in enumerate(smoothing):
        t = np.zeros((n, 3, 3))
        for (i, j), comp in tidal_tensor(delta, box, r):
            t[:, i, j] = t[:, j, i] = interpolate(comp, pos, box)
        lam[:, k], vec[:, k] = eig_sorted(t)
    return lam, vec


def density_from_snapshot(files: Sequence[str | Path], mesh: int, box: float,
                          progress: bool = False) -> np.ndarray:
    """The DM density mesh of a snapshot, each chunk's ``PartType1/Coordinates`` streamed.

    ``files``: the snapshot chunks; ``box`` in h⁻¹Mpc (coordinates are ckpc/h).
    """
    from tqdm import tqdm

    from galforge.archives.tng_local import read_particles

    rho = np.zeros((mesh, mesh, mesh))
    for path in tqdm(list(files), desc="DM mesh", unit="chunk", disable=not progress):
        data, _, _ = read_particles(path, "dm", ["Coordinates"])
        cic_deposit(rho, np.asarray(data["Coordinates"], dtype=np.float64).reshape(-1, 3)
                    / 1000.0, box)
    return rho


def density_from_halos(group_pos: np.ndarray, group_mass: np.ndarray, mesh: int,
                       box: float) -> np.ndarray:
    """The haloes' mass mesh: FoF groups as points (``GroupPos`` h⁻¹Mpc, ``GroupMass``)."""
    rho = np.zeros((mesh, mesh, mesh))
    cic_deposit(rho, group_pos, box, np.asarray(group_mass, dtype=np.float64))
    return rho
