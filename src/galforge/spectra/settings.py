"""Every setting of the spectra study (the ``spectra:`` section of ``config.yaml``).

One class per section, each on :class:`galforge.settings.Settings` (unknown keys
rejected, every value range-checked when the configuration is checked, before
any job starts), and :class:`SpectraSettings`, the whole study section, whose
:meth:`~SpectraSettings.check` ties sections together (the model's pixel count is
the preprocessing's ``n_pix``; every model of the grid is valid).

The dataclass defaults are the only place a default lives;
:mod:`galforge.spectra.presets` holds the overrides of the tiny / demo / paper
scales. The JSON schema of the section is derived from these classes.

This module imports only the standard library, :mod:`galforge.settings` and the
other light settings modules, so every workflow job reads it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from galforge import settings as gs
from galforge.archives.sdss_pixmask import PIXMASK_BITS
from galforge.mock.settings import MockSpectraSettings
from galforge.settings import ModelSettings, Settings
from galforge.spectra.model_ids import (
    CONDITION_SHORT,
    KINDS,
    NPIX,
    canonical_conditions,
    grid_model_ids,
    model_id,
    parse_model_id,
)
from galforge.train.settings import TrainSettings
from galforge.train.split import SplitSettings

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_BAD_MASK_BITS",
    "DEFAULT_SKY_LINES",
    "AnalysisSettings",
    "GridSettings",
    "PreprocessSettings",
    "SelectionSettings",
    "SpectraArchiveSettings",
    "SpectraModelSettings",
    "SpectraSettings",
]

#: Activations offered; all are supported by ``shap.DeepExplainer`` (each layer gets its own
#: module instance).
ACTIVATIONS: tuple[str, ...] = ("leaky_relu", "relu", "elu", "gelu", "tanh")
#: Per-pixel scales of the standardised spectra (SpectraModelSettings.pixel_scale).
PIXEL_SCALES: tuple[str, ...] = ("noise", "spread")

#: ``and_mask`` bits treated as bad pixels (see :mod:`galforge.spectra.preprocess`).
DEFAULT_BAD_MASK_BITS: tuple[str, ...] = (
    "FULLREJECT", "NOSKY", "BRIGHTSKY", "NODATA", "COMBINEREJ", "BADFLUXFACTOR", "BADSKYCHI",
    "REDMONSTER",
)

#: Sky lines masked in the observed frame: (vacuum wavelength Å, half-width Å).
DEFAULT_SKY_LINES: tuple[tuple[float, float], ...] = (
    (5578.89, 5.0),  # [O I] 5577.34 air
    (5891.58, 4.0),  # Na D2 5889.95 air
    (5897.56, 4.0),  # Na D1 5895.92 air
    (6302.05, 4.0),  # [O I] 6300.30 air
    (6365.54, 4.0),  # [O I] 6363.78 air
)


@dataclass(frozen=True)
class SelectionSettings(Settings):
    """Which spectra enter: galaxies only, matched in GSWLC, in a redshift range."""

    zmin: float = gs.number(0.0, "Keep zmin < z (strict).", lo=0.0)
    zmax: float = gs.number(0.1, "Keep z < zmax (strict); the paper's sample is z < 0.1.",
                         lo=0.0)
    require_metallicity: bool = gs.flag(
        False, "Reject galaxies without a finite MPA-JHU 12 + log(O/H) (default: keep them "
        "with oh_p50 NaN).")

    def check(self) -> None:
        if self.zmin >= self.zmax:
            raise ValueError(f"zmin ({self.zmin}) must be below zmax ({self.zmax})")


@dataclass(frozen=True)
class SpectraArchiveSettings(Settings):
    """Archive settings (source = archive)."""

    n_shards: int = gs.integer(16, "Download and preprocessing shards (by plate); a cluster run "
                            "spreads them over jobs.", lo=1, hi=4096)
    spectra_format: str = gs.choice(
        "spec-lite", ("spec-lite", "spSpec"),
        "Which SDSS spectrum files to download: DR17 SAS spec-lite (DR8+ layout) or the DR7 "
        "spSpec files.")
    max_spectra: int | None = gs.integer(
        None, "Download at most this many spectra (null = all selected).", lo=1,
        optional=True)
    max_missing: float = gs.number(
        0.01, "Largest fraction of a shard's spectra the archive may lack (HTTP 404; listed as "
        "not_downloaded) before the shard fails.", lo=0.0, hi=1.0)
    base_url: str | None = gs.text(
        None, "Folder of the spectrum files on a mirror (PLATE4/<file> below it); null = the "
        "SDSS archive of spectra_format.", optional=True)


def _sky_lines(v: Any) -> tuple[tuple[float, float], ...]:
    if isinstance(v, str) or not isinstance(v, Sequence):
        raise ValueError(f"must be a list of [wavelength, half_width] in Å, got {v!r}")
    one = gs.numbers((1.0, 1.0), lo=0.0, lo_open=True, length=2).metadata["check"]
    return gs.check_each(one, v, "[wavelength, half_width] pair")


@dataclass(frozen=True)
class PreprocessSettings(Settings):
    """Rest frame, resampling to log-lambda pixels, masks, normalisation and iterative-PCA
    infill (see :mod:`galforge.spectra.preprocess` for the choices)."""

    n_pix: int = gs.integer(4000, "Rest-frame output pixels, uniform in log lambda.", lo=16,
                         hi=1 << 16)
    wave_min: float = gs.number(3400.0, "First pixel centre [Angstrom, vacuum].", lo=0.0,
                             lo_open=True)
    wave_max: float = gs.number(8400.0, "Last pixel centre [Angstrom, vacuum].", lo=0.0,
                             lo_open=True)
    norm_window: tuple[float, float] = gs.numbers(
        (5300.0, 5850.0), "Rest-frame window whose median good flux normalises each spectrum "
        "[Angstrom].", lo=0.0, lo_open=True, length=2, increasing=True)
    min_norm_pixels: int = gs.integer(100, "Fewest good output pixels in that window.", lo=1)
    bad_mask_bits: tuple[str, ...] = gs.texts(
        DEFAULT_BAD_MASK_BITS, "spPixMask bit names that make a pixel bad.",
        options=tuple(PIXMASK_BITS))
    sky_lines: tuple[tuple[float, float], ...] = gs.value(
        DEFAULT_SKY_LINES, _sky_lines,
        {"type": "array", "items": {"type": "array", "items": {"type": "number"},
                                    "minItems": 2, "maxItems": 2}},
        "[vacuum wavelength, half-width] pairs in Angstrom masked in the observed frame.")
    min_good_fraction: float = gs.number(0.7, "Fewest unmasked output pixels, as a fraction.",
                                      lo=0.0, hi=1.0)
    batch: int = gs.integer(256, "Spectra per resampling batch (memory ~ 50 kB * batch).", lo=1,
                         hi=1 << 16)
    infill_components: int = gs.integer(10, "Eigenspectra of the iterative-PCA infill.", lo=1,
                                     hi=256)
    infill_iter: int = gs.integer(30, "Iterations of the infill.", lo=1, hi=10_000)
    infill_tol: float = gs.number(1e-4, "Relative tolerance of the infill.", lo=0.0, lo_open=True)
    infill_weighted: bool = gs.flag(False, "Weight the infill fit by the inverse variance.")
    infill_fit_max: int = gs.integer(2000, "The eigenspectra are fitted on at most this many "
                                  "spectra (a seeded random subset).", lo=1, hi=1 << 24)
    infill_chunk: int = gs.integer(2048, "Spectra per infill/write chunk.", lo=1, hi=1 << 20)
    seed: int = gs.integer(0, "Seed of the infill subset and of the randomized SVD.", lo=0,
                        hi=2**32 - 1)
    compression: str | None = gs.choice("lzf", ("gzip", "lzf"),
                                     "HDF5 filter of the 2-D datasets (null = none).",
                                     optional=True)

    def check(self) -> None:
        if self.wave_max <= self.wave_min:
            raise ValueError(f"wave_max ({self.wave_max}) must exceed wave_min "
                             f"({self.wave_min})")
        lo, hi = self.norm_window
        if not self.wave_min <= lo < hi <= self.wave_max:
            raise ValueError(f"norm_window {list(self.norm_window)} must lie inside "
                             f"[wave_min, wave_max]")
        if self.min_norm_pixels > self.n_pix:
            raise ValueError(f"min_norm_pixels ({self.min_norm_pixels}) exceeds n_pix "
                             f"({self.n_pix})")
        if self.infill_fit_max < self.infill_components + 1:
            raise ValueError(f"infill_fit_max ({self.infill_fit_max}) must exceed "
                             f"infill_components ({self.infill_components})")

    @property
    def wave(self) -> np.ndarray:
        """Rest-frame pixel centres of the output grid, Å (vacuum)."""
        import numpy as np

        return np.logspace(math.log10(self.wave_min), math.log10(self.wave_max), self.n_pix)

    @property
    def bad_bits_value(self) -> int:
        """The OR of the bad ``and_mask`` bits."""
        v = 0
        for b in self.bad_mask_bits:
            v |= 1 << PIXMASK_BITS[b]
        return v

    def resampling_dict(self) -> dict[str, Any]:
        """The settings that shape a shard's content (shards must agree on them to merge)."""
        keep = ("n_pix", "wave_min", "wave_max", "norm_window", "min_norm_pixels",
                "bad_mask_bits", "sky_lines", "min_good_fraction")
        d = self.to_dict()
        return {k: d[k] for k in keep}


def _condition_sets(v: Any) -> tuple[tuple[str, ...], ...]:
    if isinstance(v, str) or not isinstance(v, Sequence) or not v:
        raise ValueError(f"must be a non-empty list of condition lists, got {v!r}")
    out = []
    for i, conds in enumerate(v):
        if isinstance(conds, str) or not isinstance(conds, Sequence):
            raise ValueError(f"entry {i} must be a list of conditions ([] = the plain VAE), "
                             f"got {conds!r}")
        try:
            canonical_conditions(conds)
        except ValueError as exc:
            raise ValueError(f"entry {i}: {exc}") from None
        out.append(tuple(conds))
    return tuple(out)


@dataclass(frozen=True)
class GridSettings(Settings):
    """The models trained: latent sizes x condition sets, each grid point trained ``seeds``
    times (one Snakemake job per grid point and repeat)."""

    latent_dims: tuple[int, ...] = gs.numbers(
        (1, 2, 3, 4, 5, 6, 7, 8), "Latent sizes (paper 1-8).", integer=True, lo=1, hi=64,
        min_length=1)
    conditions: tuple[tuple[str, ...], ...] = gs.value(
        ((), ("mstar",), ("sfr",), ("ssfr",), ("z",), ("mstar", "sfr"), ("mstar", "z"),
         ("ssfr", "z"), ("mstar", "sfr", "z")),
        _condition_sets,
        {"type": "array", "minItems": 1,
         "items": {"type": "array", "uniqueItems": True,
                   "items": {"enum": list(CONDITION_SHORT.values())}}},
        "Condition sets; [] is the plain VAE, any other list a CVAE conditioned on those "
        "properties (mstar, sfr, ssfr, z = log M*, log SFR, log sSFR, 12+log O/H).")
    seeds: int = gs.integer(
        3, "Training repeats of every grid point, each with its own seed (repeat 0: the run's "
        "seed; all on the same validation spectra). The BIC chooses the latent size by its "
        "mean over the repeats.", lo=1, hi=64)

    def check(self) -> None:
        if len(set(self.latent_dims)) != len(self.latent_dims):
            raise ValueError(f"latent_dims must not repeat a size, got {list(self.latent_dims)}")
        self.model_ids()

    def model_ids(self) -> list[str]:
        """One identifier per grid point: ``vae-d3``, ``cvae-mstar+sfr-d2``, ..."""
        return grid_model_ids(self.conditions, self.latent_dims)

    def repeats(self) -> list[int]:
        """The repeat numbers of every grid point: ``0 … seeds − 1``."""
        return list(range(self.seeds))


@dataclass(frozen=True)
class SpectraModelSettings(ModelSettings):
    """One VAE / CVAE of the spectra study (training hyper-parameters live in `train`).

    In the configuration this section sets the architecture; the grid sets ``kind``,
    ``latent_dim`` and ``conditions`` of each model (:meth:`for_model`).

    ``channels``, ``kernel_sizes``, ``strides``: one entry per encoder convolution block
    ``Conv1d(kernel, stride, padding = kernel // 2) → BatchNorm1d → activation → Dropout``;
    the decoder mirrors them with ``ConvTranspose1d``. ``hidden``: widths of the encoder's
    linear blocks after the convolutions (the decoder uses them in reverse).
    ``linear_skip``: linear shortcuts beside the non-linear paths (a fixed projection of
    the scaled spectrum onto the latent means, and a trained ``Linear`` from the latents to
    the spectrum), started from the PCA of the training spectra.
    """

    model_class: ClassVar[str] = "galforge.spectra.model:SpectraVAE"

    kind: str = gs.choice("vae", KINDS, "Plain or conditional VAE (set by the grid).")
    latent_dim: int = gs.integer(4, "Gaussian latents (set by the grid).", lo=1, hi=4096)
    conditions: tuple[str, ...] = gs.value(
        (), lambda v: canonical_conditions(v),
        {"type": "array", "items": {"type": "string"}},
        "CVAE conditions (set by the grid): log_mstar, log_sfr, log_ssfr, oh_p50 or the short "
        "names mstar, sfr, ssfr, z.")
    npix: int | None = gs.integer(
        None, "Pixels per spectrum (null = spectra.preprocess.n_pix; must equal it).", lo=8,
        hi=1 << 16, optional=True)
    channels: tuple[int, ...] = gs.numbers((8, 16, 32), "Encoder convolution widths.",
                                        integer=True, lo=1, min_length=1)
    kernel_sizes: tuple[int, ...] = gs.numbers((9, 5, 5), "Convolution kernel sizes.",
                                            integer=True, lo=1, min_length=1)
    strides: tuple[int, ...] = gs.numbers((8, 4, 2), "Convolution strides.", integer=True, lo=1,
                                       min_length=1)
    hidden: tuple[int, ...] = gs.numbers((128, 32), "Widths of the linear blocks.", integer=True,
                                      lo=1)
    activation: str = gs.choice("leaky_relu", ACTIVATIONS, "Activation of every block.")
    dropout: float = gs.number(0.0, "Dropout probability of every block.", lo=0.0, hi=1.0,
                            hi_open=True)
    linear_skip: bool = gs.flag(True, "Linear shortcuts beside the non-linear paths, started "
                             "from the PCA of the training spectra.")
    pixel_scale: str = gs.choice(
        "noise", PIXEL_SCALES, "Per-pixel scale of the model's standardised spectra (and so of "
        "the PCA that starts the linear shortcuts): noise = the median noise of the pixel "
        "(1/sqrt of its median inverse variance), the metric of the likelihood; spread = the "
        "pixel's standard deviation over the training spectra.")
    beta: float = gs.number(1.0, "Weight of the KL term (1 = the ELBO).", lo=0.0)

    def check(self) -> None:
        if self.kind == "vae" and self.conditions:
            raise ValueError(f"a plain VAE takes no conditions, got {list(self.conditions)}")
        if self.kind == "cvae" and not self.conditions:
            raise ValueError("a CVAE needs at least one condition (setting 'conditions')")
        if not len(self.channels) == len(self.kernel_sizes) == len(self.strides):
            raise ValueError(
                "channels, kernel_sizes and strides must have the same length, got "
                f"{len(self.channels)}, {len(self.kernel_sizes)}, {len(self.strides)}"
            )
        if self.npix is not None:
            length = self.npix
            for k, s in zip(self.kernel_sizes, self.strides, strict=True):
                length = (length + 2 * (k // 2) - k) // s + 1
                if length < 1:
                    raise ValueError(
                        f"the convolutions reduce {self.npix} pixels to nothing; use fewer "
                        "blocks or smaller strides"
                    )

    def for_model(self, text: str) -> SpectraModelSettings:
        """These settings with kind, conditions and size from a grid identifier."""
        kind, conds, dim = parse_model_id(text)
        return self.replace(kind=kind, conditions=conds, latent_dim=dim)

    @classmethod
    def from_model_id(cls, text: str, base: Any = None) -> SpectraModelSettings:
        """The settings ``base`` (settings or a mapping) for the model ``text`` of the grid."""
        return cls.from_dict(base or {}).for_model(text)

    @property
    def model_id(self) -> str:
        """The grid identifier (:func:`~galforge.spectra.model_ids.model_id`)."""
        return model_id(self.kind, self.conditions, self.latent_dim)

    @property
    def n_conditions(self) -> int:
        return len(self.conditions)

    def model_kwargs(self) -> dict[str, Any]:
        """JSON-able :class:`~galforge.spectra.model.SpectraVAE` constructor arguments."""
        out = self.to_dict()
        out.pop("kind")
        out.pop("beta")
        out.pop("pixel_scale")  # the training's choice of scaling, not an architecture
        if out["npix"] is None:
            out["npix"] = NPIX
        return out



@dataclass(frozen=True)
class AnalysisSettings(Settings):
    """PCA of the latents, mutual information and SHAP (Figs 1, 3-6)."""

    n_bins: int = gs.integer(20, "Bins per axis of the latent-plane maps of Fig. 1.", lo=2)
    min_count: int = gs.integer(5, "Fewest spectra in a bin for its mean to be shown.", lo=1)
    n_steps: int = gs.integer(7, "Spectra along each sweep of Figs 3 and 5.", lo=2)
    sweep_quantiles: tuple[float, float] = gs.numbers(
        (0.05, 0.95), "The sweeps run between these quantiles of D_i or of the condition.",
        lo=0.0, hi=1.0, length=2, increasing=True)
    n_shuffles: int = gs.integer(50, "Permutations in the MI normalisation.", lo=1)
    shap_background: int = gs.integer(64, "Background spectra of DeepExplainer (seeded sample).",
                                   lo=2)
    shap_explain: int = gs.integer(100, "Spectra explained for the mean |SHAP| curve.", lo=1)
    shap_examples: int = gs.integer(3, "Galaxies shown individually in Fig. 6 (along D1).", lo=1)
    shap_min_coverage: float = gs.number(
        0.5, "A pixel observed by fewer than this fraction of the explained spectra is left "
        "out of the mean |SHAP| (NaN).", lo=0.0, hi=1.0)
    batch_size: int = gs.integer(512, "Spectra per batch when encoding / decoding.", lo=1)


@dataclass(frozen=True)
class SpectraSettings(Settings):
    """Spectra study (Iwasaki, Cooray, Takeuchi) - VAE / CVAE on SDSS spectra x GSWLC, BIC
    over latent size x conditions, PCA of the latents, MI, SHAP."""

    #: The model's pixel count is the preprocessing's (set from it when unset).
    ties: ClassVar[tuple[tuple[str, str], ...]] = (("model.npix", "preprocess.n_pix"),)


    selection: SelectionSettings = gs.section(SelectionSettings)
    archive: SpectraArchiveSettings = gs.section(SpectraArchiveSettings)
    mock: MockSpectraSettings = gs.section(
        MockSpectraSettings, "The mock spectra (source = mock): overrides of its scale preset.")
    mock_shards: int = gs.integer(2, "Preprocessing shards of the mock (by plate).", lo=1, hi=256)
    preprocess: PreprocessSettings = gs.section(PreprocessSettings)
    grid: GridSettings = gs.section(GridSettings)
    model: SpectraModelSettings = gs.section(SpectraModelSettings)
    train: TrainSettings = gs.section(TrainSettings, "Training of every model of the grid (repeat "
                                   "r of a grid point trains with the r-th seed derived from the "
                                   "run's `seed`, repeat 0 with the run's `seed` itself).")
    split: SplitSettings = gs.section(SplitSettings, "Train/validation split of the spectra "
                                   "(early stopping and the BIC likelihood).",
                                   defaults={"val_fraction": 0.15})
    analysis: AnalysisSettings = gs.section(AnalysisSettings)

    def check(self) -> None:
        for mid in self.grid.model_ids():  # every model of the grid is a valid model
            try:
                self.model.for_model(mid)
            except ValueError as exc:
                raise ValueError(f"grid model {mid}: {exc}") from None

    def model_ids(self) -> list[str]:
        """The grid's model identifiers."""
        return self.grid.model_ids()
