"""Every setting of the exsitu study (the ``exsitu:`` section of ``config.yaml``).

One class per section on :class:`galforge.settings.Settings` (unknown keys rejected, every
value range-checked before any job starts) and :class:`ExsituSettings`, the whole section.
The dataclass defaults are the paper's choices (Angeloudi et al. 2024); the scale presets in
:mod:`galforge.exsitu.presets` only override them. Torch-free: the configuration checker
imports it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from galforge import settings as gs
from galforge.mock.tng.settings import MockTNGSettings
from galforge.settings import ModelSettings, Settings, SettingsError
from galforge.train.settings import TrainSettings

__all__ = ["VIEW_COUNTS", "CVAESettings", "ExsituSettings", "FlowSettings", "GridSettings",
           "MapSettings", "PredictSettings", "grid_points", "point_name", "with_point",
           "SampleSettings", "SplitSettings"]

#: Lines of sight a galaxy may have: vertex sets of regular polyhedra (see
#: :mod:`galforge.exsitu.views`).
VIEW_COUNTS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 10, 12, 20)


def _view_counts(v: object) -> tuple[int, ...]:
    out = gs.numbers(None, integer=True, lo=1, hi=20, min_length=1,
                     increasing=True).metadata["check"](v)
    bad = [n for n in out if n not in VIEW_COUNTS]
    if bad:
        raise ValueError(f"= {bad[0]} is not a polyhedron vertex count "
                         f"({', '.join(map(str, VIEW_COUNTS))})")
    return out


@dataclass(frozen=True)
class SampleSettings(Settings):
    """Which galaxies, at which snapshots, and how many lines of sight each."""

    snapshots: tuple[int, ...] = gs.numbers(
        (99, 91), "TNG snapshots the galaxies are taken from (99: z = 0, 91: z = 0.1).",
        integer=True, lo=0, hi=99, min_length=1)
    log_mstar_min: float = gs.number(
        10.0, "Stellar-mass cut, log10 M* [Msun] (M* = SubhaloMassType[:, 4] 1e10 / h).",
        lo=6.0, hi=13.0)
    fex_max: float = gs.number(
        0.85, "Galaxies with ex-situ fraction >= fex_max are dropped (the authors').",
        lo=0.0, hi=1.0, lo_open=True)
    min_stars: int = gs.integer(20, "Fewest star particles a galaxy needs.", lo=1)
    max_galaxies: int | None = gs.integer(
        None, "Keep at most this many galaxies per snapshot (the most massive; null = all).",
        lo=1, optional=True)
    view_counts: tuple[int, ...] = gs.value(
        VIEW_COUNTS, _view_counts, {"type": "array", "items": {"type": "integer",
                                                               "enum": list(VIEW_COUNTS)},
                                    "minItems": 1},
        "Allowed numbers of lines of sight per galaxy (polyhedron vertex counts).")
    target_projections: int = gs.integer(
        24248, "Projections the balanced set aims at (the authors' 24,248).", lo=1)
    fex_bins: int = gs.integer(
        10, "Bins of f_ex over [0, fex_max) that the views per galaxy balance.", lo=1, hi=100)


@dataclass(frozen=True)
class MapSettings(Settings):
    """The six maps of each projection and the authors' preprocessing."""

    npix: int = gs.integer(128, "Pixels per side.", lo=4, hi=1024)
    extent_rhalf: float = gs.number(
        2.0, "Half side of the map in stellar half-mass radii.", lo=0.0, lo_open=True)
    count_percentile: float | None = gs.number(
        75.0, "Pixels with at most max(this percentile of the occupied pixels' particle "
        "counts, min_count) particles are empty (null: min_count only).",
        lo=0.0, hi=100.0, optional=True)
    min_count: int = gs.integer(2, "Floor of the empty-pixel threshold (particles).", lo=0)
    v_clip: float = gs.number(
        250.0, "Velocity maps clipped to +-min(|min|, |max|, v_clip) [km/s].", lo=0.0,
        lo_open=True)
    sigma_max: float = gs.number(350.0, "Dispersion maps clipped to <= sigma_max [km/s].",
                                 lo=0.0, lo_open=True)
    log_z_range: tuple[float, ...] = gs.numbers(
        (-1.0, 1.0), "log10 Z/Zsun is clipped to this range.", length=2, increasing=True)
    z_sun: float = gs.number(0.0127, "Solar metallicity (mass fraction).", lo=0.0, lo_open=True)
    smooth_sigma: float = gs.number(
        0.6, "Gaussian smoothing of the occupied pixels, sigma in pixels (0: none).", lo=0.0,
        hi=10.0)
    systemic_fraction: float = gs.number(
        0.1, "The systemic velocity is the mass-weighted mean of this fraction of the most "
        "bound stars.", lo=0.0, hi=1.0, lo_open=True)
    h5_chunk: int = gs.integer(64, "Projections per HDF5 chunk.", lo=1, hi=4096)
    compression: str | None = gs.choice("gzip", ("gzip", "lzf"),
                                        "HDF5 filter of the maps (null = none).", optional=True)


@dataclass(frozen=True)
class SplitSettings(Settings):
    """The galaxy-wise split, stratified by the number of views."""

    train: float = gs.number(0.75, "Fraction of galaxies for training.", lo=0.0, hi=1.0,
                             lo_open=True, hi_open=True)
    val: float = gs.number(0.10, "Fraction for validation.", lo=0.0, hi=1.0, hi_open=True)
    test: float = gs.number(0.15, "Fraction for the test set.", lo=0.0, hi=1.0, lo_open=True,
                            hi_open=True)

    def check(self) -> None:
        if abs(self.train + self.val + self.test - 1.0) > 1e-9:
            raise SettingsError("test", f"train + val + test = "
                                f"{self.train + self.val + self.test:g} must be 1")


@dataclass(frozen=True)
class CVAESettings(ModelSettings):
    """The conditional VAE (:class:`galforge.exsitu.model.ExsituCVAE`)."""

    model_class: ClassVar[str] = "galforge.exsitu.model:ExsituCVAE"

    latent_dim: int = gs.integer(10, "Latent Gaussians (the paper's 10).", lo=1, hi=512)
    channels: tuple[int, ...] = gs.numbers(
        (32, 64, 128, 256), "Widths of the encoder blocks (one scale each; the decoder "
        "mirrors them).", integer=True, lo=1, hi=2048, min_length=1)
    activation: str = gs.choice("silu", ("silu", "leaky_relu", "relu", "gelu", "elu"),
                                "Activation of every block.")
    beta: float = gs.number(7e-5, "Weight of the KL term (the paper's 7e-5).", lo=0.0)
    npix: int | None = gs.integer(None, "Map side (null = exsitu.maps.npix; must equal it).",
                                  lo=4, hi=1024, optional=True)

    def check(self) -> None:
        if self.npix is not None and self.npix % 2 ** (len(self.channels) - 1):
            raise SettingsError("npix", f"= {self.npix} must be a multiple of "
                                f"2**(len(channels) - 1) = {2 ** (len(self.channels) - 1)}")

    def model_kwargs(self) -> dict[str, Any]:
        if self.npix is None:
            raise ValueError("npix is unset: take these settings from ExsituSettings")
        return {"npix": int(self.npix), "channels": list(self.channels),
                "latent_dim": int(self.latent_dim), "in_channels": 6,
                "activation": self.activation}


@dataclass(frozen=True)
class GridSettings(Settings):
    """The grid of latent sizes x KL weights the paper searched: one CVAE per point, trained
    as parallel GPU jobs; the point with the lowest validation reconstruction error (masked
    MSE at its best epoch) is kept. Null: exsitu.model's own value (one point, one job)."""

    latent_dims: tuple[int, ...] | None = gs.numbers(
        None, "Latent sizes of the grid (null: model.latent_dim).", integer=True, lo=1,
        hi=512, min_length=1, increasing=True, optional=True)
    betas: tuple[float, ...] | None = gs.numbers(
        None, "KL weights of the grid (null: model.beta).", lo=0.0, min_length=1,
        increasing=True, optional=True)


def point_name(latent_dim: int, beta: float) -> str:
    """The name of a grid point (its folder under ``model/grid/``), e.g. ``z10_beta7e-05``."""
    return f"z{int(latent_dim)}_beta{float(beta):g}"


def grid_points(grid: GridSettings, model: CVAESettings) -> dict[str, tuple[int, float]]:
    """Name -> (latent size, beta) of every point of the grid, in grid order."""
    dims = grid.latent_dims or (model.latent_dim,)
    betas = grid.betas or (model.beta,)
    return {point_name(d, b): (int(d), float(b)) for d in dims for b in betas}


def with_point(config_json: str, point: tuple[int, float] | None) -> str:
    """A rule's ``--config`` JSON with ``exsitu.model``'s latent size and beta replaced by a
    grid point's (``None``: unchanged)."""
    import json

    if point is None:
        return config_json
    cfg = json.loads(config_json)
    cfg["exsitu"]["model"] = {**cfg["exsitu"]["model"], "latent_dim": int(point[0]),
                              "beta": float(point[1])}
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FlowSettings(Settings):
    """The conditional MAF on the latents (:class:`galforge.train.flows.ConditionalMAF`)."""

    n_layers: int = gs.integer(5, "Affine MADE layers.", lo=1, hi=64)
    hidden: int = gs.integer(64, "Width of each MADE.", lo=1, hi=4096)
    n_blocks: int = gs.integer(2, "Hidden blocks of each MADE.", lo=1, hi=16)


@dataclass(frozen=True)
class PredictSettings(Settings):
    """Prediction: samples per projection and intervals."""

    n_samples: int = gs.integer(100, "Maps sampled per projection and latent source (the "
                                "paper's 100).", lo=2, hi=10000)
    batch_size: int = gs.integer(32, "Projections per forward pass.", lo=1, hi=4096)
    aleatoric: bool = gs.flag(
        True, "Add an aleatoric noise term to the sampled maps: Gaussian, one sigma per "
        "latent source, fitted on the validation projections so that their 68 % intervals "
        "hold 68 % of the true pixels (false: the decoder's samples alone).")
    calibration_projections: int | None = gs.integer(
        None, "Fit the noise on at most this many validation projections, evenly spaced "
        "over the split (null = all).", lo=1, optional=True)


@dataclass(frozen=True)
class ExsituSettings(Settings):
    """Exsitu study (Angeloudi et al. 2024) - ex-situ fraction maps from IFU-like maps."""

    #: The network's map size is the maps'.
    ties: ClassVar[tuple[tuple[str, str], ...]] = (("model.npix", "maps.npix"),)

    mock: MockTNGSettings = gs.section(
        MockTNGSettings, "The mock TNG universe this study writes (source = mock; its scale "
        "preset holds the mock size plus more star particles per galaxy, so that the maps "
        "have occupied pixels).")
    sample: SampleSettings = gs.section(SampleSettings)
    maps: MapSettings = gs.section(MapSettings)
    split: SplitSettings = gs.section(SplitSettings)
    model: CVAESettings = gs.section(CVAESettings)
    grid: GridSettings = gs.section(GridSettings)
    train: TrainSettings = gs.section(
        TrainSettings, "Training of the CVAE (the seed is the run's `seed`).",
        defaults={"epochs": 200, "batch_size": 64, "lr": 1e-3, "amp": True})
    flow: FlowSettings = gs.section(FlowSettings)
    flow_train: TrainSettings = gs.section(
        TrainSettings, "Training of the flow (the seed is the run's `seed`).",
        defaults={"epochs": 200, "batch_size": 128, "lr": 1e-3, "early_stopping_patience": 20,
                  "restore_best_weights": True})
    predict: PredictSettings = gs.section(PredictSettings)
