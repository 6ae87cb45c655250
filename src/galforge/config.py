"""Configuration: one validated, fully resolved dictionary per run.

Order of precedence (lowest first):

1. the defaults: of the global keys in ``galforge/data/config.schema.yaml``, of each
   study's keys in its settings classes (``galforge/<study>/settings.py``),
2. the scale preset (``tiny`` / ``demo`` / ``paper``) of each study
   (``galforge/<study>/presets.py``),
3. the values the user sets in ``config.yaml`` (or with ``--config``).

The studies come from the registry (:mod:`galforge.studies`); this module names
none. Every value of every study is checked here, before any job starts, and every
error names the offending key (``<study>.<section>.<key> = value must be ...``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from galforge.settings import Settings, SettingsError
from galforge.studies import REGISTRY, study, study_names


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


@cache
def load_schema() -> dict[str, Any]:
    """The JSON schema of a configuration: the global keys, then one section per study.

    The global keys (run, source, scale, seed, studies, cache_dir, cosmology) are
    written in ``galforge/data/config.schema.yaml``; each study's section is derived
    from its settings class (:meth:`galforge.settings.Settings.json_schema`), and the
    ``studies`` choices from the registry. ``workflow/schemas/config.schema.yaml`` is
    this schema, written by ``galforge schema`` (a test checks they agree).
    """
    text = resources.files("galforge").joinpath("data/config.schema.yaml").read_text()
    schema = yaml.safe_load(text)
    schema["properties"]["studies"]["items"]["enum"] = list(study_names())
    schema["properties"]["studies"]["default"] = list(study_names())
    for entry in REGISTRY:
        schema["properties"][entry.name] = entry.settings_class().json_schema(entry.title)
    return schema


@cache
def _global_schema() -> dict[str, Any]:
    """The schema with each study section left to its settings class (any mapping)."""
    schema = copy.deepcopy(load_schema())
    for entry in REGISTRY:
        schema["properties"][entry.name] = {"type": "object", "default": {}}
    return schema


def _key(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<top level>"


def _schema_errors(cfg: Mapping[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(_global_schema())
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


def _resolve_studies(cfg: dict[str, Any], user: Mapping[str, Any], scale: str) -> None:
    """Each study's section: its settings defaults < its scale preset < the user's values.

    Every registered study is checked (enabled or not), so a bad value anywhere in the
    file stops the run before any job starts; the section is replaced by its settings,
    every key written out.
    """
    for entry in REGISTRY:
        given = user.get(entry.name, {})
        merged = _deep_merge(dict(entry.presets_for(scale)), given)
        try:
            settings = entry.settings_class().from_dict(merged)
        except SettingsError as exc:
            raise ConfigError(f"invalid configuration:\n  {exc.under(entry.name)}") from None
        cfg[entry.name] = settings.to_dict()


def study_settings(cfg: Mapping[str, Any], name: str) -> Settings:
    """The typed settings of study ``name`` from a resolved configuration."""
    try:
        return study(name).settings_class().from_dict(cfg[name])
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration:\n  {exc.under(name)}") from None


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
    cfg = copy.deepcopy(user)
    _fill_defaults(cfg, _global_schema())
    _resolve_studies(cfg, user, cfg["scale"])
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


def write_schema(path: str | Path) -> None:
    """Write :func:`load_schema` as YAML (``workflow/schemas/config.schema.yaml``)."""
    from galforge.io import atomic_path

    header = ("# galforge configuration schema. GENERATED by `galforge schema --out <this file>`\n"
              "# from galforge/data/config.schema.yaml (global keys) and the studies' settings\n"
              "# classes (galforge/<study>/settings.py); do not edit by hand.\n")
    text = header + yaml.safe_dump(load_schema(), sort_keys=False, allow_unicode=True, width=88)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


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
