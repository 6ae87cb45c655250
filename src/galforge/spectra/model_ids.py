"""Names of the spectra study's models: kinds, conditions and grid identifiers (no torch).

The settings of a model live in :class:`galforge.spectra.settings.SpectraModelSettings`;
:mod:`galforge.spectra.model` builds the networks.

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

Repeats
-------
Every grid point is trained ``grid.seeds`` times, repeat ``r`` with the seed
``repeat_seeds(run seed, seeds)[r]`` (:func:`repeat_seeds`; every repeat on the
validation spectra of the run seed's split). A trained model lives in the folder
:func:`run_folder` ``(model_id, r)`` = ``<model_id>/r<r>`` (``vae-d3/r0``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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


def repeat_seeds(run_seed: int, n_repeats: int) -> list[int]:
    """Training seeds of the ``n_repeats`` repeats of every grid point (deterministic, distinct).

    Repeat 0 trains with the run's seed itself (a one-seed grid is the grid of before);
    repeat r ≥ 1 with the first 32 bits of SHA-256 of ``"galforge.spectra.repeat:<run
    seed>:<r>"``, moved up by one (mod 2³²) while it equals an earlier repeat's seed.
    """
    import hashlib

    if isinstance(run_seed, bool) or int(run_seed) != run_seed or run_seed < 0:
        raise ValueError(f"the run seed must be an integer >= 0, got {run_seed!r}")
    if isinstance(n_repeats, bool) or int(n_repeats) != n_repeats or n_repeats < 1:
        raise ValueError(f"n_repeats must be an integer >= 1, got {n_repeats!r}")
    seeds = [int(run_seed)]
    for r in range(1, int(n_repeats)):
        digest = hashlib.sha256(f"galforge.spectra.repeat:{int(run_seed)}:{r}".encode()).digest()
        s = int.from_bytes(digest[:4], "little")
        while s in seeds:
            s = (s + 1) % 2**32
        seeds.append(s)
    return seeds


def run_folder(model: str, repeat: int) -> str:
    """Folder of repeat ``repeat`` of grid point ``model`` below ``models/``: ``"vae-d3/r1"``."""
    if isinstance(repeat, bool) or int(repeat) != repeat or int(repeat) < 0:
        raise ValueError(f"repeat must be an integer >= 0, got {repeat!r}")
    parse_model_id(model)
    return f"{model}/r{int(repeat)}"
