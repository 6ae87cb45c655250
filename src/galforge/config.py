"""Configuration: one validated, fully resolved dictionary per run.

Order of precedence (lowest first):

1. the defaults of the JSON schema (``workflow/schemas/config.schema.yaml``),
2. the scale preset (``tiny`` / ``demo`` / ``paper``) of each study section,
3. the values the user sets in ``config.yaml`` (or with ``--config``).

Every error names the offending key (``environment.catalog.zmax: ...``) and is
raised before any job starts.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: Studies whose workflow is implemented. Listing another one in `studies` is an error.
IMPLEMENTED_STUDIES: tuple[str, ...] = ("environment", "spectra")


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


@cache
def load_schema() -> dict[str, Any]:
    """The configuration JSON schema shipped with the package."""
    text = resources.files("galforge").joinpath("data/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _key(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<top level>"


def _schema_errors(cfg: Mapping[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    lines = []
    for err in errors:
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            for name in extra:
                lines.append(f"{_key([*err.absolute_path, name])}: unknown key")
        else:
            lines.append(f"{_key(err.absolute_path)}: {err.message}")
    raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def _fill_defaults(instance: Any, schema: Mapping[str, Any]) -> None:
    """Insert schema defaults into ``instance`` in place, recursively."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _scale_presets(scale: str) -> dict[str, Any]:
    """Scale-dependent defaults, one entry per study section."""
    from galforge.environment.model_settings import PRESETS as ENV_MODEL_PRESETS
    from galforge.mock.environment import PRESETS as ENV_MOCK_PRESETS
    from galforge.mock.spectra import PRESETS as SPEC_MOCK_PRESETS
    from galforge.spectra.model_settings import PRESETS as SPEC_MODEL_PRESETS
    from galforge.spectra.model_settings import TRAIN_PRESETS as SPEC_TRAIN_PRESETS

    return {
        "environment": {
            "mock": ENV_MOCK_PRESETS[scale],
            "model": ENV_MODEL_PRESETS[scale],
            "train": ENV_TRAIN_PRESETS[scale],
            "stats": ENV_STATS_PRESETS[scale],
        },
        "spectra": {
            "mock": SPEC_MOCK_PRESETS[scale],
            "model": SPEC_MODEL_PRESETS[scale],
            "train": SPEC_TRAIN_PRESETS[scale],
            "grid": SPEC_GRID_PRESETS[scale],
            "preprocess": SPEC_PREPROCESS_PRESETS[scale],
            "analysis": SPEC_ANALYSIS_PRESETS[scale],
        },
    }


#: Training presets of the environment study's VAE (``environment.train``).
ENV_TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 2, "batch_size": 64, "lr": 3e-3},
    # demo: the validation loss is lowest at epoch 10 of 15 (seed 42; early stopping ended
    # it at 14 and restored epoch 10), so 10 epochs give the same model for 2/3 of the time.
    "demo": {"epochs": 10, "batch_size": 64, "lr": 2e-3, "early_stopping_patience": 4,
             "restore_best_weights": True, "checkpoint_every": 200},
    "paper": {"epochs": 100, "batch_size": 128, "lr": 1e-3, "scheduler": "plateau",
              "early_stopping_patience": 10, "restore_best_weights": True,
              "checkpoint_every": 1000},
}
#: Statistics presets (``environment.stats``): fewer resamples at the small scales.
ENV_STATS_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_latents": 4, "n_shuffles": 10, "n_boot": 20},
    "demo": {"n_latents": 8, "n_shuffles": 50, "n_boot": 100},
    "paper": {"n_latents": 16, "n_shuffles": 50, "n_boot": 200},
}

#: The spectra study's model grid (``spectra.grid``): latent sizes x condition sets, one
#: training job per pair. Conditions are short names (mstar, sfr, ssfr, z = 12 + log O/H);
#: [] is the plain VAE. demo: the VAE over d = 1..6 (the mock plants 4 parameters) and a
#: CVAE given sSFR and metallicity, which carry two of the four (so it needs fewer latents).
SPEC_GRID_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"latent_dims": [1, 2], "conditions": [[], ["ssfr"]]},
    "demo": {"latent_dims": [1, 2, 3, 4, 5, 6], "conditions": [[], ["ssfr", "z"]]},
    "paper": {"latent_dims": [1, 2, 3, 4, 5, 6, 7, 8],
              "conditions": [[], ["mstar"], ["sfr"], ["ssfr"], ["z"], ["mstar", "sfr"],
                             ["mstar", "z"], ["ssfr", "z"], ["mstar", "sfr", "z"]]},
}
#: Preprocessing presets (``spectra.preprocess``): fewer infill components at tiny scale.
SPEC_PREPROCESS_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"infill_components": 5, "infill_fit_max": 500},
    "demo": {},
    "paper": {"infill_fit_max": 5000},
}
#: Analysis presets (``spectra.analysis``): fewer resamples and SHAP spectra when small.
SPEC_ANALYSIS_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_shuffles": 10, "shap_background": 16, "shap_explain": 8, "n_bins": 8,
             "min_count": 2},
    "demo": {},
    "paper": {"shap_background": 128, "shap_explain": 300, "n_bins": 30},
}


def _section_validators(
    present: Mapping[str, Any] | None = None,
) -> dict[tuple[str, ...], Callable[[dict[str, Any]], Any]]:
    """Typed settings classes that own the free-form sections (reject unknown keys).

    ``present``: only the sections found in this mapping, each class imported only
    when its section is there (None: every section).
    """
    factories = _section_factories()
    out = {}
    for path, factory in factories.items():
        node: Any = present
        if present is not None:
            for p in path:
                node = node.get(p) if isinstance(node, Mapping) else None
            if node is None:
                continue
        out[path] = factory()
    return out


def _section_factories() -> dict[tuple[str, ...], Callable[[], Callable[[dict[str, Any]], Any]]]:
    """Per section, a function that imports its settings class and returns its parser."""

    def lazy(module: str, name: str, *, kwargs: bool = False
             ) -> Callable[[], Callable[[dict[str, Any]], Any]]:
        """``kwargs``: the class takes the section as keyword arguments (no ``from_dict``)."""

        def load() -> Callable[[dict[str, Any]], Any]:
            import importlib

            cls = getattr(importlib.import_module(module), name)
            return (lambda d: cls(**d)) if kwargs else cls.from_dict

        return load

    return {
        ("environment", "mock"): lazy("galforge.mock.environment", "MockEnvironmentSettings"),
        ("environment", "maps"): lazy("galforge.environment.maps", "MapSettings"),
        ("environment", "footprint"): lazy("galforge.environment.footprint",
                                           "FootprintSettings"),
        ("environment", "envparams"): lazy("galforge.environment.envparams", "EnvSettings"),
        ("environment", "model"): lazy("galforge.environment.model_settings",
                                       "EnvironmentModelSettings"),
        ("environment", "train"): lazy("galforge.train.config", "TrainConfig"),
        ("environment", "split"): lazy("galforge.environment.training", "SplitSettings",
                                       kwargs=True),
        ("environment", "stats"): lazy("galforge.environment.analysis", "StatsSettings"),
        ("spectra", "selection"): lazy("galforge.spectra.selection", "SelectionSettings"),
        ("spectra", "mock"): lazy("galforge.mock.spectra", "MockSpectraSettings"),
        ("spectra", "preprocess"): lazy("galforge.spectra.preprocess", "PreprocessSettings"),
        ("spectra", "model"): lazy("galforge.spectra.model_settings", "SpectraModelSettings"),
        ("spectra", "train"): lazy("galforge.train.config", "TrainConfig"),
        ("spectra", "analysis"): lazy("galforge.spectra.analysis", "AnalysisSettings"),
    }


def _semantic_checks(cfg: dict[str, Any], user: Mapping[str, Any] | None = None) -> None:
    """Cross-key checks, then each free-form section through its settings class.

    With ``user`` (the configuration as given), only the sections the user wrote are
    passed to their settings classes: the others are the scale presets and schema
    defaults, which ``tests/test_config.py`` checks for every scale. This keeps each
    workflow job from importing every study's modules (scipy.stats, healpy, astropy's
    FITS reader, ...: ~3 s a job) to re-check defaults it does not use.
    """
    for study in cfg["studies"]:
        if study not in IMPLEMENTED_STUDIES:
            raise ConfigError(
                f"studies: {study!r} is not implemented yet "
                f"(implemented: {', '.join(IMPLEMENTED_STUDIES)})"
            )
    cat = cfg["environment"]["catalog"]
    if cat["zmin"] >= cat["zmax"]:
        raise ConfigError(
            f"environment.catalog.zmin: {cat['zmin']} must be below "
            f"environment.catalog.zmax ({cat['zmax']})"
        )
    _check_spectra_grid(cfg["spectra"]["grid"])
    for path, from_dict in _section_validators(cfg if user is None else user).items():
        section: Any = cfg
        for p in path:
            section = section[p]
        try:
            from_dict(section)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{'.'.join(path)}: {exc}") from None


def _check_spectra_grid(grid: Mapping[str, Any]) -> None:
    """Every (condition set, latent size) of ``spectra.grid`` must name one distinct model."""
    from galforge.spectra.model_settings import grid_model_ids

    for key in ("latent_dims", "conditions"):
        if key not in grid:
            raise ConfigError(f"spectra.grid.{key}: missing")
    try:
        grid_model_ids(grid["conditions"], grid["latent_dims"])
    except ValueError as exc:
        raise ConfigError(f"spectra.grid.conditions: {exc}") from None


def resolve_config(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a user configuration and return it with every default filled in.

    Raises
    ------
    ConfigError
        On an unknown key, a wrong type or an impossible value; the message
        names the key.
    """
    user = copy.deepcopy(dict(raw or {}))
    _schema_errors(user)
    scale = user.get("scale", load_schema()["properties"]["scale"]["default"])
    cfg = _deep_merge(_scale_presets(scale), user)
    _fill_defaults(cfg, load_schema())
    _schema_errors(cfg)
    _semantic_checks(cfg, user)
    return cfg


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file, apply ``overrides`` and resolve it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return resolve_config(_deep_merge(raw, overrides or {}))


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Short, stable hash of a resolved configuration (for provenance stamps)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def parse_settings(text: str) -> dict[str, Any]:
    """Parse a CLI ``--config`` value: inline JSON, or the path of a YAML/JSON file."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config: not valid JSON: {exc}") from None
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"--config: {text!r} is neither JSON nor an existing file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data
