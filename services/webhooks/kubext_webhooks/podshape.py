"""Checks that the parts of a Pod the webhooks read have the JSON types Kubernetes gives them.

The API server only sends well-formed Pods, but the endpoint answers anyone: a Pod whose
``spec.containers`` is a string must get a precise denial, not a ``TypeError``. After
:func:`check` passes, the rules can index the fields without defensive checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

Checker = Callable[[Any, str], "str | None"]

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _scalar(kind: str, test: Callable[[Any], bool]) -> Checker:
    def check(value: Any, path: str) -> str | None:
        if value is None or test(value):
            return None
        return f"{path}: expected {kind}, got {_type_name(value)}"

    return check


STRING = _scalar("a string", lambda v: isinstance(v, str))
BOOLEAN = _scalar("a boolean", lambda v: isinstance(v, bool))
INTEGER = _scalar("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
QUANTITY = _scalar(
    "a quantity (string or number)",
    lambda v: isinstance(v, str | int | float) and not isinstance(v, bool),
)


def ANY(value: Any, path: str) -> str | None:  # - reads like the other checkers
    return None


def obj(fields: dict[str, Checker]) -> Checker:
    """An object (or null) whose listed fields pass their checkers; other fields are free."""

    def check(value: Any, path: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            return f"{path or '(object)'}: expected an object, got {_type_name(value)}"
        for key, sub in fields.items():
            if key in value:
                error = sub(value[key], f"{path}.{key}" if path else key)
                if error:
                    return error
        return None

    return check


def mapping(values: Checker) -> Checker:
    """An object (or null) with arbitrary keys whose values all pass ``values``."""

    def check(value: Any, path: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            return f"{path}: expected an object, got {_type_name(value)}"
        for key, item in value.items():
            error = values(item, f"{path}[{key!r}]")
            if error:
                return error
        return None

    return check


def array(items: Checker) -> Checker:
    def check(value: Any, path: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, list):
            return f"{path}: expected an array, got {_type_name(value)}"
        for index, item in enumerate(value):
            if item is None:
                return f"{path}[{index}]: expected an object, got null"
            error = items(item, f"{path}[{index}]")
            if error:
                return error
        return None

    return check


SECURITY_CONTEXT = obj(
    {
        "privileged": BOOLEAN,
        "runAsNonRoot": BOOLEAN,
        "runAsUser": INTEGER,
        "allowPrivilegeEscalation": BOOLEAN,
    }
)
CONTAINER = obj(
    {
        "name": STRING,
        "image": STRING,
        "securityContext": SECURITY_CONTEXT,
        "resources": obj({"requests": mapping(QUANTITY), "limits": mapping(QUANTITY)}),
        "volumeMounts": array(obj({"name": STRING, "mountPath": STRING})),
    }
)
POD = obj(
    {
        "metadata": obj(
            {
                "name": STRING,
                "generateName": STRING,
                "namespace": STRING,
                "labels": mapping(STRING),
                "annotations": mapping(STRING),
            }
        ),
        "spec": obj(
            {
                "containers": array(CONTAINER),
                "initContainers": array(CONTAINER),
                "ephemeralContainers": array(CONTAINER),
                "securityContext": obj({"runAsNonRoot": BOOLEAN, "runAsUser": INTEGER}),
                "hostNetwork": BOOLEAN,
                "hostPID": BOOLEAN,
                "hostIPC": BOOLEAN,
                "volumes": array(obj({"name": STRING})),
            }
        ),
    }
)


def check(pod: Any) -> str | None:
    """None if ``pod`` is shaped like a Pod where the webhooks look, else the first problem."""
    if not isinstance(pod, dict):
        return f"expected a Pod object, got {_type_name(pod)}"
    if _well_shaped(pod):
        return None
    return POD(pod, "")


# The fast path: the same checks as POD, written out flat. Almost every pod passes, and this
# is a few times cheaper than the combinators; those run only to name the problem.
def _opt(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _opt_int(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _str_map(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    return all(v is None or isinstance(v, str) for v in value.values())


def _quantity_map(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    return all(
        v is None or (isinstance(v, str | int | float) and not isinstance(v, bool))
        for v in value.values()
    )


def _security_context_ok(sc: Any) -> bool:
    if sc is None:
        return True
    if not isinstance(sc, dict):
        return False
    return (
        _opt(sc.get("privileged"), bool)
        and _opt(sc.get("runAsNonRoot"), bool)
        and _opt_int(sc.get("runAsUser"))
        and _opt(sc.get("allowPrivilegeEscalation"), bool)
    )


def _container_ok(c: Any) -> bool:
    if not isinstance(c, dict):
        return False
    if not (_opt(c.get("name"), str) and _opt(c.get("image"), str)):
        return False
    if not _security_context_ok(c.get("securityContext")):
        return False
    resources = c.get("resources")
    if resources is not None and not (
        isinstance(resources, dict)
        and _quantity_map(resources.get("requests"))
        and _quantity_map(resources.get("limits"))
    ):
        return False
    mounts = c.get("volumeMounts")
    if mounts is None:
        return True
    if not isinstance(mounts, list):
        return False
    for mount in mounts:
        if not isinstance(mount, dict):
            return False
        if not (_opt(mount.get("name"), str) and _opt(mount.get("mountPath"), str)):
            return False
    return True


def _well_shaped(pod: dict[str, Any]) -> bool:
    metadata = pod.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            return False
        for key in ("name", "generateName", "namespace"):
            if not _opt(metadata.get(key), str):
                return False
        if not (_str_map(metadata.get("labels")) and _str_map(metadata.get("annotations"))):
            return False
    spec = pod.get("spec")
    if spec is None:
        return True
    if not isinstance(spec, dict):
        return False
    for list_name in CONTAINER_LISTS:
        items = spec.get(list_name)
        if items is None:
            continue
        if not isinstance(items, list) or not all(_container_ok(c) for c in items):
            return False
    sc = spec.get("securityContext")
    if sc is not None and not (
        isinstance(sc, dict)
        and _opt(sc.get("runAsNonRoot"), bool)
        and _opt_int(sc.get("runAsUser"))
    ):
        return False
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if not _opt(spec.get(key), bool):
            return False
    volumes = spec.get("volumes")
    if volumes is None:
        return True
    if not isinstance(volumes, list):
        return False
    return all(isinstance(v, dict) and _opt(v.get("name"), str) for v in volumes)


class ContainerRef(NamedTuple):
    """One container of a pod, with the field path Kubernetes would report for it.

    A tuple: made for every container of every review, a frozen dataclass costs twice as much."""

    list_name: str
    position: int  # in its list (not `index`: that is tuple's method)
    body: dict[str, Any]

    @property
    def path(self) -> str:
        return f"spec.{self.list_name}[{self.position}]"

    @property
    def name(self) -> str:
        return self.body.get("name") or f"#{self.position}"


def containers(
    pod: dict[str, Any], lists: tuple[str, ...] = CONTAINER_LISTS
) -> Iterator[ContainerRef]:
    spec = pod.get("spec") or {}
    for list_name in lists:
        for index, body in enumerate(spec.get(list_name) or ()):
            yield ContainerRef(list_name, index, body)


def meta(pod: dict[str, Any]) -> dict[str, Any]:
    return pod.get("metadata") or {}


def display_name(pod: dict[str, Any], namespace: str) -> str:
    """``ns/name`` (or ``ns/generateName*`` before the name is generated)."""
    metadata = meta(pod)
    generate = metadata.get("generateName")
    name = metadata.get("name") or (f"{generate}*" if generate else "(unnamed)")
    return f"{namespace}/{name}" if namespace else name
