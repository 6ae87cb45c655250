"""Evaluate the cross-validation flows on their held-out galaxies: MMDs and the checks.

For every model and every galaxy it left out (a *held-out instance*):

* the flow samples ``n = min(eval.n_stars, ...)`` stars at the galaxy's conditions;
* ``eval.repeats`` (3) pairs of independent *true* samples ``A_r``, ``B_r`` of the same
  size: on the mock, fresh draws of the galaxy (:func:`galforge.mock.edf.draw_galaxy`,
  draws 1, 2, ...) through the same cleaning and rotation as the data; elsewhere two
  disjoint random halves of the galaxy's own stars, split anew each time (then
  ``n <= N / 2``);
* the kernel MMD² (:func:`galforge.edf.mmd.kernel_mmd`, bandwidth from the median
  heuristic on ``A_1``), each the mean over the repeats: model sample ``r`` vs ``A_r``,
  ``A_r`` vs ``B_r`` (the *noise floor*) and ``n`` stars of the training galaxy nearest
  in log M* vs ``A_r``; the linear MMD (the seed's) of the same pairs. (One pair gives a
  ratio to the floor that scatters by a factor ~2 on its own: the floor is itself one
  draw of a noisy statistic; three pairs halve that.);
* the MMDs of the model sample (and, for the figure's contours, of every data galaxy)
  against every data galaxy, on ``eval.table_stars``-size subsamples, with Δlog M*.

All MMDs act on features standardised with the mean and spread of all the table's stars
(log10 Z as the flows learn it), the same for every model, so that rows compare across
models.

Checks (``tables/truth_recovery.json``, one ``pass_<check>`` each):

``pass_heldout``
    at least ``eval.pass_fraction`` (80 %) of the held-out instances have a kernel MMD
    (model vs fresh truth) at most ``eval.floor_factor`` (3) noise floors **and** below
    the MMD of the training galaxy nearest in log M* (the flow interpolates better than
    the nearest neighbour); the fractions of each part are reported too;
``pass_mmd_rises_with_dlogm``
    Spearman ρ of the model-vs-data kernel MMD against |Δlog M*| over all rows
    >= ``eval.min_spearman`` (0.3);
``pass_inclination`` (mock)
    every galaxy's rotation turned its planted spin axis to within 1° of +z.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from galforge.edf.mmd import kernel_mmd, linear_mmd, median_bandwidth, sq_distances
from galforge.edf.table import EdfTable, read_edf_table
from galforge.edf.training import features_of, table_checksum
from galforge.io import InputError, atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from galforge.edf.settings import CleanSettings, EvalSettings

log = logging.getLogger("galforge.edf")

__all__ = ["EvalResult", "Instance", "Standardiser", "evaluate_instances", "evaluate_models",
           "inclination_errors", "load_truth", "read_samples", "write_samples"]

#: Largest angle between a galaxy's turned spin axis and +z that passes [deg].
INCLINATION_TOLERANCE_DEG = 1.0
_SALT = 0xE7A


class Standardiser:
    """The table's standardisation of the flow's features (log10 on ``log_features``)."""

    def __init__(self, table: EdfTable, log_features: Sequence[int] = (6,)) -> None:
        self.log = list(log_features)
        t = self.transform_raw(features_of(table.stars))
        self.mean, self.std = t.mean(axis=0), t.std(axis=0)

    def transform_raw(self, feats: np.ndarray) -> np.ndarray:
        t = np.array(feats, dtype=np.float64)
        t[:, self.log] = np.log10(np.clip(t[:, self.log], 1e-30, None))
        return t

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        return (self.transform_raw(feats) - self.mean) / self.std


@dataclass
class EvalResult:
    """What :func:`evaluate_models` found."""

    heldout: pd.DataFrame
    mmd_table: pd.DataFrame
    checks: dict[str, Any]
    samples: dict[str, np.ndarray] = field(default_factory=dict)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SALT, *map(int, key)]))


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(rng.choice(len(x), n, replace=False))]


def _true_samples(table: EdfTable, i: int, n: int, repeats: int,
                  truth: dict[str, Any] | None, clean: CleanSettings,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``repeats`` pairs of independent true samples (physical features) of galaxy ``i``,
    all of one size (``n`` at most): fresh mock draws when ``truth`` holds the galaxy,
    else disjoint halves of its stars."""
    from galforge.edf.clean import clean_galaxy

    gid = str(table.galaxies["galaxy_id"].iloc[i])
    rng = _rng(seed, 1, i)
    if truth is not None and gid in truth["by_id"]:
        from galforge.mock.edf import draw_galaxy

        g = truth["by_id"][gid]
        draws = [features_of(clean_galaxy(draw_galaxy(g, truth["seed"], draw=d).T,
                                          clean).stars) for d in range(1, 2 * repeats + 1)]
        m = min([n, *(len(d) for d in draws)])
        draws = [_subsample(d, m, rng) for d in draws]
        return [(draws[2 * r], draws[2 * r + 1]) for r in range(repeats)]
    stars = features_of(table.stars_of(i))
    half = min(n, len(stars) // 2)
    out = []
    for _ in range(repeats):
        perm = rng.permutation(len(stars))
        out.append((stars[perm[:half]], stars[perm[half:2 * half]]))
    return out


def inclination_errors(table: EdfTable, truth: dict[str, Any]) -> dict[str, float]:
    """Galaxy id -> angle [deg] between its rotated planted spin axis and +z."""
    out = {}
    for i, gid in enumerate(table.galaxies["galaxy_id"].astype(str)):
        g = truth["by_id"].get(gid)
        if g is None:
            continue
        v = table.rotation[i] @ np.asarray(g.spin_axis, dtype=np.float64)
        out[gid] = float(np.degrees(np.arccos(np.clip(v[2] / np.linalg.norm(v), -1.0, 1.0))))
    return out


def load_truth(path: str | Path | None) -> dict[str, Any] | None:
    """The mock's truth keyed by galaxy id (None without a truth file)."""
    if path is None:
        return None
    from galforge.mock.edf import read_truth

    seed, galaxies = read_truth(path)
    return {"seed": seed, "by_id": {g.galaxy_id: g for g in galaxies}}


@dataclass(frozen=True)
class Instance:
    """One held-out galaxy of one model: the model's sampler, its id, the galaxy's index
    and the indices of the galaxies it trained on.

    ``sample(n, conditions, seed)`` returns ``n`` stars (physical features, (n, 10)) at
    the physical ``conditions`` (4,).
    """

    sample: Any
    model_id: str
    index: int
    train_index: np.ndarray


def evaluate_models(table_path: str | Path, model_paths: Sequence[str | Path], *,
                    settings: EvalSettings, clean: CleanSettings, seed: int,
                    truth_path: str | Path | None = None, source: str = "mock",
                    conditions: np.ndarray | None = None,
                    progress: bool = True) -> EvalResult:
    """Every check on every held-out instance of the cross-validation ``model_paths``.

    ``conditions`` (G, 4), physical: sample each galaxy at these instead of its own
    (the test of a flow given wrong conditions).
    """
    from galforge.train import load_for_inference

    table = read_edf_table(table_path)
    checksum = table_checksum(table)
    instances = []
    for path in model_paths:
        flow, meta = load_for_inference(path)
        norm = meta.normalization or {}
        if norm.get("table", {}).get("checksum") != checksum:
            raise InputError(f"{path}: trained on another eDF table than {table.path}")
        train_idx = np.setdiff1d(np.arange(table.n_galaxies), norm["heldout_index"])

        def sample(n: int, cond: np.ndarray, s: int, flow: Any = flow) -> np.ndarray:
            return flow.sample(n, cond, seed=s, chunk=settings.sample_chunk)

        instances += [Instance(sample, norm["model_id"], int(i), train_idx)
                      for i in norm["heldout_index"]]
    return evaluate_instances(table, instances, settings=settings, clean=clean, seed=seed,
                              truth=load_truth(truth_path), source=source,
                              n_models=len(model_paths), conditions=conditions,
                              progress=progress)


def evaluate_instances(table: EdfTable, instances: Sequence[Instance], *,
                       settings: EvalSettings, clean: CleanSettings, seed: int,
                       truth: dict[str, Any] | None, source: str, n_models: int,
                       conditions: np.ndarray | None = None,
                       progress: bool = True) -> EvalResult:
    """The MMDs and checks of held-out ``instances`` (see the module docstring)."""
    from scipy.stats import spearmanr
    from tqdm.auto import tqdm

    if not instances:
        raise InputError("no held-out galaxy: the models leave none out")
    std = Standardiser(table)
    cond = table.conditions() if conditions is None else np.asarray(conditions, dtype=float)
    log_m = np.log10(table.galaxies["mstar"].to_numpy(dtype=float))
    ids = table.galaxies["galaxy_id"].astype(str).to_numpy()
    # a fixed subsample of every data galaxy for the MMD-vs-Δlog M* table
    sub = [std(_subsample(features_of(table.stars_of(i)), settings.table_stars, _rng(seed, 2, i)))
           for i in range(table.n_galaxies)]
    heldout_rows, table_rows = [], []
    samples: dict[str, np.ndarray] = {}
    for k, inst in enumerate(tqdm(instances, desc="held-out", unit="galaxy",
                                  disable=not progress)):
        model_id, i, train_idx = inst.model_id, inst.index, inst.train_index
        pairs = _true_samples(table, i, settings.n_stars, settings.repeats, truth, clean, seed)
        n = len(pairs[0][0])
        rng = _rng(seed, 3, k)
        near = int(train_idx[np.argmin(np.abs(log_m[train_idx] - log_m[i]))])
        near_all = features_of(table.stars_of(near))
        xa = [std(a) for a, _ in pairs]
        xb = [std(b) for _, b in pairs]
        xm = [std(inst.sample(n, cond[i], int(rng.integers(2**31)))) for _ in pairs]
        xn = [std(_subsample(near_all, n, rng)) for _ in pairs]
        h = median_bandwidth(xa[0], seed)

        def mean(f: Any, xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
            return float(np.mean([f(x, y) for x, y in zip(xs, ys, strict=True)]))

        def kern(x: np.ndarray, y: np.ndarray, h: float = h) -> float:
            return kernel_mmd(x, y, h)

        row = {
            "model_id": model_id, "galaxy_id": ids[i], "index": i, "log_mstar": log_m[i],
            "n": n, "repeats": len(pairs), "bandwidth": h, "mmd_model": mean(kern, xm, xa),
            "mmd_floor": mean(kern, xa, xb), "nearest_id": ids[near],
            "nearest_dlogm": log_m[near] - log_m[i], "mmd_nearest": mean(kern, xn, xa),
            "linear_model": mean(linear_mmd, xm, xa), "linear_floor": mean(linear_mmd, xa, xb),
            "linear_nearest": mean(linear_mmd, xn, xa),
        }
        row["ratio_to_floor"] = row["mmd_model"] / row["mmd_floor"]
        row["within_floor"] = row["mmd_model"] <= settings.floor_factor * row["mmd_floor"]
        row["beats_nearest"] = row["mmd_model"] < row["mmd_nearest"]
        row["passes"] = row["within_floor"] and row["beats_nearest"]
        heldout_rows.append(row)
        xm_t = _subsample(xm[0], settings.table_stars, _rng(seed, 5, k))
        for j in range(table.n_galaxies):
            table_rows.append({"kind": "model", "model_id": model_id, "galaxy_id": ids[i],
                               "other_id": ids[j], "dlogm": log_m[j] - log_m[i],
                               "mmd_kernel": kernel_mmd(xm_t, sub[j], h),
                               "mmd_linear": linear_mmd(xm_t, sub[j])})
        samples[f"{model_id}/{ids[i]}"] = inst.sample(
            settings.figure_stars, cond[i], int(_rng(seed, 6, k).integers(2**31))
        ).astype(np.float32)
    table_rows += _data_vs_data(sub, ids, log_m, seed)
    heldout = pd.DataFrame(heldout_rows)
    mmd_table = pd.DataFrame(table_rows)
    model_rows = mmd_table[mmd_table["kind"] == "model"]
    rho, p = spearmanr(model_rows["mmd_kernel"], model_rows["dlogm"].abs())
    checks: dict[str, Any] = {
        "source": source, "n_models": int(n_models), "n_heldout": len(heldout),
        "n_stars": int(settings.n_stars), "repeats": int(settings.repeats),
        "floor": "pairs of fresh mock draws" if truth else
        "pairs of disjoint halves of the galaxy's stars",
        "floor_factor": settings.floor_factor, "required_fraction_passing": settings.pass_fraction,
        "fraction_within_floor": float(heldout["within_floor"].mean()),
        "fraction_beats_nearest": float(heldout["beats_nearest"].mean()),
        "fraction_heldout_passing": float(heldout["passes"].mean()),
        "median_ratio_to_floor": float(heldout["ratio_to_floor"].median()),
        "spearman_mmd_vs_abs_dlogm": float(rho), "spearman_p": float(p),
        "min_spearman": settings.min_spearman,
    }
    checks["pass_heldout"] = bool(checks["fraction_heldout_passing"] >= settings.pass_fraction)
    checks["pass_mmd_rises_with_dlogm"] = bool(rho >= settings.min_spearman)
    if truth is not None:
        err = inclination_errors(table, truth)
        checks["inclination_error_deg_max"] = max(err.values())
        checks["inclination_error_deg_median"] = float(np.median(list(err.values())))
        checks["pass_inclination"] = bool(checks["inclination_error_deg_max"]
                                          < INCLINATION_TOLERANCE_DEG)
    log.info("held-out checks: %s", {k: v for k, v in checks.items() if k.startswith(("pass_",
                                                                                       "fraction"))})
    return EvalResult(heldout=heldout, mmd_table=mmd_table, checks=checks, samples=samples)


def _data_vs_data(sub: list[np.ndarray], ids: np.ndarray, log_m: np.ndarray,
                  seed: int) -> list[dict[str, Any]]:
    """Kernel and linear MMD of every ordered pair of data galaxies (bandwidth of the first)."""
    import torch

    g = len(sub)
    self_d = [sq_distances(s, s) for s in sub]
    hs = [median_bandwidth(s, seed) for s in sub]
    rows = []
    for a in range(g):
        for b in range(g):
            if a == b:
                continue
            gam = -0.5 / hs[a] ** 2
            kab = torch.exp(sq_distances(sub[a], sub[b]) * gam).mean()
            mmd = float(torch.exp(self_d[a] * gam).mean() + torch.exp(self_d[b] * gam).mean()
                        - 2 * kab)
            rows.append({"kind": "data", "model_id": "", "galaxy_id": ids[a], "other_id": ids[b],
                         "dlogm": log_m[b] - log_m[a], "mmd_kernel": mmd,
                         "mmd_linear": linear_mmd(sub[a], sub[b])})
    return rows


def write_samples(samples: dict[str, np.ndarray], path: str | Path) -> None:
    """Model samples of every held-out instance (HDF5, one (n, 10) dataset each)."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for key, arr in samples.items():
            h5.create_dataset(key, data=arr)


def read_samples(path: str | Path) -> dict[str, np.ndarray]:
    """The samples written by :func:`write_samples` (key ``<model_id>/<galaxy_id>``)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as h5:
        for model_id in h5:
            for gid in h5[model_id]:
                out[f"{model_id}/{gid}"] = h5[model_id][gid][()]
    return out
