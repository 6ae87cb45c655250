"""End to end: the spectra study's archive data path through the real CLI, offline.

The commands the workflow runs for ``source: archive`` are called in-process
(:func:`galforge.cli.main`) against a local
:class:`~galforge.archives.testserver.FaultServer` that serves, in the archives' own
layouts, a GSWLC-X2 release file (gzipped text), the MPA-JHU fibre-metallicity file and
the five real DR8+ spectra of ``shared/data/spectra`` under the SAS folder layout
``PLATE4/spec-PLATE4-MJD5-FIBER4.fits``:

1. ``spectra-fetch-gswlc`` and ``fetch-mpajhu`` (one answer is a 500 first,
   so the download layer's retry is part of the path);
2. ``spectra-targets``: GSWLC galaxies with 0 < z < 0.1 and M* and SFR;
3. ``spectra-fetch``: the one shard, through ``spectra.archive.base_url`` (a mirror);
   one targeted spectrum is not on the server (404, allowed by ``max_missing``);
4. ``spectra-preprocess-shard``: the selection and the preprocessing of what arrived.

The GSWLC values are placeholders made up for the test (the shared LCS table lists
none of the real spectra), not the galaxies' real GSWLC values.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from conftest import shared_data_path
from galforge import cli
from galforge.archives import gswlc as gswlc_mod
from galforge.archives import mpajhu
from galforge.archives.gswlc import write_gswlc
from galforge.archives.mpajhu import write_mpajhu_oh
from galforge.archives.testserver import FaultServer
from galforge.spectra.store import read_spectra_file

SPEC = ["spec-0266-51602-0001.fits", "spec-0266-51630-0004.fits", "spec-0266-51630-0015.fits",
        "spec-0295-51585-0596.fits", "spec-0280-51612-0117.fits"]
#: (plate, mjd, fiber, z, log M*, log SFR) in the served GSWLC; 300/51700/5 is not on the server
ROWS = [(266, 51602, 1, 0.0213, 9.4, -0.4), (266, 51630, 4, 0.0647, 10.2, 0.5),
        (266, 51630, 15, 0.0006, 9.0, -1.0), (295, 51585, 596, 0.1379, 11.3, 0.2),
        (280, 51612, 117, 0.2446, 11.0, 1.0), (300, 51700, 5, 0.05, 10.0, 0.0)]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.archive
def test_spectra_archive_path_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    files = tmp_path / "served"
    files.mkdir()
    rows = Table(rows=ROWS, names=("plate", "mjd", "fiber", "z", "log_mstar", "log_sfr"))
    rows["av"] = 0.3
    dat = write_gswlc(rows, files / "GSWLC-X2.dat")
    info, oh = write_mpajhu_oh([266], [51630], [4], [8.9], files / "gal_info_dr7_v5_2.fit.gz",
                               files / "gal_fiboh_dr7_v5_2.fits.gz")
    with FaultServer() as server:
        server.add("/gswlc/GSWLC-X2.dat.gz", gzip.compress(dat.read_bytes()))
        server.add("/mpa/gal_fiboh_dr7_v5_2.fits.gz", oh.read_bytes(), fail_times=1,
                   fail_status=500)
        for name in SPEC:
            plate = name.split("-")[1]
            server.add(f"/mirror/{plate}/{name}",
                       shared_data_path(f"spectra/{name}").read_bytes())
        monkeypatch.setattr(gswlc_mod, "GSWLC_X2_URL", server.url("/gswlc/GSWLC-X2.dat.gz"))
        monkeypatch.setitem(mpajhu.MPAJHU_DR7_OH_URLS, "fiboh",
                            server.url("/mpa/gal_fiboh_dr7_v5_2.fits.gz"))
        cfg = json.dumps({"source": "archive", "studies": ["spectra"], "scale": "tiny",
                          "spectra": {"archive": {"n_shards": 1, "max_missing": 0.3,
                                                  "base_url": server.url("/mirror")}}})
        cache = tmp_path / "cache"

        def run(*args: str) -> None:
            assert cli.main([args[0], "--config", cfg, "--no-progress", *args[1:]]) == 0

        run("spectra-fetch-gswlc", "--out", str(cache / "gswlc/GSWLC-X2.dat"))
        run("fetch-mpajhu", "--out", str(cache / "mpajhu/gal_fiboh_dr7_v5_2.fits.gz"))
        targets = tmp_path / "targets.parquet"
        run("spectra-targets", "--gswlc", str(cache / "gswlc/GSWLC-X2.dat"), "--out", str(targets))
        t = pd.read_parquet(targets)
        assert sorted(zip(t["plate"], t["fiber"], strict=True)) == [(266, 1), (266, 4), (266, 15),
                                                                    (300, 5)]
        manifest = tmp_path / "manifest-000.csv"
        run("spectra-fetch", "--shard", "0", "--targets", str(targets), "--dest",
            str(cache / "sdss_spectra"), "--manifest", str(manifest))
        requested = {r.path for r in server.requests}
    assert "/mpa/gal_fiboh_dr7_v5_2.fits.gz" in requested
    m = pd.read_csv(manifest, keep_default_na=False)
    assert dict(zip(m["fiber"], m["status"], strict=True)) == {1: "ok", 4: "ok", 15: "ok",
                                                               5: "missing"}
    got = Path(m.loc[m["fiber"] == 4, "path"].item())
    assert got == cache / "sdss_spectra/0266/spec-0266-51630-0004.fits"
    assert got.read_bytes() == shared_data_path(f"spectra/{SPEC[1]}").read_bytes()

    out, rejects = tmp_path / "shard.h5", tmp_path / "rejects.csv"
    shutil.copy(info, cache / "mpajhu/gal_info_dr7_v5_2.fit.gz")
    run_args = ["spectra-preprocess-shard", "--manifest", str(manifest),
                "--gswlc", str(cache / "gswlc/GSWLC-X2.dat"),
                "--mpajhu-info", str(cache / "mpajhu/gal_info_dr7_v5_2.fit.gz"),
                "--mpajhu-oh", str(cache / "mpajhu/gal_fiboh_dr7_v5_2.fits.gz"),
                "--out", str(out), "--rejects", str(rejects)]
    assert cli.main([run_args[0], "--config", cfg, "--no-progress", *run_args[1:]]) == 0
    data = read_spectra_file(out)
    assert sorted(data.fiber.tolist()) == [1, 4] and np.isfinite(data.flux).sum() > 0
    oh_values = dict(zip(data.fiber.tolist(), data.properties["oh_p50"], strict=True))
    assert oh_values[4] == pytest.approx(8.9, abs=1e-5) and np.isnan(oh_values[1])
    rej = pd.read_csv(rejects, keep_default_na=False)
    assert dict(zip(rej["code"], rej["reason"].str.split(" ").str[0], strict=True)) == {
        "not_downloaded": "spectrum", "not_galaxy": "not"}
