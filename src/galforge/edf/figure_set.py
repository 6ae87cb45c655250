"""Every figure of the edf study, from the workflow's files.

Each figure is written as PDF + PNG and stamped with the run, the data source, the
configuration hash and the code version (:func:`galforge.figures.save_figure`). The
galaxy shown in the corner plot, the density maps and the marginals is the held-out
instance with the median MMD in noise floors (a typical one, not the best).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from galforge.provenance import Provenance

log = logging.getLogger("galforge.edf")

#: Stems of the figures :func:`make_figures` writes (``<stem>.pdf`` and ``<stem>.png``).
FIGURES: tuple[str, ...] = ("mmd_vs_dlogm", "corner_heldout", "density_maps", "marginals",
                            "loss_curves")
#: The mock-only figure of the planted-truth checks.
TRUTH_FIGURE = "truth_recovery"


def typical_instance(heldout: pd.DataFrame) -> pd.Series:
    """The held-out instance whose ratio to the noise floor is the median one."""
    order = heldout["ratio_to_floor"].rank(method="first")
    return heldout.loc[(order - (len(order) + 1) / 2).abs().idxmin()]


def make_figures(*, table: str | Path, heldout: str | Path, mmd: str | Path,
                 samples: str | Path, truth_report: str | Path,
                 metrics: Mapping[str, str | Path], outdir: str | Path, cfg: dict[str, Any],
                 truth: str | Path | None = None) -> list[Path]:
    """Write every figure into ``outdir``; returns the paths written."""
    from galforge.edf import figures as F
    from galforge.edf.evaluate import inclination_errors, load_truth, read_samples
    from galforge.edf.table import read_edf_table
    from galforge.edf.training import features_of
    from galforge.figures import save_figure

    tab = read_edf_table(table)
    held = pd.read_csv(heldout, dtype={"galaxy_id": str, "nearest_id": str})
    checks = json.loads(Path(truth_report).read_text())
    pick = typical_instance(held)
    data = features_of(tab.stars_of(int(pick["index"])))
    model = read_samples(samples)[f"{pick['model_id']}/{pick['galaxy_id']}"]
    title = (f"galaxy {pick['galaxy_id']} (held out by {pick['model_id']}), "
             f"log M* = {pick['log_mstar']:.2f}, MMD = {pick['ratio_to_floor']:.1f} floors")
    figs = {
        "mmd_vs_dlogm": F.fig_mmd_vs_dlogm(pd.read_csv(mmd)),
        "corner_heldout": F.fig_corner(data, model, title),
        "density_maps": F.fig_density_maps(data, model, title),
        "marginals": F.fig_marginals(data, model, title),
        "loss_curves": F.fig_losses({k: pd.read_csv(v) for k, v in metrics.items()}),
    }
    if truth is not None:
        incl = inclination_errors(tab, load_truth(truth))
        figs[TRUTH_FIGURE] = F.fig_truth_recovery(held, checks, incl)
    prov = Provenance.from_config(cfg, study="edf")
    written: list[Path] = []
    for stem, fig in figs.items():
        written.extend(save_figure(fig, Path(outdir) / stem, prov))
    log.info("wrote %d figure files to %s", len(written), outdir)
    return written
