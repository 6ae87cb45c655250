"""The study registry: every entry owns its room (settings, presets, commands, rules, tests)."""

from __future__ import annotations

import ast
import re

import pytest

from conftest import REPO
from galforge.cli import build_parser
from galforge.settings import Settings
from galforge.studies import REGISTRY, SCALES, study, study_names

SRC = REPO / "src" / "galforge"


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda e: e.name)
def test_every_study_has_its_room(entry):
    name = entry.name
    assert re.fullmatch(r"[a-z]+", name)
    assert issubclass(entry.settings_class(), Settings)
    for scale in SCALES:
        entry.presets_for(scale)
    assert (SRC / name / "__init__.py").is_file()
    assert (REPO / "workflow" / "rules" / f"{name}.smk").is_file()
    assert (REPO / "envs" / f"{name}.yaml").is_file()
    assert (REPO / "tests" / name).is_dir()
    rules = (REPO / "workflow" / "rules" / f"{name}.smk").read_text()
    assert f'STUDY_TARGETS["{name}"]' in rules, "the rules file registers its targets"


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda e: e.name)
def test_every_study_command_is_prefixed_with_its_name(entry):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    mine = [c for c in sub.choices if c.startswith(f"{entry.name}-")]
    assert mine, f"{entry.name} registers no subcommand"


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_studies_never_import_each_other_nor_the_cli():
    names = set(study_names())
    for name in names:
        for path in (SRC / name).rglob("*.py"):
            for mod in _imports(path):
                assert mod != "galforge.cli", f"{path} imports galforge.cli"
                parts = mod.split(".")
                if len(parts) > 1 and parts[0] == "galforge" and parts[1] in names:
                    assert parts[1] == name, f"{path} imports {mod}"


def test_shared_code_names_no_study():
    """config.py and cli.py loop over the registry: no line names a study."""
    for rel in ("config.py", "cli.py"):
        text = (SRC / rel).read_text()
        for name in study_names():
            assert not re.search(rf"\b{name}\b", text), f"{rel} names {name}"


def test_unknown_study_is_named():
    with pytest.raises(KeyError, match="registered"):
        study("nosuchstudy")
