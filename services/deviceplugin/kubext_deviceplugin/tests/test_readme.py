"""The README's configuration tables name every key the service accepts."""

from __future__ import annotations

from pathlib import Path

import pydantic

from .. import config

README = Path(__file__).resolve().parents[2] / "README.md"


def leaf_keys(model: type[pydantic.BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            keys += leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _cells() -> list[str]:
    return [
        line.split("|")[1] for line in README.read_text().splitlines() if line.startswith("| `")
    ]


def _documented(key: str, cells: list[str]) -> bool:
    # A list of models is documented by its items' rows (`generic.groups[].name`).
    return any(f"`{key}`" in c or f"`{key}[]" in c for c in cells)


def test_every_config_key_is_documented() -> None:
    cells = _cells()
    keys = leaf_keys(config.Config) + leaf_keys(config.ResourceConfig)
    missing = [k for k in keys if not _documented(k, cells)]
    assert missing == []


def test_every_path_key_is_documented() -> None:
    row = next(
        c for c in README.read_text().splitlines() if c.startswith("| `generic.groups[].paths[]`")
    )
    missing = [k for k in config.PathConfig.model_fields if f"`{k}`" not in row]
    assert missing == []
