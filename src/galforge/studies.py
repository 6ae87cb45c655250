"""The study registry: one entry per study, the only shared file that names them.

Each :class:`Study` names, as ``"module:attribute"`` strings imported on first
use (so that reading the registry imports no study):

* ``settings`` - the study's settings class (a :class:`galforge.settings.Settings`
  whose fields are its configuration sections, with the checks that tie them
  together), which owns every key, default and range of ``<study>:`` in
  ``config.yaml``;
* ``presets`` - the scale presets: ``{scale: {section: overrides}}`` for
  ``tiny`` / ``demo`` / ``paper``;
* ``commands`` - a function ``register(subparsers)`` adding the study's
  ``galforge`` subcommands (one per workflow rule).

:mod:`galforge.config` and :mod:`galforge.cli` loop over :data:`REGISTRY`; the
workflow includes ``workflow/rules/<name>.smk`` for every entry. Adding a study
is one entry here plus the study's own files (see ``docs/adding-a-study.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from galforge.settings import Settings

__all__ = ["Study", "REGISTRY", "SCALES", "study", "study_names"]

#: The scales every study has a preset for.
SCALES: tuple[str, ...] = ("tiny", "demo", "paper")


@dataclass(frozen=True)
class Study:
    """One study: its name in code, config and results, and where its parts live."""

    name: str
    title: str
    settings: str
    presets: str
    commands: str

    def settings_class(self) -> type[Settings]:
        """The study's settings class (imported on first use)."""
        return _load(self.settings)

    def presets_for(self, scale: str) -> Mapping[str, Any]:
        """The study's overrides of its settings defaults at ``scale``."""
        presets = _load(self.presets)
        if scale not in presets:
            raise KeyError(f"study {self.name!r} has no {scale!r} preset")
        return presets[scale]

    def register_commands(self, sub: Any) -> None:
        """Add the study's subcommands to the ``galforge`` parser."""
        register: Callable[[Any], None] = _load(self.commands)
        register(sub)


@cache
def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


#: Every study, in the order the workflow and the report list them.
REGISTRY: tuple[Study, ...] = (
    Study(
        name="environment",
        title="Environment (Gim, Moon, Yoon): VAE on neighbour-count maps of SDSS DR7",
        settings="galforge.environment.settings:EnvironmentSettings",
        presets="galforge.environment.presets:PRESETS",
        commands="galforge.environment.cli:register",
    ),
    Study(
        name="spectra",
        title="Spectra (Iwasaki, Cooray, Takeuchi): VAE / CVAE on SDSS spectra x GSWLC",
        settings="galforge.spectra.settings:SpectraSettings",
        presets="galforge.spectra.presets:PRESETS",
        commands="galforge.spectra.cli:register",
    ),
    Study(
        name="edf",
        title="eDF (GalacticFlow, Wolf & Buck): conditional spline flow of NIHAO star particles",
        settings="galforge.edf.settings:EdfSettings",
        presets="galforge.edf.presets:PRESETS",
        commands="galforge.edf.cli:register",
    ),
    Study(
        name="exsitu",
        title="Exsitu (Angeloudi et al.): ex-situ stellar-mass maps of TNG100 galaxies from "
              "IFU-like maps",
        settings="galforge.exsitu.settings:ExsituSettings",
        presets="galforge.exsitu.presets:PRESETS",
        commands="galforge.exsitu.cli:register",
    ),
    Study(
        name="alignment",
        title="Alignment (Jagvaral, Lanusse, Mandelbaum et al.): TNG100 shapes and orientations "
              "from the cosmic web",
        settings="galforge.alignment.settings:AlignmentSettings",
        presets="galforge.alignment.presets:PRESETS",
        commands="galforge.alignment.cli:register",
    ),
)


def study_names() -> tuple[str, ...]:
    """The registered studies' names."""
    return tuple(s.name for s in REGISTRY)


def study(name: str) -> Study:
    """The registry entry of ``name`` (KeyError naming the registered ones)."""
    for s in REGISTRY:
        if s.name == name:
            return s
    raise KeyError(f"no study {name!r}; registered: {', '.join(study_names())}")
