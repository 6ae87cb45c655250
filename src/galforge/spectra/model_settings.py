"""Settings of the spectra study's VAE / CVAE, importable without torch.

The configuration validator and the workflow import this module (to check the
``spectra.model`` section and to name the models of the grid) without paying
for :mod:`torch`; :mod:`galforge.spectra.model` builds the networks.

Model identifiers
-----------------
Every model of the grid has a short identifier used as the Snakemake wildcard
and folder name: ``vae-d<latent_dim>`` for a plain VAE and
``cvae-<c1>+<c2>...-d<latent_dim>`` for a CVAE, the conditions written with
their short names (:data:`CONDITION_SHORT`) in the canonical order
``mstar, sfr, ssfr, z`` — e.g. ``vae-d3``, ``cvae-mstar+sfr-d2``.
:func:`model_id` builds it and :func:`parse_model_id` is its inverse (it
rejects anything that :func:`model_id` would not have written, so one model
has exactly one identifier).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from galforge.spectra.model import SpectraVAE

#: Model kinds: a plain VAE or a conditional VAE.
KINDS: tuple[str, ...] = ("vae", "cvae")
#: Activations offered; all are supported by ``shap.DeepExplainer`` (each layer gets its own
#: module instance).
ACTIVATIONS: tuple[str, ...] = ("leaky_relu", "relu", "elu", "gelu", "tanh")
#: Condition columns of the preprocessed file (``properties/<name>``) and their short names,
#: in canonical order.
CONDITION_SHORT: dict[str, str] = {
    "log_mstar": "mstar",
    "log_sfr": "sfr",
    "log_ssfr": "ssfr",
    "oh_p50": "z",
}
#: Short name → property column.
CONDITION_COLUMNS: dict[str, str] = {v: k for k, v in CONDITION_SHORT.items()}
#: Pixels of a preprocessed spectrum (contract of :mod:`galforge.spectra.preprocess`).
NPIX = 4000


def canonical_conditions(conditions: Iterable[str] | None) -> tuple[str, ...]:
    """Condition property columns in canonical order; short names are accepted.

    ``["sfr", "log_mstar"]`` → ``("log_mstar", "log_sfr")``. Unknown names and
    duplicates raise :class:`ValueError` naming them.
    """
    out: list[str] = []
    for c in conditions or ():
        col = CONDITION_COLUMNS.get(str(c), str(c))
        if col not in CONDITION_SHORT:
            known = ", ".join([*CONDITION_SHORT, *CONDITION_COLUMNS])
            raise ValueError(f"unknown condition {c!r}; choose from {known}")
        if col in out:
            raise ValueError(f"condition {c!r} is listed twice")
        out.append(col)
    order = list(CONDITION_SHORT)
    return tuple(sorted(out, key=order.index))


def model_id(kind: str, conditions: Iterable[str] | None, latent_dim: int) -> str:
    """Identifier of a model of the grid, e.g. ``"vae-d3"`` or ``"cvae-mstar+sfr-d2"``.

    ``conditions`` are property columns or short names, in any order (they are
    written in canonical order). A VAE must have no conditions, a CVAE at least one.
    """
    conds = canonical_conditions(conditions)
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    if isinstance(latent_dim, bool) or int(latent_dim) != latent_dim or int(latent_dim) < 1:
        raise ValueError(f"latent_dim must be an integer >= 1, got {latent_dim!r}")
    if kind == "vae":
        if conds:
            raise ValueError(f"a plain VAE takes no conditions, got {list(conds)}")
        return f"vae-d{int(latent_dim)}"
    if not conds:
        raise ValueError("a CVAE needs at least one condition")
    return f"cvae-{'+'.join(CONDITION_SHORT[c] for c in conds)}-d{int(latent_dim)}"


_ID_RE = re.compile(r"^(vae|cvae)(?:-([a-z+]+))?-d([1-9][0-9]*)$")


def parse_model_id(text: str) -> tuple[str, tuple[str, ...], int]:
    """Inverse of :func:`model_id`: ``(kind, condition columns, latent_dim)``.

    ``"cvae-mstar+sfr-d2"`` → ``("cvae", ("log_mstar", "log_sfr"), 2)``. Raises
    :class:`ValueError` (naming the identifier and the expected form) for anything
    :func:`model_id` would not write, including conditions out of canonical order.
    """
    form = "expected 'vae-d<N>' or 'cvae-<cond>[+<cond>...]-d<N>' with conditions from " + (
        ", ".join(CONDITION_SHORT.values())
    )
    m = _ID_RE.match(str(text))
    if not m:
        raise ValueError(f"bad model id {text!r}: {form}")
    kind, conds_text, dim = m.group(1), m.group(2), int(m.group(3))
    shorts = conds_text.split("+") if conds_text else []
    for s in shorts:
        if s not in CONDITION_COLUMNS:
            raise ValueError(f"bad model id {text!r}: unknown condition {s!r}; {form}")
    try:
        conds = canonical_conditions(shorts)
        canonical = model_id(kind, conds, dim)
    except ValueError as exc:
        raise ValueError(f"bad model id {text!r}: {exc}; {form}") from None
    if canonical != text:
        raise ValueError(f"bad model id {text!r}: write it as {canonical!r} (canonical order)")
    return kind, conds, dim


def grid_model_ids(conditions: Iterable[Iterable[str]], latent_dims: Iterable[int]) -> list[str]:
    """Identifiers of the model grid: every condition set x every latent size.

    ``conditions`` lists condition sets (``[]`` = the plain VAE, any other list a CVAE);
    ``grid_model_ids([[], ["sfr"]], [1, 2])`` → ``["vae-d1", "vae-d2", "cvae-sfr-d1",
    "cvae-sfr-d2"]``. Raises :class:`ValueError` when two entries name the same model
    (e.g. ``["sfr", "mstar"]`` and ``["mstar", "sfr"]``).
    """
    ids: list[str] = []
    for conds in conditions:
        conds = list(conds)
        for d in latent_dims:
            mid = model_id("cvae" if conds else "vae", conds, d)
            if mid in ids:
                raise ValueError(f"the grid names model {mid!r} twice")
            ids.append(mid)
    return ids


# -- settings --------------------------------------------------------------------------------
def _int_tuple(name: str, value: Any, lo: int = 1) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"setting {name!r} must be a list of integers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or int(v) < lo:
            raise ValueError(f"setting {name!r} must hold integers >= {lo}, got {value!r}")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class SpectraModelSettings:
    """One VAE / CVAE of the spectra study (training hyper-parameters live with the trainer).

    Parameters
    ----------
    kind : {"vae", "cvae"}
        Plain or conditional VAE.
    latent_dim : int
        Number of Gaussian latents (paper grid: 1–8).
    conditions : tuple of str
        CVAE conditions, property columns of the preprocessed file
        (``log_mstar``, ``log_sfr``, ``log_ssfr``, ``oh_p50``; the short names
        ``mstar``, ``sfr``, ``ssfr``, ``z`` are accepted); empty for a VAE.
        Stored in canonical order.
    npix : int
        Pixels per spectrum (4000).
    channels, kernel_sizes, strides : tuple of int
        One entry per encoder convolution block ``Conv1d(kernel, stride,
        padding = kernel // 2) → BatchNorm1d → activation → Dropout``; the decoder
        mirrors them with ``ConvTranspose1d``.
    hidden : tuple of int
        Widths of the encoder's linear blocks (``Linear → activation → Dropout``)
        after the convolutions; the decoder uses them in reverse.
    activation : str
        One of :data:`ACTIVATIONS`.
    dropout : float
        Dropout probability of every block (0 disables).
    linear_skip : bool
        Add linear shortcuts beside the non-linear paths (a fixed projection of the
        scaled spectrum onto the latent means, and a trained ``Linear`` from the
        latents to the spectrum), started from the PCA of the training spectra; the
        convolutional paths then learn the non-linear corrections. ``False`` gives
        the bare convolutional VAE.
    beta : float
        Weight of the KL term (1 = the ELBO).
    """

    kind: str = "vae"
    latent_dim: int = 4
    conditions: tuple[str, ...] = ()
    npix: int = NPIX
    channels: tuple[int, ...] = (8, 16, 32)
    kernel_sizes: tuple[int, ...] = (9, 5, 5)
    strides: tuple[int, ...] = (8, 4, 2)
    hidden: tuple[int, ...] = (128, 32)
    activation: str = "leaky_relu"
    dropout: float = 0.0
    linear_skip: bool = True
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        object.__setattr__(self, "conditions", canonical_conditions(self.conditions))
        if self.kind == "vae" and self.conditions:
            raise ValueError(f"a plain VAE takes no conditions, got {list(self.conditions)}")
        if self.kind == "cvae" and not self.conditions:
            raise ValueError("a CVAE needs at least one condition (setting 'conditions')")
        for name, lo in (("latent_dim", 1), ("npix", 8)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < lo:
                raise ValueError(f"setting {name!r} must be an integer >= {lo}, got {v!r}")
            object.__setattr__(self, name, int(v))
        for name in ("channels", "kernel_sizes", "strides", "hidden"):
            object.__setattr__(self, name, _int_tuple(name, getattr(self, name)))
        if not self.channels:
            raise ValueError("setting 'channels' needs at least one convolution block")
        if not len(self.channels) == len(self.kernel_sizes) == len(self.strides):
            raise ValueError(
                "settings 'channels', 'kernel_sizes' and 'strides' must have the same length, got "
                f"{len(self.channels)}, {len(self.kernel_sizes)}, {len(self.strides)}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if isinstance(self.dropout, bool) or not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"setting 'dropout' must lie in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if isinstance(self.beta, bool) or not float(self.beta) >= 0.0:
            raise ValueError(f"setting 'beta' must be >= 0, got {self.beta!r}")
        object.__setattr__(self, "beta", float(self.beta))
        if not isinstance(self.linear_skip, bool):
            raise ValueError(f"setting 'linear_skip' must be true or false, got {self.linear_skip!r}")
        length = self.npix
        for k, s in zip(self.kernel_sizes, self.strides, strict=True):
            length = (length + 2 * (k // 2) - k) // s + 1
            if length < 1:
                raise ValueError(
                    f"the convolutions reduce {self.npix} pixels to nothing; use fewer blocks or "
                    "smaller strides"
                )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None = None) -> SpectraModelSettings:
        """Settings from a config mapping; unknown keys are rejected by name.

        A ``preset`` key (``"tiny"``, ``"demo"`` or ``"paper"``) starts from
        :data:`PRESETS`; the other keys override it.
        """
        d = dict(d or {})
        preset = d.pop("preset", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown key {unknown[0]!r} in the spectra model settings "
                f"(known: {', '.join(sorted(known))})"
            )
        base: dict[str, Any] = {}
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
            base = dict(PRESETS[preset])
        base.update(d)
        return cls(**base)

    @classmethod
    def from_model_id(cls, text: str, base: Mapping[str, Any] | None = None) -> SpectraModelSettings:
        """The settings ``base`` (a config mapping) with kind, conditions and size from an id."""
        kind, conds, dim = parse_model_id(text)
        return cls.from_dict({**dict(base or {}), "kind": kind, "conditions": list(conds),
                              "latent_dim": dim})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able mapping (the inverse of :meth:`from_dict`)."""
        out = asdict(self)
        for name in ("conditions", "channels", "kernel_sizes", "strides", "hidden"):
            out[name] = list(out[name])
        return out

    @property
    def model_id(self) -> str:
        """The grid identifier (:func:`model_id`)."""
        return model_id(self.kind, self.conditions, self.latent_dim)

    @property
    def n_conditions(self) -> int:
        return len(self.conditions)

    def model_kwargs(self) -> dict[str, Any]:
        """JSON-able :class:`~galforge.spectra.model.SpectraVAE` constructor arguments."""
        out = self.to_dict()
        out.pop("kind")
        out.pop("beta")
        return out

    def build(self) -> SpectraVAE:
        """The :class:`~galforge.spectra.model.SpectraVAE` these settings describe."""
        from galforge.spectra.model import SpectraVAE

        return SpectraVAE(**self.model_kwargs())


#: Named overrides of :class:`SpectraModelSettings` (architecture only; the grid sets kind,
#: conditions and latent size). tiny: tests and smoke runs; demo: measured ≈ 1 s per epoch
#: of 3,400 spectra on one CPU thread (see the module docstring of galforge.spectra.model);
#: paper: wider blocks in the paper appendix's layout (our widths, see the model docstring).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"channels": [4, 8], "kernel_sizes": [9, 5], "strides": [8, 4], "hidden": [32]},
    "demo": {"channels": [8, 16, 32], "kernel_sizes": [9, 5, 5], "strides": [8, 4, 2],
             "hidden": [128, 32]},
    "paper": {"channels": [16, 32, 64, 128], "kernel_sizes": [9, 7, 5, 5],
              "strides": [4, 2, 2, 2], "hidden": [512, 128], "dropout": 0.1},
}

#: Suggested ``spectra.train`` presets (keys of :class:`galforge.train.TrainSettings`) that
#: go with :data:`PRESETS`; the integrator's configuration owns the final values.
#: ``grad_clip`` (global gradient norm): the loss is a per-spectrum sum over 4000 pixels, so
#: gradient norms are in the thousands; on the demo mock their median was ~4e3 with spikes
#: to ~5e6 that, unclipped, threw a model out of its minimum for several epochs (then early
#: stopping kept an epoch-3 model). Clipping at 1e4 removed the spikes (d = 5: best
#: validation loss 1957 against 2040).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 3, "batch_size": 64, "lr": 3e-3, "grad_clip": 1e4},
    # demo: 12 epochs (cosine to lr_min). Against 20 epochs on the demo mock (seed 42) the
    # VAE BIC minimum stays at d = 5 (d4/d5/d6 1272.7 / 1264.1 / 1265.3, against 1268.5 /
    # 1262.8 / 1265.0) for 0.6x the training time, which the 10-minute default run needs.
    "demo": {"epochs": 12, "batch_size": 64, "lr": 2e-3, "scheduler": "cosine", "lr_min": 1e-4,
             "restore_best_weights": True, "early_stopping_patience": 6, "grad_clip": 1e4},
    "paper": {"epochs": 100, "batch_size": 128, "lr": 1e-3, "scheduler": "plateau",
              "early_stopping_patience": 10, "restore_best_weights": True,
              "checkpoint_every": 1000, "grad_clip": 1e4},
}
