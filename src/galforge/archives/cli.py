"""Subcommands of the archive downloads that several studies share (one rule each in
``workflow/rules/archives.smk``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from galforge.commands import add_command
from galforge.io import InputError

__all__ = ["mpajhu_url", "register"]


def mpajhu_url(filename: str) -> str:
    """The download URL of ``filename``, one of the MPA-JHU DR7 release files the studies read
    (:data:`~galforge.archives.mpajhu.MPAJHU_DR7_URLS`, :data:`~galforge.archives.mpajhu.MPAJHU_DR7_OH_URLS`)."""
    from galforge.archives import mpajhu

    urls = {}
    for files, links in ((mpajhu.MPAJHU_DR7_FILES, mpajhu.MPAJHU_DR7_URLS),
                         (mpajhu.MPAJHU_DR7_OH_FILES, mpajhu.MPAJHU_DR7_OH_URLS)):
        urls.update({files[k]: links[k] for k in files if files[k] not in urls})  # gal_info: the first one
    if filename not in urls:
        raise InputError(f"{filename}: not an MPA-JHU DR7 file galforge reads "
                         f"(known: {', '.join(sorted(urls))})")
    return urls[filename]


def _fetch_mpajhu(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    """Download one MPA-JHU DR7 value-added catalogue file through the download layer."""
    from galforge.archives.download import DownloadOptions, download

    out = Path(args.out)
    download(mpajhu_url(out.name), out, options=DownloadOptions(progress=not args.no_progress))


def _mock_tng(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    """Write the mock TNG universe (size = the run's scale) with the run's seed."""
    from galforge.mock.tng import write_mock_tng

    mock = write_mock_tng(args.out, cfg["scale"], seed=cfg["seed"],
                          snapshots=cfg["tng"]["snapshots"])
    print(f"mock TNG universe: {mock.n_galaxies} galaxies in {mock.n_halos} haloes, "
          f"snapshots {', '.join(map(str, mock.snapshots))}; base path {mock.base_path}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the shared archive subcommands to the ``galforge`` parser."""
    add_command(sub, "fetch-mpajhu", _fetch_mpajhu,
                "download one MPA-JHU DR7 catalogue file (named by --out's file name)",
                {"out": "output path; its name is the release file name, e.g. "
                        "gal_info_dr7_v5_2.fit.gz"})
    add_command(sub, "mock-tng", _mock_tng,
                "write the mock TNG universe (the run's scale and seed, tng.snapshots) in "
                "the layout of a local TNG copy",
                {"out": "the simulation folder to create; its output/ is the tng.base_path "
                        "illustris_python reads"})
