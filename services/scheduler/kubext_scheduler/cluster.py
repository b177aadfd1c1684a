"""The only module that talks to the API server: the informers (nodes, pods, namespaces,
PodDisruptionBudgets, PersistentVolumeClaims, PersistentVolumes, StorageClasses), the binder,
and VolumeBinding's PV/PVC writes (``KubeVolumes``).

Informers are client-go's reflector in small, one daemon thread per kind: list (in pages, raw
JSON: no model round trips), then watch from the list's resourceVersion with bookmarks and a
server-side timeout, relisting on 410 Gone and retrying other failures with backoff. The binder
POSTs ``pods/binding`` and writes what kube-scheduler writes on failure: a FailedScheduling
Event (repeats of one message counted on one Event) and the PodScheduled=False condition.
The Lease adapter reads and writes the leader-election Lease, each call bounded by a timeout.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson
import urllib3  # pants: no-infer-dep (kubernetes brings it; locked)
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from kubext_scheduler.framework.volumes import VolumeAPIError
from kubext_scheduler.leader import LeaseError
from kubext_scheduler.scheduler import BindError

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]
OnList = Callable[[list[Obj]], None]
OnEvent = Callable[[str, Obj], None]


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def _message(exc: client.ApiException) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return f"{exc.status} {exc.reason}"


class Informer:
    """List-then-watch of one cluster-wide kind into ``on_list``/``on_event``."""

    def __init__(
        self,
        api: client.ApiClient,
        kind: str,
        on_list: OnList,
        on_event: OnEvent,
        *,
        stop: threading.Event,
        watch_timeout_s: int = 300,
        page_size: int = 500,
    ) -> None:
        core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
        storage = client.StorageV1Api(api)
        self._list = {
            "nodes": core.list_node,
            "pods": core.list_pod_for_all_namespaces,
            "namespaces": core.list_namespace,
            "poddisruptionbudgets": policy.list_pod_disruption_budget_for_all_namespaces,
            "persistentvolumeclaims": core.list_persistent_volume_claim_for_all_namespaces,
            "persistentvolumes": core.list_persistent_volume,
            "storageclasses": storage.list_storage_class,
        }[kind]
        self.kind, self.on_list, self.on_event = kind, on_list, on_event
        self.stop, self.watch_timeout_s, self.page_size = stop, watch_timeout_s, page_size
        self.synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{kind}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def list(self) -> str:
        items: list[Obj] = []
        token, version = "", ""
        while True:
            kwargs: dict[str, Any] = {"limit": self.page_size, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            page = orjson.loads(self._list(**kwargs).data)
            items += page.get("items") or ()
            token = (page.get("metadata") or {}).get("continue") or ""
            version = (page.get("metadata") or {}).get("resourceVersion") or version
            if not token:
                break
        self.on_list(items)
        return version

    def watch(self, version: str) -> str:
        response = self._list(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s,
            _preload_content=False,
            _request_timeout=(10, self.watch_timeout_s + 30),
        )
        try:
            for line in iter_resp_lines(response):
                if self.stop.is_set():
                    break
                event = orjson.loads(line)  # a pod's events are most of the watches' CPU
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", "410 Gone"))
                    raise client.ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_event(kind, obj)
        finally:
            response.release_conn()
        return version

    def _run(self) -> None:
        backoff = 0.5
        while not self.stop.is_set():
            try:
                version = self.list()
                self.synced.set()
                backoff = 0.5
                while not self.stop.is_set():
                    version = self.watch(version)
            except Gone:
                log.info("watch expired; relisting", extra={"kind": self.kind})
            except Exception as exc:  # any failure: retry with backoff, never a dead informer
                log.warning(
                    "list/watch failed; retrying",
                    extra={"kind": self.kind, "error": str(exc), "retry_in_s": backoff},
                )
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)


def _read(response: Any) -> bytes:
    """The body of a ``_preload_content=False`` response, read to the end: only then does
    urllib3 put the connection back in the pool (unread, each next request opened, and
    TLS-handshook, a new one)."""
    return response.data  # type: ignore[no-any-return]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def post_json(api: client.ApiClient, path: str, body: Obj) -> bytes:
    """POST ``body`` to the API server's ``path`` through the client's own connection pool
    and auth (its BearerToken refresh included), without the generated method: its per-call
    pydantic validation and body sanitising were a third of the binding workers' time (py-spy
    of the full bench). Returns the response's body; raises client.ApiException for a
    non-2xx answer, urllib3.exceptions.HTTPError or OSError for a failed request."""
    headers = {
        **api.default_headers,
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    api.update_params_for_auth(headers, [], ["BearerToken"], path, "POST", body)
    response = api.rest_client.pool_manager.request(
        "POST", api.configuration.host + path, body=orjson.dumps(body), headers=headers
    )
    if not 200 <= response.status <= 299:
        raise client.ApiException(http_resp=response)
    return response.data  # type: ignore[no-any-return]


class KubeBinder:
    """scheduler.Binder over the API server; Event and status writes never raise."""

    def __init__(self, api: client.ApiClient, *, component: str, instance: str) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.component, self.instance = component, instance
        # pod uid -> (Event name, message, count): a repeated failure updates one Event.
        self._last: dict[str, tuple[str, str, int]] = {}
        self._lock = threading.Lock()

    def bind(self, pod: Obj, node_name: str) -> None:
        meta = pod.get("metadata") or {}
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            # The uid makes the binding a precondition on this very pod (not a namesake).
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        path = f"/api/v1/namespaces/{quote(meta['namespace'], safe='')}/pods/"
        try:
            post_json(self.api, f"{path}{quote(meta['name'], safe='')}/binding", body)
        except client.ApiException as exc:
            raise BindError(_message(exc)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BindError(str(exc)) from None
        with self._lock:
            self._last.pop(meta["uid"], None)

    def scheduled(self, pod: Obj, node_name: str) -> None:
        meta = pod.get("metadata") or {}
        message = f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}"
        self._event(pod, "Normal", "Scheduled", "Binding", message)

    def failed(self, pod: Obj, message: str, *, reason: str) -> None:
        self._event(pod, "Warning", "FailedScheduling", "Scheduling", message)
        meta = pod.get("metadata") or {}
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": _now(),
        }
        try:
            _read(
                self.core.patch_namespaced_pod_status(
                    meta["name"],
                    meta["namespace"],
                    {"status": {"conditions": [condition]}},
                    _content_type="application/strategic-merge-patch+json",
                    _preload_content=False,
                )
            )
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning(
                "cannot set PodScheduled", extra={"pod": meta.get("name"), "error": str(exc)}
            )

    def nominate(self, pod: Obj, node_name: str) -> None:
        meta = pod.get("metadata") or {}
        try:
            _read(
                self.core.patch_namespaced_pod_status(
                    meta["name"],
                    meta["namespace"],
                    {"status": {"nominatedNodeName": node_name}},
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                )
            )
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning(
                "cannot set nominatedNodeName", extra={"pod": meta.get("name"), "error": str(exc)}
            )

    def preempt(self, victim: Obj, *, preemptor: Obj, node_name: str) -> None:
        meta = victim.get("metadata") or {}
        name, namespace = meta.get("name"), meta.get("namespace")
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": f"{self.component}: preempting to accommodate a higher priority pod",
            "lastTransitionTime": _now(),
        }
        try:
            _read(
                self.core.patch_namespaced_pod_status(
                    name,
                    namespace,
                    {"status": {"conditions": [condition]}},
                    _content_type="application/strategic-merge-patch+json",
                    _preload_content=False,
                )
            )
            uid = (preemptor.get("metadata") or {}).get("uid")
            self._event(
                victim,
                "Normal",
                "Preempted",
                "Preempting",
                f"Preempted by pod {uid} on node {node_name}",
            )
            _read(self.core.delete_namespaced_pod(name, namespace, _preload_content=False))
        except client.ApiException as exc:
            if exc.status != 404:
                log.warning("cannot preempt", extra={"pod": name, "error": _message(exc)})
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("cannot preempt", extra={"pod": name, "error": str(exc)})

    def _event(self, pod: Obj, kind: str, reason: str, action: str, message: str) -> None:
        meta = pod.get("metadata") or {}
        namespace, uid = meta.get("namespace", "default"), meta.get("uid", "")
        now = _now()
        with self._lock:
            last = self._last.get(uid) if reason == "FailedScheduling" else None
        try:
            if last is not None and last[1] == message:
                name, _, count = last
                _read(
                    self.core.patch_namespaced_event(
                        name,
                        namespace,
                        {"count": count + 1, "lastTimestamp": now},
                        _content_type="application/merge-patch+json",
                        _preload_content=False,
                    )
                )
                with self._lock:
                    self._last[uid] = (name, message, count + 1)
                return
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta.get('name', 'pod')}.", "namespace": namespace},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": meta.get("name"),
                    "uid": uid,
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "type": kind,
                "action": action,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": self.component},
                "reportingComponent": self.component,
                "reportingInstance": self.instance,
            }
            path = f"/api/v1/namespaces/{quote(str(namespace), safe='')}/events"
            created = orjson.loads(post_json(self.api, path, body))
            if reason == "FailedScheduling":
                with self._lock:
                    self._last[uid] = (created["metadata"]["name"], message, 1)
        except (
            client.ApiException,
            urllib3.exceptions.HTTPError,
            OSError,
            KeyError,
            orjson.JSONDecodeError,
        ) as exc:
            log.warning(
                "cannot write Event",
                extra={"pod": meta.get("name"), "reason": reason, "error": str(exc)},
            )
            with self._lock:
                self._last.pop(uid, None)


class KubeVolumes:
    """framework.volumes.VolumeAPI: PUT a PV (its claimRef: the PV controller binds the claim)
    or a PVC (its selected-node annotation: external-provisioner provisions there), as
    upstream's bindAPIUpdate; the stored object comes back, a refusal is VolumeAPIError."""

    def __init__(self, api: client.ApiClient, *, timeout_s: float = 30) -> None:
        self.core = client.CoreV1Api(api)
        self.timeout_s = timeout_s

    def _put(self, call: Callable[..., Any], *args: Any, what: str) -> Obj:
        try:
            response = call(*args, _preload_content=False, _request_timeout=self.timeout_s)
            stored: Obj = json.loads(response.data)
            return stored
        except client.ApiException as exc:
            raise VolumeAPIError(f"updating {what}: {_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise VolumeAPIError(f"updating {what}: {exc}") from None

    def update_volume(self, volume: Obj) -> Obj:
        name = (volume.get("metadata") or {}).get("name")
        body = {**volume, "apiVersion": "v1", "kind": "PersistentVolume"}
        return self._put(self.core.replace_persistent_volume, name, body, what=f"pv {name!r}")

    def update_claim(self, claim: Obj) -> Obj:
        meta = claim.get("metadata") or {}
        body = {**claim, "apiVersion": "v1", "kind": "PersistentVolumeClaim"}
        return self._put(
            self.core.replace_namespaced_persistent_volume_claim,
            meta.get("name"),
            meta.get("namespace"),
            body,
            what=f"pvc {meta.get('namespace')}/{meta.get('name')}",
        )


class KubeLease:
    """leader.LeasePort on a coordination.k8s.io/v1 Lease; every call bounded by ``timeout``."""

    def __init__(self, api: client.ApiClient, *, namespace: str, name: str) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name

    def _call(self, method: Callable[..., Any], *args: Any, timeout: float) -> Any:
        try:
            response = method(*args, _preload_content=False, _request_timeout=timeout)
            return json.loads(response.data)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise LeaseError(f"{exc.status} {_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise LeaseError(str(exc)) from None

    def get(self, *, timeout: float) -> Obj | None:
        read = self.coordination.read_namespaced_lease
        found: Obj | None = self._call(read, self.name, self.namespace, timeout=timeout)
        return found

    def create(self, spec: Obj, *, timeout: float) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": dict(spec),
        }
        create = self.coordination.create_namespaced_lease
        if self._call(create, self.namespace, body, timeout=timeout) is None:
            raise LeaseError(f"namespace {self.namespace!r} not found")

    def update(self, lease: Obj, *, timeout: float) -> None:
        replace = self.coordination.replace_namespaced_lease
        if self._call(replace, self.name, self.namespace, dict(lease), timeout=timeout) is None:
            raise LeaseError("the Lease was deleted")
