"""Figures of the spectra study: the plotting functions and make_figures on synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from PIL import Image

from galforge.config import resolve_config
from galforge.io import InputError
from galforge.provenance import Provenance
from galforge.spectra import figures as F
from galforge.spectra._testing import make_lowrank_spectra, write_preprocessed
from galforge.spectra.analysis import AnalysisArrays, write_analysis_arrays
from galforge.spectra.figure_set import FIGURES, TRUTH_FIGURE, make_figures

PLANTED = ("log_age", "log_ssfr", "log_u", "a_v")
N_SPEC, N_STEPS, N_EX = 300, 5, 2


@pytest.fixture(autouse=True)
def no_pyplot_leaks():
    """Nothing here goes through pyplot: no figure is ever registered there."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before == []


@pytest.fixture(scope="module")
def cfg() -> dict:
    return resolve_config({"scale": "tiny", "run": "t"})


def texts(fig: Figure) -> str:
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return "\n".join(s for s in out if isinstance(s, str))


# --------------------------------------------------------------------------- synthetic files
def bic_frame(n_seeds: int = 3) -> pd.DataFrame:
    """A BIC table (one row per model and seed, as galforge.spectra.bic.bic_table writes it)."""
    from galforge.spectra.bic import bic_table

    rows = []
    for kind, conds, dims in (("vae", "", range(1, 6)), ("cvae", "mstar+sfr", range(1, 4)),
                              ("cvae", "ssfr", range(1, 4))):
        for d in dims:
            for r in range(n_seeds):
                bic = 1.0e5 + 4.0e3 * (d - 3) ** 2 + 300.0 * len(conds) + 37.0 * d + 50.0 * r
                k = d + conds.count("+") + bool(conds)
                rows.append(dict(
                    model_id=f"vae-d{d}" if kind == "vae" else f"cvae-{conds}-d{d}",
                    repeat=r, seed=100 + r, kind=kind,
                    conditions=[c for c in conds.split("+") if c], latent_dim=d,
                    k=k, n=N_SPEC, log_l=(k * np.log(N_SPEC) - bic) / 2,
                    chi2_nu=1.0 + 1.5 / d - 0.02 * len(conds) + 0.01 * r, kl_mean=2.0 * d,
                    active_latents=d,
                ))
    return bic_table(rows)


def summary_frame(n_seeds: int = 3) -> pd.DataFrame:
    from galforge.spectra.bic import bic_summary

    return bic_summary(bic_frame(n_seeds))


def write_inputs(tmp: Path, *, n_d: int = 3, cvae: bool = True, truth: bool = True) -> dict:
    """Plausible small versions of every input of make_figures (paths)."""
    rng = np.random.default_rng(1)
    sim = make_lowrank_spectra(N_SPEC, 3, seed=3)
    wave, flux, fac = sim["wave"], sim["flux"], sim["factors"]
    props = {k: np.asarray(v, float) for k, v in sim["properties"].items()}
    props["av"] = np.where(rng.random(N_SPEC) < 0.1, np.nan, rng.gamma(2.0, 0.3, N_SPEC))
    paths = {k: tmp / v for k, v in dict(
        spectra="spectra.h5", catalog="catalog.parquet", bic="bic.csv",
        bic_summary="bic_summary.csv", pca="pca_variance.csv", mi="mi.csv",
        analysis="analysis.h5").items()}
    write_preprocessed(paths["spectra"], {**sim, "z": rng.uniform(0.02, 0.1, N_SPEC),
                                          "properties": props})
    d = fac[:, :n_d] * np.linspace(2.0, 0.7, n_d) + 0.1 * rng.standard_normal((N_SPEC, n_d))
    cat = pd.DataFrame({"key": sim["key"], "plate": sim["plate"], "mjd": sim["mjd"],
                        "fiber": sim["fiber"]})
    for i in range(n_d):
        cat[f"D{i + 1}"] = d[:, i]
    for i in range(n_d):
        cat[f"mu{i + 1}"] = d[:, i] * 0.9
    cat.to_parquet(paths["catalog"], index=False)
    bic_frame().to_csv(paths["bic"], index=False)
    summary_frame().to_csv(paths["bic_summary"], index=False)
    var = d.var(axis=0, ddof=1)
    pd.DataFrame({"component": [f"D{i + 1}" for i in range(n_d)], "variance": var,
                  "fraction": var / var.sum(), "cumulative": np.cumsum(var) / var.sum()}
                 ).to_csv(paths["pca"], index=False)
    names = ["log_mstar", "log_sfr", "log_ssfr", "oh_p50", "av"]
    if truth:
        names += [f"true_{p}" for p in PLANTED] + ["true_d4000", "true_ew_halpha"]
    pd.DataFrame([dict(component=f"D{i + 1}", property=p, n=N_SPEC, mi=rng.uniform(0, 1),
                       nmi=rng.uniform(0.8, 60.0), rho=rng.uniform(-1, 1))
                  for i in range(n_d) for p in names]).to_csv(paths["mi"], index=False)
    # sweeps: noiseless spectra nearest to quantiles of each factor
    order = [np.argsort(fac[:, i])[np.linspace(10, N_SPEC - 10, N_STEPS).astype(int)]
             for i in range(n_d)]
    cvae_sweeps = {}
    if cvae:
        o = np.argsort(props["log_ssfr"])[np.linspace(10, N_SPEC - 10, N_STEPS).astype(int)]
        cvae_sweeps["log_ssfr"] = (props["log_ssfr"][o], sim["model"][o])
    bump = np.exp(-0.5 * ((wave[None, :] - np.array([[6564.6], [5008.2], [3728.5]])[:n_d])
                          / 6.0) ** 2)
    mean_abs = 0.01 * bump + 1e-4 * rng.random((n_d, wave.size))
    rows = np.array([5, 150, 290][:N_EX], dtype=np.int64)
    write_analysis_arrays(AnalysisArrays(
        best_vae="vae-d3", best_cvae="cvae-ssfr-d2" if cvae else "", wave=wave,
        pca_components=np.eye(n_d), pca_mean=np.zeros(n_d), pca_variance=var,
        sweep_values=np.stack([d[o, i] for i, o in enumerate(order)]),
        sweep_spectra=np.stack([sim["model"][o] for o in order]), cvae_sweeps=cvae_sweeps,
        shap_mean_abs=mean_abs, shap_example_rows=rows, shap_example_flux=flux[rows],
        shap_example_values=0.02 * rng.standard_normal((N_EX, 1, 1)) * bump[None],
        shap_example_D=d[rows], shap_additivity_error=2.3e-4,
        shap_relative_additivity_error=1.1e-3,
        shap_components=[f"D{i + 1}" for i in range(n_d)],
    ), paths["analysis"])
    metrics = {}
    for mid in summary_frame()["model_id"]:
        mdir = tmp / "models" / mid
        mdir.mkdir(parents=True)
        ep = np.arange(1, 13)
        scale = 3000.0 * (1.0 + 0.1 * len(mid))
        pd.DataFrame({"epoch": ep, "step": ep * 10, "train_loss": scale * (1 + 2 / ep),
                      "val_loss": scale * (1.05 + 2 / ep), "lr": 1e-3, "seconds": 0.5,
                      "train_recon": scale, "val_recon": scale, "train_kl": 5.0, "val_kl": 5.0}
                     ).to_csv(mdir / "metrics.csv", index=False)
        metrics[mid] = str(mdir / "metrics.csv")
    paths = {k: str(v) for k, v in paths.items()}
    paths["metrics"] = metrics
    if truth:
        t = pd.DataFrame({"key": sim["key"], "log_age": 9.5 + 0.4 * fac[:, 0],
                          "log_ssfr": -10.0 + 0.5 * fac[:, 1], "log_u": -3.0 + 0.3 * fac[:, 2],
                          "a_v": np.full(N_SPEC, 0.3),  # held constant: one panel says so
                          "log_mstar": props["log_mstar"], "log_sfr": props["log_sfr"],
                          "oh_p50": props["oh_p50"], "d4000": 1.5 + 0.2 * fac[:, 0],
                          "ew_halpha": 20.0 * np.exp(fac[:, 1]), "class": "GALAXY"})
        table = pa.Table.from_pandas(t.sample(frac=1.0, random_state=0), preserve_index=False)
        meta = {**(table.schema.metadata or {}), b"galforge.planted_parameters":
                json.dumps({p: {"unit": ""} for p in PLANTED}).encode()}
        pq.write_table(table.replace_schema_metadata(meta), tmp / "truth.parquet")
        paths["truth"] = str(tmp / "truth.parquet")
    return paths


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, cfg):
    tmp = tmp_path_factory.mktemp("spectra_figs")
    paths = write_inputs(tmp)
    written = make_figures(**paths, outdir=str(tmp / "figures"), cfg=cfg)
    return tmp / "figures", written


# --------------------------------------------------------------------------- make_figures
def test_make_figures_writes_every_stamped_figure(full_run, cfg):
    out, written = full_run
    stems = [*FIGURES, TRUTH_FIGURE]
    assert sorted(written) == sorted(out / f"{s}.{e}" for s in stems for e in ("pdf", "png"))
    prov = Provenance.from_config(cfg, study="spectra")
    for s in stems:
        for ext in ("pdf", "png"):
            assert (out / f"{s}.{ext}").stat().st_size > 1000, (s, ext)
        with Image.open(out / f"{s}.png") as im:
            meta = dict(im.text)
        assert meta["galforge:run"] == "t" and meta["galforge:source"] == prov.source
        assert meta["galforge:config_hash"] == prov.config_hash
        assert meta["Description"] == prov.as_text() and meta["Title"] == s
        assert (out / f"{s}.pdf").read_bytes().startswith(b"%PDF")


def test_without_cvae_truth_or_second_component(tmp_path, cfg, monkeypatch):
    """One D, no CVAE, no truth: every figure of FIGURES still made (saving stubbed: fast)."""
    import galforge.figures

    figs = {}

    def fake_save(fig, stem, prov, **kw):
        assert isinstance(fig, Figure) and isinstance(prov, Provenance)
        figs[Path(stem).name] = fig
        return Path(f"{stem}.pdf"), Path(f"{stem}.png")

    monkeypatch.setattr(galforge.figures, "save_figure", fake_save)
    paths = write_inputs(tmp_path, n_d=1, cvae=False, truth=False)
    written = make_figures(**paths, outdir=str(tmp_path / "figs"), cfg=cfg)
    assert list(figs) == list(FIGURES) and len(written) == 2 * len(FIGURES)
    assert "no CVAE in the model grid" in texts(figs["fig5_cvae_condition_sweeps"])
    assert len(figs["fig3_component_sweeps"].axes) == 2  # one row + its colourbar
    assert "spectra per hexagon" in texts(figs["fig1_latent_property_maps"])


def test_cfg_without_spectra_section(tmp_path, cfg, monkeypatch):
    """Bin settings fall back to the AnalysisSettings defaults."""
    paths = write_inputs(tmp_path, cvae=False, truth=False)
    bare = {k: v for k, v in cfg.items() if k != "spectra"}
    seen = {}

    def spy(*a, **kw):
        seen.update(kw)
        raise RuntimeError("stop")

    monkeypatch.setattr(F, "fig_latent_property_maps", spy)
    with pytest.raises(RuntimeError, match="stop"):
        make_figures(**paths, outdir=str(tmp_path / "figs"), cfg=bare)
    assert seen["n_bins"] == 20 and seen["min_count"] == 5


def test_missing_bic_column_names_file_and_column(tmp_path, cfg):
    paths = write_inputs(tmp_path, cvae=False, truth=False)
    pd.read_csv(paths["bic"]).drop(columns="chi2_nu").to_csv(paths["bic"], index=False)
    with pytest.raises(InputError, match=r"bic\.csv.*'chi2_nu'"):
        make_figures(**paths, outdir=str(tmp_path / "figs"), cfg=cfg)
    assert not (tmp_path / "figs").exists()  # failed before writing anything


def test_bad_analysis_and_catalog_inputs(tmp_path, cfg):
    paths = write_inputs(tmp_path, cvae=False, truth=False)
    out = str(tmp_path / "figs")
    with pytest.raises(InputError, match=r"MI table not found: .*nope\.csv"):
        make_figures(**{**paths, "mi": str(tmp_path / "nope.csv")}, outdir=out, cfg=cfg)
    with h5py.File(paths["analysis"], "a") as h5:
        del h5["shap/mean_abs"]
    with pytest.raises(InputError, match=r"analysis\.h5: dataset 'shap/mean_abs' missing"):
        make_figures(**paths, outdir=out, cfg=cfg)
    cat = pd.read_parquet(paths["catalog"])
    cat.iloc[::-1].to_parquet(paths["catalog"], index=False)
    with pytest.raises(InputError, match=r"catalog\.parquet: column 'key' is not in the order"):
        make_figures(**paths, outdir=out, cfg=cfg)
    cat.drop(columns=["D1", "D2", "D3"]).to_parquet(paths["catalog"], index=False)
    with pytest.raises(InputError, match=r"catalog\.parquet: no component columns"):
        make_figures(**paths, outdir=out, cfg=cfg)
    assert not Path(out).exists()


def test_truth_without_planted_metadata(tmp_path, cfg):
    paths = write_inputs(tmp_path, cvae=False, truth=True)
    pq.write_table(pq.read_table(paths["truth"]).replace_schema_metadata({}), paths["truth"])
    with pytest.raises(InputError, match=r"truth\.parquet: schema metadata "
                                         r"'galforge\.planted_parameters' missing"):
        make_figures(**paths, outdir=str(tmp_path / "figs"), cfg=cfg)


# --------------------------------------------------------------------------- plotting functions
def test_bic_grid_marks_best_models_and_planted():
    summary, seeds = summary_frame(), bic_frame()
    fig = F.fig_bic_grid(summary, seeds, n_planted=3)
    ax_b, ax_c = fig.axes[:2]
    ref = summary["bic_mean"].min()
    for kind in ("vae", "cvae"):
        row = summary[(summary["kind"] == kind) & summary["best_in_kind"]].iloc[0]
        stars = [ln for ln in ax_b.lines if ln.get_gid() == f"best-{kind}"]
        assert len(stars) == 1 and stars[0].get_marker() == "*"
        assert stars[0].get_xdata()[0] == row["latent_dim"]
        assert stars[0].get_ydata()[0] == pytest.approx(row["bic_mean"] - ref)
        chi = [ln for ln in ax_c.lines if ln.get_gid() == f"best-{kind}"]
        assert chi[0].get_ydata()[0] == pytest.approx(row["chi2_nu_mean"])
    # every seed a point beside its mean, on the same scale
    vae_pts = [ln for ln in ax_b.lines if ln.get_gid() == "seeds-vae-"]
    assert len(vae_pts) == 1 and len(vae_pts[0].get_ydata()) == 5 * 3
    want = seeds.loc[seeds["kind"] == "vae", "bic"] - ref
    assert sorted(vae_pts[0].get_ydata()) == pytest.approx(sorted(want))
    # error bars: ± the standard deviation over the seeds (50 apart: s.d. 50)
    segs = [c for c in ax_b.collections if len(c.get_segments()) == 5]
    lengths = [abs(sg[1][1] - sg[0][1]) for sg in segs[0].get_segments()]
    assert lengths == pytest.approx([100.0] * 5)
    planted = [ln for ln in ax_b.lines if ln.get_gid() == "planted"]
    assert len(planted) == 1 and planted[0].get_xdata()[0] == 3
    s = texts(fig)
    for lab in ("VAE", "CVAE (mstar+sfr)", "CVAE (ssfr)", "planted", "best VAE", "best CVAE",
                "lowest mean BIC of its kind", "one training seed", "3 seeds"):
        assert lab in s
    # VAE-only grid with NaN conditions (as pandas reads an empty field), one seed, no
    # per-seed points and no planted line
    vae = summary_frame(1).query("kind == 'vae'").assign(conditions=np.nan)
    fig = F.fig_bic_grid(vae)
    assert not [ln for ln in fig.axes[0].lines if ln.get_gid() in ("planted", "best-cvae")]
    assert "seeds" not in texts(fig)
    with pytest.raises(ValueError, match="chi2_nu_mean"):
        F.fig_bic_grid(summary.drop(columns="chi2_nu_mean"))
    with pytest.raises(ValueError, match="per-seed BIC table lacks column.*'bic'"):
        F.fig_bic_grid(summary, seeds.drop(columns="bic"))


def test_latent_property_maps_bin_means_and_single_component():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=2000), rng.normal(size=2000)
    props = {"log_mstar": 10 + x, "log_sfr": y, "log_ssfr": np.full(2000, np.nan)}
    fig = F.fig_latent_property_maps(x, y, props, n_bins=8, min_count=3)
    meshes = [m for m in fig.findobj(QuadMesh) if m.axes in fig.axes[:1]]
    arr = np.ma.masked_invalid(meshes[0].get_array())
    assert arr.shape == (8, 8)
    assert np.ma.median(arr[:, -1] - arr[:, 0]) > 1.0  # mean M* rises along D1 (x)
    assert "no finite values" in texts(fig)
    fig = F.fig_latent_property_maps(x, None, props, n_bins=8)
    assert "D1" in texts(fig) and "no finite values" in texts(fig)


def test_mutual_information_heatmap_order_and_annotations():
    mi = pd.DataFrame([dict(component=c, property=p, nmi=v, rho=r)
                       for c, p, v, r in (("D2", "log_sfr", 3.0, -0.4), ("D1", "log_sfr", 40.0, 0.9),
                                          ("D10", "oh_p50", 1.2, 0.05), ("D1", "oh_p50", 2.0, 0.2))])
    fig = F.fig_mutual_information(mi)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["D1", "D2", "D10"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        F.property_symbol("log_sfr"), F.property_symbol("oh_p50")]
    img = ax.images[0].get_array()
    assert img[0, 0] == 40.0 and np.ma.is_masked(img[1, 1])
    cells = [t.get_text() for t in ax.texts]
    assert "40.0\nρ +0.90" in cells and any("\N{MINUS SIGN}0.40" in c for c in cells)
    assert len(cells) == 4


def test_sweeps_shap_and_empty_cvae():
    wave = np.logspace(np.log10(3400), np.log10(8400), 500)
    vals = np.linspace(-2, 2, 4)[None].repeat(2, 0)
    spec = np.ones((2, 4, 500)) + vals[..., None] * 0.1
    fig = F.fig_component_sweeps(wave, vals, spec)
    s = texts(fig)
    assert "[O III]" in s and "rest-frame wavelength [Å]" in s and "normalised flux" in s
    with pytest.raises(ValueError, match="k, n_steps, npix"):
        F.fig_component_sweeps(wave, vals, spec[:, :, :10])
    fig = F.fig_cvae_condition_sweeps(wave, {})
    assert "no CVAE in the model grid" in texts(fig)
    fig = F.fig_cvae_condition_sweeps(wave, {"log_mstar": (vals[0], spec[0])}, model_id="m")
    assert F.property_label("log_mstar", multiline=True) in texts(fig)
    fig = F.fig_shap(wave, np.abs(spec[:, 0]), spec[0, :2], np.stack([spec[:, 0]] * 2) - 1,
                     additivity_error=1e-3, relative_additivity_error=0.02,
                     example_labels=["a", "b"])
    s = texts(fig)
    assert "additivity error 0.001" in s and "2 % of the spread of D" in s and "SHAP (D1)" in s


def test_labels():
    assert F.group_label("vae", "") == "VAE"
    assert F.group_label("cvae", "mstar+sfr") == "CVAE (mstar+sfr)"
    assert F.property_label("mstar") == F.property_label("log_mstar")
    assert F.property_symbol("true_log_age").startswith("true ")
    assert F.property_label("unknown_thing") == "unknown thing"


def test_loss_curves_list_few_models_and_split_many():
    ep = np.arange(1, 6)

    def frame(scale: float, val: bool = True) -> pd.DataFrame:
        df = pd.DataFrame({"epoch": ep, "train_loss": scale / ep, "val_loss": scale * 1.1 / ep})
        if not val:
            df["val_loss"] = np.nan
        return df

    few = {"vae-d1": frame(100), "vae-d2": frame(90), "cvae-ssfr-d1": frame(95, val=False)}
    fig = F.fig_model_loss_curves(few)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["vae-d1", "vae-d2", "cvae-ssfr-d1 (train)"]
    assert fig.axes[0].get_yscale() == "log"
    many = {f"vae-d{d}": frame(100 - d) for d in range(1, 6)}
    many |= {f"cvae-{c}-d{d}": frame(110 - d) for c in ("mstar", "sfr+ssfr") for d in range(1, 5)}
    fig = F.fig_model_loss_curves(many)
    titles = [ax.get_title() for ax in fig.axes]
    assert "VAEs" in titles and "CVAEs" in titles
    assert len(fig.axes) == 4  # two panels + two colourbars of the latent dimension
    cvae_ax = fig.axes[titles.index("CVAEs")]
    assert cvae_ax.get_legend_handles_labels()[1] == ["mstar", "sfr+ssfr"]
    assert "no loss values" in texts(F.fig_model_loss_curves({}))
