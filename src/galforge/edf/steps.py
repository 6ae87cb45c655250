"""The edf study's workflow steps: one function per rule (``galforge edf-*``).

Each step takes its input and output paths and the typed settings of the sections it
uses; :mod:`galforge.edf.cli` parses the arguments and builds the settings. Every output
is written atomically.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from galforge.io import write_json

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping, Sequence

    from galforge.edf.settings import (
        CleanSettings,
        CrossValidationSettings,
        EdfModelSettings,
        EdfSettings,
        EvalSettings,
        SourceSettings,
        ZenodoSettings,
    )
    from galforge.mock.edf_settings import MockEdfSettings
    from galforge.train.settings import TrainSettings

log = logging.getLogger("galforge.edf")

PathLike = str | os.PathLike

__all__ = ["evaluate", "fetch", "figures", "mock", "sample", "table", "train"]


def mock(folder: PathLike, truth: PathLike, *, settings: MockEdfSettings, seed: int,
         config_hash: str = "") -> dict[str, Any]:
    """The mock galaxies' ``.npy`` files (in the archive's layout) and the truth JSON."""
    from galforge.mock.edf import write_edf_mock

    return write_edf_mock(settings, seed=seed, folder=folder, truth_path=truth,
                          config_hash=config_hash)


def fetch(galaxies: PathLike, manifest: PathLike, *, settings: ZenodoSettings,
          progress: bool = True) -> dict[str, Any]:
    """The authors' record from Zenodo: every file downloaded and checked, archives unpacked
    safely, the galaxies' ``.npy`` files gathered in ``galaxies``; the manifest (record
    asked for, version resolved, md5 of each file) beside it and at ``manifest``."""
    import shutil
    from pathlib import Path

    from galforge.archives.zenodo import download_record
    from galforge.io import atomic_path

    folder = Path(galaxies)
    out = download_record(settings.record, folder.parent, folder, api_url=settings.api_url,
                          max_bytes=int(settings.max_unpacked_gb * 1e9),
                          read_timeout=settings.timeout, progress=progress)
    with atomic_path(manifest) as tmp:
        shutil.copyfile(folder.parent / "manifest.json", tmp)
    log.info("Zenodo record %s (version %s): %d galaxies", out["record_requested"],
             out["record_resolved"], out["galaxies"])
    return out


def table(galaxies: PathLike, out: PathLike, index: PathLike, report: PathLike, *,
          clean: CleanSettings, source: SourceSettings | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Read every galaxy, clean and rotate it, compute its conditions; write the eDF
    table (HDF5), the index <-> id table (CSV) and the cut report (JSON)."""
    from tqdm.auto import tqdm

    from galforge.edf.clean import CUTS, clean_galaxy
    from galforge.edf.readers import read_galaxies
    from galforge.edf.table import ORDER_NOTE, write_edf_table, write_index

    col = source.galaxy_column if source else "galaxy"
    mdm = source.m_dm_column if source else None
    raw = read_galaxies(galaxies, col, mdm)
    done = []
    for g in tqdm(raw, desc="clean", unit="galaxy", disable=not progress):
        done.append((g, clean_galaxy(g.stars, clean)))
        g.stars = g.stars[:0]  # free the raw particles
    tab = write_edf_table(out, done, attrs={"clean": str(clean.to_dict())})
    write_index(tab, index)
    dropped = [{"galaxy_id": g.galaxy_id, "n_raw": c.n_raw, "n_left": len(c.stars)}
               for g, c in done if not c.kept]
    rep = {
        "source": str(galaxies),
        "order": ORDER_NOTE,
        "rotation": "total angular momentum of the stars inside the radius holding "
                    f"{clean.rotation_quantile:g} of them turned onto +z (Rodrigues)",
        "galaxies_read": len(done),
        "galaxies_kept": len(tab),
        "galaxies_dropped_min_stars": dropped,
        "stars_read": int(sum(c.n_raw for _, c in done)),
        "stars_kept": int(tab["n_stars"].sum()),
        "removed": {k: int(sum(c.removed[k] for _, c in done)) for k in CUTS},
        "removed_in_dropped_galaxies": int(sum(len(c.stars) for _, c in done if not c.kept)),
        "radius_cap_applied": [g.galaxy_id for g, c in done if c.cap_applied],
        "per_galaxy": [{"galaxy_id": g.galaxy_id, "n_raw": c.n_raw, "n_kept": len(c.stars),
                        "kept": c.kept, "r_cut_kpc": round(c.r_cut, 4),
                        "cap_applied": c.cap_applied, **{f"removed_{k}": c.removed[k]
                                                         for k in CUTS}}
                       for g, c in done],
    }
    write_json(rep, report)
    log.info("eDF table: %d of %d galaxies, %d of %d stars; removed %s", rep["galaxies_kept"],
             rep["galaxies_read"], rep["stars_kept"], rep["stars_read"], rep["removed"])
    return rep


def train(table_path: PathLike, model_id: str, model: PathLike, metrics: PathLike,
          summary: PathLike, workdir: PathLike, *, model_settings: EdfModelSettings,
          train_settings: TrainSettings, cv: CrossValidationSettings, seed: int,
          val_fraction: float, run_config: Mapping[str, Any] | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train the flow ``model_id`` (resumes from its checkpoint in ``workdir``)."""
    from galforge.edf.training import train_edf_model
    from galforge.train.distributed import is_main_process

    out = train_edf_model(table_path, model_id, model_settings, train_settings, cv, seed=seed,
                          val_fraction=val_fraction, out_model=model, out_metrics=metrics,
                          workroot=workdir, progress=progress,
                          run_config=None if run_config is None else dict(run_config))
    if is_main_process():  # under torchrun (train.devices > 1), rank 0 writes
        write_json(out, summary)
    return out


def sample(model: PathLike, out: PathLike, *, conditions: Sequence[float], n: int,
           seed: int = 0, chunk: int = 300_000,
           devices: Sequence[str] | None = None) -> dict[str, Any]:
    """``n`` stars of a galaxy with ``conditions`` (M* [M_sun], tau50, tau10 [Gyr], mean Z)
    from a trained flow, written as an (11, n) ``.npy`` array in the archive's layout
    (each particle's mass M* / n), so that it reads back as a galaxy. The chunks are spread
    over ``devices`` (default: every visible GPU, else the CPU)."""
    import time

    import numpy as np

    from galforge.archives.zenodo import NIHAO_COLUMNS
    from galforge.edf.training import FEATURE_COLUMNS
    from galforge.io import InputError, atomic_path
    from galforge.train import load_for_inference

    if n < 1:
        raise InputError(f"--n must be a positive number of stars, got {n}")
    import torch

    if devices is None and torch.cuda.is_available():  # every visible GPU, as the seed
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    flow, meta = load_for_inference(model)
    cond = [float(c) for c in conditions]
    if len(cond) != flow.n_conditions:
        raise InputError(f"--conditions needs {flow.n_conditions} values "
                         f"({', '.join(flow.condition_names)}), got {len(cond)}")
    t0 = time.perf_counter()
    try:
        feats = flow.sample(int(n), cond, seed=seed, chunk=chunk, devices=devices)
    except ValueError as exc:
        raise InputError(f"--conditions: {exc}") from None
    seconds = time.perf_counter() - t0
    arr = np.empty((len(NIHAO_COLUMNS), int(n)))
    arr[list(FEATURE_COLUMNS)] = feats.T
    arr[NIHAO_COLUMNS.index("mass")] = cond[0] / n
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)
    info = {"model": str(model), "model_id": (meta.normalization or {}).get("model_id"),
            "n": int(n), "conditions": dict(zip(flow.condition_names, cond, strict=True)),
            "seconds": round(seconds, 3), "stars_per_second": round(n / max(seconds, 1e-9))}
    log.info("sampled: %s", info)
    return info


def evaluate(table_path: PathLike, models: Sequence[PathLike], *, heldout_csv: PathLike,
             heldout_md: PathLike, mmd_csv: PathLike, truth_report: PathLike,
             samples_out: PathLike, settings: EvalSettings, clean: CleanSettings, seed: int,
             source: str, truth: PathLike | None = None,
             progress: bool = True) -> dict[str, Any]:
    """MMDs of every cross-validation model on its held-out galaxies; the checks
    (``truth_recovery.json``); the model samples the figures draw."""
    from galforge.edf.evaluate import evaluate_models, write_samples
    from galforge.io import atomic_path
    from galforge.stats import write_tables

    res = evaluate_models(table_path, models, settings=settings, clean=clean, seed=seed,
                          truth_path=truth, source=source, progress=progress)
    write_tables(res.heldout, heldout_csv, heldout_md)
    with atomic_path(mmd_csv) as tmp:
        res.mmd_table.to_csv(tmp, index=False)
    write_samples(res.samples, samples_out)
    write_json(res.checks, truth_report)
    return res.checks


def figures(*, table: PathLike, heldout: PathLike, mmd: PathLike, samples: PathLike,
            truth_report: PathLike, metrics: Sequence[PathLike], outdir: PathLike,
            cfg: dict[str, Any], truth: PathLike | None = None) -> list[Any]:
    """Every figure of the study (PDF + PNG, stamped with the provenance of ``cfg``).

    ``metrics``: the ``metrics.csv`` of every model, each in ``models/<id>/``.
    """
    from pathlib import Path

    from galforge.edf.figure_set import make_figures

    named = {Path(m).parent.name: m for m in metrics}
    return make_figures(table=table, heldout=heldout, mmd=mmd, samples=samples,
                        truth_report=truth_report, metrics=named, outdir=outdir, cfg=cfg,
                        truth=truth)


def parity(*, model: PathLike, training: PathLike, truth_report: PathLike, mmd: PathLike,
           table: PathLike, out_csv: PathLike, out_md: PathLike, out_html: PathLike | None,
           settings: EdfSettings, scale: str, source: str, seed: int) -> None:
    """The paper's headline numbers beside ours (``tables/parity.*``), from the all-galaxies
    model, its training summary and the evaluation's tables."""
    from galforge.edf.parity import TITLE, parity_from_files
    from galforge.parity import write_parity

    cv = {"mode": settings.cv.mode, "n_models": settings.cv.n_models,
          "n_leave_out": settings.cv.n_leave_out, "k": settings.cv.k}
    frame = parity_from_files(model=model, training=training, truth_report=truth_report,
                              mmd_table=mmd, table=table, cv=cv, scale=scale, source=source,
                              sample_stars=settings.eval.timing_stars, seed=seed)
    write_parity(frame, out_csv, out_md, out_html, title=TITLE)
    log.info("parity table: %d rows", len(frame))
