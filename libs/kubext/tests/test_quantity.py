"""Quantities parse and print as Kubernetes does (values checked against resource.Quantity)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubext import quantity

CASES = [
    # text, exact value, canonical string as `kubectl` prints it
    pytest.param("500m", Decimal("0.5"), "500m", id="milli"),
    pytest.param("0.5", Decimal("0.5"), "500m", id="fraction"),
    pytest.param("512Mi", Decimal(512 * 2**20), "512Mi", id="mebi"),
    pytest.param("1e3", Decimal(1000), "1e3", id="exponent"),
    pytest.param("1E3", Decimal(1000), "1e3", id="upper-exponent"),
    pytest.param("1.5Gi", Decimal(3 * 2**29), "1536Mi", id="fractional-gibi"),
    pytest.param("100k", Decimal(100_000), "100k", id="kilo"),
    pytest.param("1000", Decimal(1000), "1k", id="plain-thousand"),
    pytest.param("1024", Decimal(1024), "1024", id="plain-1024-stays-decimal"),
    pytest.param("0.5Ki", Decimal(512), "512", id="binary-below-1024-prints-decimal"),
    pytest.param("2000Ki", Decimal(2_048_000), "2000Ki", id="kibi"),
    pytest.param("1u", Decimal("0.000001"), "1u", id="micro"),
    pytest.param("0.1n", Decimal("0.0000000001"), "1n", id="below-nano-rounds-up"),
    pytest.param("-1.5Gi", Decimal(-3 * 2**29), "-1536Mi", id="negative"),
    pytest.param("12e-3", Decimal("0.012"), "12e-3", id="negative-exponent"),
    pytest.param(".5", Decimal("0.5"), "500m", id="leading-dot"),
    pytest.param("+2", Decimal(2), "2", id="plus-sign"),
    pytest.param("0", Decimal(0), "0", id="zero"),
    pytest.param("1.5M", Decimal(1_500_000), "1500k", id="mega-fraction"),
]


@pytest.mark.parametrize(("text", "value", "canonical"), CASES)
def test_parse_and_format(text: str, value: Decimal, canonical: str) -> None:
    q = quantity.parse_quantity(text)
    assert q.value == value
    assert str(q) == canonical


@pytest.mark.parametrize(
    "bad",
    ["", "Gi", "1 Gi", "1Ki1", "1KiB", "1K", "abc", "1.5.5", "--1", "1e", "0x10", "1Mi ", "e3"],
)
def test_malformed_is_rejected_with_the_input_named(bad: str) -> None:
    with pytest.raises(quantity.QuantityError) as exc:
        quantity.parse_quantity(bad)
    assert repr(bad) in str(exc.value)


def test_numbers_and_helpers() -> None:
    assert quantity.parse_quantity(3).value == 3
    assert quantity.to_millicores("250m") == 250
    assert quantity.to_millicores("1.0001") == 1001  # rounds up like MilliValue()
    assert quantity.to_bytes("1.5Gi") == 1610612736
    assert quantity.to_bytes("1e3") == 1000
    with pytest.raises(quantity.QuantityError):
        quantity.parse_quantity(True)  # type: ignore[arg-type]


def test_ordering_compares_values_not_text() -> None:
    assert quantity.parse_quantity("1Gi") > quantity.parse_quantity("1G")
    assert quantity.parse_quantity("1000m") == quantity.parse_quantity("1")


@given(st.integers(min_value=-(2**60), max_value=2**60), st.sampled_from(list(quantity.Format)))
def test_canonical_form_round_trips(n: int, fmt: quantity.Format) -> None:
    text = quantity.format_quantity(Decimal(n), fmt)
    assert quantity.parse_quantity(text).value == n


@given(st.decimals(min_value=-(10**12), max_value=10**12, places=9, allow_nan=False))
def test_decimal_round_trip_keeps_nano_precision(value: Decimal) -> None:
    assert quantity.parse_quantity(quantity.format_quantity(value)).value == value
