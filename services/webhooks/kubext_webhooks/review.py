"""AdmissionReview and ConversionReview envelopes: decode untrusted bytes, encode responses.

Pure functions over bytes and dicts. Anything wrong with the envelope itself raises
:class:`BadRequest` (answered as an HTTP 4xx with a plain message); anything wrong with the
object inside a well-formed review is answered as a review denial by the caller.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

ADMISSION_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
CONVERSION_VERSIONS = ("apiextensions.k8s.io/v1",)
JSON_TYPES = ("application/json",)


class BadRequest(Exception):
    """The request is not a review we can answer; ``status`` is the HTTP code to reply with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class AdmissionRequest:
    """The fields of ``AdmissionReview.request`` the webhooks use, checked for type."""

    api_version: str
    uid: str
    operation: str
    group: str
    version: str
    kind: str
    namespace: str
    name: str
    sub_resource: str
    object: Any
    old_object: Any
    dry_run: bool
    username: str


@dataclass
class Decision:
    """What a webhook decided. ``patch`` is a list of RFC 6902 operations (mutating only)."""

    allowed: bool
    message: str = ""
    code: int = 200
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    patch: list[dict[str, Any]] | None = None
    audit_annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def allow(cls, *, warnings: list[str] | None = None) -> Decision:
        return cls(allowed=True, warnings=warnings or [])

    @classmethod
    def deny(cls, message: str, *, code: int = 403, reason: str = "Forbidden") -> Decision:
        return cls(allowed=False, message=message, code=code, reason=reason)

    @classmethod
    def invalid(cls, message: str) -> Decision:
        """The object in the review cannot be judged (wrong kind, malformed fields)."""
        return cls(allowed=False, message=message, code=400, reason="BadRequest")

    @property
    def label(self) -> str:
        """``allowed``, ``patched``, ``warned``, ``denied`` or ``invalid``: the metrics label."""
        if not self.allowed:
            return "invalid" if self.code == 400 else "denied"
        if self.patch:
            return "patched"
        return "warned" if self.warnings else "allowed"


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES:
        shown = content_type if content_type else "none"
        raise BadRequest(415, f"unsupported Content-Type {shown!r}, expected application/json")


_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19  # -9223372036854775809 is the shortest integer orjson misreads


def decode_json(body: bytes) -> dict[str, Any]:
    """Parse a review body; must be a non-empty JSON object."""
    if not body or body.isspace():  # not strip(): that copies the body
        raise BadRequest(400, "empty request body, expected a JSON review")
    # orjson: a third of the stdlib's time on a 5 KB pod. It is stricter (no NaN, no lone
    # surrogates, at most 1024 levels), so whatever it refuses goes the stdlib's way: the same
    # values accepted and the same messages as before. It reads integers past 64 bits as
    # floats, so a body with a 19-digit run (where those start) goes the stdlib's way too.
    if _LONG_DIGIT_RUN in body.translate(_DIGITS_TO_ZERO):
        data = _stdlib_decode(body)
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = _stdlib_decode(body)
    if not isinstance(data, dict):
        raise BadRequest(400, f"request body must be a JSON object, got {_json_type(data)}")
    return data


def _stdlib_decode(body: bytes) -> Any:
    try:
        # RFC 8259: JSON between systems is UTF-8; json.loads(bytes) would guess UTF-16/32 too.
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"request body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            400,
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except RecursionError:
        raise BadRequest(400, "request body nests too deeply") from None
    return data


def encode_json(value: Any) -> bytes:
    """Compact JSON bytes: orjson, or the stdlib for what orjson refuses (integers past 64
    bits, which a review parsed by the stdlib may carry into a patch or a converted object)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _envelope(data: dict[str, Any], *, kind: str, versions: tuple[str, ...]) -> str:
    api_version = data.get("apiVersion")
    if data.get("kind") != kind:
        raise BadRequest(400, f"expected kind {kind}, got {data.get('kind')!r}")
    if api_version not in versions:
        raise BadRequest(
            400, f"unsupported {kind} apiVersion {api_version!r}, expected one of {list(versions)}"
        )
    return str(api_version)


def _opt_str(req: dict[str, Any], key: str, where: str) -> str:
    value = req.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(400, f"{where}.{key} must be a string, got {_json_type(value)}")
    return value


def _opt_dict(req: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = req.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(400, f"{where}.{key} must be an object, got {_json_type(value)}")
    return value


def _request(
    data: dict[str, Any], *, kind: str, versions: tuple[str, ...]
) -> tuple[str, dict[str, Any], str]:
    """The envelope's apiVersion, its ``request`` object and that request's non-empty uid."""
    api_version = _envelope(data, kind=kind, versions=versions)
    req = data.get("request")
    if req is None:
        raise BadRequest(400, f"{kind} has no request")
    if not isinstance(req, dict):
        raise BadRequest(400, f"{kind} request must be an object, got {_json_type(req)}")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadRequest(400, f"{kind} request.uid must be a non-empty string")
    return api_version, req, uid


def parse_admission(data: dict[str, Any]) -> AdmissionRequest:
    """Check the AdmissionReview envelope and extract its request."""
    api_version, req, uid = _request(data, kind="AdmissionReview", versions=ADMISSION_VERSIONS)
    kind = _opt_dict(req, "kind", "request")
    for key in ("group", "version", "kind"):
        _opt_str(kind, key, "request.kind")
    user = _opt_dict(req, "userInfo", "request")
    dry_run = req.get("dryRun")
    return AdmissionRequest(
        api_version=api_version,
        uid=uid,
        operation=_opt_str(req, "operation", "request"),
        group=kind.get("group") or "",
        version=kind.get("version") or "",
        kind=kind.get("kind") or "",
        namespace=_opt_str(req, "namespace", "request"),
        name=_opt_str(req, "name", "request"),
        sub_resource=_opt_str(req, "subResource", "request"),
        object=req.get("object"),
        old_object=req.get("oldObject"),
        dry_run=dry_run is True,
        username=_opt_str(user, "username", "request.userInfo"),
    )


def encode_admission(request: AdmissionRequest, decision: Decision) -> bytes:
    """The AdmissionReview response: apiVersion echoed, uid copied, patch base64-encoded."""
    return _encode_admission(request.api_version, request.uid, decision)


def _encode_admission(api_version: str, uid: str, decision: Decision) -> bytes:
    response: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if not decision.allowed:
        status: dict[str, Any] = {"code": decision.code, "message": decision.message}
        if decision.reason:
            status["reason"] = decision.reason
        response["status"] = status
    if decision.warnings:
        response["warnings"] = decision.warnings
    if decision.audit_annotations:
        response["auditAnnotations"] = decision.audit_annotations
    if decision.allowed and decision.patch:
        raw = encode_json(decision.patch)
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(raw).decode("ascii")
    review = {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}
    return encode_json(review)


@dataclass(frozen=True)
class ConversionRequest:
    api_version: str
    uid: str
    desired_api_version: str
    objects: list[Any]


def parse_conversion(data: dict[str, Any]) -> ConversionRequest:
    """Check the ConversionReview envelope and extract its request."""
    api_version, req, uid = _request(data, kind="ConversionReview", versions=CONVERSION_VERSIONS)
    desired = req.get("desiredAPIVersion")
    if not isinstance(desired, str) or not desired:
        raise BadRequest(
            400, "ConversionReview request.desiredAPIVersion must be a non-empty string"
        )
    objects = req.get("objects")
    if objects is None:
        objects = []
    if not isinstance(objects, list):
        raise BadRequest(
            400, f"ConversionReview request.objects must be an array, got {_json_type(objects)}"
        )
    return ConversionRequest(api_version, uid, desired, objects)


def encode_conversion(
    request: ConversionRequest, *, converted: list[dict[str, Any]] | None, error: str = ""
) -> bytes:
    """A ConversionReview response; on ``error`` no objects and result status Failure."""
    return _encode_conversion(request.api_version, request.uid, converted, error)


def _encode_conversion(
    api_version: str, uid: str, converted: list[dict[str, Any]] | None, error: str
) -> bytes:
    response: dict[str, Any] = {"uid": uid}
    if error:
        response["convertedObjects"] = []
        response["result"] = {"status": "Failure", "message": error}
    else:
        response["convertedObjects"] = converted or []
        response["result"] = {"status": "Success"}
    review = {"apiVersion": api_version, "kind": "ConversionReview", "response": response}
    return encode_json(review)


def request_uid(data: Any) -> str | None:
    """The uid of a review's request as sent, if it is a non-empty string; else None."""
    req = data.get("request") if isinstance(data, dict) else None
    uid = req.get("uid") if isinstance(req, dict) else None
    return uid if isinstance(uid, str) and uid else None


def encode_internal_error(data: Any, message: str) -> bytes | None:
    """The review's own error answer to ``data`` when answering it failed unexpectedly.

    An AdmissionReview denial with code 500 or a ConversionReview with result Failure (what the
    API server reports to the user as the webhook's message); None when ``data`` is not a review
    envelope that can be answered (its uid is unknown, its kind or apiVersion unsupported).
    Built from the envelope alone, so a failure in the request's parsing or encoding is answered.
    """
    if not isinstance(data, dict):
        return None
    try:
        if data.get("kind") == "AdmissionReview":
            api_version, _, uid = _request(
                data, kind="AdmissionReview", versions=ADMISSION_VERSIONS
            )
            failed = Decision(allowed=False, code=500, reason="InternalError", message=message)
            return _encode_admission(api_version, uid, failed)
        if data.get("kind") == "ConversionReview":
            api_version, _, uid = _request(
                data, kind="ConversionReview", versions=CONVERSION_VERSIONS
            )
            return _encode_conversion(api_version, uid, None, message)
    except BadRequest:
        return None
    return None
