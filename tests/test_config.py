"""Configuration: defaults, scale presets, and errors that name the key, before any job."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import pytest
import yaml

from conftest import REPO
from galforge.config import (
    ConfigError,
    config_hash,
    load_config,
    load_schema,
    resolve_config,
    study_settings,
)
from galforge.settings import default_of
from galforge.studies import REGISTRY, SCALES, study_names


def test_repository_config_resolves_and_the_workflow_schema_is_the_generated_one():
    cfg = load_config(REPO / "config.yaml")
    assert cfg["run"] == "demo" and cfg["source"] == "mock" and cfg["scale"] == "demo"
    assert cfg["environment"]["maps"]["npix"] == 64
    schema_path = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert yaml.safe_load(schema_path.read_text()) == load_schema(), (
        "workflow/schemas/config.schema.yaml is stale: run "
        "`galforge schema --out workflow/schemas/config.schema.yaml`"
    )


def test_every_schema_property_is_described():
    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{'.'.join(path + [name])} has no description"
            walk(sub, path + [name])

    walk(load_schema(), [])


def test_the_studies_choice_and_default_are_the_registry():
    prop = load_schema()["properties"]["studies"]
    assert prop["items"]["enum"] == list(study_names()) == prop["default"]
    assert resolve_config({})["studies"] == list(study_names())


def test_defaults_and_presets_fill_in_but_user_values_win():
    tiny = resolve_config({"scale": "tiny"})
    demo = resolve_config({"scale": "demo"})
    assert tiny["environment"]["mock"] != demo["environment"]["mock"]
    key = next(iter(tiny["environment"]["mock"]))
    mine = resolve_config({"scale": "tiny", "environment": {"mock": {key: demo["environment"]["mock"][key]}}})
    assert mine["environment"]["mock"][key] == demo["environment"]["mock"][key]
    assert resolve_config(copy.deepcopy(tiny)) == tiny, "resolving is idempotent"


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("entry", REGISTRY, ids=lambda e: e.name)
def test_every_preset_names_real_sections_and_keys(entry, scale):
    """A preset key that the settings do not know would be an error at every run."""
    cls = entry.settings_class()
    preset = entry.presets_for(scale)
    assert set(preset) <= set(cls.keys())
    settings = cls.from_dict(preset)
    resolved = resolve_config({"scale": scale})[entry.name]
    assert resolved == settings.to_dict()
    assert study_settings(resolve_config({"scale": scale}), entry.name) == settings


def test_the_schema_defaults_are_the_settings_defaults():
    """The schema is derived from the settings classes: one default, in the dataclass."""
    schema = load_schema()
    for entry in REGISTRY:
        for f in dataclasses.fields(entry.settings_class()):
            node = schema["properties"][entry.name]["properties"][f.name]
            sub = f.metadata.get("section")
            if sub is None:
                assert node["default"] == default_of(entry.settings_class(), f.name)
                continue
            defaults = sub.from_dict(f.metadata["defaults"]).to_dict()
            for key, v in defaults.items():
                assert node["properties"][key]["default"] == v, f"{entry.name}.{f.name}.{key}"


def test_a_disabled_study_is_checked_too():
    with pytest.raises(ConfigError, match=r"spectra\.model\.chanels: unknown key"):
        resolve_config({"studies": ["environment"], "spectra": {"model": {"chanels": [8]}}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": "blue"}, "colour: unknown key"),
        ({"environment": {"maps": {"npixx": 64}}}, "environment.maps.npixx: unknown key"),
        ({"environment": {"catalog": {"zmax": "high"}}}, "environment.catalog.zmax: must be a number"),
        ({"environment": {"catalog": {"zmin": 0.08, "zmax": 0.07}}}, "environment.catalog: zmin (0.08) must be below zmax"),
        ({"source": "internet"}, "source: 'internet' is not one of"),
        ({"scale": "huge"}, "scale: 'huge' is not one of"),
        ({"studies": ["nosuchstudy"]}, "studies.0: 'nosuchstudy' is not one of"),
        ({"environment": {"mock": {"no_such_knob": 1}}}, "environment.mock.no_such_knob: unknown key"),
        ({"run": "../escape"}, "run: '../escape' does not match"),
        ({"environment": {"model": {"latent_dim": 0}}}, "environment.model.latent_dim = 0 must be in [1, 4096]"),
        ({"environment": {"model": {"latent_dim": "many"}}}, "environment.model.latent_dim: must be an integer"),
        ({"environment": {"model": {"dropout": 1.0}}}, "environment.model.dropout = 1.0 must be in [0.0, 1.0)"),
        ({"environment": {"model": {"hidden": -4}}}, "environment.model.hidden = -4 must be"),
        ({"environment": {"maps": {"npix": 40}}}, "environment.model.npix = 40 must be a multiple of 2**len(channels)"),
        ({"environment": {"model": {"npix": 32}}}, "environment.model.npix = 32 must equal maps.npix (64)"),
        ({"spectra": {"model": {"npix": 100}}}, "spectra.model.npix = 100 must equal preprocess.n_pix"),
        ({"spectra": {"grid": {"conditions": [["sfr", "mstar"], ["mstar", "sfr"]]}}}, "twice"),
        ({"spectra": {"split": {"val_fraction": 0.7}}}, "spectra.split.val_fraction = 0.7"),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_config(raw)


def test_changing_maps_npix_alone_resizes_the_model():
    """The model's map size follows the maps (issue 11: it used to crash the training job)."""
    cfg = resolve_config({"environment": {"maps": {"npix": 32}}})
    assert cfg["environment"]["model"]["npix"] == 32


def _impossible(prop: dict[str, Any]) -> list[Any]:
    """Values the schema entry ``prop`` cannot take."""
    t = prop.get("type")
    types = set(t) if isinstance(t, list) else {t} if t else set()
    out: list[Any] = []
    if "enum" in prop:
        out.append("no-such-choice")
    if types & {"number", "integer"}:
        out.append("not-a-number")
        if "minimum" in prop:
            out.append(prop["minimum"] - 1)
        if "exclusiveMinimum" in prop:
            out.append(prop["exclusiveMinimum"])
        if "maximum" in prop:
            out.append(prop["maximum"] + 1)
    if "boolean" in types:
        out.append("maybe")
    if "string" in types:
        out.append(12345)
    if "array" in types:
        out.append("not-a-list")
    if "object" in types:
        out.append(7)
    return out


def _leaves(node: dict[str, Any], path: tuple[str, ...]):
    for name, sub in node.get("properties", {}).items():
        if "properties" in sub and sub.get("type") == "object" and name != "columns":
            yield from _leaves(sub, (*path, name))
        else:
            yield (*path, name), sub


STUDY_LEAVES = [
    (path, value)
    for entry in REGISTRY
    for path, prop in _leaves(load_schema()["properties"][entry.name], (entry.name,))
    for value in _impossible(prop)
]


@pytest.mark.parametrize(("path", "value"), STUDY_LEAVES,
                         ids=[f"{'.'.join(p)}={v!r}" for p, v in STUDY_LEAVES])
def test_every_study_key_rejects_an_impossible_value_naming_it(path, value):
    """The config walk: every key of every study section, with a value it cannot take."""
    raw: dict[str, Any] = {}
    node = raw
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        resolve_config(raw)
    assert ".".join(path) in str(info.value)


def test_config_hash_is_stable_and_sensitive():
    a = resolve_config({})
    b = resolve_config({"seed": 43})
    assert config_hash(a) == config_hash(resolve_config({})) != config_hash(b)


def test_a_footprint_mask_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"environment\.footprint\.mask: no such file"):
        resolve_config({"environment": {"footprint": {"mask": str(tmp_path / "nope.fits")}}})
    mask = tmp_path / "mask.fits"
    mask.write_bytes(b"")
    assert resolve_config({"environment": {"footprint": {"mask": str(mask)}}})
