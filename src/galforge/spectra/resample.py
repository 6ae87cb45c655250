"""Flux-conserving spectral resampling, equal to spectres 2.2 (Carnall 2017).

Definitions (those of ``spectres.spectres``, version 2.2.x)
-----------------------------------------------------------
* Bins: every wavelength is a pixel centre. Interior bin edges are the
  midpoints of neighbouring centres (in linear wavelength); the first and last
  edges are extrapolated by half of the neighbouring spacing,
  ``e_0 = w_0 - (w_1 - w_0)/2`` and ``e_n = w_{n-1} + (w_{n-1} - w_{n-2})/2``.
* Flux: a new bin ``[x, y)`` takes the overlap-weighted mean of the old bins it
  overlaps, ``f = Σ w_k f_k / Σ w_k``, where ``w_k`` is the length of old bin
  ``k`` inside the new bin (the first and last overlapped old bins partially),
  i.e. flux density is conserved.
* Errors: ``σ = sqrt(Σ (w_k σ_k)²) / Σ w_k`` (uncorrelated errors).
* A new bin that lies inside one old bin copies that bin's flux and error.
* Fill: a new bin that is not *fully* covered by the old bins
  (``x < e_0`` or ``y > e_n``) gets ``fill`` in flux and error; spectres'
  default ``fill=None`` gives NaN, which is this module's default too. Unlike
  spectres, the functions here also return the boolean mask of filled bins.
* Non-finite values propagate as in spectres: a NaN/inf flux or error in an old
  bin that overlaps a new bin makes that new bin's flux/error NaN/inf.

Two paths
---------
:func:`resample` is the general path: any increasing old and new grids, one
spectrum or a batch of spectra sharing the old grid (``searchsorted`` once,
then a vectorised loop over the at most ``K`` old bins a new bin overlaps).

:func:`resample_shifted_loglam` is the fast path of the rest-frame step of the
spectra study. Every SDSS spectrum is sampled on the same uniform grid in
``log10 λ`` (step ``1e-4``) in the observed frame, so the rest-frame grid of
spectrum ``i`` is that grid shifted by ``-log10(1 + z_i)``. The position of a
new bin edge ``ν_j`` on the old grid, in units of old pixels, is then a
precomputed constant plus a per-spectrum shift,

    p_ij = P_j + log10(1 + z_i) / Δ,   P_j = (log10 ν_j − log10 c − log10 λ_0) / Δ,

with ``c = (1 + 10^-Δ)/2`` the position of the interior (midpoint) edges, so
the old pixel that holds each new edge is ``floor(p_ij)`` — arithmetic, no
search. When every new bin is narrower than the old ones (``K = 2``: the
study's 3840 → 4000 px case) a new bin overlaps old pixels ``s = floor(p_ij)``
and ``t = floor(p_i,j+1) ∈ {s, s+1}`` and, with ``a`` the fraction of the new
bin inside pixel ``s``,

    f = f_t + a (f_s − f_t),   σ² = a² σ_s² + (1 − a)² σ_t²,

which is spectres' weighted mean written with one weight (``Σ w = ν_{j+1} −
ν_j`` in the rest frame); the flux at each edge pixel is gathered once and
serves the two bins that share the edge. Wider new bins fall back to the
general overlap loop on the same precomputed indices.

Each spectrum may occupy its own pixel range ``[first_i, first_i + npix_i)`` of
the common grid (real SDSS spectra start at different ``log10 λ``); its end
edges are then extrapolated from its own first and last pixels, as spectres
does for that spectrum alone.

Precision: both paths agree with spectres to ~1e-11 relative (rounding of the
overlap lengths). On the fast path a new edge that falls within ~1e-11 pixel of
an old edge may be counted in the neighbouring old pixel, with a weight of that
relative size: values move by that much, and a NaN/inf in that neighbour would
propagate (spectres would not). The tests check 1e-6 relative and identical
NaN/inf/fill patterns on random grids and on the real SDSS spectra.

References
----------
Carnall, A. C. 2017, "SpectRes: A Fast Spectral Resampling Tool in Python",
arXiv:1705.05165.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from galforge.io import InputError

__all__ = [
    "SDSS_DLOGLAM",
    "bin_edges",
    "resample",
    "resample_shifted_loglam",
    "uniform_loglam_grid",
]

#: SDSS spectra: pixel step in log10(λ / Å).
SDSS_DLOGLAM = 1e-4


# --------------------------------------------------------------------------- helpers


def bin_edges(wavs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges and widths of pixel centres ``wavs``, exactly as spectres' ``make_bins``.

    Parameters
    ----------
    wavs
        Increasing pixel centres, shape ``(n,)``, ``n >= 2``.

    Returns
    -------
    edges, widths
        ``edges`` ``(n + 1,)``: midpoints inside, half a spacing beyond the
        first and last centres; ``widths`` ``(n,)``.
    """
    w = np.asarray(wavs, dtype=np.float64)
    edges = np.empty(w.size + 1)
    edges[0] = w[0] - (w[1] - w[0]) / 2
    edges[-1] = w[-1] + (w[-1] - w[-2]) / 2
    edges[1:-1] = (w[1:] + w[:-1]) / 2
    widths = np.empty(w.size)
    widths[:-1] = edges[1:-1] - edges[:-2]
    widths[-1] = w[-1] - w[-2]
    return edges, widths


def _check_grid(name: str, wavs: Any) -> np.ndarray:
    try:
        w = np.asarray(wavs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not numeric: {exc}") from None
    if w.ndim != 1 or w.size < 2:
        raise InputError(f"{name} must be 1-D with at least 2 values, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise InputError(f"{name} has non-finite values (first at index "
                         f"{int(np.flatnonzero(~np.isfinite(w))[0])})")
    bad = np.flatnonzero(np.diff(w) <= 0)
    if bad.size:
        raise InputError(f"{name} must be strictly increasing (not at index {int(bad[0]) + 1})")
    return w


def _check_values(name: str, a: Any, npix: int, shape: tuple[int, ...] | None = None
                  ) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not numeric: {exc}") from None
    if arr.ndim == 0 or arr.shape[-1] != npix:
        raise InputError(f"{name} must have last axis of length {npix} (the old grid), "
                         f"got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise InputError(f"{name} must have shape {shape} (that of the fluxes), got {arr.shape}")
    return arr


def uniform_loglam_grid(loglam: Any, step: float = SDSS_DLOGLAM, tol: float = 1e-6
                        ) -> tuple[int, int]:
    """Snap observed ``log10 λ`` pixel centres to the integer grid ``k · step``.

    SDSS spectra sample ``log10 λ = k · 1e-4`` for consecutive integers ``k``
    (DR7 ``COEFF0`` is a multiple of ``1e-4``; DR8+ files store ``loglam`` as
    float32, i.e. to ~2e-7). Returns ``(k0, n)`` such that
    ``loglam ≈ (k0 + arange(n)) · step`` within ``tol`` (dex).

    Raises
    ------
    InputError
        When ``loglam`` is not on that grid within ``tol``.
    """
    ll = np.asarray(loglam, dtype=np.float64)
    if ll.ndim != 1 or ll.size < 2 or not np.all(np.isfinite(ll)):
        raise InputError("loglam must be 1-D, finite, with at least 2 pixels")
    k0 = int(round(ll[0] / step))
    dev = np.abs(ll - (k0 + np.arange(ll.size)) * step)
    if not float(dev.max()) <= tol:
        raise InputError(f"loglam is not on the uniform grid k*{step:g} (max deviation "
                         f"{float(dev.max()):.3g} dex > {tol:g})")
    return k0, int(ll.size)


# --------------------------------------------------------------------------- general path


def resample(
    new_wavs: Any,
    old_wavs: Any,
    flux: Any,
    err: Any = None,
    fill: float = np.nan,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Resample spectra onto ``new_wavs``, conserving flux density (= spectres 2.2).

    Parameters
    ----------
    new_wavs
        New pixel centres, increasing, shape ``(m,)``.
    old_wavs
        Old pixel centres, increasing, shape ``(n,)`` (same units).
    flux
        Shape ``(..., n)``: one spectrum or a batch sharing ``old_wavs``.
    err
        Optional 1σ errors, same shape as ``flux``.
    fill
        Flux and error of new bins not fully covered by the old bins
        (spectres' ``fill``; its default ``None`` means NaN).

    Returns
    -------
    new_flux
        ``(..., m)`` float64.
    new_err
        ``(..., m)`` float64, or ``None`` without ``err``.
    filled
        ``(..., m)`` bool, True where ``fill`` was used.

    Raises
    ------
    InputError
        Non-increasing or non-finite grids, or mismatched shapes.
    """
    nw = _check_grid("new_wavs", new_wavs)
    ow = _check_grid("old_wavs", old_wavs)
    f = _check_values("flux", flux, ow.size)
    e = None if err is None else _check_values("err", err, ow.size, f.shape)
    oe, _ = bin_edges(ow)
    ne, _ = bin_edges(nw)
    lo, hi = ne[:-1], ne[1:]
    covered = (lo >= oe[0]) & (hi <= oe[-1])
    # spectres: start = first old bin with right edge > x; stop = first with right edge >= y
    s = np.searchsorted(oe[1:], lo, side="right")
    t = np.searchsorted(oe[1:], hi, side="left")
    s = np.minimum(s, ow.size - 1)
    t = np.clip(t, s, ow.size - 1)
    out_shape = f.shape[:-1] + (nw.size,)
    new_f = np.full(out_shape, fill, dtype=np.float64)
    new_e = np.full(out_shape, fill, dtype=np.float64) if e is not None else None
    cols = np.flatnonzero(covered)
    if cols.size:
        s, t, lo, hi = s[cols], t[cols], lo[cols], hi[cols]
        num = np.zeros(f.shape[:-1] + (cols.size,))
        var = np.zeros_like(num) if e is not None else None
        wsum = np.zeros(cols.size)
        with np.errstate(invalid="ignore", over="ignore"):
            for m in range(int((t - s).max()) + 1):
                k = np.minimum(s + m, t)
                valid = s + m <= t
                w = np.minimum(oe[k + 1], hi) - np.maximum(oe[k], lo)
                w = np.where(valid, w, 0.0)
                wsum += w
                num += np.where(valid, w * f[..., k], 0.0)
                if e is not None:
                    var += np.where(valid, (w * e[..., k]) ** 2, 0.0)
            single = s == t
            new_f[..., cols] = np.where(single, f[..., s], num / wsum)
            if e is not None:
                new_e[..., cols] = np.where(single, e[..., s], np.sqrt(var) / wsum)
    filled = np.broadcast_to(~covered, out_shape).copy()
    return new_f, new_e, filled


# --------------------------------------------------------------------------- fast path


class _ShiftedGrid:
    """Precomputed tables of the fast path for one old log-λ grid and one new grid."""

    def __init__(self, new_wavs: np.ndarray, loglam: np.ndarray, dloglam: float):
        npix = loglam.size
        loglam0 = float(loglam[0])
        self.npix = npix
        lam = 10.0**loglam
        self.lam = lam
        # interior edges E[k] between pixels k-1 and k, k = 1..npix-1; E[0], E[npix] unused
        edges = np.empty(npix + 1)
        edges[1:-1] = (lam[1:] + lam[:-1]) / 2
        edges[0] = -np.inf
        edges[-1] = np.inf
        #: right edge of pixel k (interior edges; +inf beyond the grid)
        self.right = edges[1:].copy()
        ne, _ = bin_edges(new_wavs)
        self.ne = ne
        self.dne = np.diff(ne)
        self.inv_dne = 1.0 / self.dne
        c = (1.0 + 10.0 ** (-dloglam)) / 2.0
        #: position of each new edge on the old grid at z = 0, in old pixels
        self.P = (np.log10(ne) - math.log10(c) - loglam0) / dloglam
        self.dloglam = dloglam
        #: largest log width of a new bin: below Δ, a new bin overlaps at most 2 old pixels
        self.max_new_dlog = float(np.max(np.diff(np.log10(ne))))

    def end_edges(self, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lam = self.lam
        left = lam[first] - (lam[first + 1] - lam[first]) / 2
        right = lam[last] + (lam[last] - lam[last - 1]) / 2
        return left, right


def resample_shifted_loglam(
    new_wavs: Any,
    loglam_obs: Any,
    z: Any,
    flux: Any,
    err: Any = None,
    fill: float = np.nan,
    *,
    first: Any = None,
    npix: Any = None,
    chunk: int = 16,
    uniform_tol: float = 1e-9,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Rest-frame resampling of many spectra that share one observed log-λ grid.

    Equal to ``spectres.spectres(new_wavs, 10**loglam_obs[f:f+n] / (1 + z_i),
    flux[i, f:f+n], err[i, f:f+n], fill)`` for every spectrum ``i`` (see the
    module docstring), computed for all spectra at once.

    Parameters
    ----------
    new_wavs
        Rest-frame pixel centres of the output, increasing, ``(m,)``.
    loglam_obs
        Observed-frame ``log10 λ`` pixel centres of the common grid, ``(n,)``,
        uniformly spaced (within ``uniform_tol`` dex; snap SDSS float32 grids
        with :func:`uniform_loglam_grid` first).
    z
        Redshifts ``(N,)`` (``z > -1``).
    flux
        ``(N, n)`` on the common grid.
    err
        Optional ``(N, n)`` 1σ errors.
    fill
        Flux and error of output bins not fully covered by a spectrum.
    first, npix
        Optional ``(N,)`` integers: spectrum ``i`` occupies common-grid pixels
        ``[first_i, first_i + npix_i)`` (default: the whole grid); values
        outside its range are ignored. ``npix_i >= 2``.
    chunk
        Spectra per vectorised block (memory ~ 20 arrays of ``chunk × m``
        float64).
    uniform_tol
        Largest allowed deviation of ``loglam_obs`` from a uniform grid, dex.

    Returns
    -------
    new_flux, new_err, filled
        ``(N, m)`` float64, float64 (``None`` without ``err``), bool.

    Raises
    ------
    InputError
        Bad shapes, a non-uniform grid, ``z <= -1``, or pixel ranges outside the
        grid.
    """
    nw = _check_grid("new_wavs", new_wavs)
    ll = _check_grid("loglam_obs", loglam_obs)
    n = ll.size
    step = (ll[-1] - ll[0]) / (n - 1)
    dev = float(np.max(np.abs(ll - (ll[0] + step * np.arange(n)))))
    if dev > uniform_tol:
        raise InputError(f"loglam_obs is not uniform: deviation {dev:.3g} dex > {uniform_tol:g}"
                         " (snap it with uniform_loglam_grid)")
    f = _check_values("flux", flux, n)
    if f.ndim != 2:
        raise InputError(f"flux must be 2-D (N, {n}), got shape {f.shape}")
    N = f.shape[0]
    e = None if err is None else _check_values("err", err, n, f.shape)
    zz = np.asarray(z, dtype=np.float64).reshape(-1)
    if zz.size != N:
        raise InputError(f"z has {zz.size} values for {N} spectra")
    if not np.all(np.isfinite(zz) & (zz > -1)):
        raise InputError(f"z must be finite and > -1 (row {int(np.flatnonzero(~(zz > -1))[0])})")
    fi = np.zeros(N, dtype=np.intp) if first is None else np.asarray(first, dtype=np.intp)
    ni = np.full(N, n, dtype=np.intp) if npix is None else np.asarray(npix, dtype=np.intp)
    if fi.shape != (N,) or ni.shape != (N,):
        raise InputError("first and npix must have one value per spectrum")
    bad = np.flatnonzero((fi < 0) | (ni < 2) | (fi + ni > n))
    if bad.size:
        raise InputError(f"spectrum row {int(bad[0])}: pixel range [{int(fi[bad[0]])}, "
                         f"{int(fi[bad[0]] + ni[bad[0]])}) not inside the common grid of {n}")
    if nw[0] - (nw[1] - nw[0]) / 2 <= 0:
        raise InputError("new_wavs: the first bin edge must be a positive wavelength")
    grid = _ShiftedGrid(nw, ll, float(step))
    m = nw.size
    new_f = np.empty((N, m))
    new_e = np.empty((N, m)) if e is not None else None
    filled = np.zeros((N, m), dtype=bool)
    chunk = max(1, int(chunk))
    ws = _Workspace(min(chunk, N), m, n, e is not None)
    for c0 in range(0, N, chunk):
        c1 = min(N, c0 + chunk)
        _shifted_block(grid, ws, zz[c0:c1], f[c0:c1], e[c0:c1] if e is not None else None,
                       fi[c0:c1], ni[c0:c1], fill, new_f[c0:c1],
                       new_e[c0:c1] if new_e is not None else None, filled[c0:c1])
    return new_f, new_e, filled


class _Workspace:
    """Work arrays of one block, allocated once per call (no allocation churn per block)."""

    def __init__(self, rows: int, m: int, n: int, with_err: bool) -> None:
        self.pos = np.empty((rows, m + 1))
        self.p = np.empty((rows, m + 1), dtype=np.intp)
        self.q = np.empty((rows, m + 1), dtype=np.intp)
        self.r = np.empty((rows, m + 1))
        self.fe = np.empty((rows, m + 1))
        self.a = np.empty((rows, m))
        self.single = np.empty((rows, m), dtype=bool)
        self.rowoff = (np.arange(rows, dtype=np.intp) * n)[:, None]
        if with_err:
            self.ge = np.empty((rows, m + 1))
            self.b = np.empty((rows, m))
            self.e2 = np.empty((rows, n))


def _shifted_block(
    g: _ShiftedGrid,
    ws: _Workspace,
    z: np.ndarray,
    f: np.ndarray,
    e: np.ndarray | None,
    first: np.ndarray,
    npix: np.ndarray,
    fill: float,
    out_f: np.ndarray,
    out_e: np.ndarray | None,
    filled: np.ndarray,
) -> None:
    """One block of :func:`resample_shifted_loglam` (writes into the output views)."""
    B, n = f.shape
    last = first + npix - 1
    opz = 1.0 + z
    inv = (1.0 / opz)[:, None]
    # per-spectrum coverage in the rest frame: covered bins are [jlo, jhi)
    left, right = g.end_edges(first, last)
    jlo = np.searchsorted(g.ne, left * inv[:, 0], side="left")
    jhi = np.searchsorted(g.ne, right * inv[:, 0], side="right") - 1
    # edge positions on the old grid -> old pixel p holding each new edge
    pos, p, r = ws.pos[:B], ws.p[:B], ws.r[:B]
    np.add(g.P[None, :], (np.log10(opz) / g.dloglam)[:, None], out=pos)
    np.clip(pos, first[:, None], (last + 0.5)[:, None], out=pos)
    np.copyto(p, pos, casting="unsafe")  # floor: pos >= 0 after the clip
    # right edge of pixel p, in the rest frame
    np.take(g.right, p, out=r, mode="clip")
    r *= inv
    with np.errstate(invalid="ignore", over="ignore"):
        if g.max_new_dlog < g.dloglam * (1.0 - 1e-9):
            # K = 2: a new bin overlaps pixels s = p_j and t = p_{j+1} in {s, s+1}
            q, fe, a, single = ws.q[:B], ws.fe[:B], ws.a[:B], ws.single[:B]
            np.add(p, ws.rowoff[:B], out=q)
            np.take(f.reshape(-1), q, out=fe, mode="clip")
            fs, ft = fe[:, :-1], fe[:, 1:]
            np.minimum(r[:, :-1], g.ne[None, 1:], out=a)
            a -= g.ne[None, :-1]
            a *= g.inv_dne[None, :]
            np.equal(p[:, 1:], p[:, :-1], out=single)
            np.subtract(fs, ft, out=out_f)
            out_f *= a
            out_f += ft
            np.copyto(out_f, fs, where=single)
            if out_e is not None:
                ge, b, e2 = ws.ge[:B], ws.b[:B], ws.e2[:B]
                np.square(e, out=e2)
                np.take(e2.reshape(-1), q, out=ge, mode="clip")
                np.subtract(1.0, a, out=b)
                a *= a
                b *= b
                a *= ge[:, :-1]
                b *= ge[:, 1:]
                a += b
                np.copyto(a, ge[:, :-1], where=single)
                np.sqrt(a, out=out_e)
        else:
            _shifted_general(g, p, r, inv[:, 0], f, e, out_f, out_e)
    filled[...] = False
    for i in range(B):
        lo, hi = int(jlo[i]), max(int(jhi[i]), int(jlo[i]))
        if lo > 0 or hi < out_f.shape[1]:
            filled[i, :lo] = True
            filled[i, hi:] = True
            out_f[i, :lo] = fill
            out_f[i, hi:] = fill
            if out_e is not None:
                out_e[i, :lo] = fill
                out_e[i, hi:] = fill


def _shifted_general(
    g: _ShiftedGrid,
    p: np.ndarray,
    r: np.ndarray,
    inv: np.ndarray,
    f: np.ndarray,
    e: np.ndarray | None,
    out_f: np.ndarray,
    out_e: np.ndarray | None,
) -> None:
    """Fast path for new bins wider than old pixels: loop over the K overlapped pixels."""
    s, t = p[:, :-1], p[:, 1:]
    x, y = g.ne[None, :-1], g.ne[None, 1:]
    num = np.zeros(s.shape)
    var = np.zeros(s.shape) if e is not None else None
    wsum = np.zeros(s.shape)
    rows = np.arange(s.shape[0])[:, None]
    for m in range(int((t - s).max()) + 1):
        k = np.minimum(s + m, t)
        valid = s + m <= t
        hi = np.minimum(g.right[k] * inv[:, None], y)
        lo = x if m == 0 else g.right[k - 1] * inv[:, None]
        w = np.where(valid, hi - lo, 0.0)
        wsum += w
        num += np.where(valid, w * f[rows, k], 0.0)
        if e is not None:
            var += np.where(valid, (w * e[rows, k]) ** 2, 0.0)
    single = s == t
    out_f[...] = np.where(single, f[rows, s], num / wsum)
    if out_e is not None:
        out_e[...] = np.where(single, e[rows, s], np.sqrt(var) / wsum)
