"""w_g+ by MeasureIA against a brute-force pair sum and TreeCorr; ED/EE, misalignments,
the Samuroff et al. (2021) file."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import shared_data_path
from galforge.alignment.correlations import (
    brute_force_wgp,
    ed_ee,
    jackknife_regions,
    misalignments,
    projected_correlations,
    read_samuroff,
)
from galforge.alignment.shapes import projected_e
from galforge.io import InputError

BOX = 20.0


def _catalog(seed=0, n_dens=400, n_shape=150, kappa=True):
    """Clustered positions (clumps) and shapes aligned towards their clump's centre."""
    rng = np.random.default_rng(seed)
    centres = rng.random((40, 3)) * BOX
    k = rng.integers(0, 40, n_dens)
    dens = np.mod(centres[k] + rng.normal(scale=0.8, size=(n_dens, 3)), BOX)
    shape = dens[:n_shape]
    frames = Rotation.random(n_shape, random_state=seed).as_matrix()
    if kappa:  # major axes towards the clump centre
        d = centres[k[:n_shape]] - shape
        d -= BOX * np.rint(d / BOX)
        a = d / np.linalg.norm(d, axis=1, keepdims=True)
        b = np.cross(a, rng.normal(size=(n_shape, 3)))
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        frames = np.stack([a, b, np.cross(a, b)], axis=2)
    q, s = rng.uniform(0.4, 0.9, n_shape), rng.uniform(0.2, 0.4, n_shape)
    return dens, shape, frames, q, s


def test_measureia_equals_the_brute_force_pair_sum():
    dens, shape, frames, q, s = _catalog()
    e1, e2 = projected_e(frames, q, s, "z")
    edges = np.geomspace(0.3, 6.0, 7)
    w = projected_correlations(dens, shape, e1, e2, box=BOX, rp_edges=edges, pi_max=4.0,
                               n_pi=8, jackknife=8)
    brute = brute_force_wgp(dens, shape, e1, e2, box=BOX, rp_edges=edges, pi_max=4.0)
    assert brute.max() > 1.0  # radial alignment: a signal to compare
    np.testing.assert_allclose(w["wgp"], brute, rtol=1e-9, atol=1e-12)
    assert np.all(w["wgp_err"] > 0) and w["wgp_cov"].shape == (6, 6)


def test_every_line_of_sight_gives_the_same_after_relabelling_the_axes():
    """The box seen along z, and the same box with its axes relabelled so that the old z
    is y (x → z, y → x): (u, v, los) is (x, y, z) and (z, x, y), so e1, e2 and w_g+ agree."""
    dens, shape, frames, q, s = _catalog(1)
    edges = np.geomspace(0.3, 6.0, 5)
    e1, e2 = projected_e(frames, q, s, "z")
    wz = projected_correlations(dens, shape, e1, e2, box=BOX, rp_edges=edges, pi_max=4.0,
                                n_pi=8, jackknife=0, corr="g+")
    perm = [1, 2, 0]  # new (x, y, z) = old (y, z, x)
    f2 = frames[:, perm, :]
    e1y, e2y = projected_e(f2, q, s, "y")
    np.testing.assert_allclose(e1y, e1) and np.testing.assert_allclose(e2y, e2)
    wy = projected_correlations(dens[:, perm], shape[:, perm], e1y, e2y, box=BOX, rp_edges=edges,
                                pi_max=4.0, n_pi=8, los=1, jackknife=0, corr="g+")
    np.testing.assert_allclose(wy["wgp"], wz["wgp"], rtol=1e-9)


def test_treecorr_agrees_when_every_pair_counts():
    """TreeCorr's Rperp metric has no periodic box; with Π_max = L/2 every nearest-image pair
    counts, so its flat periodic NG correlation (e+ = −γ_t) gives w_g+ too."""
    import treecorr

    dens, shape, frames, q, s = _catalog(2)
    e1, e2 = projected_e(frames, q, s, "z")
    edges = np.geomspace(0.3, 6.0, 6)
    w = projected_correlations(dens, shape, e1, e2, box=BOX, rp_edges=edges, pi_max=BOX / 2,
                               n_pi=10, jackknife=0, corr="g+")
    ng = treecorr.NGCorrelation(min_sep=edges[0], max_sep=edges[-1], nbins=len(edges) - 1,
                                bin_slop=0, angle_slop=0, xperiod=BOX, yperiod=BOX)
    ng.process(treecorr.Catalog(x=dens[:, 0], y=dens[:, 1]),
               treecorr.Catalog(x=shape[:, 0], y=shape[:, 1], g1=e1, g2=e2), metric="Periodic")
    rr = len(shape) * len(dens) / BOX**3 * math.pi * np.diff(edges**2)
    np.testing.assert_allclose(-ng.xi * ng.weight / rr, w["wgp"], rtol=1e-6, atol=1e-9)


def test_ed_ee_known_cases():
    rng = np.random.default_rng(3)
    # satellites on a shell about one central, major axes pointing at it: ED = 2/3 exactly
    d = rng.normal(size=(200, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    centre = np.full(3, 10.0)
    pos = centre + d * 1.0
    res = ed_ee(pos, d, centre[None], box=BOX, r_edges=np.array([0.5, 1.5]), jackknife=8)
    assert res["ed"][0] == pytest.approx(2 / 3)
    # identical axes: EE = 2/3; random axes: ED, EE consistent with 0
    same = ed_ee(pos, np.tile([0, 0, 1.0], (200, 1)), pos, box=BOX,
                 r_edges=np.array([0.1, 3.0]), jackknife=8)
    assert same["ee"][0] == pytest.approx(2 / 3)
    p = rng.random((3000, 3)) * BOX
    a = rng.normal(size=(3000, 3))
    rand = ed_ee(p, a, p, box=BOX, r_edges=np.geomspace(0.5, 5, 4), jackknife=27)
    assert np.all(np.abs(rand["ed"]) < 3 * rand["ed_err"])
    assert np.all(np.abs(rand["ee"]) < 3 * rand["ee_err"])
    assert np.bincount(jackknife_regions(p, BOX, 27), minlength=27).min() > 0
    with pytest.raises(ValueError, match="cube"):
        jackknife_regions(p, BOX, 10)


def test_misalignment_angles():
    eye = np.eye(3)
    turn = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    cols = {
        "subhalo_id": np.arange(2), "central": np.array([True, False]),
        "log_mstar": np.array([11.0, 10.0]), "group": np.array([0, 0]),
        "pos": np.array([[1.0, 1, 1], [19.5, 1, 1]]),  # the satellite across the boundary
        "star_axes_simple": np.stack([eye, turn]), "dm_axes_simple": np.stack([turn, turn]),
        "tidal_axes": np.stack([eye[None], eye[None]])[:, :, :, [2, 1, 0]],
    }
    m = misalignments(cols, BOX)
    np.testing.assert_allclose(m["angle_dm"], [30, 0], atol=1e-9)
    np.testing.assert_allclose(m["angle_tidal_0"], [0, 30], atol=1e-9)
    assert np.isnan(m["angle_central"][0]) and m["angle_central"][1] == pytest.approx(30)
    # the direction to the central is +x through the periodic boundary: 30 degrees
    assert m["angle_radial"][1] == pytest.approx(30)


@pytest.mark.archive
def test_samuroff_measurement_is_read():
    s = read_samuroff(shared_data_path("ia/2pt_tng_fidcovw_iteration4.fits"))
    assert len(s["rp"]) == 12 and s["rp"][0] == pytest.approx(0.1312264)
    assert s["wgp"][0] == pytest.approx(2.79003847) and np.all(s["wgp_err"] > 0)
    assert s["wgg"][0] == pytest.approx(218.16433909) and np.all(s["wgg_err"] > 0)
    with pytest.raises(InputError, match="no snapshot 98"):
        read_samuroff(shared_data_path("ia/2pt_tng_fidcovw_iteration4.fits"), snapshot=98)


def test_samuroff_bad_input(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_samuroff(tmp_path / "x.fits")
    (tmp_path / "bad.fits").write_text("nope")
    with pytest.raises(InputError, match="bad.fits"):
        read_samuroff(tmp_path / "bad.fits")
