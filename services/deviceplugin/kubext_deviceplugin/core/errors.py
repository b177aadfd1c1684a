"""Errors that carry their gRPC status code, so the servicer passes them on unchanged.

Pure (no grpc import): the edge turns a ``Code`` into the ``grpc.StatusCode`` of the same name.
"""

from __future__ import annotations

# Re-exported: the core and its tests take ``Code`` from here.
from kubext.grpc_codes import Code as Code


class PluginError(Exception):
    """A refused request: ``code`` is its gRPC status, ``message`` names the devices and why."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"
