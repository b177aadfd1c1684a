"""Finding the config keys a README's tables leave out."""

from __future__ import annotations

import pydantic
import pytest

from kubext import readme_check


class Sidecar(pydantic.BaseModel):
    name: str = "s"
    image: str = "i"


class Path(pydantic.BaseModel):
    path: str = "/"
    read_only: bool = False


class Group(pydantic.BaseModel):
    paths: list[Path] = []


class Config(pydantic.BaseModel):
    log_level: str = "info"
    sidecar: Sidecar = Sidecar()
    groups: list[Group] = []


def table(*first_cells: str) -> str:
    header = "| key | default | meaning |\n| --- | --- | --- |\n"
    return header + "".join(f"| {cell} | - | - |\n" for cell in first_cells)


def test_nested_models_flatten_to_dotted_keys() -> None:
    assert readme_check.leaf_keys(Config) == [
        "log_level",
        "sidecar.name",
        "sidecar.image",
        "groups",
    ]


def test_a_table_naming_every_key_leaves_none_out() -> None:
    readme = table("`log_level`", "`sidecar.name`", "`sidecar.image`", "`groups`")
    assert readme_check.undocumented_keys(Config, readme) == []


def test_keys_missing_from_the_table_are_listed_in_field_order() -> None:
    readme = table("`sidecar.name`")
    assert readme_check.undocumented_keys(Config, readme) == [
        "log_level",
        "sidecar.image",
        "groups",
    ]


def test_a_sibling_after_its_dotted_neighbour_and_a_lists_items_count() -> None:
    readme = table("`log_level`", "`sidecar.name` / `image`", "`groups[].paths[]`")
    assert readme_check.undocumented_keys(Config, readme) == []


def test_keys_count_only_in_a_rows_first_cell() -> None:
    readme = table("`log_level`") + "| `other` | `sidecar.name` `sidecar.image` `groups` | - |\n"
    assert readme_check.undocumented_keys(Config, readme) == [
        "sidecar.name",
        "sidecar.image",
        "groups",
    ]


def test_a_sibling_needs_its_parent_on_the_row() -> None:
    readme = table("`log_level`", "`other.name` / `image`", "`groups`")
    assert readme_check.undocumented_keys(Config, readme) == ["sidecar.name", "sidecar.image"]


def test_fields_missing_from_their_row_are_listed() -> None:
    readme = table("`log_level`", "`groups[].paths[]` | `path` (absolute)")
    assert readme_check.undocumented_fields(Path, readme, row_key="groups[].paths[]") == [
        "read_only"
    ]


def test_a_missing_row_is_an_error() -> None:
    with pytest.raises(LookupError, match=r"groups\[\]\.paths\[\]"):
        readme_check.undocumented_fields(Path, table("`log_level`"), row_key="groups[].paths[]")
