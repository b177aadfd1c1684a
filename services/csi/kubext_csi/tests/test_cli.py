"""The entry point's contract: version, help, config errors named in one line."""

from __future__ import annotations

import pytest

from kubext import cli

from .. import __main__ as entry


def test_version_is_semver(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        entry.main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"kubext-csi {cli.read_version('kubext_csi')}"
    major, minor, patch = out.split()[-1].split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


def test_help_names_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        entry.main(["--help"])
    assert "kubext-csi" in capsys.readouterr().out


def test_unknown_key_is_one_clear_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("log_level: info\nno_such_key: 1\n")
    assert entry.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"kubext-csi: config error: {bad}: no_such_key: unknown key"]


def test_missing_file_is_named(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: config file not found" in capsys.readouterr().err


def test_bad_value_from_environment(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBEXT_CSI_LOG_LEVEL", "loud")
    assert entry.main([]) == 2
    assert "log_level" in capsys.readouterr().err
