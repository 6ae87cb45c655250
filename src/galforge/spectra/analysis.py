"""Latent-space analysis of the spectra study (the paper's Figs 1, 3, 4, 5, 6 and the D catalog).

Everything here is a pure function of a trained model and arrays, returning
NumPy arrays or pandas DataFrames; the integrator writes figures and files.
Importing this module does not import torch (the configuration check reads
:class:`AnalysisSettings`); the functions that need it import it themselves.

PCA of the latents (D1 … Dk)
    :func:`fit_latent_pca` rotates the best VAE's posterior means μ onto their
    principal axes (centred, not scaled; SVD), D1 carrying the most variance.
    Signs are fixed so that the largest-magnitude entry of each axis is
    positive (the convention of scikit-learn ≥ 1.5, so the components equal
    ``sklearn.decomposition.PCA``'s). :meth:`LatentPCA.inverse_transform` maps
    D back to latents, which is how Fig. 3 decodes spectra while one D varies.
Mutual information (Fig. 4)
    :func:`mi_table`: binned plug-in MI and its shuffle normalisation
    ``MI / ⟨MI_shuffled⟩`` (:func:`galforge.stats.normalised_mi`: ≈ 1 for
    independent variables, ≫ 1 for a dependence; compare values only at equal N),
    with Spearman's ρ for the sign.
SHAP (Fig. 6)
    :func:`shap_values` explains each D_i as a function of the input spectrum
    with ``shap.DeepExplainer`` (DeepLIFT rescale rule with a background sample;
    Lundberg & Lee 2017) on :class:`ComponentProjector` = the VAE encoder's mean
    followed by the PCA as a frozen ``Linear`` layer. Every activation of the
    encoder is its own module (see :mod:`galforge.spectra.model`). The
    additivity error ``max |Σ_p φ_p + E[D] − D|`` is computed by us on every
    explained spectrum and returned (never silenced): shap's own assertion
    (absolute tolerance 0.01) is replaced by this reported number, so a failing
    check is visible in the outputs rather than aborting the run.

References
----------
Lundberg, S. M. & Lee, S.-I. 2017, "A Unified Approach to Interpreting Model
Predictions", NeurIPS. Shrikumar, A., Greenside, P. & Kundaje, A. 2017,
"Learning Important Features Through Propagating Activation Differences", ICML
(DeepLIFT).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from galforge.io import InputError, atomic_path, write_parquet
from galforge.spectra.settings import AnalysisSettings
from galforge.stats import mutual_info_binned, normalised_mi, spearman

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from galforge.spectra.model import SpectraVAE

log = logging.getLogger("galforge.spectra")

__all__ = [
    "AnalysisArrays",
    "AnalysisSettings",
    "LatentPCA",
    "ShapResult",
    "best_mi_per_property",
    "binned_property_means",
    "choose_examples",
    "component_names",
    "cvae_condition_sweep",
    "decode_component_sweep",
    "fit_latent_pca",
    "importance_peaks",
    "make_projector",
    "latent_catalog",
    "mean_abs_shap",
    "mi_table",
    "pca_variance_table",
    "read_analysis_arrays",
    "read_latent_catalog",
    "shap_values",
    "sweep_values",
    "write_analysis_arrays",
    "write_latent_catalog",
]


# -- settings ----------------------------------------------------------------------------------
# -- PCA of the latents ------------------------------------------------------------------------
def component_names(k: int) -> list[str]:
    """``["D1", ..., "Dk"]``."""
    return [f"D{i + 1}" for i in range(int(k))]


@dataclass(frozen=True)
class LatentPCA:
    """Principal axes of the latent means.

    Attributes
    ----------
    mean : (d,) array
        Mean latent vector.
    components : (k, d) array
        Orthonormal axes, rows, by decreasing variance.
    variance : (k,) array
        Variance of the latents along each axis (``ddof = 1``).
    total_variance : float
        Total variance of the latents (sum over all d dimensions).
    """

    mean: np.ndarray
    components: np.ndarray
    variance: np.ndarray
    total_variance: float

    @property
    def fractions(self) -> np.ndarray:
        """Fraction of the total latent variance along each axis (sums to 1 when k = d)."""
        if self.total_variance <= 0:
            return np.full(len(self.variance), np.nan)
        return self.variance / self.total_variance

    def transform(self, mu: Any) -> np.ndarray:
        """Latents (N, d) → D (N, k); NaN rows stay NaN."""
        mu = np.asarray(mu, dtype=np.float64)
        return (mu - self.mean) @ self.components.T

    def inverse_transform(self, d: Any) -> np.ndarray:
        """D (N, k) → latents (N, d) (exact for k = d)."""
        d = np.asarray(d, dtype=np.float64)
        return d @ self.components + self.mean


def fit_latent_pca(mu: Any) -> LatentPCA:
    """PCA of latent means (N, d); rows with a NaN are ignored. All d axes are kept."""
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2:
        raise ValueError(f"latents must be (N, d), got shape {mu.shape}")
    mu = mu[np.all(np.isfinite(mu), axis=1)]
    n, d = mu.shape
    if n < 2:
        raise ValueError(f"need at least 2 finite latent vectors for a PCA, got {n}")
    mean = mu.mean(axis=0)
    xc = mu - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    # sign convention: the largest-magnitude entry of each axis is positive
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    var = s**2 / (n - 1)
    if vt.shape[0] < d:  # fewer spectra than latents: pad with orthonormal completions
        q, _ = np.linalg.qr(np.vstack([vt, np.eye(d)]).T)
        vt = np.vstack([vt, q[:, vt.shape[0]:d].T])
        var = np.concatenate([var, np.zeros(d - len(var))])
    total = float(xc.var(axis=0, ddof=1).sum())
    return LatentPCA(mean=mean, components=vt, variance=var, total_variance=total)


def pca_variance_table(pca: LatentPCA) -> pd.DataFrame:
    """``component`` (D1…), ``variance``, ``fraction``, ``cumulative`` — the D table."""
    frac = pca.fractions
    return pd.DataFrame({
        "component": component_names(len(pca.variance)),
        "variance": pca.variance,
        "fraction": frac,
        "cumulative": np.cumsum(frac),
    })


def latent_catalog(
    key: Any, plate: Any, mjd: Any, fiber: Any, d: Any, mu: Any | None = None
) -> pd.DataFrame:
    """The per-spectrum catalog: ``key, plate, mjd, fiber, D1..Dk`` (+ ``mu1..`` if given)."""
    d = np.asarray(d, dtype=np.float64)
    out = pd.DataFrame({
        "key": np.asarray(key, dtype=np.int64),
        "plate": np.asarray(plate, dtype=np.int32),
        "mjd": np.asarray(mjd, dtype=np.int32),
        "fiber": np.asarray(fiber, dtype=np.int32),
    })
    if len(out) != len(d):
        raise ValueError(f"{len(out)} ids but {len(d)} rows of D")
    for i, name in enumerate(component_names(d.shape[1])):
        out[name] = d[:, i]
    if mu is not None:
        mu = np.asarray(mu, dtype=np.float64)
        for i in range(mu.shape[1]):
            out[f"mu{i + 1}"] = mu[:, i]
    return out


# -- Fig 1: property means over a latent plane ------------------------------------------------
def binned_property_means(
    x: Any,
    y: Any,
    values: Any,
    *,
    n_bins: int = 20,
    min_count: int = 5,
    quantile_range: tuple[float, float] = (0.005, 0.995),
) -> dict[str, np.ndarray]:
    """Mean of ``values`` in ``n_bins × n_bins`` bins of the (x, y) plane.

    The axes span the ``quantile_range`` of x and y (outliers fall outside and are
    not counted). Rows with a NaN in x, y or the value are dropped. Returns
    ``x_edges``, ``y_edges`` (n_bins + 1,), ``mean`` (n_bins, n_bins; ``mean[i, j]`` is
    x-bin i, y-bin j; NaN where fewer than ``min_count`` spectra) and ``count``.
    """
    from scipy.stats import binned_statistic_2d

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(v)
    if ok.sum() < 2:
        raise ValueError("fewer than 2 valid rows to bin")
    x, y, v = x[ok], y[ok], v[ok]
    xr = tuple(np.quantile(x, quantile_range))
    yr = tuple(np.quantile(y, quantile_range))
    if xr[1] <= xr[0]:
        xr = (xr[0] - 0.5, xr[0] + 0.5)
    if yr[1] <= yr[0]:
        yr = (yr[0] - 0.5, yr[0] + 0.5)
    mean, xe, ye, _ = binned_statistic_2d(x, y, v, "mean", bins=n_bins, range=[xr, yr])
    count, _, _, _ = binned_statistic_2d(x, y, v, "count", bins=n_bins, range=[xr, yr])
    mean = np.where(count >= min_count, mean, np.nan)
    return {"x_edges": xe, "y_edges": ye, "mean": mean, "count": count.astype(np.int64)}


# -- Figs 3 and 5: decoded sweeps ---------------------------------------------------------------
def sweep_values(values: Any, n_steps: int = 7,
                 quantiles: tuple[float, float] = (0.05, 0.95)) -> np.ndarray:
    """``n_steps`` evenly spaced values between two quantiles of ``values`` (NaN ignored)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite values to sweep over")
    lo, hi = np.quantile(v, quantiles)
    return np.linspace(lo, hi, int(n_steps))


def _decode(model: SpectraVAE, z: np.ndarray, c: np.ndarray | None, batch_size: int) -> np.ndarray:
    import torch

    from galforge.train.vae import eval_mode

    out = []
    with torch.no_grad(), eval_mode(model):
        for s in range(0, len(z), int(batch_size)):
            zc = torch.as_tensor(z[s : s + int(batch_size)], dtype=torch.float32)
            cc = None if c is None else c[s : s + int(batch_size)]
            out.append(model.decode(zc, cc).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.npix), np.float32)


def decode_component_sweep(
    model: SpectraVAE,
    pca: LatentPCA,
    component: int,
    values: Any,
    base: Any | None = None,
    *,
    batch_size: int = 512,
) -> np.ndarray:
    """Spectra (len(values), npix) decoded while D_{component+1} takes ``values`` (Fig. 3).

    The other D are 0 (the mean latent) or the entries of ``base`` (a D vector,
    e.g. one galaxy's); D is mapped back to latents with the inverse PCA. For a
    VAE (a CVAE needs conditions; use :func:`cvae_condition_sweep`).
    """
    if model.n_cond:
        raise ValueError("decode_component_sweep needs a plain VAE")
    k = pca.components.shape[0]
    if not 0 <= int(component) < k:
        raise IndexError(f"component {component} out of range for {k} components")
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    d0 = np.zeros(k) if base is None else np.asarray(base, dtype=np.float64).reshape(-1)
    if d0.size != k:
        raise ValueError(f"base must have {k} entries, got {d0.size}")
    d = np.repeat(d0[None, :], len(vals), axis=0)
    d[:, int(component)] = vals
    return _decode(model, pca.inverse_transform(d), None, batch_size)


def cvae_condition_sweep(
    model: SpectraVAE,
    condition: str | int,
    values: Any,
    *,
    z: Any | None = None,
    base_conditions: Any | None = None,
    batch_size: int = 512,
) -> np.ndarray:
    """CVAE spectra (len(values), npix) as one condition varies, latents fixed (Fig. 5).

    ``condition``: a column name (``log_mstar`` … or a short name) or its index.
    ``z`` (latent_dim,) defaults to 0 (the prior mean); the other conditions default
    to the training mean (the model's ``cond_mean``). Values are physical units.
    """
    from galforge.spectra.model_ids import CONDITION_COLUMNS

    if not model.n_cond:
        raise ValueError("cvae_condition_sweep needs a CVAE")
    if isinstance(condition, str):
        col = CONDITION_COLUMNS.get(condition, condition)
        if col not in model.conditions:
            raise ValueError(f"the model is not conditioned on {condition!r} "
                             f"(its conditions: {list(model.conditions)})")
        j = model.conditions.index(col)
    else:
        j = int(condition)
        if not 0 <= j < model.n_cond:
            raise IndexError(f"condition index {j} out of range for {model.n_cond} conditions")
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    c0 = (model.cond_mean.detach().cpu().numpy().astype(np.float64) if base_conditions is None
          else np.asarray(base_conditions, dtype=np.float64).reshape(-1))
    if c0.size != model.n_cond:
        raise ValueError(f"base_conditions must have {model.n_cond} entries, got {c0.size}")
    c = np.repeat(c0[None, :], len(vals), axis=0)
    c[:, j] = vals
    z0 = np.zeros(model.latent_dim) if z is None else np.asarray(z, dtype=np.float64).reshape(-1)
    if z0.size != model.latent_dim:
        raise ValueError(f"z must have {model.latent_dim} entries, got {z0.size}")
    zz = np.repeat(z0[None, :], len(vals), axis=0)
    return _decode(model, zz, c.astype(np.float32), batch_size)


# -- Fig 4: mutual information -----------------------------------------------------------------
def mi_table(
    d: Any,
    properties: Mapping[str, Any] | pd.DataFrame,
    *,
    n_shuffles: int = 50,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """MI between every D_i and every property, long form.

    Columns: ``component`` (D1…), ``property``, ``n`` (finite pairs), ``mi`` (binned
    plug-in MI, nats), ``nmi`` (shuffle-normalised, :func:`galforge.stats.normalised_mi`
    with ``n_shuffles``), ``rho`` (Spearman). Each pair's shuffles are seeded by
    ``(seed, i, j)``, so a value does not depend on the other columns.
    """
    d = np.asarray(d, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    props = pd.DataFrame(properties) if not isinstance(properties, pd.DataFrame) else properties
    if len(props) != len(d):
        raise ValueError(f"D has {len(d)} rows but the properties have {len(props)}")
    comp = list(names) if names is not None else component_names(d.shape[1])
    rows = []
    for i in range(d.shape[1]):
        for j, col in enumerate(props.columns):
            y = pd.to_numeric(props[col], errors="coerce").to_numpy(dtype=np.float64)
            x = d[:, i]
            ok = np.isfinite(x) & np.isfinite(y)
            n = int(ok.sum())
            if n >= 4:
                mi = mutual_info_binned(x[ok], y[ok])
                nmi = normalised_mi(x[ok], y[ok], n_shuffles=n_shuffles,
                                    seed=np.random.default_rng([int(seed), i, j]))
                rho = spearman(x[ok], y[ok])[0]
            else:
                mi = nmi = rho = math.nan
            rows.append({"component": comp[i], "property": str(col), "n": n, "mi": mi,
                         "nmi": nmi, "rho": rho})
    return pd.DataFrame(rows, columns=["component", "property", "n", "mi", "nmi", "rho"])


def best_mi_per_property(table: pd.DataFrame) -> pd.DataFrame:
    """For each property, the component with the highest normalised MI: ``property, component, nmi``."""
    t = table.dropna(subset=["nmi"])
    idx = t.groupby("property", sort=False)["nmi"].idxmax()
    return t.loc[idx, ["property", "component", "nmi", "rho"]].reset_index(drop=True)


# -- Fig 6: SHAP --------------------------------------------------------------------------------
def _projector_class() -> type:
    import torch
    from torch import nn

    class ComponentProjector(nn.Module):
        """Spectrum (N, npix) → D (N, k): the VAE encoder's mean, then the PCA as a frozen Linear.

        Built by :func:`make_projector`; the wrapped model is put in eval mode and
        nothing here is trained (``requires_grad`` is off for the PCA layer).
        """

        def __init__(self, model: nn.Module, components: np.ndarray, mean: np.ndarray) -> None:
            super().__init__()
            self.model = model
            k, d = components.shape
            self.pca = nn.Linear(d, k)
            with torch.no_grad():
                w = torch.as_tensor(components, dtype=torch.float32)
                self.pca.weight.copy_(w)
                self.pca.bias.copy_(-(w @ torch.as_tensor(mean, dtype=torch.float32)))
            self.pca.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mu, _ = self.model.encode(x)
            return self.pca(mu)

    return ComponentProjector


def __getattr__(name: str) -> Any:  # ComponentProjector is defined lazily (needs torch)
    if name == "ComponentProjector":
        cls = _projector_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_projector(model: SpectraVAE, pca: LatentPCA, components: Sequence[int] | None = None) -> Any:
    """A :class:`ComponentProjector` for the D components listed (default: all), in eval mode."""
    if model.n_cond:
        raise ValueError("SHAP is computed for the plain VAE (a CVAE's D depend on its conditions)")
    comps = list(range(pca.components.shape[0])) if components is None else list(components)
    cls = __getattr__("ComponentProjector")
    proj = cls(model, pca.components[comps], pca.mean)
    return proj.eval()


@dataclass(frozen=True)
class ShapResult:
    """SHAP values of the D components for some spectra.

    Attributes
    ----------
    values : (n, k, npix) array
        φ of each pixel for each component and spectrum.
    expected : (k,) array
        E[D] over the background (the base value).
    outputs : (n, k) array
        D of the explained spectra.
    additivity_error : float
        ``max |Σ_p φ + expected − outputs|`` over spectra and components.
    relative_additivity_error : float
        ``additivity_error`` divided by the standard deviation of the outputs over the
        background (a scale-free measure).
    rows : (n,) array
        The explained rows (of whatever array the caller passed).
    components : list of str
        Names of the explained components.
    """

    values: np.ndarray
    expected: np.ndarray
    outputs: np.ndarray
    additivity_error: float
    relative_additivity_error: float
    rows: np.ndarray
    components: list[str]


def shap_values(
    model: SpectraVAE,
    pca: LatentPCA,
    spectra: Any,
    background: Any,
    *,
    components: Sequence[int] | None = None,
    rows: Any | None = None,
    chunk: int = 16,
    progress: bool = False,
) -> ShapResult:
    """DeepExplainer SHAP values of the D components for ``spectra`` (n, npix).

    ``background`` (b, npix): the reference spectra (a random sample of the data).
    The explainer's own additivity assertion is switched off *only* because we
    compute the same check ourselves on every spectrum and return it
    (:attr:`ShapResult.additivity_error`); a warning is logged when it exceeds 1 % of
    the spread of the outputs. ``chunk`` spectra are explained per call (memory:
    ``chunk × 2 b`` spectra through the encoder).
    """
    import shap
    import torch
    from tqdm.auto import tqdm

    proj = make_projector(model, pca, components)
    comps = list(range(pca.components.shape[0])) if components is None else list(components)
    names = [component_names(pca.components.shape[0])[c] for c in comps]
    x = torch.as_tensor(np.asarray(spectra, dtype=np.float32))
    bg = torch.as_tensor(np.asarray(background, dtype=np.float32))
    if x.dim() != 2 or bg.dim() != 2 or x.shape[1] != bg.shape[1]:
        raise ValueError(f"spectra and background must be (n, npix) arrays, got {tuple(x.shape)} "
                         f"and {tuple(bg.shape)}")
    if len(bg) < 2:
        raise ValueError("the SHAP background needs at least 2 spectra")
    with torch.no_grad():
        bg_out = proj(bg).double().numpy()
    explainer = shap.DeepExplainer(proj, bg)
    parts = []
    steps = range(0, len(x), max(1, int(chunk)))
    for s in tqdm(steps, desc="SHAP", disable=not progress, leave=False):
        # our own additivity check follows (every spectrum, reported in the result)
        phi = explainer.shap_values(x[s : s + int(chunk)], check_additivity=False)
        phi = np.asarray(phi, dtype=np.float64)
        if phi.ndim == 2:  # one output
            phi = phi[:, :, None]
        parts.append(np.transpose(phi, (0, 2, 1)))  # (n, npix, k) → (n, k, npix)
    values = np.concatenate(parts) if parts else np.zeros((0, len(comps), x.shape[1]))
    with torch.no_grad():
        outputs = proj(x).double().numpy()
    expected = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)
    err = np.abs(values.sum(axis=2) + expected[None, :] - outputs)
    add_err = float(err.max()) if err.size else 0.0
    spread = float(np.max(bg_out.std(axis=0))) if len(bg_out) > 1 else 1.0
    rel = add_err / spread if spread > 0 else math.inf
    if rel > 0.01:
        log.warning("SHAP additivity error %.3g (%.2g of the output spread) exceeds 1 %%",
                    add_err, rel)
    else:
        log.info("SHAP additivity error %.3g (%.2g of the output spread)", add_err, rel)
    row_ids = np.arange(len(x)) if rows is None else np.asarray(rows)
    return ShapResult(values=values, expected=expected, outputs=outputs,
                      additivity_error=add_err, relative_additivity_error=rel, rows=row_ids,
                      components=names)


def mean_abs_shap(result: ShapResult) -> np.ndarray:
    """Mean |φ| over the explained spectra: (k, npix)."""
    return np.abs(result.values).mean(axis=0)


def choose_examples(values: Any, n: int = 3, quantiles: Sequence[float] | None = None) -> np.ndarray:
    """Rows whose ``values`` are nearest to evenly spaced quantiles (default 10 %…90 %).

    Used to pick the galaxies of Fig. 6 along D1 (or along sSFR). NaN rows are skipped;
    the rows returned are distinct.
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(v))
    if ok.size == 0:
        raise ValueError("no finite values to choose examples from")
    qs = np.linspace(0.1, 0.9, int(n)) if quantiles is None else np.asarray(quantiles, float)
    targets = np.quantile(v[ok], qs)
    chosen: list[int] = []
    for t in targets:
        order = ok[np.argsort(np.abs(v[ok] - t), kind="stable")]
        for r in order:
            if int(r) not in chosen:
                chosen.append(int(r))
                break
    return np.asarray(chosen, dtype=np.int64)


def importance_peaks(
    wave: Any,
    importance: Any,
    *,
    n_peaks: int = 5,
    min_separation: float = 20.0,
) -> pd.DataFrame:
    """The ``n_peaks`` highest local maxima of an importance curve, ``min_separation`` Å apart.

    Returns ``rank``, ``wave``, ``importance`` (largest first): greedy selection of the
    largest remaining value outside the windows of the peaks already taken.
    """
    wave = np.asarray(wave, dtype=np.float64)
    imp = np.asarray(importance, dtype=np.float64)
    if wave.shape != imp.shape or wave.ndim != 1:
        raise ValueError("wave and importance must be 1-D arrays of equal length")
    order = np.argsort(-np.where(np.isfinite(imp), imp, -np.inf), kind="stable")
    taken: list[int] = []
    for i in order:
        if len(taken) >= int(n_peaks) or not np.isfinite(imp[i]):
            break
        if all(abs(wave[i] - wave[j]) >= min_separation for j in taken):
            taken.append(int(i))
    return pd.DataFrame({"rank": np.arange(1, len(taken) + 1), "wave": wave[taken],
                         "importance": imp[taken]})


# -- files: the latent catalog and the analysis arrays (written by the analysis step) ----------
def write_latent_catalog(catalog: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the per-spectrum catalog of :func:`latent_catalog` as Parquet."""
    write_parquet(catalog, path)


def read_latent_catalog(path: str | os.PathLike, *, all_columns: bool = False
                        ) -> tuple[pd.DataFrame, list[str]]:
    """The latent catalog written by :func:`write_latent_catalog` and its ``D`` columns in order.

    Reads ``key`` and ``D1..Dk`` only, unless ``all_columns``. Raises
    :class:`~galforge.io.InputError` naming the file on a missing file, ``key`` or D column.
    """
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise InputError(f"latent catalog not found: {p}")
    try:
        names = pq.read_schema(p).names
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise InputError(f"{p}: not a readable Parquet file ({exc})") from None
    ds = sorted((c for c in names if re.fullmatch(r"D\d+", str(c))), key=lambda c: int(c[1:]))
    if "key" not in names:
        raise InputError(f"{p}: column 'key' missing")
    if not ds:
        raise InputError(f"{p}: no component columns D1, D2, … (has {', '.join(names)})")
    return pd.read_parquet(p, columns=None if all_columns else ["key", *ds]), ds


@dataclass(frozen=True)
class AnalysisArrays:
    """What the figures need from the analysis (``analysis.h5``; one row per D or step).

    ``pca_*``: the rotation of the latent means onto D (:class:`LatentPCA`); ``sweep_values``
    (k, n_steps) and ``sweep_spectra`` (k, n_steps, npix): decoded spectra along each D;
    ``cvae_sweeps``: condition → (values, spectra) of the best CVAE (conditions in the
    model's order); ``shap_*``: the mean |SHAP| per pixel (k, npix) and the examples.
    """

    best_vae: str
    best_cvae: str
    wave: np.ndarray
    pca_components: np.ndarray | None
    pca_mean: np.ndarray | None
    pca_variance: np.ndarray | None
    sweep_values: np.ndarray
    sweep_spectra: np.ndarray
    cvae_sweeps: dict[str, tuple[np.ndarray, np.ndarray]]
    shap_mean_abs: np.ndarray
    shap_example_rows: np.ndarray
    shap_example_flux: np.ndarray
    shap_example_values: np.ndarray
    shap_example_D: np.ndarray
    shap_additivity_error: float
    shap_relative_additivity_error: float
    shap_components: list[str]


def write_analysis_arrays(a: AnalysisArrays, path: str | os.PathLike) -> None:
    """Write :class:`AnalysisArrays` into an HDF5 file (atomically)."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["best_vae"] = a.best_vae
        h5.attrs["best_cvae"] = a.best_cvae
        h5["wave"] = a.wave
        g = h5.create_group("pca")
        g["components"], g["mean"], g["variance"] = a.pca_components, a.pca_mean, a.pca_variance
        g = h5.create_group("sweep")
        g["values"], g["spectra"] = a.sweep_values, a.sweep_spectra.astype(np.float32)
        if a.cvae_sweeps:
            g = h5.create_group("cvae_sweep")
            for c, (vals, spectra) in a.cvae_sweeps.items():
                sub = g.create_group(c)
                sub["values"] = vals
                sub["spectra"] = spectra.astype(np.float32)
        h5.attrs["cvae_conditions"] = json.dumps(list(a.cvae_sweeps))
        g = h5.create_group("shap")
        g["mean_abs"] = a.shap_mean_abs
        g["example_rows"] = a.shap_example_rows
        g["example_flux"] = a.shap_example_flux
        g["example_values"] = a.shap_example_values.astype(np.float32)
        g["example_D"] = a.shap_example_D
        g.attrs["additivity_error"] = a.shap_additivity_error
        g.attrs["relative_additivity_error"] = a.shap_relative_additivity_error
        g.attrs["components"] = json.dumps(a.shap_components)


def read_analysis_arrays(path: str | os.PathLike) -> AnalysisArrays:
    """The arrays written by :func:`write_analysis_arrays`, with their shapes checked.

    Raises :class:`~galforge.io.InputError` naming the file and the dataset or attribute
    that is missing or of the wrong shape.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise InputError(f"analysis arrays not found: {p}")
    with h5py.File(p, "r") as h5:
        wave = np.asarray(_dataset(h5, "wave", p), dtype=float).ravel()
        npix = wave.size
        sweep_vals = np.asarray(_dataset(h5, "sweep/values", p), dtype=float)
        sweep_spec = np.asarray(_dataset(h5, "sweep/spectra", p), dtype=np.float32)
        _check_shape(sweep_vals, (None, None), "sweep/values", p)
        _check_shape(sweep_spec, (*sweep_vals.shape, npix), "sweep/spectra", p)
        best_vae = str(_attr(h5, "best_vae", p, ""))
        best_cvae = str(_attr(h5, "best_cvae", p, ""))
        conds = _json_attr(h5, "cvae_conditions", p, "[]")
        cvae: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if "cvae_sweep" in h5:
            grp = h5["cvae_sweep"]
            names = [c for c in conds if c in grp] + sorted(c for c in grp if c not in conds)
            for c in names:
                v = np.asarray(_dataset(h5, f"cvae_sweep/{c}/values", p), dtype=float).ravel()
                s = np.asarray(_dataset(h5, f"cvae_sweep/{c}/spectra", p), dtype=np.float32)
                _check_shape(s, (v.size, npix), f"cvae_sweep/{c}/spectra", p)
                cvae[c] = (v, s)
        pca = {k: (np.asarray(h5[f"pca/{k}"][...]) if f"pca/{k}" in h5 else None)
               for k in ("components", "mean", "variance")}
        if "shap" not in h5:
            raise InputError(f"{p}: group 'shap' missing")
        g = h5["shap"]
        mean_abs = np.asarray(_dataset(h5, "shap/mean_abs", p), dtype=float)
        ex_rows = np.asarray(_dataset(h5, "shap/example_rows", p), dtype=np.int64).ravel()
        ex_flux = np.asarray(_dataset(h5, "shap/example_flux", p), dtype=float)
        ex_vals = np.asarray(_dataset(h5, "shap/example_values", p), dtype=float)
        ex_d = np.asarray(_dataset(h5, "shap/example_D", p), dtype=float)
        _check_shape(mean_abs, (None, npix), "shap/mean_abs", p)
        _check_shape(ex_flux, (ex_rows.size, npix), "shap/example_flux", p)
        _check_shape(ex_vals, (ex_rows.size, mean_abs.shape[0], npix), "shap/example_values", p)
        _check_shape(ex_d, (ex_rows.size, None), "shap/example_D", p)
        add_err = float(_attr(g, "additivity_error", p))
        rel_err = float(_attr(g, "relative_additivity_error", p))
        shap_names = _json_attr(g, "components", p, "[]") or [
            f"D{i + 1}" for i in range(mean_abs.shape[0])]
    return AnalysisArrays(
        best_vae=best_vae, best_cvae=best_cvae, wave=wave, pca_components=pca["components"],
        pca_mean=pca["mean"], pca_variance=pca["variance"], sweep_values=sweep_vals,
        sweep_spectra=sweep_spec, cvae_sweeps=cvae, shap_mean_abs=mean_abs,
        shap_example_rows=ex_rows, shap_example_flux=ex_flux, shap_example_values=ex_vals,
        shap_example_D=ex_d, shap_additivity_error=add_err,
        shap_relative_additivity_error=rel_err, shap_components=list(shap_names),
    )


def _dataset(h5: Any, name: str, path: Path) -> np.ndarray:
    if name not in h5:
        raise InputError(f"{path}: dataset {name!r} missing")
    obj = h5[name]
    if not hasattr(obj, "shape"):
        raise InputError(f"{path}: {name!r} is a group, expected a dataset")
    return obj[...]


def _attr(obj: Any, name: str, path: Path, default: Any = None) -> Any:
    if name not in obj.attrs:
        if default is not None:
            return default
        where = "" if obj.name == "/" else f" of {obj.name!r}"
        raise InputError(f"{path}: attribute {name!r}{where} missing")
    v = obj.attrs[name]
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _json_attr(obj: Any, name: str, path: Path, default: str) -> Any:
    raw = _attr(obj, name, path, default)
    try:
        return json.loads(raw) if str(raw).strip() else json.loads(default)
    except json.JSONDecodeError:
        raise InputError(f"{path}: attribute {name!r} is not JSON: {raw!r}") from None


def _check_shape(arr: np.ndarray, shape: tuple[int | None, ...], name: str, path: Path) -> None:
    ok = arr.ndim == len(shape) and all(s is None or a == s for a, s in zip(arr.shape, shape,
                                                                            strict=True))
    if not ok:
        want = "(" + ", ".join("·" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{path}: dataset {name!r} has shape {arr.shape}, expected {want}")
