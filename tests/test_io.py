"""Atomic writes: outputs appear whole or not at all, with the umask's permissions."""

from __future__ import annotations

import os
import stat

import pytest

from galforge.io import atomic_path, write_json


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_umask_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = write_json({"a": 1}, tmp_path / "sub" / "r.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == mode


def test_a_failed_write_leaves_nothing(tmp_path):
    dest = tmp_path / "x.csv"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_the_part_file_a_killed_job_left_is_removed_by_the_next_write(tmp_path):
    left = tmp_path / ".r.json.abc123.part.json"  # what a SIGKILLed write leaves
    left.write_text("half")
    other = tmp_path / ".other.json.x.part.json"  # another output's: not ours to remove
    other.write_text("half")
    write_json({"a": 1}, tmp_path / "r.json")
    assert not left.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.x.part.json", "r.json"]
