"""Every setting of the alignment study (the ``alignment:`` section of ``config.yaml``).

The dataclass defaults are the papers' settings (Jagvaral et al. 2022, MNRAS 516, 2406)
and the only place a default lives; :mod:`galforge.alignment.presets` holds the tiny /
demo / paper overrides. Where the simulation lives is the global ``tng`` section.

This module imports only the standard library and the (torch-free) settings modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from galforge import settings as gs
from galforge.settings import ModelSettings, Settings
from galforge.train.settings import TrainSettings
from galforge.train.split import SplitSettings

__all__ = ["AlignmentSettings", "CatalogSettings", "DiffusionModelSettings", "GanModelSettings", "GraphSettings",
           "SO3BenchmarkSettings", "ShapeSettings", "StatsSettings", "TidalSettings",
           "SHAPE_METHODS", "LINES_OF_SIGHT"]

#: Inertia-tensor variants (see :mod:`galforge.alignment.shapes`).
SHAPE_METHODS = ("simple", "reduced", "iterative")
LINES_OF_SIGHT = ("x", "y", "z")


@dataclass(frozen=True)
class CatalogSettings(Settings):
    """Which galaxies: TNG100-1 z = 0 subhaloes above both mass cuts."""

    snapshot: int = gs.integer(99, "TNG snapshot (99 is z = 0).", lo=0, hi=99)
    log_mstar_min: float = gs.number(9.0, "log10 M* [Msun] (SubhaloMassType stars) above.",
                                     lo=6.0, hi=13.0)
    log_mdm_min: float = gs.number(9.0, "log10 M_dm [Msun] (SubhaloMassType DM) above.",
                                   lo=6.0, hi=15.0)
    max_galaxies: int | None = gs.integer(
        None, "Keep at most this many (the most massive in M*; null = all).", lo=1,
        optional=True)
    line_of_sight: str = gs.choice("z", LINES_OF_SIGHT,
                                   "Box axis along which e1/e2 and w_g+ are projected.")


@dataclass(frozen=True)
class ShapeSettings(Settings):
    """Shapes from the particles within ``aperture`` stellar half-mass radii."""

    method: str = gs.choice("simple", SHAPE_METHODS,
                            "The shape the models learn (all three are written): simple "
                            "(the authors'), reduced, iterative (reduced, ellipsoidal).")
    aperture: float = gs.number(2.0, "Aperture in stellar half-mass radii (SubhaloHalfmassRadType).",
                                lo=0.0, lo_open=True, hi=100.0)
    dm_aperture: float | None = gs.number(
        None, "DM shapes: aperture in stellar half-mass radii (null = all the subhalo's DM "
        "particles).", lo=0.0, lo_open=True, hi=100.0, optional=True)
    rtol: float = gs.number(0.01, "Iterative reduced: stop when q and s change by less.",
                            lo=0.0, lo_open=True, hi=1.0)
    max_iter: int = gs.integer(10, "Iterative reduced: at most this many iterations.",
                               lo=1, hi=1000)
    min_particles: int = gs.integer(10, "Fewer particles in the aperture: no shape (NaN).",
                                    lo=3, hi=1_000_000)


@dataclass(frozen=True)
class TidalSettings(Settings):
    """The tidal field of the DM density on a mesh."""

    mesh: int = gs.integer(1024, "Cells per side of the density mesh (the authors' 1024).",
                           lo=8, hi=4096)
    smoothing: tuple[float, ...] = gs.numbers(
        (0.1, 0.5, 1.0), "Gaussian smoothing scales [h^-1 Mpc].", lo=0.0, lo_open=True,
        min_length=1, increasing=True)
    route: str = gs.choice(
        "auto", ("auto", "particles", "halos"),
        "Density from: the snapshot's DM particles (streamed chunk by chunk), the group "
        "catalog's haloes (the web-API route), or auto (particles when tng.base_path is set "
        "or the mock is used).")


@dataclass(frozen=True)
class StatsSettings(Settings):
    """The alignment statistics: w_gg and w_g+ (MeasureIA), ED/EE, misalignments.

    The defaults are the mock truth's binning (``galforge.mock.tng``: 8 log r_p bins from
    0.1 to 10 h^-1 Mpc, Pi_max = 10 h^-1 Mpc, shapes of log M* >= 10 against every galaxy).
    """

    rp_min: float = gs.number(0.1, "Smallest r_p (and 3-D r) bin edge [h^-1 Mpc].",
                              lo=0.0, lo_open=True)
    rp_max: float = gs.number(10.0, "Largest r_p (and 3-D r) bin edge [h^-1 Mpc].",
                              lo=0.0, lo_open=True)
    n_rp: int = gs.integer(8, "Logarithmic r_p bins.", lo=1, hi=100)
    pi_max: float = gs.number(10.0, "Line-of-sight half depth Pi_max [h^-1 Mpc].",
                              lo=0.0, lo_open=True)
    n_pi: int = gs.integer(20, "Line-of-sight bins over [-Pi_max, Pi_max].", lo=1, hi=1000)
    jackknife: int = gs.choice(27, (8, 27, 64, 125), "Jackknife sub-boxes (a cube number).")
    shape_log_mstar_min: float = gs.number(10.0, "Shape sample: log10 M* [Msun] at least.",
                                           lo=6.0, hi=13.0)
    responsivity: bool = gs.flag(
        False, "Divide w_g+ by the shear responsivity 2R (MeasureIA's option); off: the "
        "distortion e = (1 - q^2)/(1 + q^2) as it is (the mock truth's convention).")

    def check(self) -> None:
        if self.rp_min >= self.rp_max:
            raise ValueError(f"rp_min ({self.rp_min}) must be below rp_max ({self.rp_max})")


@dataclass(frozen=True)
class GraphSettings(Settings):
    """One graph per FoF group (:mod:`galforge.alignment.graphs`)."""

    radius: float = gs.number(1.0, "Edges between a group's galaxies closer than this "
                              "[h^-1 Mpc].", lo=0.0, lo_open=True, hi=50.0)
    clip: float = gs.number(5.0, "Robust-scaled node features clipped to +-clip.", lo=0.0,
                            lo_open=True)


@dataclass(frozen=True)
class GanModelSettings(ModelSettings):
    """The graph WGAN-GP's networks (:class:`galforge.alignment.gan.GraphWGAN`)."""

    model_class: ClassVar[str] = "galforge.alignment.gan:GraphWGAN"

    hidden: int = gs.integer(64, "Width of the message-passing layers.", lo=4, hi=4096)
    layers: int = gs.integer(3, "Message-passing layers of generator and critic.", lo=1, hi=32)
    gp_weight: float = gs.number(10.0, "Gradient-penalty weight lambda.", lo=0.0)
    n_critic: int = gs.integer(5, "Critic steps per generator step.", lo=1, hi=100)
    critic_warmup: int = gs.integer(400, "Critic-only training steps before the generator "
                                    "joins (galforge's choice: a random critic's gradient "
                                    "is noise).", lo=0)
    ema_decay: float = gs.number(0.99, "Generated catalogs use this moving average of the "
                                 "generator's weights (per generator step; 0: the last "
                                 "weights; galforge's choice).", lo=0.0, hi=1.0, hi_open=True)

    def model_kwargs(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "layers": self.layers, "gp_weight": self.gp_weight,
                "n_critic": self.n_critic, "critic_warmup": self.critic_warmup,
                "ema_decay": self.ema_decay}


def _sigma_eps() -> Any:
    return gs.number(1.0, "Noise levels |eps|, eps ~ N(0, sigma_eps^2).", lo=0.0, lo_open=True)


def _sigma_min() -> Any:
    return gs.number(0.02, "Smallest IGSO(3) scale (end of sampling).", lo=0.0, lo_open=True)


def _sigma_max() -> Any:
    return gs.number(3.0, "Largest IGSO(3) scale (uniform start).", lo=0.0, lo_open=True)


def _check_sigmas(s: Any) -> None:
    if s.sigma_min >= s.sigma_max:
        raise ValueError(f"sigma_min ({s.sigma_min}) must be below sigma_max ({s.sigma_max})")


@dataclass(frozen=True)
class DiffusionModelSettings(ModelSettings):
    """The GNN-conditioned SO(3) score model of galaxy orientations
    (:class:`galforge.alignment.galaxy_diffusion.GalaxyScoreModel`)."""

    model_class: ClassVar[str] = "galforge.alignment.galaxy_diffusion:GalaxyScoreModel"

    hidden: int = gs.integer(64, "Width of the GNN encoder's layers.", lo=4, hi=4096)
    layers: int = gs.integer(3, "Message-passing layers of the encoder.", lo=1, hi=32)
    score_hidden: int = gs.integer(128, "Width of the score MLP.", lo=4, hi=4096)
    score_layers: int = gs.integer(3, "Hidden layers of the score MLP.", lo=1, hi=32)
    sigma_eps: float = _sigma_eps()
    sigma_min: float = _sigma_min()
    sigma_max: float = _sigma_max()
    reverse_steps: int = gs.integer(300, "Steps of the reverse random walk.", lo=1)
    repeats: int = gs.integer(8, "Noise draws per galaxy and training step.", lo=1, hi=1000)

    def check(self) -> None:
        _check_sigmas(self)

    def model_kwargs(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "layers": self.layers, "score_hidden": self.score_hidden,
                "score_layers": self.score_layers, "sigma_min": self.sigma_min,
                "sigma_max": self.sigma_max, "sigma_eps": self.sigma_eps,
                "repeats": self.repeats}


@dataclass(frozen=True)
class SO3BenchmarkSettings(Settings):
    """The synthetic SO(3) benchmark of the diffusion model (:mod:`galforge.alignment.diffusion`)."""

    densities: tuple[str, ...] = gs.texts(("blobs2", "blobs4", "line"),
                                          "Test densities: IGSO(3) mixtures of 2 and 4 blobs, "
                                          "a line of rotations.",
                                          options=("blobs2", "blobs4", "line"))
    hidden: int = gs.integer(128, "Width of the score MLP.", lo=4, hi=4096)
    layers: int = gs.integer(3, "Hidden layers of the score MLP.", lo=1, hi=32)
    steps: int = gs.integer(3000, "Training steps (fresh samples each step).", lo=1)
    batch_size: int = gs.integer(256, "Rotations per training step.", lo=1)
    lr: float = gs.number(1e-3, "Adam learning rate (cosine-annealed to 0).", lo=0.0,
                          lo_open=True)
    sigma_eps: float = _sigma_eps()
    sigma_min: float = _sigma_min()
    sigma_max: float = _sigma_max()
    reverse_steps: int = gs.integer(200, "Steps of the reverse random walk.", lo=1)
    n_samples: int = gs.integer(500, "Samples scored (model and each true sample).", lo=10)
    mmd_bandwidth: float = gs.number(0.3, "Kernel bandwidth of the MMD [rad].", lo=0.0,
                                     lo_open=True)

    def check(self) -> None:
        _check_sigmas(self)


@dataclass(frozen=True)
class AlignmentSettings(Settings):
    """Alignment study (Jagvaral, Lanusse, Mandelbaum et al.) - galaxy shapes and orientations
    from the cosmic web (graph WGAN-GP, SO(3) diffusion)."""

    catalog: CatalogSettings = gs.section(CatalogSettings)
    shapes: ShapeSettings = gs.section(ShapeSettings)
    tidal: TidalSettings = gs.section(TidalSettings)
    stats: StatsSettings = gs.section(StatsSettings)
    graphs: GraphSettings = gs.section(GraphSettings)
    gan: GanModelSettings = gs.section(GanModelSettings)
    gan_train: TrainSettings = gs.section(
        TrainSettings, "Training of the graph WGAN-GP (the seed is the run's `seed`): Adam "
        "at 1e-3 with betas (0, 0.95), 64 graphs per batch as the paper.",
        defaults={"lr": 1e-3, "betas": (0.0, 0.95), "batch_size": 64, "epochs": 60})
    diffusion: DiffusionModelSettings = gs.section(DiffusionModelSettings)
    diffusion_train: TrainSettings = gs.section(
        TrainSettings, "Training of the GNN-conditioned SO(3) diffusion model (the seed is the "
        "run's `seed`): Adam, 64 graphs per batch.",
        defaults={"lr": 3e-3, "batch_size": 64, "epochs": 60})
    split: SplitSettings = gs.section(SplitSettings, "Train/validation split of the groups.",
                                      defaults={"val_fraction": 0.1})
    so3_benchmark: SO3BenchmarkSettings = gs.section(SO3BenchmarkSettings)
