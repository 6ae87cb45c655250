"""The ``galforge`` entry point's own switches."""

from __future__ import annotations

from galforge.cli import FAIL_ONCE_ENV, FAIL_ONCE_STATUS, main


def test_the_fail_once_switch_fails_the_named_command_once(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker"
    monkeypatch.setenv(FAIL_ONCE_ENV, f"config-check:{marker}")
    assert main(["schema"]) == 0 and not marker.exists()  # another command: untouched
    assert main(["config-check", "--config", "{}"]) == FAIL_ONCE_STATUS
    assert marker.exists() and "failing once on purpose" in capsys.readouterr().err
    assert main(["config-check", "--config", "{}"]) == 0  # the retry succeeds


def test_without_the_switch_nothing_fails(tmp_path, monkeypatch):
    monkeypatch.delenv(FAIL_ONCE_ENV, raising=False)
    assert main(["config-check", "--config", "{}"]) == 0
    monkeypatch.setenv(FAIL_ONCE_ENV, "config-check")  # no marker path: ignored
    assert main(["config-check", "--config", "{}"]) == 0
