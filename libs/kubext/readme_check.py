"""Which config keys a service's README leaves out: the logic behind each service's README test.

A README documents a key in the first cell of a table row (``| `key` | default | meaning |``),
written out (`` `tls.mode` ``), as a list's items (`` `generic.groups[].name` `` documents
``generic.groups``), or after a sibling on the same row (`` `tls.cert_dir` / `mode` ``).
"""

from __future__ import annotations

import pydantic


def leaf_keys(model: type[pydantic.BaseModel], prefix: str = "") -> list[str]:
    """The dotted keys of ``model``'s fields, nested models flattened (``tls.mode``)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            keys += leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def key_cells(readme: str) -> list[str]:
    """The first cell of every table row that starts with a code span: where keys are named."""
    return [line.split("|")[1] for line in readme.splitlines() if line.startswith("| `")]


def is_documented(key: str, cells: list[str]) -> bool:
    parent, _, leaf = key.rpartition(".")
    return any(
        f"`{key}`" in cell
        or f"`{key}[]" in cell
        or (parent != "" and f"`{parent}." in cell and f"{leaf}`" in cell)
        for cell in cells
    )


def undocumented_keys(model: type[pydantic.BaseModel], readme: str) -> list[str]:
    """``model``'s keys that no row of ``readme`` names, in field order."""
    cells = key_cells(readme)
    return [key for key in leaf_keys(model) if not is_documented(key, cells)]


def undocumented_fields(model: type[pydantic.BaseModel], readme: str, *, row_key: str) -> list[str]:
    """``model``'s fields not named in the one row of ``readme`` that documents them all.

    For a list's item model described in a single row (``| `generic.groups[].paths[]` | ...``).
    """
    row = next((line for line in readme.splitlines() if line.startswith(f"| `{row_key}`")), None)
    if row is None:
        raise LookupError(f"the README has no row for `{row_key}`")
    return [name for name in model.model_fields if f"`{name}`" not in row]
