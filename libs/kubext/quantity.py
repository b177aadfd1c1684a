"""Kubernetes resource quantities (k8s.io/apimachinery/pkg/api/resource), parsed and formatted exactly.

Values are kept as :class:`decimal.Decimal` so that ``0.1`` CPU or ``1.5Gi`` never lose precision.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext
from enum import Enum

__all__ = [
    "Format",
    "Quantity",
    "QuantityError",
    "format_quantity",
    "parse_quantity",
    "to_bytes",
    "to_millicores",
]


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


class Format(str, Enum):
    BINARY_SI = "BinarySI"
    DECIMAL_SI = "DecimalSI"
    DECIMAL_EXPONENT = "DecimalExponent"


_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# The grammar of resource.ParseQuantity: a signed decimal number, then an optional suffix.
_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
# Kubernetes refuses quantities beyond what an int64 of nano units would ever need (2^63-1).
_MAX_EXPONENT = 400


class Quantity:
    """A parsed quantity: its exact value and the format Kubernetes would print it in."""

    __slots__ = ("format", "value")

    def __init__(self, value: Decimal, fmt: Format = Format.DECIMAL_SI) -> None:
        self.value = value
        self.format = fmt

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Quantity):
            return self.value == other.value
        return NotImplemented

    def __lt__(self, other: Quantity) -> bool:
        return self.value < other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def __str__(self) -> str:
        return format_quantity(self.value, self.format)


def parse_quantity(text: str | int | float) -> Quantity:
    """Parse ``500m``, ``0.5``, ``512Mi``, ``1e3``, ``1.5Gi``, ``100k`` ... as Kubernetes does.

    Raises QuantityError naming the input and what is wrong with it.
    """
    if isinstance(text, bool):
        raise QuantityError(f"quantity {text!r}: a boolean is not a quantity")
    if isinstance(text, int):
        return Quantity(Decimal(text))
    if isinstance(text, float):
        text = repr(text)
    if not isinstance(text, str):
        raise QuantityError(f"quantity {text!r}: expected a string or number")
    if text == "":
        raise QuantityError("quantity '': empty string")
    m = _RE.match(text)
    if not m:
        raise QuantityError(
            f"quantity {text!r} must match the regular expression "
            r"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (e.g. 500m, 0.5, 512Mi, 1e3, 1.5Gi)"
        )
    num, suffix = m.group("num"), m.group("suffix") or ""
    try:
        number = Decimal(num)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise QuantityError(f"quantity {text!r}: invalid number") from exc
    with localcontext() as ctx:
        ctx.prec = 200
        if suffix in _BINARY:
            return Quantity(number * (Decimal(2) ** _BINARY[suffix]), Format.BINARY_SI)
        if suffix in _DECIMAL:
            return Quantity(number.scaleb(_DECIMAL[suffix]), Format.DECIMAL_SI)
        exponent = int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"quantity {text!r}: exponent {exponent} is out of range")
        return Quantity(number.scaleb(exponent), Format.DECIMAL_EXPONENT)


def _round_up_nano(value: Decimal) -> Decimal:
    # Kubernetes keeps at most nano precision and rounds up (resource.Quantity.RoundUp(Nano)).
    exponent = value.as_tuple().exponent  # a letter only for NaN and infinity
    return (
        value.quantize(Decimal("1e-9"), rounding=ROUND_CEILING)
        if isinstance(exponent, int) and exponent < -9
        else value
    )


def format_quantity(value: Decimal | int, fmt: Format = Format.DECIMAL_SI) -> str:
    """The canonical string Kubernetes prints for ``value`` in ``fmt`` (Quantity.String)."""
    value = _round_up_nano(Decimal(value))
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mag = abs(value)
    if fmt is Format.BINARY_SI and mag == mag.to_integral_value() and mag >= 1024:
        # Go prints BinarySI values below 1024, and fractions, as DecimalSI instead.
        n = int(mag)
        for suffix, shift in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
            if n % (1 << shift) == 0:
                return f"{sign}{n >> shift}{suffix}"
        return f"{sign}{n}"
    if fmt is Format.DECIMAL_EXPONENT:
        choices = [(e, f"e{e}" if e else "") for e in range(18, -12, -3)]
    else:
        choices = sorted(((e, s) for s, e in _DECIMAL.items()), reverse=True)
    # The largest power-of-1000 suffix that keeps the mantissa an integer.
    for exp, suffix in choices:
        mantissa = mag.scaleb(-exp)
        if mantissa == mantissa.to_integral_value():
            return f"{sign}{int(mantissa)}{suffix}"
    return f"{sign}{int(mag.scaleb(9))}n"  # pragma: no cover - nano always yields an integer


def to_millicores(text: str | int | float) -> int:
    """CPU as integer millicores, rounded up as the scheduler does (MilliValue)."""
    return int((parse_quantity(text).value * 1000).to_integral_value(rounding=ROUND_CEILING))


def to_bytes(text: str | int | float) -> int:
    """Memory or storage as integer bytes, rounded up (Value)."""
    return int(parse_quantity(text).value.to_integral_value(rounding=ROUND_CEILING))
