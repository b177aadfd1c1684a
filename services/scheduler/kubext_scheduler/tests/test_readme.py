"""The README's configuration table names every key the service accepts."""

from __future__ import annotations

from pathlib import Path

from kubext import readme_check
from kubext_scheduler import config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_config_key_is_documented() -> None:
    assert readme_check.undocumented_keys(config.Config, README.read_text()) == []
