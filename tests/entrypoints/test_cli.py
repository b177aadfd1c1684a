"""Every service's entry point: the shared CLI (``libs/kubext/cli.py``) wired to its own name,
package and config model. One table over the six services, so the CLI is tested once per service
for the wiring only it can get wrong, not re-tested as six copies.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kubext import cli

SEMVER = re.compile(r"\d+\.\d+\.\d+")


@dataclasses.dataclass(frozen=True)
class Service:
    name: str

    @property
    def package(self) -> str:
        return f"kubext_{self.name}"

    @property
    def prog(self) -> str:
        return f"kubext-{self.name}"

    @property
    def env_prefix(self) -> str:
        return f"KUBEXT_{self.name.upper()}_"

    def module(self, suffix: str = "") -> ModuleType:
        return importlib.import_module(self.package + suffix)

    def main(self, argv: list[str]) -> int:
        return self.module(".__main__").main(argv)

    def version_file(self) -> str:
        """The VERSION file beside the package's code, read without the CLI's own reader."""
        return (Path(self.module().__file__).parent / "VERSION").read_text().strip()


SERVICES = [
    Service(name) for name in ("operator", "webhooks", "scheduler", "cni", "csi", "deviceplugin")
]
each_service = pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.name)


@each_service
def test_the_entry_point_passes_its_own_name_package_and_config(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every VERSION is the same today, so --version alone cannot catch a borrowed package."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "run", lambda **kwargs: calls.append(kwargs) or 7)
    assert service.main(["--log-level", "debug"]) == 7
    [call] = calls
    assert (call["name"], call["package"]) == (service.name, service.package)
    assert call["model"] is service.module(".config").Config
    assert list(call["argv"]) == ["--log-level", "debug"]
    assert callable(call["main"])


@each_service
def test_version_is_the_services_version_file(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        service.main(["--version"])
    assert exc.value.code == 0
    version = service.version_file()
    assert SEMVER.fullmatch(version), version
    assert capsys.readouterr().out.strip() == f"{service.prog} {version}"


@each_service
def test_help_names_the_service_and_its_environment(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        service.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {service.prog} ")
    assert f"{service.env_prefix}CONFIG" in out


@each_service
def test_unknown_key_is_one_clear_line(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("log_level: info\nno_such_key: 1\n")
    assert service.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{service.prog}: config error: {bad}: no_such_key: unknown key"]


@each_service
def test_missing_file_is_named(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert service.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: config file not found" in capsys.readouterr().err


@each_service
def test_bad_value_from_the_services_environment_prefix(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(f"{service.env_prefix}LOG_LEVEL", "loud")
    assert service.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{service.prog}: config error: ")
    assert "log_level" in err
