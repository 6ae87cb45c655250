"""train.job: the shared training-job body (split, seeded build, fit with resume, outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galforge.io import InputError
from galforge.train import load_for_inference
from galforge.train._testing import TinyMLP, make_data, mse_loss
from galforge.train.job import TrainingJob, run_training_job, settings_key
from galforge.train.split import split_indices


def test_settings_key_is_stable():
    # work folders of earlier runs must keep their names
    assert settings_key({"a": 1}, [1.5, None], 0.1, 10, 3) == "4e92402bc3ce"
    assert settings_key({"b": 2, "a": 1}) == settings_key({"a": 1, "b": 2})
    assert len(settings_key(object())) == 12


def _job(usable=None, built=None):
    x, y = make_data(n=60)

    def build(rows):
        if built is not None:
            built.append(rows)
        return TinyMLP()

    return TrainingJob(
        name="tiny", noun="rows", source="memory", n_rows=60, rows_checksum=42,
        model_settings={"hidden": 16}, build_model=build,
        tensors=lambda rows: (x[rows], y[rows]), loss_fn=mse_loss,
        normalization={"note": "none"}, usable=usable,
    )


def _run(job, tmp_path, **kw):
    return run_training_job(
        job, {"epochs": 2, "batch_size": 16, "lr": 1e-2}, seed=4, val_fraction=0.2, salt=99,
        out_model=tmp_path / "model.pt", out_metrics=tmp_path / "metrics.csv",
        workroot=tmp_path / "work", progress=False, **kw,
    )


def test_runs_writes_outputs_and_resumes(tmp_path):
    built = []
    done = _run(_job(built=built), tmp_path)
    tr, va = split_indices(60, 0.2, 4, salt=99)
    np.testing.assert_array_equal(done.train_rows, tr)
    np.testing.assert_array_equal(done.val_rows, va)
    np.testing.assert_array_equal(built[0], tr)
    s = done.summary()
    assert s["n_train"] == 48 and s["n_val"] == 12 and s["epochs"] == 2 and not s["resumed"]
    assert done.workdir.parent == tmp_path / "work"
    model, meta = load_for_inference(tmp_path / "model.pt")
    assert meta.normalization == {"note": "none"} and meta.train_config["seed"] == 4
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3
    again = _run(_job(), tmp_path)  # same settings: the finished run in the work folder
    assert again.workdir == done.workdir and again.summary()["resumed"]
    model2, _ = load_for_inference(tmp_path / "model.pt")
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unusable_rows_leave_both_sides(tmp_path):
    usable = np.ones(60, bool)
    usable[::3] = False
    done = _run(_job(usable=usable), tmp_path)
    assert usable[done.train_rows].all() and usable[done.val_rows].all()
    tr, va = split_indices(60, 0.2, 4, salt=99)
    assert set(done.val_rows) == {r for r in va if usable[r]}
    with pytest.raises(InputError, match="memory: too few usable rows to train"):
        _run(_job(usable=np.zeros(60, bool)), tmp_path / "none")
