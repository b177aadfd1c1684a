"""Errors that already carry their status code, so servicers pass them on unchanged.

Pure (no grpc import), so the checks and the state store that raise them stay pure too; the gRPC
edge (``server``) turns a ``Code`` into the ``grpc.StatusCode`` of the same name.
"""

from __future__ import annotations

# Re-exported: callers raise ``errors.Code.NOT_FOUND`` and the like.
from kubext.grpc_codes import Code as Code


class CsiError(Exception):
    """A failed RPC: ``code`` is the CSI spec's status code, ``message`` says what and why."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid(message: str) -> CsiError:
    return CsiError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> CsiError:
    return CsiError(Code.NOT_FOUND, message)


def already_exists(message: str) -> CsiError:
    return CsiError(Code.ALREADY_EXISTS, message)


def precondition(message: str) -> CsiError:
    return CsiError(Code.FAILED_PRECONDITION, message)


def out_of_range(message: str) -> CsiError:
    return CsiError(Code.OUT_OF_RANGE, message)


def exhausted(message: str) -> CsiError:
    return CsiError(Code.RESOURCE_EXHAUSTED, message)


def aborted(message: str) -> CsiError:
    return CsiError(Code.ABORTED, message)


def internal(message: str) -> CsiError:
    return CsiError(Code.INTERNAL, message)
