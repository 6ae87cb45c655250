"""Data-parallel training in the shared trainer: 2 CPU processes over gloo under torchrun take
the steps of one process at the same global batch, and write the outputs once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from galforge.train import load_checkpoint
from galforge.train.distributed import DistInfo, launcher, shard

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))

SCRIPT = textwrap.dedent("""
    import logging
    import sys
    import torch
    from galforge.edf.flow import EdfFlow, edf_nll_loss
    from galforge.train.loop import fit
    from galforge.train.seeding import seed_everything
    from galforge.train.settings import TrainSettings

    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 10, generator=g) * torch.linspace(0.5, 2.0, 10)
    c = torch.randn(500, 4, generator=g)
    x = x + 0.5 * c.repeat(1, 3)[:, :10]          # the features depend on the context
    seed_everything(3)
    model = EdfFlow(n_layers=2, hidden=16, mlp_layers=2, bins=4)
    cfg = TrainSettings(epochs=3, batch_size=63, lr=3e-3, seed=3, progress=False,
                        scheduler="exponential", gamma=0.9, gamma_every=4)
    # 500 rows in batches of 63: shards of 32 and 31 rows, a last batch of 59 (30 + 29)
    fit(model, edf_nll_loss, (x[:440], c[:440]), (x[440:], c[440:]), cfg, workdir=sys.argv[1])
""")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found beside the interpreter")
def test_two_gloo_processes_take_the_steps_of_one(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    one = _run([sys.executable, str(script), str(tmp_path / "one")], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run([TORCHRUN, "--standalone", "--nproc_per_node=2", str(script),
                str(tmp_path / "two")], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "data-parallel training: process 1 of 2" in two.stderr
    m1 = pd.read_csv(tmp_path / "one" / "metrics.csv")
    m2 = pd.read_csv(tmp_path / "two" / "metrics.csv")
    assert len(m1) == len(m2) == 3 and list(m1["step"]) == list(m2["step"]) == [7, 14, 21]
    for col in ("train_loss", "val_loss", "lr"):
        np.testing.assert_allclose(m2[col], m1[col], rtol=1e-4, err_msg=col)
    w1 = load_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]["state_dict"]
    w2 = load_checkpoint(tmp_path / "two" / "checkpoint.pt")["model"]["state_dict"]
    for name, a in w1.items():
        assert torch.allclose(a, w2[name], atol=1e-4), name
    # the same weights after 21 steps; and not the weights it started from
    assert not torch.allclose(w1["transform._transforms.0.bias"], torch.zeros(10))


def test_shards_cover_the_batch_once():
    batch = (torch.arange(7), {"c": torch.arange(7) * 10})
    parts = [shard(batch, 7, DistInfo(rank=r, world=3)) for r in range(3)]
    assert [n for _, n in parts] == [3, 2, 2]
    rows = sorted(int(v) for p, _ in parts for v in p[0])
    assert rows == list(range(7))
    assert parts[1][0][1]["c"].tolist() == [10, 40]
    assert launcher(1) == "galforge"
    assert launcher(4) == "torchrun --standalone --nproc_per_node=4 -m galforge.cli"


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found beside the interpreter")
def test_edf_train_runs_under_torchrun_and_writes_once(tmp_path):
    from galforge.config import resolve_config
    from galforge.edf import steps
    from galforge.edf.settings import EdfSettings

    s = EdfSettings.from_dict(resolve_config({"scale": "tiny"})["edf"])
    steps.mock(tmp_path / "g", tmp_path / "t.json", settings=s.mock, seed=2)
    steps.table(tmp_path / "g", tmp_path / "edf.h5", tmp_path / "i.csv", tmp_path / "r.json",
                clean=s.clean, progress=False)
    cfg = json.dumps({"scale": "tiny", "seed": 2, "edf": {"train": {"devices": 2}}})
    out = _run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "galforge.cli",
                "edf-train", "--config", cfg, "--no-progress", "--threads", "1",
                "--table", str(tmp_path / "edf.h5"), "--model-id", "all",
                "--model", str(tmp_path / "m" / "model.pt"),
                "--metrics", str(tmp_path / "m" / "metrics.csv"),
                "--summary", str(tmp_path / "m" / "training.json"),
                "--workdir", str(tmp_path / "m" / "work")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "m" / "training.json").read_text())
    assert summary["model_id"] == "all" and summary["epochs"] == s.train.epochs
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "metrics.csv", "model.pt", "training.json", "work"]
    assert load_checkpoint(tmp_path / "m" / "model.pt")["train_config"]["devices"] == 2
