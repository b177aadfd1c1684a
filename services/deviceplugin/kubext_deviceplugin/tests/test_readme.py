"""The README's configuration tables name every key the service accepts."""

from __future__ import annotations

from pathlib import Path

from kubext import readme_check

from .. import config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_config_key_is_documented() -> None:
    readme = README.read_text()
    # Each item of `resources` is documented by its own keys' rows.
    missing = readme_check.undocumented_keys(config.Config, readme)
    missing += readme_check.undocumented_keys(config.ResourceConfig, readme)
    assert missing == []


def test_every_path_key_is_documented() -> None:
    missing = readme_check.undocumented_fields(
        config.PathConfig, README.read_text(), row_key="generic.groups[].paths[]"
    )
    assert missing == []
