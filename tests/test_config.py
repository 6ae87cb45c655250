"""Configuration: schema defaults, scale presets, and errors that name the key."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from conftest import REPO
from galforge.config import ConfigError, config_hash, load_config, load_schema, resolve_config


def test_repository_config_resolves_and_schema_files_agree():
    cfg = load_config(REPO / "config.yaml")
    assert cfg["run"] == "demo" and cfg["source"] == "mock" and cfg["scale"] == "demo"
    assert cfg["environment"]["maps"]["npix"] == 64
    schema_path = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert yaml.safe_load(schema_path.read_text()) == load_schema()


def test_every_schema_property_is_described():
    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{'.'.join(path + [name])} has no description"
            walk(sub, path + [name])

    walk(load_schema(), [])


def test_defaults_and_presets_fill_in_but_user_values_win():
    tiny = resolve_config({"scale": "tiny"})
    demo = resolve_config({"scale": "demo"})
    assert tiny["environment"]["mock"] != demo["environment"]["mock"]
    key = next(iter(tiny["environment"]["mock"]))
    mine = resolve_config({"scale": "tiny", "environment": {"mock": {key: demo["environment"]["mock"][key]}}})
    assert mine["environment"]["mock"][key] == demo["environment"]["mock"][key]
    assert resolve_config(copy.deepcopy(tiny)) == tiny, "resolving is idempotent"


@pytest.mark.parametrize("scale", ["tiny", "demo", "paper"])
def test_every_preset_section_passes_its_settings_class(scale):
    """resolve_config checks only the sections a user wrote (the rest are these presets and
    defaults); here every section of every scale goes through its settings class."""
    from galforge.config import _section_validators, _semantic_checks

    cfg = resolve_config({"scale": scale})
    _semantic_checks(cfg)  # no user: every section
    assert len(_section_validators()) == len(_section_validators(cfg)) == 14


def test_a_section_the_user_wrote_is_checked_even_for_a_disabled_study():
    with pytest.raises(ConfigError, match=r"spectra\.model: "):
        resolve_config({"studies": ["environment"], "spectra": {"model": {"chanels": [8]}}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": "blue"}, "colour: unknown key"),
        ({"environment": {"maps": {"npixx": 64}}}, "environment.maps"),
        ({"environment": {"catalog": {"zmax": "high"}}}, "environment.catalog.zmax: 'high' is not of type"),
        ({"environment": {"catalog": {"zmin": 0.08, "zmax": 0.07}}}, "environment.catalog.zmin"),
        ({"source": "internet"}, "source: 'internet' is not one of"),
        ({"scale": "huge"}, "scale: 'huge' is not one of"),
        ({"studies": ["alignment"]}, "studies: 'alignment' is not implemented"),
        ({"environment": {"mock": {"no_such_knob": 1}}}, "environment.mock: "),
        ({"run": "../escape"}, "run: '../escape' does not match"),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_config(raw)


def test_config_hash_is_stable_and_sensitive():
    a = resolve_config({})
    b = resolve_config({"seed": 43})
    assert config_hash(a) == config_hash(resolve_config({})) != config_hash(b)
    assert len(config_hash(a)) == 12
