"""The model file carries everything ``galforge edf-sample`` needs: architecture, μ/σ, split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galforge.archives.zenodo import NIHAO_COLUMNS, npy_name
from galforge.cli import main
from galforge.config import resolve_config
from galforge.edf import steps
from galforge.edf.readers import read_npy_folder
from galforge.edf.settings import EdfSettings
from galforge.edf.table import read_edf_table
from galforge.train import load_for_inference

TINY = EdfSettings.from_dict(resolve_config({"scale": "tiny"})["edf"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("edf_sample")
    steps.mock(root / "galaxies", root / "truth.json", settings=TINY.mock, seed=1)
    steps.table(root / "galaxies", root / "edf.h5", root / "galaxies.csv", root / "cut.json",
                clean=TINY.clean, progress=False)
    summary = steps.train(root / "edf.h5", "cv00", root / "model.pt", root / "metrics.csv",
                          root / "training.json", root / "work", model_settings=TINY.model,
                          train_settings=TINY.train, cv=TINY.cv, seed=1,
                          val_fraction=TINY.split.val_fraction, progress=False)
    return root, summary


def test_the_model_file_holds_architecture_scaling_and_split(trained):
    root, summary = trained
    flow, meta = load_for_inference(root / "model.pt")
    assert meta.model_kwargs == TINY.model.model_kwargs()
    norm = meta.normalization
    table = read_edf_table(root / "edf.h5", stars=False)
    ids = table.galaxies["galaxy_id"].tolist()
    assert norm["model_id"] == "cv00" and norm["heldout_ids"] == summary["heldout_ids"]
    assert sorted(norm["heldout_ids"] + norm["train_ids"], key=int) == ids
    assert [ids[i] for i in norm["heldout_index"]] == norm["heldout_ids"]
    assert len(norm["heldout_ids"]) == len(ids) // TINY.cv.k
    assert (flow.feature_std > 0).all() and not (flow.feature_std == 1).all()
    assert not (flow.condition_mean == 0).all()


def test_edf_sample_needs_only_the_model_file(trained, tmp_path, monkeypatch):
    root, _ = trained
    monkeypatch.chdir(tmp_path)  # no config.yaml here
    out = tmp_path / "out" / npy_name("flow", 1, 1e11)
    table = read_edf_table(root / "edf.h5", stars=False)
    cond = table.conditions()[0]
    rc = main(["edf-sample", "--model", str(root / "model.pt"), "--conditions",
               *(f"{c:.6g}" for c in cond), "--n", "1500", "--out", str(out), "--seed", "3"])
    assert rc == 0
    arr = np.load(out)
    assert arr.shape == (len(NIHAO_COLUMNS), 1500) and np.isfinite(arr).all()
    assert arr[NIHAO_COLUMNS.index("mass")].sum() == pytest.approx(float(f"{cond[0]:.6g}"))
    assert (arr[NIHAO_COLUMNS.index("Z")] > 0).all()
    galaxy = read_npy_folder(out.parent)[0]  # reads back as a galaxy of the archive's layout
    assert galaxy.galaxy_id == "1" and len(galaxy.stars) == 1500
    again = tmp_path / "again.npy"
    main(["edf-sample", "--model", str(root / "model.pt"), "--conditions",
          *(f"{c:.6g}" for c in cond), "--n", "1500", "--out", str(again), "--seed", "3",
          "--chunk", "400"])
    assert not np.array_equal(np.load(again), arr)  # other chunks, other noise
    flow, _ = load_for_inference(root / "model.pt")
    lp = flow.log_prob(arr[[0, 1, 2, 3, 4, 5, 6, 7, 8, 10]].T, cond).detach().numpy()
    assert np.isfinite(lp).all()


@pytest.mark.parametrize(("args", "message"), [
    (["--conditions", "1e10", "5", "1", "--n", "10"], "needs 4 values"),
    (["--conditions", "1e10", "5", "1", "x", "--n", "10"], "'x' is not a number"),
    (["--conditions", "-1000", "5", "1", "0.01", "--n", "10"], "must be positive"),
    (["--conditions", "1e10", "5", "1", "0.01", "--n", "0"], "positive number of stars"),
])
def test_edf_sample_names_bad_arguments(trained, tmp_path, capsys, args, message):
    root, _ = trained
    rc = main(["edf-sample", "--model", str(root / "model.pt"), "--out",
               str(tmp_path / "s.npy"), *args])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "s.npy").exists()


def test_training_summary_and_metrics(trained):
    root, summary = trained
    assert json.loads((root / "training.json").read_text()) == summary
    assert summary["n_parameters"] > 0 and summary["epochs"] == TINY.train.epochs
    assert (root / "metrics.csv").read_text().startswith("epoch,step,train_loss,val_loss")


def test_evaluate_and_figures_steps_write_their_outputs(trained, tmp_path):
    root, _ = trained
    from galforge.edf.figure_set import FIGURES, TRUTH_FIGURE

    checks = steps.evaluate(
        root / "edf.h5", [root / "model.pt"], heldout_csv=tmp_path / "heldout.csv",
        heldout_md=tmp_path / "heldout.md", mmd_csv=tmp_path / "mmd.csv",
        truth_report=tmp_path / "truth_recovery.json", samples_out=tmp_path / "samples.h5",
        settings=TINY.eval, clean=TINY.clean, seed=1, source="mock", truth=root / "truth.json",
        progress=False)
    assert json.loads((tmp_path / "truth_recovery.json").read_text()) == checks
    flags = {k: v for k, v in checks.items() if k.startswith("pass_")}
    assert set(flags) == {"pass_heldout", "pass_mmd_rises_with_dlogm", "pass_inclination"}
    assert all(isinstance(v, bool) for v in flags.values())
    held = pd.read_csv(tmp_path / "heldout.csv", dtype={"galaxy_id": str})
    assert len(held) == checks["n_heldout"] == TINY.mock.n_galaxies // TINY.cv.k
    assert (tmp_path / "heldout.md").read_text().startswith("|")
    written = steps.figures(
        table=root / "edf.h5", heldout=tmp_path / "heldout.csv", mmd=tmp_path / "mmd.csv",
        samples=tmp_path / "samples.h5", truth_report=tmp_path / "truth_recovery.json",
        metrics=[root / "metrics.csv"], outdir=tmp_path / "figures",
        cfg=resolve_config({"scale": "tiny"}), truth=root / "truth.json")
    stems = {p.stem for p in written}
    assert stems == {*FIGURES, TRUTH_FIGURE} and len(written) == 2 * len(stems)
    assert all(p.stat().st_size > 1000 for p in written)


def test_the_parity_step_times_the_trained_flow(trained, tmp_path):
    """``tables/parity.*`` from the model file, its training summary and the evaluation's
    tables (fabricated here); the sampling row is a measured time, scaled to 1e6 stars."""
    from galforge.edf.parity import PAPER
    from galforge.parity import read_parity

    root, _ = trained
    truth = {"n_heldout": 2, "floor_factor": 3.0, "fraction_heldout_passing": 0.5,
             "spearman_mmd_vs_abs_dlogm": 0.4, "pass_heldout": False,
             "pass_mmd_rises_with_dlogm": True}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    pd.DataFrame({"kind": ["model", "data"], "dlogm": [0.05, 0.02],
                  "mmd_kernel": [0.01, 0.02]}).to_csv(tmp_path / "mmd.csv", index=False)
    settings = EdfSettings.from_dict({**resolve_config({"scale": "tiny"})["edf"]})
    steps.parity(model=root / "model.pt", training=root / "training.json",
                 truth_report=tmp_path / "truth.json", mmd=tmp_path / "mmd.csv",
                 table=root / "edf.h5", out_csv=tmp_path / "p.csv", out_md=tmp_path / "p.md",
                 out_html=tmp_path / "p.html", settings=settings, scale="tiny", source="mock",
                 seed=1)
    t = read_parity(tmp_path / "p.csv")
    row = t[t["quantity"] == PAPER["sampling"].quantity].iloc[0]
    assert row["ours"].endswith(" s (cpu)") and float(row["ours"].split()[0]) > 0
    assert f"{settings.eval.timing_stars:,} stars in" in row["note"]
    assert (tmp_path / "p.md").exists() and "<table" in (tmp_path / "p.html").read_text()
