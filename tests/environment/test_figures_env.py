"""Tests of galforge.environment.figures: the environment study's plotting functions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from galforge.environment import figures as F
from galforge.figures import save_figure
from galforge.figures.helpers import fmt_nmi, fmt_signed
from galforge.provenance import Provenance

PROV = Provenance("test", "mock", "abc123")
PARAMS = ["log_sigma_5", "d_nn", "n_r1", "n_map"]


@pytest.fixture(autouse=True)
def no_pyplot_leaks():
    """The functions build figures without pyplot: none is ever registered there."""
    import matplotlib.pyplot as plt  # after galforge.figures selected Agg

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before == []


# --------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def synth():
    """N=2000 galaxies, 3 ranked latents, 4 environment parameters with NaN and inf."""
    rng = np.random.default_rng(42)
    n = 2000
    dens = rng.normal(size=n)
    lat = np.column_stack(
        [dens + 0.4 * rng.normal(size=n), rng.normal(size=n), 0.3 * dens + rng.normal(size=n)]
    )
    params = pd.DataFrame(
        {
            "log_sigma_5": dens,
            "d_nn": np.exp(-dens + 0.3 * rng.normal(size=n)),
            "n_r1": rng.poisson(np.exp(dens)),
            "n_map": rng.poisson(20 * np.exp(dens)),
        }
    )
    params.loc[rng.choice(n, 100, replace=False), "d_nn"] = np.nan
    params.loc[:4, "log_sigma_5"] = np.inf
    lat[10:15, 2] = np.nan
    rows = []
    for k in range(3):
        for j, p in enumerate(PARAMS):
            rows.append(
                dict(
                    latent=k,
                    parameter=p,
                    n=n,
                    rho=round(0.9 - 0.37 * k - 0.05 * j, 4) * (-1 if p == "d_nn" else 1),
                    p=1e-3,
                    rho_lo=np.nan,
                    rho_hi=np.nan,
                    nmi=[61.7, 1.04, 3.62][k] + j,
                    nmi_lo=np.nan,
                    nmi_hi=np.nan,
                    ks_D=0.1,
                    ks_p=0.5,
                )
            )
    table = pd.DataFrame(rows)
    return lat, params, table


def texts(fig: Figure) -> str:
    """All text of a figure (axes texts, titles, labels, tick labels, legends)."""
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return "\n".join(s for s in out if isinstance(s, str))


def n_axes(fig: Figure) -> int:
    return len(fig.axes)


# --------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("ra0,dec0", [(180.0, 30.0), (0.05, -5.0), (359.9, 62.0)])
def test_square_outline_projects_back_onto_the_square(ra0, dec0):
    dist, size = 150.0, 10.0
    poly = F.square_outline_radec(ra0, dec0, dist, size, n_per_side=8)
    assert poly.shape == (4 * 8 + 1, 2)
    assert np.allclose(poly[0], poly[-1])
    # forward gnomonic (textbook, as in maps.brute_force_map)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    a, d = np.radians(poly[:, 0]), np.radians(poly[:, 1])
    cos_c = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a - a0)
    x = dist * np.cos(d) * np.sin(a - a0) / cos_c
    y = dist * (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    on_edge = np.isclose(np.maximum(np.abs(x), np.abs(y)), size / 2, atol=1e-9)
    assert on_edge.all()
    # first vertex is the south-west corner (x west, y south), then along the south edge east
    assert np.isclose(x[0], -5) and np.isclose(y[0], -5)
    assert x[1] > x[0] and np.isclose(y[1], -5)
    assert np.all(np.abs(poly[:, 0] - ra0) < 180)  # unwrapped around the target


def test_square_outline_rejects_bad_input():
    with pytest.raises(ValueError):
        F.square_outline_radec(10, 10, -1.0, 10.0)


def test_running_median_handles_ties_and_nan():
    x = np.repeat(np.arange(5.0), 200)
    y = x * 2 + 0.0
    x[:7] = np.nan
    xm, ym, lo, hi = F.running_median(x, y, n_bins=10, min_count=20)
    assert np.allclose(ym, 2 * xm)
    assert np.all(np.diff(xm) > 0)  # ties never split
    assert np.all(lo <= ym) and np.all(ym <= hi)
    assert all(a.size == 0 for a in F.running_median([1.0], [2.0]))


def test_parameter_labels_have_units():
    assert "h^{-1}" in F.parameter_label("d_nn")
    assert "Sigma_{5}" in F.parameter_label("log_sigma_5")
    assert "Mpc}^{-2}" in F.parameter_label("log_sigma_5")
    assert "counts" in F.parameter_label("n_r2") and "<2" in F.parameter_label("n_r2")
    assert "\n" in F.parameter_label("log_mstar", multiline=True)
    assert F.parameter_label("unknown_col") == "unknown_col"


# --------------------------------------------------------------------------- Fig 1
def test_target_example(tmp_path):
    rng = np.random.default_rng(0)
    ra0, dec0, z0 = 0.2, 10.0, 0.05
    n = 600
    ra = (ra0 + rng.uniform(-3, 3, n)) % 360.0  # straddles RA = 0
    dec = dec0 + rng.uniform(-3, 3, n)
    z = z0 + rng.normal(0, 0.004, n)
    ra[0], dec[0], z[0] = ra0, dec0, z0  # the target itself is in the list
    z[1:50] = z0 + 0.001  # 286 km/s: inside
    z[50:60] = z0 + 0.02  # far outside
    dv = F.C_KMS * np.abs(z - z0) / (1 + z0)
    expected_near = int(np.sum(dv[1:] <= 1000))
    counts = rng.poisson(0.3, (64, 64)).astype(float)
    rate = np.full((64, 64), 0.3)
    rate[40, 20] = 9.0
    sq = F.square_outline_radec(ra0, dec0, 148.0, 10.0)
    fig = F.fig_target_example(
        ra, dec, z, ra0, dec0, z0, counts, rate, size_mpc=10, dv_kms=1000, square_corners_radec=sq
    )
    assert isinstance(fig, Figure)
    assert n_axes(fig) == 4
    ax_sky, ax_in, ax_rec = fig.axes[:3]
    far, near = ax_sky.collections[:2]
    assert len(near.get_offsets()) == expected_near
    assert len(far.get_offsets()) == n - 1 - expected_near
    # RA unwrapped around the target: nothing near 360
    assert np.all(np.abs(np.asarray(near.get_offsets())[:, 0] - ra0) < 10)
    (im_in,), (im_rec,) = ax_in.images, ax_rec.images
    assert im_in.get_clim() == im_rec.get_clim() == (0.0, 9.0)
    assert tuple(im_in.get_extent()) == (-5.0, 5.0, -5.0, 5.0)
    assert im_in.origin == "lower"
    assert np.array_equal(im_rec.get_array(), rate)
    all_text = texts(fig)
    assert "east" in all_text and "north" in all_text and "Mpc" in all_text
    legend = [t.get_text() for t in ax_sky.get_legend().get_texts()]
    assert any("1000$ km/s" in s and "leq" in s for s in legend)
    assert any("Mpc" in s and "square" in s for s in legend)
    pdf, png = save_figure(fig, tmp_path / "fig1_target", PROV)
    assert pdf.stat().st_size > 0 and png.stat().st_size > 0


def test_target_example_without_square_and_shape_check():
    m = np.zeros((8, 8))
    fig = F.fig_target_example(
        [1.0, 1.1], [2.0, 2.1], [0.03, 0.03], 1.0, 2.0, 0.03, m, m, size_mpc=10, dv_kms=500
    )
    assert n_axes(fig) == 4
    with pytest.raises(ValueError):
        F.fig_target_example(
            [1.0], [2.0], [0.03], 1.0, 2.0, 0.03, m, m[:4], size_mpc=10, dv_kms=500
        )


# --------------------------------------------------------------------------- Fig 5
def test_latent_traversals(tmp_path):
    k, v = 3, 5
    rng = np.random.default_rng(1)
    tr = rng.gamma(2.0, 0.1, (k, v, 64, 64))
    tr[1, 3, 10, 10] = 7.0
    vals = np.linspace(-2, 2, v)
    kl = np.array([2.5, 1.25, 0.4])
    fig = F.fig_latent_traversals(tr, vals, kl, size_mpc=10)
    assert n_axes(fig) == k * v + k
    for r in range(k):
        row_images = [ax.images[0] for ax in fig.axes[r * v : (r + 1) * v]]
        assert len({im.get_clim() for im in row_images}) == 1
        assert row_images[0].get_clim()[1] == pytest.approx(tr[r].max())
    t = texts(fig)
    assert "z1" in t and "KL = 2.50" in t and "z3" in t and "KL = 0.40" in t
    assert "\N{MINUS SIGN}2.0" in t and "+2.0" in t
    save_figure(fig, tmp_path / "fig5_traversals", PROV)
    assert (tmp_path / "fig5_traversals.pdf").exists()

    diff = F.fig_latent_traversals(tr, vals, kl, size_mpc=10, difference=True)
    lo, hi = diff.axes[0].images[0].get_clim()
    assert lo == pytest.approx(-hi) and hi > 0
    with pytest.raises(ValueError):
        F.fig_latent_traversals(tr, vals[:3], kl, size_mpc=10)


# --------------------------------------------------------------------------- Figs 3, 4
def test_latents_vs_parameters(tmp_path, synth):
    lat, params, table = synth
    fig = F.fig_latents_vs_parameters(lat, params, PARAMS, table)
    assert n_axes(fig) == 3 * len(PARAMS) + 1
    panels = fig.axes[: 3 * len(PARAMS)]
    t = texts(fig)
    for row in table.itertuples():
        ax = panels[row.latent * len(PARAMS) + PARAMS.index(row.parameter)]
        title = ax.get_title()
        assert f"{abs(row.rho):.2f}" in title
        assert fmt_nmi(row.nmi) in title
    assert "z1" in t and "z3" in t
    # hexbins hold finite counts only, one shared colour scale starting at 1
    hexes = [ax.collections[0] for ax in panels]
    clims = {h.get_clim() for h in hexes}
    assert len(clims) == 1 and next(iter(clims))[0] == 1.0
    for h in hexes:
        assert np.all(np.isfinite(h.get_array())) and np.asarray(h.get_array()).min() >= 1
    # all finite galaxies of a NaN-free, in-range pair are binned (log_sigma_5 has 5 inf)
    assert np.asarray(hexes[0].get_array()).sum() <= len(params) - 5
    save_figure(fig, tmp_path / "fig3_env", PROV)
    assert (tmp_path / "fig3_env.png").exists()


def test_latents_vs_parameters_without_table_and_errors(synth):
    lat, params, _ = synth
    fig = F.fig_latents_vs_parameters(lat[:, :2], params, ["d_nn"], None, latent_ids=[0, 4])
    assert n_axes(fig) == 2 + 1
    assert fig.axes[0].get_title() == ""
    assert "z5" in texts(fig)
    with pytest.raises(KeyError):
        F.fig_latents_vs_parameters(lat, params, ["nope"])
    with pytest.raises(ValueError):
        F.fig_latents_vs_parameters(lat[:10], params, ["d_nn"])


def test_latents_vs_parameters_all_nan_column(synth):
    lat, params, _ = synth
    p = params.assign(log_ssfr=np.nan)
    fig = F.fig_latents_vs_parameters(lat[:, :1], p, ["log_ssfr", "d_nn"])
    assert n_axes(fig) == 3


# --------------------------------------------------------------------------- Fig 6
def test_correlation_heatmaps(tmp_path, synth):
    _, _, table = synth
    fig = F.fig_correlation_heatmaps(table)
    assert n_axes(fig) == 4
    ax_r, ax_n = fig.axes[:2]
    im_r, im_n = ax_r.images[0], ax_n.images[0]
    assert im_r.get_array().shape == (3, len(PARAMS))
    assert im_n.get_array().shape == (3, len(PARAMS))
    assert im_r.get_clim() == (-1.0, 1.0)
    assert im_n.get_clim() == pytest.approx((table.nmi.min(), table.nmi.max()))
    assert type(im_n.norm).__name__ == "LogNorm"
    rho_texts = [t.get_text() for t in ax_r.texts]
    assert len(rho_texts) == len(table)
    for row in table.itertuples():
        assert fmt_signed(row.rho) in rho_texts
        assert fmt_nmi(row.nmi) in [t.get_text() for t in ax_n.texts]
    assert im_r.get_array()[1, PARAMS.index("d_nn")] == pytest.approx(
        table.query("latent == 1 and parameter == 'd_nn'").rho.item()
    )
    save_figure(fig, tmp_path / "fig6_corr", PROV)
    assert (tmp_path / "fig6_corr.pdf").exists() and (tmp_path / "fig6_corr.png").exists()


def test_correlation_heatmaps_order_missing_and_linear(synth):
    _, _, table = synth
    t = table[~((table.latent == 0) & (table.parameter == "n_r1"))].copy()
    t.loc[(t.latent == 0) & (t.parameter == "d_nn"), "nmi"] = -0.5  # shown, <= 0: linear
    fig = F.fig_correlation_heatmaps(t, latent_order=[2, 0], parameters=["n_r1", "d_nn"])
    ax_r, ax_n = fig.axes[:2]
    arr = ax_r.images[0].get_array()
    assert arr.shape == (2, 2)
    assert arr.mask[1, 0]  # (latent 0, n_r1) missing
    assert arr[0, 1] == pytest.approx(t.query("latent == 2 and parameter == 'd_nn'").rho.item())
    assert [lbl.get_text() for lbl in ax_r.get_yticklabels()] == ["z3", "z1"]
    assert type(ax_n.images[0].norm).__name__ == "Normalize"
    assert len(ax_r.texts) == 3
    fig2 = F.fig_correlation_heatmaps(table, annotate=False, nmi_log=False)
    assert not fig2.axes[0].texts
    with pytest.raises(ValueError):
        F.fig_correlation_heatmaps(table.drop(columns="nmi"))


# --------------------------------------------------------------------------- training
def test_kl_spectrum(tmp_path):
    kl = np.array([0.0, 0.002, 3.0, 0.5, 1.2, 0.0005, np.nan])
    fig = F.fig_kl_spectrum(kl)
    assert n_axes(fig) == 1
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 6
    assert heights[:3] == [3.0, 1.2, 0.5] and np.all(np.diff(heights) <= 0)
    assert ax.get_yscale() == "log"
    assert "3 of 6 latents informative" in texts(fig)
    save_figure(fig, tmp_path / "kl", PROV)
    assert (tmp_path / "kl.pdf").exists()


def test_truth_recovery(tmp_path):
    rng = np.random.default_rng(3)
    truth = rng.normal(size=2000)
    latent = truth + 0.3 * rng.normal(size=2000)
    latent[:20] = np.nan
    fig = F.fig_truth_recovery(latent, truth, 0.934, truth_label=r"$\log_{10}(1+\delta)$")
    assert n_axes(fig) == 2
    t = texts(fig)
    assert "+0.93" in t and "N = 1980" in t and r"\delta" in t
    assert np.asarray(fig.axes[0].collections[0].get_array()).sum() <= 1980
    save_figure(fig, tmp_path / "truth", PROV)
    assert (tmp_path / "truth.pdf").exists() and (tmp_path / "truth.png").exists()


def _moment_panels(n: int = 1500, seed: int = 6) -> tuple[pd.DataFrame, list[F.MomentPanel]]:
    rng = np.random.default_rng(seed)
    names = ["dipole_cos", "dipole_sin", "quad_cos", "quad_sin"]
    mom = rng.normal(0, 0.2, (n, 4))
    lat = np.column_stack([rng.normal(size=n), mom[:, 0] + 0.1 * rng.normal(size=n),
                           rng.normal(size=n), -mom[:, 2] + 0.2 * rng.normal(size=n)])
    rows = []
    for j, m in enumerate(names):
        for k in range(4):
            r = float(np.corrcoef(lat[:, k], mom[:, j])[0, 1])
            rows.append({"moment": m, "variable": f"z{k + 1}", "latent": k + 1, "rho": r})
        rows.append({"moment": m, "variable": "n_map", "latent": 0, "rho": 0.01})
    panels = [F.MomentPanel(m, mom[:, j], lat[:, 1 if j < 2 else 3], "z2" if j < 2 else "z4",
                            0.9, 0.01) for j, m in enumerate(names)]
    return pd.DataFrame(rows), panels


def test_latents_vs_moments(tmp_path):
    table, panels = _moment_panels()
    fig = F.fig_latents_vs_moments(table, panels, n_latents=3)
    assert n_axes(fig) == 2 + 4 + 1
    heat = fig.axes[0]
    assert [t.get_text() for t in heat.get_yticklabels()] == ["z1", "z2", "z3", "n_map"]
    # the best latent after z1 of each moment is outlined: z2 for the cos dipole (row 1)
    boxes = [p for p in heat.patches if not p.get_fill()]
    assert len(boxes) == 4 and boxes[0].get_xy() == (-0.5, 0.5)
    t = texts(fig)
    assert r"\cos\theta" in t and "z4" in t and "+0.90" in t
    save_figure(fig, tmp_path / "moments", PROV)
    assert (tmp_path / "moments.png").exists()
    with pytest.raises(ValueError, match="variable"):
        F.fig_latents_vs_moments(table.drop(columns="variable"), panels)


def test_truth_recovery_with_the_planted_moments(tmp_path):
    rng = np.random.default_rng(3)
    truth = rng.normal(size=1000)
    _, panels = _moment_panels(1000)
    fig = F.fig_truth_recovery(truth + 0.3 * rng.normal(size=1000), truth, 0.9, moments=panels,
                               moments_note="acceptance: pass")
    assert n_axes(fig) == 2 + 4 + 1
    assert "planted anisotropy" in texts(fig) and "true field" in texts(fig)
    assert "acceptance: pass" in texts(fig)
    save_figure(fig, tmp_path / "truth", PROV)
    assert (tmp_path / "truth.png").exists()
