"""One function per workflow rule of the alignment study: paths in, typed settings, outputs out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galforge.alignment.settings import CatalogSettings, ShapeSettings, TidalSettings
from galforge.io import write_json

__all__ = ["catalog"]


def catalog(base_path: str | Path, catalog_out: str | Path, report_out: str | Path, *,
            catalog: CatalogSettings, shapes: ShapeSettings, tidal: TidalSettings,
            progress: bool = True) -> dict[str, Any]:
    """The galaxy catalog (shapes, groups, tidal field) of a TNG copy or the mock TNG.

    ``base_path``: the simulation's ``output/`` folder (the mock's ``<sim>/output``).
    Writes the catalog (HDF5) and a JSON report (counts, conventions, the halo route's
    difference from the particles'); returns the report.
    """
    from galforge.alignment.catalog import build_catalog, write_catalog

    cols, attrs = build_catalog(base_path, catalog, shapes, tidal, progress=progress)
    write_catalog(catalog_out, cols, attrs)
    write_json(attrs, report_out)
    print(f"{attrs['n_galaxies']} galaxies ({attrs['n_centrals']} centrals) -> {catalog_out}")
    return attrs
