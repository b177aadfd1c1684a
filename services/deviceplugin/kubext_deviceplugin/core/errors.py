"""Errors that carry their gRPC status code, so the servicer passes them on unchanged.

Pure (no grpc import): the edge turns a ``Code`` into the ``grpc.StatusCode`` of the same name.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """The gRPC status codes (same names and numbers) the plugin answers with."""

    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    FAILED_PRECONDITION = 9


class PluginError(Exception):
    """A refused request: ``code`` is its gRPC status, ``message`` names the devices and why."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"
