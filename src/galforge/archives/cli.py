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


def _int_option(text: str | None, what: str, default: int | None = None) -> int | None:
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--{what} {text!r}: not an integer") from None


def read_ids(path: str | Path) -> list[int]:
    """Subhalo ids from a text file (whitespace- or comma-separated integers; # comments)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: subhalo id file not found")
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        for tok in line.split("#", 1)[0].replace(",", " ").split():
            try:
                ids.append(int(tok))
            except ValueError:
                raise InputError(f"{path} line {n}: {tok!r} is not a subhalo id") from None
    return ids


def _fetch_tng(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    """Download the cutouts (and records) of one shard of subhaloes into the cache, then write
    a manifest of the files (sizes, SHA-256): the manifest exists only when all are there."""
    import hashlib

    from galforge.archives.download import DownloadOptions
    from galforge.archives.tng import TNGClient
    from galforge.archives.tng_fetch import ApiTNG, field_set_name, shard_ids
    from galforge.archives.tng_galaxy import DEFAULT_FIELDS, field_request
    from galforge.io import write_json

    tng = cfg["tng"]
    snap = _int_option(args.snapshot, "snapshot", 99)
    n_shards = tng["n_shards"]
    shard = _int_option(args.shard, "shard")
    ids = read_ids(args.ids)
    mine = shard_ids(ids, n_shards, shard).tolist() if shard is not None else sorted(set(ids))
    client = TNGClient(tng["api_url"], options=DownloadOptions(progress=not args.no_progress))
    api = ApiTNG(client, tng["simulation"], snap, cfg["cache_dir"], max_workers=tng["max_workers"])
    paths = api.fetch(mine, DEFAULT_FIELDS)
    files = [{"id": i, "path": str(p), "size": p.stat().st_size,
              "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for i, p in zip(mine, paths,
                                                                                 strict=True)]
    write_json({"simulation": tng["simulation"], "snapshot": snap, "shard": shard,
                "n_shards": n_shards, "fields": field_set_name(field_request(DEFAULT_FIELDS)),
                "files": files}, args.out)
    print(f"{len(files)} cutouts of {tng['simulation']} snapshot {snap} in {api.snap_dir}")


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
    add_command(sub, "fetch-tng", _fetch_tng,
                "download the TNG web-API cutouts of a list of subhaloes (one shard: id mod "
                "tng.n_shards) into cache_dir, then write their manifest",
                {"ids": "text file of subhalo ids", "out": "manifest JSON to write",
                 "shard?": "the shard to fetch (default: every id)",
                 "snapshot?": "snapshot number (default 99)"})
