"""Every setting of the edf study (the ``edf:`` section of ``config.yaml``).

One class per section on :class:`galforge.settings.Settings` (unknown keys refused,
every value range-checked before any job starts) and :class:`EdfSettings`, the whole
section. The dataclass defaults are the paper's (GalacticFlow, Wolf & Buck) and the
only place a default lives; :mod:`galforge.edf.presets` holds the tiny / demo / paper
overrides. Imports only the standard library and the settings base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from galforge import settings as gs
from galforge.mock.edf_settings import MockEdfSettings
from galforge.settings import ModelSettings, Settings, SettingsError
from galforge.train.settings import TrainSettings
from galforge.train.split import SplitSettings

__all__ = [
    "CV_MODES",
    "FLOW_FEATURES",
    "CleanSettings",
    "CrossValidationSettings",
    "EdfModelSettings",
    "EdfSettings",
    "EvalSettings",
    "SourceSettings",
    "ZenodoSettings",
]

#: The flow's features (galforge.edf.flow.FEATURES, repeated here torch-free).
FLOW_FEATURES: tuple[str, ...] = ("x", "y", "z", "vx", "vy", "vz", "Z", "feh", "ofe", "age")
#: Cross-validation schemes.
CV_MODES: tuple[str, ...] = ("leave_out", "kfold")
#: Name of the model trained on every galaxy.
ALL_MODEL = "all"


@dataclass(frozen=True)
class SourceSettings(Settings):
    """Bring your own galaxies: a folder of .npy files in the archive's layout, or one table."""

    path: str | None = gs.text(
        None, "A folder of <prefix>_<id>_<M_dm>.npy files (each an (11, N) array: x, y, z, "
        "vx, vy, vz, Z, feh, ofe, mass, age) or one Parquet/CSV table with those columns and "
        "a galaxy column; replaces the mock or the archive.", optional=True)
    galaxy_column: str = gs.text("galaxy", "Table only: the column naming each star's galaxy.")
    m_dm_column: str | None = gs.text(
        None, "Table only: a column with each galaxy's dark-matter mass [M_sun] (null: none, "
        "M_dm is then recorded as NaN).", optional=True)


@dataclass(frozen=True)
class ZenodoSettings(Settings):
    """The authors' data on Zenodo (source = archive)."""

    record: str = gs.text("8389554", "Zenodo record id (a concept record resolves to its "
                          "latest version, recorded in the download manifest).")
    api_url: str = gs.text("https://zenodo.org/api", "Base URL of the Zenodo REST API.")
    timeout: float = gs.number(120.0, "Seconds allowed for each HTTP request.", lo=0.0,
                               lo_open=True)
    max_unpacked_gb: float = gs.number(200.0, "Refuse archives that would unpack to more "
                                       "than this many GB.", lo=0.0, lo_open=True)


@dataclass(frozen=True)
class CleanSettings(Settings):
    """The cuts, the rotation into the x-y plane and the galaxy-size cut (GalacticFlow's)."""

    radius_quantile: float = gs.number(0.95, "Keep stars inside this quantile of the radius.",
                                       lo=0.0, hi=1.0, lo_open=True)
    r_cap_kpc: float = gs.number(27.7, "Largest radius cut [kpc]; when it applies, a second "
                                 "cut at second_quantile of the radii left.", lo=0.0,
                                 lo_open=True)
    second_quantile: float = gs.number(0.95, "Quantile of the second radius cut.", lo=0.0,
                                       hi=1.0, lo_open=True)
    drop_top_z: int = gs.integer(10, "Drop this many stars of highest Z per galaxy.", lo=0)
    feh_min: float = gs.number(-8.0, "Keep stars with [Fe/H] >= feh_min.")
    ofe_min: float = gs.number(-1.0, "Keep stars with [O/Fe] >= ofe_min.")
    min_stars: int = gs.integer(500, "Drop galaxies left with fewer stars.", lo=1)
    rotation_quantile: float = gs.number(
        0.9, "The angular momentum that sets the rotation is summed over the stars inside "
        "this quantile of the radius.", lo=0.0, hi=1.0, lo_open=True)


@dataclass(frozen=True)
class EdfModelSettings(ModelSettings):
    """The conditional spline flow (:class:`galforge.edf.flow.EdfFlow`)."""

    model_class: ClassVar[str] = "galforge.edf.flow:EdfFlow"

    n_layers: int = gs.integer(14, "Steps of (LU linear, double spline coupling).", lo=1,
                               hi=256)
    bins: int = gs.integer(10, "Spline bins K.", lo=2, hi=256)
    tail_bound: float = gs.number(3.0, "Splines act on [-B, B] (standardised units); "
                                  "identity outside.", lo=0.0, lo_open=True, hi=100.0)
    hidden: int = gs.integer(128, "Width of each conditioner MLP.", lo=1, hi=1 << 14)
    mlp_layers: int = gs.integer(4, "Linear layers of each conditioner MLP.", lo=1, hi=64)
    negative_slope: float = gs.number(0.2, "LeakyReLU slope of the MLPs.", lo=0.0, hi=1.0)
    log_features: tuple[str, ...] = gs.texts(
        ("Z",), "Features learnt as log10 (the seed learnt Z linearly).",
        options=FLOW_FEATURES)

    def model_kwargs(self) -> dict[str, Any]:
        """JSON-able :class:`~galforge.edf.flow.EdfFlow` constructor arguments."""
        return {"n_layers": self.n_layers, "bins": self.bins, "tail_bound": self.tail_bound,
                "hidden": self.hidden, "mlp_layers": self.mlp_layers,
                "negative_slope": self.negative_slope, "log_features": list(self.log_features)}


@dataclass(frozen=True)
class CrossValidationSettings(Settings):
    """Which galaxies each model leaves out (one training job per model, plus ``all``)."""

    mode: str = gs.choice("leave_out", CV_MODES,
                          "leave_out: n_models models, each leaving out n_leave_out galaxies "
                          "drawn independently (the seed's; not a partition); kfold: k models "
                          "whose held-out galaxies partition the sample.")
    n_models: int = gs.integer(20, "Models of leave_out.", lo=1, hi=1000)
    n_leave_out: int = gs.integer(5, "Galaxies each leave_out model leaves out.", lo=1,
                                  hi=10_000)
    k: int = gs.integer(5, "Folds of kfold.", lo=2, hi=1000)

    def model_ids(self) -> list[str]:
        """``cv00``, ``cv01``, ... (one per model) followed by ``all``."""
        n = self.n_models if self.mode == "leave_out" else self.k
        return [f"cv{i:02d}" for i in range(n)] + [ALL_MODEL]


@dataclass(frozen=True)
class EvalSettings(Settings):
    """Evaluation: MMDs, the acceptance checks and the figures' samples."""

    n_stars: int = gs.integer(2000, "Stars of each sample an MMD compares (model, fresh "
                              "truth, data; a data galaxy with fewer stars gives all of "
                              "them).", lo=10, hi=1_000_000)
    repeats: int = gs.integer(3, "Each kernel MMD² (model, noise floor, nearest neighbour) is "
                              "the mean over this many independent sample pairs.", lo=1, hi=100)
    floor_factor: float = gs.number(3.0, "A held-out galaxy passes when its kernel MMD is at "
                                    "most this many noise floors.", lo=1.0)
    pass_fraction: float = gs.number(0.8, "Fraction of held-out galaxies that must pass.",
                                     lo=0.0, hi=1.0)
    min_spearman: float = gs.number(0.3, "Least Spearman rho of MMD against |d log M*|.",
                                    lo=-1.0, hi=1.0)
    table_stars: int = gs.integer(500, "Stars of each galaxy (and model sample) in the table "
                                  "of MMD against every data galaxy.", lo=10, hi=1_000_000)
    sample_chunk: int = gs.integer(300_000, "Stars sampled per chunk.", lo=1,
                                   hi=100_000_000)
    figure_stars: int = gs.integer(20_000, "Stars of the data and model samples drawn in the "
                                   "corner plot, density maps and marginals.", lo=100,
                                   hi=10_000_000)
    timing_stars: int = gs.integer(1_000_000, "Stars the parity table's sampling-time row "
                                   "draws from the all-galaxies flow (0: leave the row out).",
                                   lo=0, hi=100_000_000)


@dataclass(frozen=True)
class EdfSettings(Settings):
    """eDF study (GalacticFlow, Wolf & Buck): conditional spline flow of NIHAO star particles."""

    source: SourceSettings = gs.section(SourceSettings)
    mock: MockEdfSettings = gs.section(MockEdfSettings, "The NIHAO-like mock galaxies (source "
                                       "= mock): overrides of its scale preset.")
    archive: ZenodoSettings = gs.section(ZenodoSettings)
    clean: CleanSettings = gs.section(CleanSettings)
    model: EdfModelSettings = gs.section(EdfModelSettings)
    train: TrainSettings = gs.section(
        TrainSettings, "Training of each flow (the seed is the run's `seed`): GalacticFlow's "
        "RAdam, lr 9e-5, batch 1024, x0.998 every 10 steps (every 120 below 3e-6).",
        defaults={"optimizer": "radam", "lr": 9e-5, "batch_size": 1024,
                  "scheduler": "exponential", "epochs": 10})
    split: SplitSettings = gs.section(SplitSettings, "Stars of the training galaxies held out "
                                      "for validation.", defaults={"val_fraction": 0.05})
    cv: CrossValidationSettings = gs.section(CrossValidationSettings)
    eval: EvalSettings = gs.section(EvalSettings)

    def check(self) -> None:
        if self.cv.mode == "kfold" and self.cv.k > self.mock.n_galaxies and not self.source.path:
            raise SettingsError("cv.k", f"= {self.cv.k} exceeds mock.n_galaxies = "
                                f"{self.mock.n_galaxies}")

    def model_ids(self) -> list[str]:
        """Every model the study trains (the cross-validation models, then ``all``)."""
        return self.cv.model_ids()
