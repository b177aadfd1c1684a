"""The README's configuration table names every key the service accepts."""

from __future__ import annotations

from pathlib import Path

import pydantic

from kubext_scheduler import config

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


def test_every_config_key_is_documented() -> None:
    cells = [
        line.split("|")[1] for line in README.read_text().splitlines() if line.startswith("| `")
    ]
    missing = [key for key in leaf_keys(config.Config) if not any(f"`{key}`" in c for c in cells)]
    assert missing == []
