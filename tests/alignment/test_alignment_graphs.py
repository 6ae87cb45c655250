"""FoF-group graphs (periodic radius edges, features, PyG batching) and the WGAN-GP's parts."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from galforge.alignment.gan import GraphWGAN, target_repr, wgan_loss
from galforge.alignment.graphs import build_graphs, canonical_sign, radius_edges, robust_scale
from galforge.alignment.training import frames_about_axis, read_generated, write_generated
from galforge.io import InputError

BOX = 10.0


def test_radius_edges_are_periodic_and_symmetric():
    pos = np.array([[0.1, 5, 5], [9.9, 5, 5], [5, 5, 5], [0.1, 5, 5.95]])
    e = radius_edges(pos, BOX, 1.0)
    got = {tuple(p) for p in e.T}
    assert got == {(0, 1), (1, 0), (0, 3), (3, 0), (1, 3), (3, 1)}  # across x = 0
    assert radius_edges(pos[:1], BOX, 1.0).shape == (2, 0)


def test_canonical_sign_and_robust_scale():
    v = np.array([[0.1, -0.9, 0.2], [-0.5, 0.3, 0.1]])
    np.testing.assert_allclose(canonical_sign(v), [[-0.1, 0.9, -0.2], [0.5, -0.3, -0.1]])
    np.testing.assert_allclose(canonical_sign(-v), canonical_sign(v))
    x = np.random.default_rng(0).normal(size=(1001, 2)) * [1, 100]
    xs, med, iqr = robust_scale(x, 3.0)
    assert np.abs(np.median(xs, axis=0)).max() < 1e-12 and xs.max() <= 3.0
    np.testing.assert_allclose(robust_scale(x, 3.0, med, iqr)[0], xs)


def _catalog(seed=0):
    """Two groups: a central with two satellites; a lone central."""
    rng = np.random.default_rng(seed)
    n = 4
    frames = Rotation.random(n, random_state=seed).as_matrix()
    return {
        "subhalo_id": np.arange(n), "group": np.array([0, 0, 0, 1]),
        "central": np.array([True, False, False, True]),
        "log_mstar": rng.uniform(9, 11, n), "log_mdm": rng.uniform(10, 12, n),
        "group_m200": np.array([1e12, 1e12, 1e12, 1e11]),
        "pos": np.array([[0.2, 5, 5], [9.8, 5, 5], [0.2, 5.5, 5], [5, 5, 5]]),
        "star_axes_simple": frames, "star_q_simple": rng.uniform(0.5, 0.9, n),
        "dm_axes_simple": Rotation.random(n, random_state=seed + 100).as_matrix(),
        "star_s_simple": rng.uniform(0.2, 0.4, n),
        "tidal_lambda": rng.normal(size=(n, 2, 3)),
        "tidal_axes": np.stack([np.stack([np.eye(3)] * 2)] * n),
    }


def test_build_graphs_one_per_group_central_first():
    cols = _catalog()
    gs = build_graphs(cols, BOX, radius=1.0, clip=5.0)
    assert len(gs.graphs) == 2 and [g.num_nodes for g in gs.graphs] == [3, 1]
    g = gs.graphs[0]
    # vectors: the direction to the central, the DM major axis, the tidal axis at 2 scales
    assert gs.rows[0][0] == 0 and g.x.shape == (3, 4 + 6 + 1) and g.vec.shape == (3, 3 * 4)
    # the satellite across the boundary is 0.4 h^-1 Mpc from its central, at -x: its
    # (axial, canonically signed) direction to the central is x; the central has none
    np.testing.assert_allclose(g.vec[1, :3].numpy(), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(g.vec[0, :3].numpy(), [0, 0, 0])
    np.testing.assert_allclose(np.linalg.norm(g.vec.numpy().reshape(3, 4, 3)[:, 1:], axis=2), 1,
                               rtol=1e-6)
    assert g.edge_index.shape[1] == 6 and g.edge_attr.shape == (6, 4)
    assert gs.graphs[1].edge_index.shape[1] == 0
    np.testing.assert_allclose(g.y[:, 3].numpy(), cols["star_q_simple"][gs.rows[0]], rtol=1e-6)
    # PyG's DataLoader batches them
    from torch_geometric.loader import DataLoader

    b = next(iter(DataLoader(gs.graphs, batch_size=2)))
    assert b.num_graphs == 2 and b.x.shape[0] == 4


def test_target_repr_is_sign_free_and_generator_ranges():
    y = torch.tensor([[0.6, 0.8, 0.0, 0.7, 0.3]])
    flipped = y.clone()
    flipped[:, :3] *= -1
    torch.testing.assert_close(target_repr(y), target_repr(flipped))
    cols = _catalog(1)
    gs = build_graphs(cols, BOX, radius=1.0, clip=5.0)
    from torch_geometric.loader import DataLoader

    b = next(iter(DataLoader(gs.graphs, batch_size=2)))
    torch.manual_seed(0)
    m = GraphWGAN(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1)
    out = m.generate(b)
    assert torch.allclose(out[:, :3].norm(dim=1), torch.ones(4))
    assert torch.all(out[:, 4] <= out[:, 3]) and torch.all(out[:, 4] > 0)
    assert torch.all(out[:, 3] <= 1)


def test_wgan_loss_sends_each_term_to_its_own_network():
    """One step of one optimiser: the critic's loss moves only the critic, the generator's
    only the generator (as two optimisers would)."""
    from torch_geometric.loader import DataLoader

    gs = build_graphs(_catalog(2), BOX, radius=1.0, clip=5.0)
    b = next(iter(DataLoader(gs.graphs, batch_size=2)))
    torch.manual_seed(0)
    m = GraphWGAN(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1, n_critic=1)
    torch.manual_seed(1)
    loss, mets = wgan_loss(m, b)
    loss.backward()
    g_gen = {k: p.grad.clone() for k, p in m.named_parameters() if k.startswith("gen")}
    g_cri = {k: p.grad.clone() for k, p in m.named_parameters() if k.startswith("critic")}
    m.zero_grad()
    # the generator's term alone (same noise): the same generator gradients
    from galforge.alignment import gan

    torch.manual_seed(1)
    fake = target_repr(m.generate(b))
    (-gan._score_frozen(m, b, fake).mean()).backward()
    for k, p in m.named_parameters():
        if k.startswith("gen"):
            torch.testing.assert_close(p.grad, g_gen[k])
        else:
            assert p.grad is None or not p.grad.abs().sum()
    assert any(v.abs().sum() > 0 for v in g_cri.values())
    assert set(mets) == {"wasserstein", "gp", "gen"} and mets["gp"] >= 0


def test_generated_catalog_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    major = rng.normal(size=(50, 3))
    frames = frames_about_axis(major, rng)
    np.testing.assert_allclose(np.linalg.det(frames), 1.0)
    np.testing.assert_allclose(np.abs(np.einsum("ni,ni->n", frames[:, :, 0], major)),
                               np.linalg.norm(major, axis=1))
    write_generated(tmp_path / "g.h5", np.arange(50), frames, np.full(50, 0.7),
                    np.full(50, 0.4), "z", model="gan")
    g = read_generated(tmp_path / "g.h5")
    assert g["model"] == "gan" and g["e1"].shape == (50,) and np.all(np.hypot(g["e1"], g["e2"]) < 1)
    with pytest.raises(InputError, match="not found"):
        read_generated(tmp_path / "none.h5")


def test_the_generator_joins_every_n_critic_th_step():
    from torch_geometric.loader import DataLoader

    gs = build_graphs(_catalog(3), BOX, radius=1.0, clip=5.0)
    b = next(iter(DataLoader(gs.graphs, batch_size=2)))
    m = GraphWGAN(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1, n_critic=3)
    assert _generator_steps(m, b, 6) == [False, False, True, False, False, True]
    assert int(m.steps) == 6


def _generator_steps(m, b, n):
    """Whether each of ``n`` loss evaluations sends a gradient to the generator."""
    seen = []
    for _ in range(n):
        m.zero_grad()
        wgan_loss(m, b)[0].backward()
        seen.append(any(p.grad is not None and p.grad.abs().sum() > 0
                        for k, p in m.named_parameters() if k.startswith("gen")))
    return seen


def _rotated(b, rot):
    """The batch with its vector features, edge vectors (and nothing else) rotated."""
    r = b.clone()
    n = r.vec.shape[0]
    r.vec = (r.vec.reshape(n, -1, 3) @ rot.T).reshape(n, -1)
    r.edge_attr = torch.cat([r.edge_attr[:, :3] @ rot.T, r.edge_attr[:, 3:]], dim=1)
    return r


def test_generator_and_critic_are_rotation_equivariant():
    """Rotating every vector feature rotates the generated axes (same noise: the direction
    noise rotated too) and leaves the critic's score of rotated targets unchanged; the box
    axes carry no information."""
    from torch_geometric.loader import DataLoader

    gs = build_graphs(_catalog(4), BOX, radius=1.0, clip=5.0)
    b = next(iter(DataLoader(gs.graphs, batch_size=2)))
    torch.manual_seed(0)
    m = GraphWGAN(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1)
    with torch.no_grad():  # a head away from zero (it starts at isotropic orientations)
        m.gen_head.weight.normal_(0, 1.0)
    rot = torch.tensor(Rotation.from_euler("zyx", [40, -70, 15], degrees=True).as_matrix(),
                       dtype=torch.float32)
    noise = torch.randn(b.x.shape[0], m.noise_dim)
    rnoise = noise.clone()
    rnoise[:, 32:35] = noise[:, 32:35] @ rot.T
    out, rout = m.generate(b, noise), m.generate(_rotated(b, rot), rnoise)
    torch.testing.assert_close(rout[:, :3], out[:, :3] @ rot.T, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rout[:, 3:], out[:, 3:])
    y = torch.cat([rout[:, :3], out[:, 3:]], dim=1)
    torch.testing.assert_close(m.score(_rotated(b, rot), target_repr(y)),
                               m.score(b, target_repr(out)), atol=1e-5, rtol=1e-5)
    # and the critic does see the orientation relative to the vectors
    assert not torch.allclose(m.score(b, target_repr(y)), m.score(b, target_repr(out)))


def test_generator_starts_isotropic_with_the_training_marginals():
    """At initialisation the generated major axes are isotropic whatever the features, and
    q, s/q follow the quantile functions the model was given."""
    from scipy.stats import ks_2samp
    from torch_geometric.loader.dataloader import Collater

    gs = build_graphs(_catalog(5), BOX, radius=1.0, clip=5.0)
    graphs = gs.graphs * 500  # 2,000 nodes
    b = Collater(graphs)(graphs)
    rng = np.random.default_rng(1)
    q_true, sq_true = rng.beta(5, 2, 5000), rng.uniform(0.3, 0.9, 5000)
    levels = np.linspace(0, 1, 129)
    torch.manual_seed(2)
    m = GraphWGAN(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1,
                  q_quantiles=np.quantile(q_true, levels).tolist(),
                  sq_quantiles=np.quantile(sq_true, levels).tolist())
    with torch.no_grad():
        out = m.generate(b).numpy()
    assert ks_2samp(out[:, 3], q_true).pvalue > 0.01
    assert ks_2samp(out[:, 4] / out[:, 3], sq_true).pvalue > 0.01
    cos2 = (out[:, :3] @ np.array([0.0, 0.0, 1.0])) ** 2
    assert abs(cos2.mean() - 1 / 3) < 0.03  # isotropic: <cos^2> = 1/3 (sigma ~0.007)
    assert np.all(out[:, 4] <= out[:, 3] + 1e-6)


def test_ema_weights_are_swapped_in_and_restored():
    from torch_geometric.loader import DataLoader

    gs = build_graphs(_catalog(6), BOX, radius=1.0, clip=5.0)
    b = next(iter(DataLoader(gs.graphs, batch_size=2)))
    m = GraphWGAN(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1, ema_decay=0.5)
    before = m.gen_head.bias.detach().clone()
    with torch.no_grad():
        m.gen_head.bias.add_(1.0)
    m.update_ema()  # halfway to the new weights
    with m.ema_weights():
        torch.testing.assert_close(m.gen_head.bias, before + 0.5)
    torch.testing.assert_close(m.gen_head.bias.detach(), before + 1.0)


def test_critic_warmup_and_adam_betas():
    """No generator gradient during the warm-up; the trainer's Adam gets the section's
    betas (the paper's (0, 0.95)), the shared default stays torch's."""
    from torch_geometric.loader import DataLoader

    from galforge.alignment.settings import AlignmentSettings
    from galforge.train.optim import make_optimizer
    from galforge.train.settings import TrainSettings

    gs = build_graphs(_catalog(7), BOX, radius=1.0, clip=5.0)
    b = next(iter(DataLoader(gs.graphs, batch_size=2)))
    m = GraphWGAN(b.x.shape[1], b.vec.shape[1], hidden=8, layers=1, n_critic=1,
                  critic_warmup=2)
    assert _generator_steps(m, b, 3) == [False, False, True]
    assert TrainSettings().betas == (0.9, 0.999)
    train = AlignmentSettings.from_dict({}).gan_train
    assert train.betas == (0.0, 0.95)
    opt = make_optimizer(m, TrainSettings.from_dict({**train.to_dict(), "betas": [0, 0.95]}))
    assert opt.param_groups[0]["betas"] == (0.0, 0.95)
    with pytest.raises(ValueError, match="betas"):
        TrainSettings.from_dict({"betas": [0.9]})
