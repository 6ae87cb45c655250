"""galforge.figures.helpers and galforge.figures.training: helpers both studies share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from galforge.figures import new_figure, save_figure
from galforge.figures.helpers import (
    MINUS,
    annotate_cells,
    color_norm,
    fmt_nmi,
    fmt_signed,
    heatmap,
    metric_epochs,
    metric_series,
    pivot_matrix,
    plain_log_ticks,
    readable_text_color,
    text_box,
)
from galforge.figures.training import fig_loss_curves
from galforge.provenance import Provenance

PROV = Provenance("test", "mock", "abc123")


def texts(fig: Figure) -> str:
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return "\n".join(s for s in out if isinstance(s, str))


# -- numbers --------------------------------------------------------------------------------
def test_number_formats():
    assert fmt_signed(0.254) == "+0.25" and fmt_signed(-0.5) == f"{MINUS}0.50"
    assert fmt_signed(1.23456, 3) == "+1.235"
    assert [fmt_nmi(v) for v in (1.234, 12.34, 123.4, -2.0)] == ["1.23", "12.3", "123",
                                                                  f"{MINUS}2.00"]


# -- axes -------------------------------------------------------------------------------------
def _log_axis(lo: float, hi: float):
    ax = new_figure().add_subplot()
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    return ax


def _minor_labels(ax) -> list[str]:
    fmt = ax.yaxis.get_minor_formatter()
    return [fmt(v, 0) for v in (2.0, 3.0, 5.0, 7.0)]


def test_plain_log_ticks_default_and_a_study_variant():
    ax = _log_axis(1, 20)  # 1.3 decades: 2s, 3s and 5s
    plain_log_ticks(ax.yaxis)
    assert ax.yaxis.get_major_formatter()(200.0, 0) == "200"
    assert _minor_labels(ax) == ["2", "3", "5", ""]
    ax = _log_axis(1, 200)  # 2.3 decades: 2s and 5s
    plain_log_ticks(ax.yaxis)
    assert _minor_labels(ax) == ["2", "", "5", ""]
    plain_log_ticks(ax.yaxis, minor_labels=((2.0, (2, 5)),))  # spectra: none past 2 decades
    assert _minor_labels(ax) == ["", "", "", ""]
    ax = _log_axis(1, 1e4)
    plain_log_ticks(ax.yaxis)
    assert _minor_labels(ax) == ["", "", "", ""]


def test_text_box_positions():
    ax = new_figure().add_subplot()
    t = text_box(ax, "note", "lower right", margin=(0.04, 0.04), alpha=0.8)
    assert t.get_position() == (0.96, 0.04) and t.get_ha() == "right"
    assert t.get_bbox_patch().get_alpha() == 0.8
    t = text_box(ax, "note")
    assert t.get_position() == (0.03, 0.95) and t.get_va() == "top"
    assert text_box(ax, "c", "center").get_position() == (0.5, 0.5)


# -- heat maps --------------------------------------------------------------------------------
def test_pivot_matrix():
    t = pd.DataFrame({"r": [0, 0, 1, 1], "c": ["a", "b", "a", "a"], "v": [1, 2, 3, 4]})
    m = pivot_matrix(t, "r", "c", "v", [0, 1, 2], ["a", "b"])
    np.testing.assert_array_equal(m, [[1, 2], [4, np.nan], [np.nan, np.nan]])  # last wins
    assert np.isnan(pivot_matrix(t, "r", "c", "missing", [0], ["a"])).all()


def test_color_norm():
    norm, log = color_norm(np.array([1.0, 10.0, np.nan]))
    assert log and isinstance(norm, mcolors.LogNorm) and (norm.vmin, norm.vmax) == (1.0, 10.0)
    norm, log = color_norm(np.array([3.0, 3.0]))
    assert log and (norm.vmin, norm.vmax) == (1.5, 6.0)
    norm, log = color_norm(np.array([-1.0, 2.0]))
    assert not log and (norm.vmin, norm.vmax) == (-1.0, 2.0)
    norm, log = color_norm(np.array([1.0, 10.0]), log=False)
    assert not log and (norm.vmin, norm.vmax) == (0.0, 10.0)
    assert (color_norm(np.array([np.nan]))[0].vmax) == 1.0


def test_heatmap_and_annotations():
    ax = new_figure().add_subplot()
    data = np.array([[0.0, 1.0], [np.nan, 0.5]])
    im = heatmap(ax, data, cmap="viridis", norm=mcolors.Normalize(0, 1), xlabels=["a", "b"],
                 ylabels=["x", "y"], rotation=40)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    annotate_cells(ax, im, data, lambda i, j, v: f"{i}{j}:{v:g}", fontsize=6)
    assert sorted(t.get_text() for t in ax.texts) == ["00:0", "01:1", "11:0.5"]
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours["00:0"] == "white" and colours["01:1"] == "black"  # viridis: dark to light
    assert readable_text_color((1, 1, 1, 1)) == "black"


# -- metrics ----------------------------------------------------------------------------------
def _metrics(n: int = 12) -> pd.DataFrame:
    e = np.arange(1, n + 1)
    return pd.DataFrame({
        "epoch": e, "step": e * 10, "train_loss": 100 / e, "val_loss": 110 / e, "lr": 1e-3,
        "seconds": 2.0, "train_recon": 90 / e, "val_recon": 95 / e, "train_kl": 1 + 0.1 * e,
        "val_kl": 1.1 + 0.1 * e,
    })


def test_metric_series():
    m = _metrics(4)
    m.loc[1, "val_loss"] = np.nan
    x, y = metric_series(m, "val_loss")
    assert x.tolist() == [1, 3, 4] and y[0] == 110
    assert metric_series(m, "nope") is None
    assert metric_series(m.assign(val_loss=np.nan), "val_loss") is None
    assert metric_epochs(m.drop(columns="epoch")).tolist() == [1, 2, 3, 4]


def test_loss_curves(tmp_path):
    m = _metrics()
    m.loc[2, "val_loss"] = np.nan
    fig = fig_loss_curves(m)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_yscale() == "log" and fig.axes[1].get_yscale() == "log"
    labels = [line.get_label() for line in fig.axes[1].lines]
    assert {"recon (train)", "recon (val)", "kl (train)", "kl (val)"} <= set(labels)
    assert "best (epoch 12)" in texts(fig)
    assert fig.axes[0].get_ylabel() == "loss per map [nats]"
    assert fig_loss_curves(m, per="spectrum").axes[0].get_ylabel() == "loss per spectrum [nats]"
    save_figure(fig, tmp_path / "loss", PROV)
    assert (tmp_path / "loss.png").exists()


def test_loss_curves_minimal_and_negative():
    m = _metrics()[["epoch", "step", "train_loss", "lr", "seconds"]]
    m = m.assign(train_loss=m.train_loss - 50)  # crosses zero: linear scale
    fig = fig_loss_curves(m)
    assert len(fig.axes) == 1
    assert fig.axes[0].get_yscale() == "linear"
    fig2 = fig_loss_curves(_metrics().assign(val_loss=np.nan))  # all-NaN validation
    assert len(fig2.axes) == 2
    assert [ln.get_label() for ln in fig2.axes[0].lines] == ["train"]
    empty = fig_loss_curves(pd.DataFrame({"epoch": [1, 2], "train_loss": [np.nan, np.nan]}))
    assert "no loss values" in texts(empty)


@pytest.mark.parametrize("loc", ["upper left", "upper right", "lower left", "lower right"])
def test_text_box_margins_are_symmetric(loc):
    ax = new_figure().add_subplot()
    x, y = text_box(ax, "n", loc, margin=(0.1, 0.2)).get_position()
    assert {round(x, 9), round(1 - x, 9)} == {0.1, 0.9} and {round(y, 9), round(1 - y, 9)} == {0.2, 0.8}
