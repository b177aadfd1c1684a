"""Which host-local reservation files GC removes."""

from __future__ import annotations

import pytest

from kubext_cni.core import gc

VALID = frozenset({("keep", "eth0"), ("multi", "net1")})


@pytest.mark.parametrize(
    ("files", "stale"),
    [
        pytest.param({"10.1.0.5": "keep\r\neth0"}, [], id="valid"),
        pytest.param({"10.1.0.5": "gone\r\neth0"}, ["10.1.0.5"], id="invalid"),
        pytest.param({"10.1.0.5": "keep\r\neth1"}, ["10.1.0.5"], id="same-id-other-interface"),
        pytest.param({"fd00::5": "multi\r\nnet1"}, [], id="ipv6-name"),
        pytest.param({"10.1.0.5": "keep"}, [], id="legacy-format-id-only"),
        pytest.param({"10.1.0.5": "gone"}, ["10.1.0.5"], id="legacy-format-invalid"),
        pytest.param({"10.1.0.5": "  keep\r\neth0\n"}, [], id="whitespace-tolerated"),
        pytest.param({"lock": "", "last_reserved_ip.0": "10.1.0.5"}, [], id="bookkeeping-files"),
    ],
)
def test_stale_reservations(files: dict[str, str], stale: list[str]) -> None:
    assert gc.stale_reservations(files, VALID) == stale


def test_empty_valid_list_means_everything_is_stale() -> None:
    files = {"10.1.0.5": "a\r\neth0", "10.1.0.6": "b\r\neth0"}
    assert gc.stale_reservations(files, frozenset()) == ["10.1.0.5", "10.1.0.6"]


def test_owner_parses_both_formats() -> None:
    assert gc.owner("abc\r\neth0") == ("abc", "eth0")
    assert gc.owner("abc") == ("abc", None)
