"""The shared status codes are gRPC's: the edges map them by name, so the numbers must agree."""

from __future__ import annotations

import grpc
import pytest

from kubext import grpc_codes


@pytest.mark.parametrize("code", list(grpc_codes.Code))
def test_every_code_is_the_grpc_status_of_that_name(code: grpc_codes.Code) -> None:
    assert grpc.StatusCode[code.name].value[0] == code.value


def test_every_grpc_status_has_a_code() -> None:
    assert {status.name for status in grpc.StatusCode} == {code.name for code in grpc_codes.Code}
