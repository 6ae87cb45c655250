"""The conditional VAE, its predictions and the evaluation's metrics."""

from __future__ import annotations

import numpy as np
import pytest

from galforge.exsitu import analysis as an

torch = pytest.importorskip("torch")


def _model(npix: int = 16, latent: int = 3):
    from galforge.exsitu.model import ExsituCVAE

    torch.manual_seed(0)
    return ExsituCVAE(npix=npix, channels=[4, 8, 8], latent_dim=latent)


def test_shapes_range_and_the_skips_carry_the_condition() -> None:
    from galforge.exsitu.model import cvae_loss

    m = _model()
    c = torch.randn(5, 6, 16, 16)
    x = torch.rand(5, 1, 16, 16)
    mask = (torch.rand(5, 1, 16, 16) > 0.3).float()
    recon, mu, logvar = m(c, x)
    assert recon.shape == (5, 1, 16, 16) and mu.shape == logvar.shape == (5, 3)
    assert float(recon.detach().min()) >= 0 and float(recon.detach().max()) <= 1
    feats, embed = m.condition(c)
    assert [f.shape[-1] for f in feats] == [16, 8, 4] and embed.shape == (5, 8)
    loss, parts = cvae_loss(m, (c, x, mask), beta=7e-5)
    assert torch.isfinite(loss) and parts["kl"] >= 0
    loss.backward()
    # gradients reach the first condition block through the skip connections
    assert m.cond[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple"):
        type(m)(npix=18, channels=[4, 8, 8])


def test_masked_pixels_do_not_enter_the_loss() -> None:
    from galforge.exsitu.model import cvae_loss

    m = _model().eval()
    c, x = torch.randn(2, 6, 16, 16), torch.rand(2, 1, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, :8] = 1
    torch.manual_seed(1)
    a, _ = cvae_loss(m, (c, x, mask), beta=0.0)
    x2 = x.clone()
    x2[:, :, 8:] = 1 - x2[:, :, 8:]  # change only masked-out target pixels ...
    torch.manual_seed(1)
    m.enc.requires_grad_(False)
    # ... with the same latents (the encoder sees x, so fix z through the decoder)
    feats, _ = m.condition(c)
    z = torch.zeros(2, 3)
    r = m.decode(z, feats)
    mse = lambda t: float((((r - t) ** 2) * mask).sum() / mask.sum())  # noqa: E731
    assert mse(x) == pytest.approx(mse(x2))
    assert a > 0


def test_predictions_from_each_latent_source() -> None:
    from galforge.exsitu.training import predict

    m = _model()
    with torch.no_grad():  # let the latents matter more in an untrained decoder
        m.from_latent.weight.mul_(50.0)
    rng = np.random.default_rng(0)
    maps = rng.random((3, 6, 16, 16)).astype(np.float32)
    masks = rng.random((3, 16, 16)) > 0.2
    norm = {"mean": [0.0] * 5, "std": [1.0] * 5}
    out = {}
    for src in ("encoder", "prior"):
        out[src] = predict(m, norm, maps, masks, source=src, n_samples=4, seed=1, batch_size=2)
        assert out[src].shape == (3, 4, 16, 16)
        np.testing.assert_array_equal(out[src], predict(m, norm, maps, masks, source=src,
                                                         n_samples=4, seed=1, batch_size=2))
    assert np.abs(out["encoder"] - out["prior"]).max() > 1e-5
    assert out["prior"].std(axis=1).mean() > 1e-6  # the samples differ
    fixed = predict(m, norm, maps, masks, source="flow", n_samples=4, seed=1,
                    latent_sampler=lambda e, n, g: torch.zeros(e.shape[0], n, 3))
    np.testing.assert_allclose(fixed[:, 0], fixed[:, 3])  # one z: one map
    with pytest.raises(ValueError, match="latent source"):
        predict(m, norm, maps, masks, source="nope", n_samples=2, seed=1)


def test_metrics_on_hand_made_maps() -> None:
    true = np.zeros((2, 4, 4))
    true[1] = 0.5
    masks = np.ones((2, 4, 4), bool)
    masks[0, 0, 0] = False
    pred = true + 0.1
    pred[0, 0, 0] = 9.0  # masked: ignored
    e = an.pixel_errors(pred, true, masks)
    assert e["mean"] == pytest.approx(0.1) and e["n_pixels"] == 31
    assert e["mean_fex_0_0.1"] == pytest.approx(0.1) and np.isnan(e["mean_fex_0.1_0.2"])
    # integrated f_ex: mass weighted over occupied pixels
    log_sigma = np.zeros((2, 4, 4))
    log_sigma[1, :2] = 1.0  # ten times the mass in the top half
    f = np.zeros((2, 4, 4))
    f[1, :2] = 1.0
    np.testing.assert_allclose(an.integrated(f, log_sigma, masks), [0.0, 10 / 11])
    # coverage: the truth drawn like the samples (calibrated), over 31 x 50 pixels
    rng = np.random.default_rng(0)
    big_true = np.repeat(true, 50, axis=0)
    big_masks = np.repeat(masks, 50, axis=0)
    samples = big_true[:, None] + rng.normal(0, 0.1, (100, 400, 4, 4))
    drawn = big_true + rng.normal(0, 0.1, big_true.shape)
    cov = an.coverage(an.summarise(samples, np.repeat(log_sigma, 50, axis=0), big_masks),
                      drawn, big_masks)
    assert abs(cov["coverage68"] - 0.68) < 0.03 and abs(cov["coverage95"] - 0.95) < 0.02
    over = an.coverage(an.summarise(samples * 0.3 + big_true[:, None] * 0.7,
                                    np.repeat(log_sigma, 50, axis=0), big_masks),
                       drawn, big_masks)
    assert over["coverage68"] < 0.4  # too narrow: under-covers
    # the baseline: the training maps' mean per ring
    prof = an.radial_baseline(np.stack([np.full((8, 8), 0.2), np.full((8, 8), 0.4)]),
                              np.ones((2, 8, 8), bool))
    np.testing.assert_allclose(prof[:6], 0.3)


def test_acceptance_flags_follow_the_numbers() -> None:
    from galforge.exsitu.steps import acceptance

    def report(flow: float, prior: float, base: float, rho: float, cov: float) -> dict:
        return {"errors": {"flow": {"mean": flow}, "prior": {"mean": prior},
                           "baseline": {"mean": base}},
                "flow": {"fex_int_spearman": rho, "coverage68": cov},
                "prior": {"fex_int_spearman": rho, "coverage68": cov}}

    good = acceptance(report(0.05, 0.08, 0.12, 0.9, 0.7))
    assert all(v for k, v in good.items() if k.startswith("pass_"))
    bad = acceptance(report(0.15, 0.12, 0.11, 0.5, 0.4))
    assert not any(v for k, v in bad.items() if k.startswith("pass_"))
    no_flow = report(0.05, 0.05, 0.12, 0.9, 0.7)
    del no_flow["errors"]["flow"], no_flow["flow"]
    assert acceptance(no_flow)["pass_flow_beats_prior"] is False


def test_the_aleatoric_noise_fitted_on_one_set_calibrates_another() -> None:
    # decoder samples with no spread; truths scattered by 0.08 around them (with 100
    # samples the fitted sigma is the scatter; with few, larger: the quantiles of few
    # noisy samples are narrower)
    rng = np.random.default_rng(3)
    pred = rng.uniform(0.2, 0.8, (60, 1, 8, 8)).repeat(100, axis=1).astype(np.float32)
    masks = rng.random((60, 8, 8)) > 0.1
    val_true = pred[:, 0] + rng.normal(0, 0.08, (60, 8, 8))
    test_true = pred[:, 0] + rng.normal(0, 0.08, (60, 8, 8))
    sigma = an.fit_noise(pred, val_true, masks, seed=1)
    assert sigma == pytest.approx(0.08, rel=0.1)
    log_sigma = np.zeros((60, 8, 8))
    bare = an.coverage(an.summarise(pred, log_sigma, masks), test_true, masks)
    assert bare["coverage68"] < 0.05  # the samples alone: no interval at all
    s = an.summarise(pred, log_sigma, masks, noise_sigma=sigma, seed=2)
    cov = an.coverage(s, test_true, masks)
    assert abs(cov["coverage68"] - 0.68) < 0.03 and abs(cov["coverage95"] - 0.95) < 0.03
    np.testing.assert_allclose(s["mean"], pred.mean(axis=1))  # the point prediction is kept
    # samples already wide enough: no noise
    wide = pred + rng.normal(0, 0.3, pred.shape).astype(np.float32)
    assert an.fit_noise(wide, val_true, masks, seed=1) == 0.0


def test_the_grid_keeps_the_point_with_the_lowest_validation_error(tmp_path) -> None:
    import json

    from galforge.exsitu.settings import CVAESettings, GridSettings, grid_points
    from galforge.exsitu.steps import select_model
    from galforge.io import InputError

    pts = grid_points(GridSettings(latent_dims=(5, 10), betas=(7e-5,)), CVAESettings())
    assert pts == {"z5_beta7e-05": (5, 7e-5), "z10_beta7e-05": (10, 7e-5)}
    assert list(grid_points(GridSettings(), CVAESettings())) == ["z10_beta7e-05"]
    files = {}
    # z5: best at its checkpoint epoch 2 (restored); z10: lower at epoch 1, higher at its
    # checkpoint (the last epoch, 2): z5 is kept
    for name, mse, ckpt in (("z5_beta7e-05", (0.9, 0.2), 2), ("z10_beta7e-05", (0.1, 0.3), 2)):
        d = tmp_path / name
        d.mkdir()
        (d / "m.csv").write_text("epoch,val_mse,val_kl\n" + "".join(
            f"{e},{v},1.0\n" for e, v in enumerate(mse, 1)))
        (d / "s.json").write_text(json.dumps({"checkpoint_epoch": ckpt}))
        (d / "c.pt").write_text(name)
        files[name] = d
    names = list(files)
    kept = select_model(names, [files[n] / "c.pt" for n in names],
                        [files[n] / "m.csv" for n in names], [files[n] / "s.json" for n in names],
                        tmp_path / "cvae.pt", tmp_path / "m.csv", tmp_path / "s.json",
                        tmp_path / "sel.json")
    assert kept == "z5_beta7e-05" and (tmp_path / "cvae.pt").read_text() == kept
    sel = json.loads((tmp_path / "sel.json").read_text())
    assert [p["val_mse"] for p in sel["points"]] == [0.2, 0.3]
    with pytest.raises(InputError, match="grid points"):
        select_model(names[:1], [], [], [], *(tmp_path / f for f in "abcd"))
