"""Every setting of the environment study (the ``environment:`` section of ``config.yaml``).

One class per section, each on :class:`galforge.settings.Settings` (unknown keys
rejected, every value range-checked when the configuration is checked, before
any job starts), and :class:`EnvironmentSettings`, the whole study section, whose
:meth:`~EnvironmentSettings.check` ties sections together (the model's map size
is the maps' ``npix``; the maps must fit the model's downsampling).

The dataclass defaults are the paper's settings and the only place a default
lives; :mod:`galforge.environment.presets` holds the overrides of the tiny /
demo / paper scales. The JSON schema of the section is derived from these
classes (:meth:`~galforge.settings.Settings.json_schema`).

This module imports only the standard library and :mod:`galforge.settings`, so
the configuration checker and every workflow job read it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from galforge import settings as gs
from galforge.mock.settings import MockEnvironmentSettings
from galforge.settings import ModelSettings, Settings, SettingsError
from galforge.train.settings import TrainSettings
from galforge.train.split import SplitSettings

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "CATALOG_COLUMNS",
    "ArchiveSettings",
    "CatalogSettings",
    "EnvParamsSettings",
    "EnvironmentModelSettings",
    "EnvironmentSettings",
    "FootprintSettings",
    "MapSettings",
    "StatsSettings",
]

#: Activation functions the model offers (each layer gets its own module instance).
ACTIVATIONS = ("leaky_relu", "silu", "relu", "elu", "gelu")
#: Normalisation layers the model offers.
NORMS = ("batch", "none")
#: HEALPix resolution of the catalogue-derived footprint (pixels of ~0.92 deg).
DEFAULT_NSIDE = 64

#: Canonical catalog columns a user table may map (``catalog.columns``), with the
#: column name used when unset (None: absent unless a column of that name exists).
CATALOG_COLUMNS: dict[str, str | None] = {
    "id": None, "ra": "ra", "dec": "dec", "z": "z", "Mr": None, "g_r": None,
    "log_mstar": None, "log_sfr": None, "log_ssfr": None,
}
_REQUIRED_COLUMNS = ("ra", "dec", "z")


def _check_columns(v: Any) -> dict[str, str | None]:
    if not isinstance(v, Mapping):
        raise ValueError(f"must be a mapping of canonical name to your column name, got {v!r}")
    unknown = sorted(set(v) - set(CATALOG_COLUMNS))
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; known: {', '.join(CATALOG_COLUMNS)}")
    out = dict(CATALOG_COLUMNS)
    for k, name in v.items():
        if name is None and k in _REQUIRED_COLUMNS:
            raise ValueError(f"{k} is required and cannot be null")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{k} must be a column name, got {name!r}")
        out[k] = name
    return out


_COLUMNS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        k: ({"type": "string", "description": f"Your column of {k} (required)."}
            if k in _REQUIRED_COLUMNS else
            {"type": ["string", "null"], "description": f"Your column of {k} (optional)."})
        for k in CATALOG_COLUMNS
    },
}


@dataclass(frozen=True)
class CatalogSettings(Settings):
    """Which galaxies, and the volume-limit cuts."""

    path: str | None = gs.text(
        None, "Bring your own catalog (FITS, CSV or Parquet); replaces the mock or archive "
        "catalog; `columns` maps its column names.", optional=True)
    format: str = gs.choice("auto", ("auto", "fits", "csv", "parquet"),
                         "File format of `path` (auto = from the suffix).")
    columns: dict[str, str | None] = gs.value(
        {}, _check_columns, _COLUMNS_SCHEMA,
        "Column names in your catalog: ra, dec (degrees) and z (redshift) are required, "
        "id, Mr (M_r - 5 log10 h, k-corrected), g_r, log_mstar, log_sfr, log_ssfr optional "
        "(unset = the canonical name if present).")
    zmin: float = gs.number(0.02, "Lower redshift of the volume-limited sample.", lo=0.0)
    zmax: float = gs.number(0.07, "Upper redshift of the volume-limited sample.", lo=0.0, hi=1.0,
                         lo_open=True)
    mr_max: float | None = gs.number(
        -18.95, "Volume limit M_r - 5 log10 h < mr_max (null = no magnitude cut).",
        lo=-30.0, hi=0.0, optional=True)

    def check(self) -> None:
        if self.zmin >= self.zmax:
            raise ValueError(f"zmin ({self.zmin}) must be below zmax ({self.zmax})")


@dataclass(frozen=True)
class ArchiveSettings(Settings):
    """SDSS archive query settings (source = archive)."""

    data_release: int = gs.choice(7, (7,), "SDSS data release of the CAS SQL query.")
    timeout: float = gs.number(600.0, "Seconds allowed for each SQL query.", lo=0.0, lo_open=True)


@dataclass(frozen=True)
class MapSettings(Settings):
    """Neighbour-count maps around each target.

    ``compression``: HDF5 filter of the ``maps`` dataset. Measured on 67k paper-like
    maps (549 MB raw, 2 cores): gzip-1 ≈ +1.7-2.3 s to write, 13 MB; gzip-4 ≈ +3-4 s,
    9 MB; lzf ≈ +1.6-2.2 s, 20 MB (and h5py-only); none: 549 MB.
    """

    size_mpc: float = gs.number(10.0, "Side L of the comoving square [h^-1 Mpc].", lo=0.0,
                             lo_open=True)
    npix: int = gs.integer(64, "Pixels per side.", lo=1, hi=4096)
    dv_kms: float = gs.number(1000.0, "Half width of the rest-frame velocity window [km/s].",
                           lo=0.0, lo_open=True)
    chunk: int = gs.integer(2048, "Targets per processing chunk (memory ~ chunk * npix^2).",
                         lo=1, hi=1 << 20)
    compression: str | None = gs.choice("gzip", ("gzip", "lzf"),
                                     "HDF5 filter of the maps (null = none).", optional=True)
    compression_level: int = gs.integer(1, "gzip level (ignored otherwise).", lo=0, hi=9)
    h5_chunk_maps: int = gs.integer(256, "Maps per HDF5 chunk.", lo=1, hi=1 << 16)

    def check(self) -> None:
        if self.npix * self.npix * self.h5_chunk_maps * 2 > (1 << 32) - 1:
            raise ValueError("h5_chunk_maps too large for one HDF5 chunk (< 4 GiB)")

    @property
    def pixel_mpc(self) -> float:
        """Pixel side, h⁻¹Mpc."""
        return self.size_mpc / self.npix

    @property
    def half_diagonal_mpc(self) -> float:
        """Largest projected radius inside the square, ``L/√2``."""
        return self.size_mpc / 2.0**0.5


def _power_of_two(v: Any) -> int:
    n = gs.integer(1, lo=1, hi=1 << 29).metadata["check"](v)
    if n & (n - 1):
        raise ValueError(f"= {n} must be a power of two")
    return n


def _subdivision(v: Any) -> int:
    n = _power_of_two(v)
    if n > 64:
        raise ValueError(f"= {n} must be at most 64")
    return n


@dataclass(frozen=True)
class FootprintSettings(Settings):
    """Survey footprint for the edge cut (HEALPix occupancy of the catalog unless `mask`
    names a HEALPix mask FITS file) and the coverage a target's map square needs.

    ``min_coverage`` 0.95: at most 5 % of the square's area (e.g. a strip L/20 =
    0.5 h⁻¹Mpc wide along one side) may lie outside, so a map's count is biased low by at
    most ~5 %, below its Poisson scatter (~10-20 % for the tens to ~100 neighbours of a
    10 h⁻¹Mpc square); and the footprint's own pixelisation (a sub-pixel straddling the
    edge, a gap the closing left) no longer removes a target whose square merely touches
    it. 1.0 asks for every sample point inside.

    ``coverage_points`` 16: 256 cell centres a square, 0.4 % of its area each (a tenth of
    the tolerance); the 33k DR7 candidates take ~0.4 s.

    ``edge_subdivision`` 8: on the DR7 sample (16 galaxies/deg²) an nside-64 pixel (0.92°)
    that the edge cuts counts as inside whole, so on 4°-wide stripes cut from the sample
    8-12 % of the squares that lay inside whole pixels were 5-17 % outside the stripe;
    nside-512 sub-pixels (0.11°), closed over one nside-64 pixel, keep none below 95 %
    inside (subdivision 4 still kept 1-3 a stripe down to 88 %). The footprint costs
    ~0.5 s on the whole sample.
    """

    nside: int = gs.value(DEFAULT_NSIDE, _power_of_two, {"type": "integer", "minimum": 1},
                       "HEALPix resolution of the catalogue-derived footprint (a power of 2).")
    min_count: int = gs.integer(1, "Galaxies a pixel needs to be inside.", lo=1)
    fill_holes: bool = gs.flag(True, "Fill under-filled pixels whose 8 neighbours are inside.")
    edge_subdivision: int = gs.value(
        8, _subdivision, {"type": "integer", "minimum": 1, "maximum": 64},
        "Trace the catalogue footprint's edges on sub-pixels: each nside pixel split into "
        "edge_subdivision^2 (a power of 2), their occupancy closed (dilated, then eroded) "
        "over one nside pixel so that Poisson gaps fill and edges stay where the galaxies "
        "end (1 = whole nside pixels).")
    mask: str | None = gs.text(
        None, "HEALPix mask FITS file used instead of the catalogue occupancy (nside, "
        "min_count, fill_holes and edge_subdivision are then ignored).", optional=True)
    min_coverage: float = gs.number(
        0.95, "Fraction of a target's L x L map square that must lie inside the footprint "
        "(measured on coverage_points^2 points of the square); 0.95 biases a map's count "
        "low by at most ~5 %, below its Poisson scatter.", lo=0.0, hi=1.0, lo_open=True)
    coverage_points: int = gs.integer(16, "Sample points per side of the square for "
                                      "min_coverage (cell centres).", lo=2, hi=256)

    def check(self) -> None:
        if self.mask is not None and not Path(self.mask).is_file():
            raise SettingsError("mask", f"no such file: {self.mask!r} (relative paths are from "
                                "the working directory)")


def aperture_column(radius: float) -> str:
    """Column name of the count within ``radius``: 1.0 → ``n_r1``, 0.5 → ``n_r0.5``."""
    return f"n_r{radius:g}"


@dataclass(frozen=True)
class EnvParamsSettings(Settings):
    """Classic environment parameters (Sigma_N, nearest-neighbour distance, aperture counts)."""

    n_neighbours: tuple[int, ...] = gs.numbers(
        (5,), "The N of Sigma_N (each gives d_N, sigma_N, log_sigma_N).", integer=True, lo=1,
        hi=10_000, min_length=1)
    radii_mpc: tuple[float, ...] = gs.numbers(
        (1.0, 2.0, 5.0), "Aperture radii of the counts n_r<R> [h^-1 Mpc], each <= r_max_mpc.",
        lo=0.0, lo_open=True)
    r_max_mpc: float = gs.number(10.0, "Largest projected search radius [h^-1 Mpc].", lo=0.0,
                              lo_open=True)
    chunk: int = gs.integer(2048, "Targets per processing chunk.", lo=1, hi=1 << 20)

    def check(self) -> None:
        for r in self.radii_mpc:
            if r > self.r_max_mpc:
                raise ValueError(f"radii_mpc value {r} exceeds r_max_mpc ({self.r_max_mpc})")
        names = [aperture_column(r) for r in self.radii_mpc]
        if len(set(names)) != len(names) or len(set(self.n_neighbours)) != len(
                self.n_neighbours):
            raise ValueError("radii_mpc and n_neighbours must not repeat values")


@dataclass(frozen=True)
class EnvironmentModelSettings(ModelSettings):
    """The Poisson VAE (training hyper-parameters live in `train`).

    ``beta`` weights the KL term. The other fields are the
    :class:`~galforge.environment.model.PoissonVAE` constructor arguments
    (:meth:`model_kwargs`).
    """

    model_class: ClassVar[str] = "galforge.environment.model:PoissonVAE"

    latent_dim: int = gs.integer(128, "Latent dimensions (the paper's 128).", lo=1, hi=4096)
    channels: tuple[int, ...] = gs.numbers(
        (32, 64, 128, 256), "Encoder convolution widths, one stride-2 block each.",
        integer=True, lo=1, hi=4096, min_length=1)
    hidden: int = gs.integer(512, "Width of the dense layer between convolutions and latents.",
                          lo=1, hi=1 << 16)
    npix: int | None = gs.integer(
        None, "Map side in pixels (null = environment.maps.npix; must equal it).", lo=1,
        hi=4096, optional=True)
    activation: str = gs.choice("leaky_relu", ACTIVATIONS, "Activation of every block.")
    norm: str = gs.choice("batch", NORMS, "Normalisation of the convolution blocks.")
    dropout: float = gs.number(0.0, "Dropout probability of every block.", lo=0.0, hi=1.0,
                            hi_open=True)
    init_rate: float = gs.number(0.01, "Initial decoder output, counts per pixel.", lo=0.0,
                              lo_open=True)
    beta: float = gs.number(1.0, "Weight of the KL term.", lo=0.0)

    def check(self) -> None:
        if self.npix is not None:
            depth = len(self.channels)
            if self.npix % (2**depth) or self.npix < 2**depth:
                raise SettingsError(
                    "npix", f"= {self.npix} must be a multiple of 2**len(channels) = "
                    f"{2**depth} (one stride-2 block per channel entry)"
                )

    def model_kwargs(self) -> dict[str, Any]:
        """JSON-able :class:`PoissonVAE` constructor arguments."""
        if self.npix is None:
            raise ValueError("npix is unset: take these settings from EnvironmentSettings")
        return {
            "latent_dim": int(self.latent_dim),
            "channels": list(self.channels),
            "hidden": int(self.hidden),
            "npix": int(self.npix),
            "activation": self.activation,
            "norm": self.norm,
            "dropout": float(self.dropout),
            "init_rate": float(self.init_rate),
        }




@dataclass(frozen=True)
class StatsSettings(Settings):
    """Latent statistics: Spearman, shuffle-normalised MI and KS with bootstrap intervals."""

    n_latents: int = gs.integer(8, "Most informative latents analysed.", lo=1)
    n_shuffles: int = gs.integer(50, "Permutations of the MI normalisation.", lo=1)
    n_boot: int = gs.integer(100, "Bootstrap resamples of the intervals.", lo=1)
    ks_quantile: float = gs.number(0.1, "KS test between the lowest and highest quantile.",
                                lo=0.0, hi=0.5, lo_open=True)
    ci: float = gs.number(0.68, "Width of the bootstrap intervals.", lo=0.0, hi=1.0, lo_open=True,
                       hi_open=True)


@dataclass(frozen=True)
class EnvironmentSettings(Settings):
    """Environment study (Gim, Moon, Yoon) - VAE on neighbour-count maps."""

    #: The model's map size is the maps' (set from it when unset).
    #: The mock's planted field moments cover the maps' square and velocity window.
    ties: ClassVar[tuple[tuple[str, str], ...]] = (
        ("model.npix", "maps.npix"),
        ("mock.map_size_mpc", "maps.size_mpc"),
        ("mock.map_dv_kms", "maps.dv_kms"),
    )


    catalog: CatalogSettings = gs.section(CatalogSettings)
    mock: MockEnvironmentSettings = gs.section(
        MockEnvironmentSettings, "The mock universe (source = mock): overrides of its scale "
        "preset.")
    archive: ArchiveSettings = gs.section(ArchiveSettings)
    maps: MapSettings = gs.section(MapSettings)
    footprint: FootprintSettings = gs.section(FootprintSettings)
    envparams: EnvParamsSettings = gs.section(EnvParamsSettings)
    model: EnvironmentModelSettings = gs.section(EnvironmentModelSettings)
    train: TrainSettings = gs.section(TrainSettings, "Training of the VAE (the seed is the run's "
                                   "`seed`).")
    split: SplitSettings = gs.section(SplitSettings, "Train/validation split of the maps.",
                                   defaults={"val_fraction": 0.1})
    stats: StatsSettings = gs.section(StatsSettings)
