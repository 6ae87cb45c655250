"""The GNN-conditioned SO(3) score model of galaxy orientations: invariance, the D2
symmetry of the frames, the loss on the shared trainer's batches, sampling."""

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch_geometric.loader import DataLoader

from galforge.alignment.galaxy_diffusion import (
    D2_FLIPS,
    GalaxyScoreModel,
    dsm_graph_loss,
    sample_frames,
)
from galforge.alignment.graphs import build_graphs

BOX = 10.0


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    n = 4
    cols = {
        "subhalo_id": np.arange(n), "group": np.array([0, 0, 0, 1]),
        "central": np.array([True, False, False, True]),
        "log_mstar": rng.uniform(9, 11, n), "log_mdm": rng.uniform(10, 12, n),
        "group_m200": np.array([1e12, 1e12, 1e12, 1e11]),
        "pos": np.array([[0.2, 5, 5], [9.8, 5, 5], [0.2, 5.5, 5], [5, 5, 5]]),
        "star_axes_simple": Rotation.random(n, random_state=seed).as_matrix(),
        "star_q_simple": rng.uniform(0.5, 0.9, n), "star_s_simple": rng.uniform(0.2, 0.4, n),
        "dm_axes_simple": Rotation.random(n, random_state=seed + 1).as_matrix(),
        "tidal_lambda": rng.normal(size=(n, 2, 3)),
        "tidal_axes": Rotation.random(2 * n, random_state=seed + 2).as_matrix().reshape(n, 2, 3, 3),
    }
    gs = build_graphs(cols, BOX, radius=1.0, clip=5.0)
    return next(iter(DataLoader(gs.graphs, batch_size=2)))


def test_score_is_invariant_under_a_global_rotation_and_sign_free():
    b = _batch()
    torch.manual_seed(0)
    m = GalaxyScoreModel(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1, score_hidden=16,
                         score_layers=2)
    n = b.x.shape[0]
    r = torch.tensor(Rotation.random(n, random_state=3).as_matrix(), dtype=torch.float32)
    sig = torch.full((n,), 0.3)
    cond = m.condition(b)
    q = torch.tensor(Rotation.from_euler("xyz", [20, 50, -30], degrees=True).as_matrix(),
                     dtype=torch.float32)
    h, vec = cond[:, :-b.vec.shape[1]], cond[:, -b.vec.shape[1]:]
    rvec = (vec.reshape(n, -1, 3) @ q.T).reshape(n, -1)
    s0 = m.score(r, sig, cond)
    torch.testing.assert_close(m.score(q @ r, sig, torch.cat([h, rvec], 1)), s0, atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(m.score(r, sig, torch.cat([h, -vec], 1)), s0)  # axial
    assert not torch.allclose(m.score(r @ torch.tensor(D2_FLIPS[0] @ Rotation.from_euler(
        "z", 30, degrees=True).as_matrix(), dtype=torch.float32), sig, cond), s0)


def test_d2_flips_are_rotations_keeping_the_axes():
    np.testing.assert_allclose(np.linalg.det(D2_FLIPS), 1.0)
    assert len({tuple(np.diag(f)) for f in D2_FLIPS}) == 4


def test_loss_backpropagates_and_samples_are_rotations():
    b = _batch(1)
    torch.manual_seed(0)
    m = GalaxyScoreModel(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1, score_hidden=16,
                         score_layers=2, repeats=3)
    loss, mets = dsm_graph_loss(m, b)
    loss.backward()
    assert torch.isfinite(loss) and mets == {}
    assert all(p.grad is not None for p in m.encoder.parameters())
    frames = sample_frames(m, b, steps=10, seed=0)
    assert frames.shape == (b.x.shape[0], 3, 3)
    np.testing.assert_allclose(np.linalg.det(frames), 1.0, atol=1e-5)
    np.testing.assert_allclose(frames @ frames.transpose(0, 2, 1), np.broadcast_to(np.eye(3),
                               frames.shape), atol=1e-5)
