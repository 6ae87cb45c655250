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
    """The MPA-JHU DR7 release URL of ``filename`` (one of the files the studies read)."""
    from galforge.archives.sdss import MPAJHU_DR7_BASE_URL, MPAJHU_DR7_FILES, MPAJHU_DR7_OH_FILES

    known = sorted({*MPAJHU_DR7_FILES.values(), *MPAJHU_DR7_OH_FILES.values()})
    if filename not in known:
        raise InputError(f"{filename}: not an MPA-JHU DR7 file galforge reads "
                         f"(known: {', '.join(known)})")
    return MPAJHU_DR7_BASE_URL + filename


def _fetch_mpajhu(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    """Download one MPA-JHU DR7 value-added catalogue file through the download layer."""
    from galforge.archives.download import DownloadOptions, download

    out = Path(args.out)
    download(mpajhu_url(out.name), out, options=DownloadOptions(progress=not args.no_progress))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the shared archive subcommands to the ``galforge`` parser."""
    p = add_command(sub, "fetch-mpajhu", _fetch_mpajhu,
                    "download one MPA-JHU DR7 catalogue file (named by --out's file name)")
    p.add_argument("--out", required=True,
                   help="output path; its name is the release file name, e.g. "
                        "gal_info_dr7_v5_2.fit.gz")
