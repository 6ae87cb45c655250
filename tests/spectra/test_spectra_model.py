"""Spectra VAE / CVAE: settings, model ids, shapes, activations, loss, training and resume.

(Named test_spectra_model.py: tests/environment/test_model.py exists and pytest cannot
collect two test modules of the same basename without package __init__ files.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from galforge.spectra._testing import make_lowrank_spectra, write_preprocessed
from galforge.spectra.model import (
    SpectraVAE,
    spectra_vae_loss,
    weighted_sq_residuals,
)
from galforge.spectra.model_ids import (
    canonical_conditions,
    model_id,
    parse_model_id,
    repeat_seeds,
    run_folder,
)
from galforge.spectra.presets import PRESETS as STUDY_PRESETS
from galforge.spectra.settings import SpectraModelSettings

PRESETS = {scale: p["model"] for scale, p in STUDY_PRESETS.items()}
TRAIN_PRESETS = {scale: p["train"] for scale, p in STUDY_PRESETS.items()}

ACT_TYPES = (nn.LeakyReLU, nn.ReLU, nn.ELU, nn.GELU, nn.Tanh)


# -- settings and ids ---------------------------------------------------------------------------
def test_settings_reject_unknown_keys_and_round_trip() -> None:
    with pytest.raises(ValueError, match="chanels"):
        SpectraModelSettings.from_dict({"chanels": [4]})
    with pytest.raises(ValueError, match="preset"):  # no preset key: scales live in presets
        SpectraModelSettings.from_dict({"preset": "tiny"})
    for name in PRESETS:
        s = SpectraModelSettings.from_dict({**PRESETS[name], "latent_dim": 3})
        assert SpectraModelSettings.from_dict(s.to_dict()) == s
        json.dumps(s.to_dict())
    # the configuration's model section has no kind / size / conditions: defaults apply
    assert SpectraModelSettings.from_dict({"dropout": 0.1}).kind == "vae"
    with pytest.raises(ValueError, match="same length"):
        SpectraModelSettings(channels=(4, 8), kernel_sizes=(3,), strides=(2, 2))
    with pytest.raises(ValueError, match="no conditions"):
        SpectraModelSettings(kind="vae", conditions=("mstar",))
    with pytest.raises(ValueError, match="at least one condition"):
        SpectraModelSettings(kind="cvae")
    with pytest.raises(ValueError, match="activation"):
        SpectraModelSettings(activation="silu")
    assert set(TRAIN_PRESETS) == set(PRESETS)
    from galforge.train import TrainSettings

    for t in TRAIN_PRESETS.values():
        TrainSettings.from_dict(t)


def test_model_id_round_trip_and_errors() -> None:
    assert model_id("vae", [], 3) == "vae-d3"
    assert model_id("cvae", ["sfr", "log_mstar"], 2) == "cvae-mstar+sfr-d2"
    assert canonical_conditions(["z", "ssfr"]) == ("log_ssfr", "oh_p50")
    for kind, conds, dim in [("vae", (), 1), ("vae", (), 8), ("cvae", ("log_mstar",), 4),
                             ("cvae", ("log_mstar", "log_sfr", "log_ssfr", "oh_p50"), 2)]:
        assert parse_model_id(model_id(kind, conds, dim)) == (kind, conds, dim)
    for bad, msg in [("vae-3", "bad model id"), ("vae-d0", "bad model id"),
                     ("cvae-d2", "at least one condition"), ("vae-mstar-d2", "no conditions"),
                     ("cvae-mass-d2", "unknown condition 'mass'"),
                     ("cvae-sfr+mstar-d2", "cvae-mstar\\+sfr-d2"),
                     ("cvae-sfr+sfr-d2", "twice")]:
        with pytest.raises(ValueError, match=msg):
            parse_model_id(bad)
    s = SpectraModelSettings.from_model_id("cvae-mstar+z-d3", dict(PRESETS["tiny"]))
    assert (s.kind, s.conditions, s.latent_dim) == ("cvae", ("log_mstar", "oh_p50"), 3)
    assert s.model_id == "cvae-mstar+z-d3"


def test_repeat_seeds_are_deterministic_distinct_and_start_at_the_run_seed() -> None:
    seeds = repeat_seeds(42, 5)
    assert seeds[0] == 42 and len(set(seeds)) == 5 and seeds == repeat_seeds(42, 5)
    assert repeat_seeds(42, 3) == seeds[:3]  # more repeats keep the first ones' seeds
    assert repeat_seeds(7, 3)[1:] != seeds[1:3]  # another run seed, other repeats
    assert all(0 <= s < 2**32 for s in seeds[1:])
    assert repeat_seeds(2**40, 2)[0] == 2**40  # any run seed the schema accepts
    for bad in ((-1, 2), (42, 0), (42, 1.5), (True, 2)):
        with pytest.raises(ValueError, match="must be an integer"):
            repeat_seeds(*bad)
    assert run_folder("cvae-ssfr+z-d3", 2) == "cvae-ssfr+z-d3/r2"
    with pytest.raises(ValueError, match="repeat must be"):
        run_folder("vae-d3", -1)
    with pytest.raises(ValueError, match="bad model id"):
        run_folder("vae-3", 0)


# -- the network --------------------------------------------------------------------------------
@pytest.mark.parametrize("npix", [4000, 997])
@pytest.mark.parametrize("conds", [(), ("log_mstar", "log_sfr")])
def test_shapes(npix: int, conds: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    s = SpectraModelSettings.from_dict({**PRESETS["demo"], "latent_dim": 3, "npix": npix,
                                        "kind": "cvae" if conds else "vae",
                                        "conditions": list(conds)})
    m = s.build().eval()
    x = torch.randn(5, npix)
    c = torch.randn(5, len(conds)) if conds else None
    mu, logvar = m.encode(x, c)
    assert mu.shape == logvar.shape == (5, 3)
    xhat = m.decode(mu, c)
    assert xhat.shape == (5, npix)
    out, mu2, _ = m(x[:, None, :], c)  # (N, 1, npix) accepted too
    assert out.shape == (5, npix) and torch.equal(mu, mu2)
    with pytest.raises(ValueError, match="shape"):
        m.encode(torch.randn(5, npix + 1), c)
    # the checkpoint kwargs rebuild the same architecture
    m2 = SpectraVAE(**m.init_kwargs)
    m2.load_state_dict(m.state_dict())


def test_every_activation_is_its_own_module() -> None:
    s = SpectraModelSettings.from_dict({**PRESETS["paper"], "latent_dim": 4})
    m = s.build()
    acts = [mod for mod in m.modules() if isinstance(mod, ACT_TYPES)]
    n_blocks = len(s.channels)
    # encoder: one per conv block and per linear block; decoder: per linear block, the
    # reshaping linear layer, and every transposed convolution but the last
    expected = n_blocks + len(s.hidden) + len(s.hidden) + 1 + (n_blocks - 1)
    assert len(acts) == expected
    assert len({id(a) for a in acts}) == len(acts)


class _ActivationSpy(TorchDispatchMode):
    """Records nonlinear activation kernels and whether an activation module was running."""

    OPS = ("leaky_relu", "relu", "elu", "gelu", "tanh", "sigmoid", "softplus", "silu")

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.outside_calls: list[str] = []
        self.inside_calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.__name__.split(".")[0]
        if name.rstrip("_") in self.OPS:
            if self.inside:
                self.inside_calls += 1
            else:
                self.outside_calls.append(name)
        return func(*args, **(kwargs or {}))


def test_no_functional_activation_in_forward() -> None:
    torch.manual_seed(0)
    m = SpectraModelSettings(kind="cvae", conditions=("log_sfr",), latent_dim=2).build().eval()
    spy = _ActivationSpy()
    hooks = []
    for mod in m.modules():
        if isinstance(mod, ACT_TYPES):
            hooks.append(mod.register_forward_pre_hook(lambda *a: setattr(spy, "inside", spy.inside + 1)))
            hooks.append(mod.register_forward_hook(lambda *a: setattr(spy, "inside", spy.inside - 1)))
    with torch.no_grad(), spy:
        m(torch.randn(3, 4000), torch.randn(3, 1))
    for h in hooks:
        h.remove()
    assert spy.outside_calls == []
    assert spy.inside_calls > 0  # the spy does see the module activations
    with spy:  # ... and would see a functional one
        torch.nn.functional.leaky_relu(torch.randn(3))
    assert spy.outside_calls == ["leaky_relu"]


# -- loss ----------------------------------------------------------------------------------------
def test_loss_ignores_zero_weight_pixels() -> None:
    torch.manual_seed(0)
    m = SpectraModelSettings.from_dict({**PRESETS["tiny"], "latent_dim": 2}).build().eval()
    x = torch.randn(4, 4000)
    w = torch.rand(4, 4000) + 0.5
    w[:, 100:300] = 0.0
    x2 = x.clone()
    x2[:, 100:300] = torch.tensor(float("inf"))  # an infilled pixel may hold anything
    x2[0, 150] = float("nan")
    # the encoder sees the pixels (they are infilled); the loss must not: compare the
    # weighted residuals at a fixed reconstruction
    xhat = torch.randn(4, 4000)
    r1 = weighted_sq_residuals(x, xhat, w)
    r2 = weighted_sq_residuals(x2, xhat, w)
    assert torch.equal(r1, r2)
    expect = ((x - xhat) ** 2 * w).sum(dim=1)
    torch.testing.assert_close(r1, expect)
    loss, metrics = spectra_vae_loss(m, (x, w))
    assert torch.isfinite(loss) and set(metrics) == {"recon", "kl", "chi2_nu"}
    # hand computation of the loss in eval mode (z = μ), β = 0.5
    mu, logvar = m.encode(x)
    xh = m.decode(mu)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1)
    want = (0.5 * ((x - xh) ** 2 * w).sum(dim=1) + 0.5 * kl).mean()
    got, _ = spectra_vae_loss(m, (x, w), beta=0.5)
    torch.testing.assert_close(got, want)


def test_cvae_uses_its_conditions() -> None:
    torch.manual_seed(0)
    m = SpectraModelSettings(kind="cvae", conditions=("log_mstar", "log_sfr"), latent_dim=2).build()
    m.set_scaling(np.ones(4000), np.full(4000, 0.3), [10.0, 0.0], [0.5, 0.5])
    # give the condition pathways non-trivial weights (the decoder starts near the mean)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.eval()
    z = torch.zeros(2, 2)
    c1 = torch.tensor([[10.0, 0.0], [10.0, 0.0]])
    c2 = torch.tensor([[11.0, 0.0], [10.0, 1.0]])
    d1, d2 = m.decode(z, c1), m.decode(z, c2)
    assert (d1 - d2).abs().amax(dim=1).min() > 1e-4  # each condition moves the spectrum
    x = torch.randn(2, 4000) * 0.3 + 1
    assert not torch.allclose(m.encode(x, c1)[0], m.encode(x, c2)[0])
    with pytest.raises(ValueError, match="needs its conditions"):
        m.encode(x)
    with pytest.raises(ValueError, match="no conditions"):
        SpectraModelSettings(latent_dim=2).build().encode(x, c1)


def test_pca_start_reproduces_pca_reconstruction() -> None:
    data = make_lowrank_spectra(200, 3, seed=2, mask_fraction=0.0)
    x = data["flux"].astype(np.float64)
    m = SpectraModelSettings.from_dict({**PRESETS["tiny"], "latent_dim": 3}).build()
    mean, scale = x.mean(0), x.std(0) + 1e-3
    m.set_scaling(mean, scale)
    xs = (x - mean) / scale
    xs_c = xs - xs.mean(0)
    _, s, vt = np.linalg.svd(xs_c, full_matrices=False)
    sd = s[:3] / np.sqrt(len(x) - 1)
    m.init_linear_paths(vt[:3], sd)
    m.eval()
    with torch.no_grad():
        mu, _ = m.encode(torch.from_numpy(data["flux"]))
        rec = m.decode(mu).double().numpy()
    want = mean + scale * ((xs @ vt[:3].T) @ vt[:3])  # projection of the uncentred xs (mean ≈ 0)
    np.testing.assert_allclose(rec, want, atol=2e-3 * np.abs(want).max())
    np.testing.assert_allclose(mu.numpy().std(0), 1.0, rtol=0.05)  # unit-variance latents


# -- training through the shared trainer ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = make_lowrank_spectra(320, 2, seed=5)
    d["properties"]["log_sfr"][:7] = np.nan  # a few galaxies without a condition
    return write_preprocessed(tmp_path_factory.mktemp("spectra") / "spectra.h5", d)


def _train(path: Path, out: Path, settings: dict, epochs: int = 4) -> dict:
    from galforge.spectra.training import train_spectra_model

    return train_spectra_model(
        path, settings, {"epochs": epochs, "batch_size": 64, "lr": 2e-3}, seed=3,
        val_fraction=0.2, out_model=out / "model.pt", out_metrics=out / "metrics.csv",
        workroot=out / "work", progress=False, run_config={"test": True},
    )


def test_training_reduces_the_loss_and_resumes(tiny_file: Path, tmp_path: Path) -> None:
    import pandas as pd

    from galforge.train import load_for_inference

    settings = {**PRESETS["tiny"], "latent_dim": 2}
    s1 = _train(tiny_file, tmp_path / "a", settings)
    assert s1["model_id"] == "vae-d2" and not s1["resumed"]
    assert s1["n_train"] + s1["n_val"] == 320 and s1["n_val"] == 64
    hist = pd.read_csv(tmp_path / "a" / "metrics.csv")
    assert len(hist) == 4
    # from the PCA start, the validation χ² per pixel falls (noise floor = 1)
    assert hist["val_chi2_nu"].iloc[-1] < hist["val_chi2_nu"].iloc[0]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    # a rerun with the same settings resumes the finished checkpoint: same weights
    w1 = load_for_inference(tmp_path / "a" / "model.pt")[0].state_dict()
    s2 = _train(tiny_file, tmp_path / "a", settings)
    assert s2["resumed"] and s2["epochs"] == 4
    w2 = load_for_inference(tmp_path / "a" / "model.pt")[0].state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # more epochs = other settings = another work folder (not a resume of the old one)
    s3 = _train(tiny_file, tmp_path / "a", settings, epochs=5)
    assert not s3["resumed"]
    assert len(list((tmp_path / "a" / "work").iterdir())) == 2


def test_repeats_train_other_weights_on_the_same_validation_spectra(tiny_file: Path,
                                                                    tmp_path: Path) -> None:
    """A repeat's seed changes the weights, not the split: every repeat of every grid point
    is evaluated on the validation spectra of the run seed's split."""
    from galforge.spectra.bic import evaluate_model
    from galforge.spectra.training import train_spectra_model, validation_rows
    from galforge.train import load_for_inference

    settings = {**PRESETS["tiny"], "latent_dim": 1}
    runs = {}
    for name, seed, split_seed in (("a", 3, None), ("b", 11, 3), ("c", 11, 4)):
        out = tmp_path / name
        s = train_spectra_model(tiny_file, settings, {"epochs": 1, "batch_size": 64},
                                seed=seed, split_seed=split_seed, val_fraction=0.2,
                                out_model=out / "model.pt", out_metrics=out / "metrics.csv",
                                workroot=out / "work", progress=False)
        model, meta = load_for_inference(out / "model.pt")
        runs[name] = (s, model.state_dict(), validation_rows(meta.normalization, tiny_file))
        assert s["seed"] == seed and s["split_seed"] == (split_seed or seed)
        assert evaluate_model(out / "model.pt", tiny_file)["seed"] == seed
    (sa, wa, va), (sb, wb, vb), (_, _, vc) = runs.values()
    assert np.array_equal(va, vb) and not np.array_equal(va, vc)
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cvae_training_drops_rows_without_conditions(tiny_file: Path, tmp_path: Path) -> None:
    from galforge.spectra.training import encode

    s = _train(tiny_file, tmp_path, {**PRESETS["tiny"], "kind": "cvae", "conditions": ["sfr"],
                                      "latent_dim": 1}, epochs=1)
    assert s["model_id"] == "cvae-sfr-d1" and s["n_dropped"] == 7
    assert s["n_train"] + s["n_val"] == 320 - 7
    lat = encode(tmp_path / "model.pt", tiny_file)
    assert lat.mu.shape == (320, 1)
    assert np.isnan(lat.mu[:7]).all() and np.isfinite(lat.mu[7:]).all()


def test_bad_input_file_is_named(tmp_path: Path) -> None:
    import h5py

    from galforge.io import InputError
    from galforge.spectra.store import read_spectra_file

    d = make_lowrank_spectra(20, 1, seed=1)
    p = write_preprocessed(tmp_path / "s.h5", d)
    with pytest.raises(InputError, match="properties/oh"):
        read_spectra_file(p, ("oh",))
    with h5py.File(p, "a") as f:
        f["flux"][3, 10] = np.nan
    with pytest.raises(InputError, match="'flux' row 3"):
        read_spectra_file(p)
    with h5py.File(p, "a") as f:
        del f["weight"]
    with pytest.raises(InputError, match="'weight' is missing"):
        read_spectra_file(p)
