"""The built-in provisioner's edge: watches claims and PVs, and acts on what ``provisioning``
decides (CreateVolume/DeleteVolume on the driver's own socket, PVs, Events), with backoff.

Watch events only wake the loop; each pass reads fresh lists of StorageClasses, claims and PVs
(and at least every ``resync_seconds``), so a missed event or a restart loses nothing. A failure
is an Event on the claim (ProvisioningFailed) or the PV (VolumeFailedDelete) with the gRPC
status, and that object is retried after an exponential delay; nothing stops the loop.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from kubernetes import client, watch

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc

from . import provisioning

log = logging.getLogger(__name__)
EVENTS_NAMESPACE = "default"  # where Events of cluster-scoped objects (PVs) go
# The client sends a dict body as a strategic merge patch, which merges metadata.finalizers
# (patchStrategy merge) instead of replacing it: our finalizer would never leave. The core's
# patches are JSON merge patches (RFC 7386: a list is replaced).
MERGE_PATCH = "application/merge-patch+json"


@dataclasses.dataclass
class _Retry:
    failures: int = 0
    not_before: float = 0.0


class Provisioner:
    def __init__(
        self,
        *,
        api: client.ApiClient,
        controller: csi_pb2_grpc.ControllerStub,
        me: provisioning.Identity,
        resync_seconds: float = 60.0,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        rpc_timeout_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.controller = controller
        self.me = me
        self.resync_seconds = resync_seconds
        self.retry_initial = retry_initial_seconds
        self.retry_max = retry_max_seconds
        self.rpc_timeout = rpc_timeout_seconds
        self.clock = clock
        self._retries: dict[str, _Retry] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- the loop ------------------------------------------------------------------------------

    def start(self) -> Provisioner:
        watched = (
            ("claims", self.core.list_persistent_volume_claim_for_all_namespaces),
            ("volumes", self.core.list_persistent_volume),
        )
        for name, lister in watched:
            self._spawn(f"provisioner-watch-{name}", lambda lister=lister: self._watch(lister))
        self._spawn("provisioner", self._loop)
        log.info("provisioner started", extra={"driver": self.me.driver, "node": self.me.node_id})
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)  # a watch ends at its server-side timeout at the latest

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self, lister: Callable[..., Any]) -> None:
        while not self._stop.is_set():
            try:
                for _ in watch.Watch().stream(lister, timeout_seconds=30):
                    self._wake.set()
                    if self._stop.is_set():
                        return
            except Exception as exc:  # the API server away or restarting: watch again soon
                log.info("provisioner watch ended: %s", exc)
                self._stop.wait(2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._next_wait())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile()
            except Exception:  # the API unreachable mid-pass: the next pass retries
                log.exception("provisioner pass failed")
                self._stop.wait(self.retry_initial)

    def _next_wait(self) -> float:
        """Until the resync, or sooner the earliest retry that is due."""
        now = self.clock()
        due = [r.not_before - now for r in self._retries.values()]
        return max(0.05, min([self.resync_seconds, *due]))

    # --- one pass ------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """One pass over the cluster's claims and PVs."""
        classes = {c["metadata"]["name"]: c for c in self._list(self.storage.list_storage_class)}
        claims = self._list(self.core.list_persistent_volume_claim_for_all_namespaces)
        volumes = self._list(self.core.list_persistent_volume)
        existing = {pv["metadata"]["name"] for pv in volumes}
        # A failed claim or PV deleted since: its retry would be due forever, and the loop would
        # wake every 50 ms (``_next_wait``) for nothing.
        listed = {obj["metadata"]["uid"] for obj in (*claims, *volumes)}
        for uid in [uid for uid in self._retries if uid not in listed]:
            del self._retries[uid]
        for claim in claims:
            storage_class = classes.get((claim.get("spec") or {}).get("storageClassName") or "")
            action = provisioning.claim_action(claim, storage_class, self.me)
            if action is provisioning.Action.SKIP or storage_class is None:
                continue
            if provisioning.volume_name(claim) in existing or not self._due(claim):
                continue
            if action is provisioning.Action.TAKE:
                self._take(claim)
            else:
                self._provision(claim, storage_class)
        for pv in volumes:
            if provisioning.should_delete_volume(pv, self.me) and self._due(pv):
                self._delete(pv)

    def _list(self, lister: Callable[..., Any]) -> list[dict[str, Any]]:
        # Raw JSON: the pure core reads the API's own field names.
        response = lister(_preload_content=False)
        return json.loads(response.data)["items"]

    def _take(self, claim: dict[str, Any]) -> None:
        meta = claim["metadata"]
        try:
            self.core.patch_namespaced_persistent_volume_claim(
                meta["name"],
                meta["namespace"],
                provisioning.take_patch(claim, self.me),
                _content_type=MERGE_PATCH,
            )
        except client.ApiException as exc:
            if exc.status in (404, 409):  # gone, or another node took it first
                return
            raise
        log.info("took claim", extra={"claim": f"{meta['namespace']}/{meta['name']}"})
        self._wake.set()  # provision it in the next pass, from the claim as it is now

    def _provision(self, claim: dict[str, Any], storage_class: dict[str, Any]) -> None:
        meta = claim["metadata"]
        name = provisioning.volume_name(claim)
        try:
            request = provisioning.create_request(claim, storage_class, self.me)
        except provisioning.ClaimError as exc:
            message = f'failed to provision volume with StorageClass "{storage_class["metadata"]["name"]}": {exc}'
            self._failed(claim, "ProvisioningFailed", message)
            return
        if self._retry(claim).failures == 0:
            self._event(
                claim,
                "Normal",
                "Provisioning",
                f'External provisioner is provisioning volume for claim "{meta["namespace"]}/{meta["name"]}"',
            )
        try:
            volume = self.controller.CreateVolume(request, timeout=self.rpc_timeout).volume
        except grpc.RpcError as exc:
            message = provisioning.failure_message(storage_class, exc.code().name, exc.details())
            self._failed(claim, "ProvisioningFailed", message)
            return
        pv = provisioning.persistent_volume(claim, storage_class, volume, self.me)
        try:
            self.core.create_persistent_volume(pv)
        except client.ApiException as exc:
            if exc.status != 409:  # 409: a previous pass made it
                self._failed(claim, "ProvisioningFailed", f"creating PV {name}: {exc.reason}")
                return
        self._retries.pop(meta["uid"], None)
        log.info("provisioned", extra={"volume_id": volume.volume_id, "pv": name})
        self._event(
            claim, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}"
        )

    def _delete(self, pv: dict[str, Any]) -> None:
        meta = pv["metadata"]
        volume_id = pv["spec"]["csi"]["volumeHandle"]
        try:
            self.controller.DeleteVolume(
                csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=self.rpc_timeout
            )
        except grpc.RpcError as exc:
            message = f"rpc error: code = {exc.code().name} desc = {exc.details()}"
            self._failed(pv, "VolumeFailedDelete", message)
            return
        try:
            if provisioning.FINALIZER in (meta.get("finalizers") or []):
                self.core.patch_persistent_volume(
                    meta["name"], provisioning.without_finalizer(pv), _content_type=MERGE_PATCH
                )
            self.core.delete_persistent_volume(meta["name"])
        except client.ApiException as exc:
            if exc.status != 404:
                self._failed(pv, "VolumeFailedDelete", f"removing PV: {exc.reason}")
                return
        self._retries.pop(meta["uid"], None)
        log.info("deleted", extra={"volume_id": volume_id, "pv": meta["name"]})

    # --- retries and Events ----------------------------------------------------------------------

    def _retry(self, obj: dict[str, Any]) -> _Retry:
        return self._retries.get(obj["metadata"]["uid"]) or _Retry()

    def _due(self, obj: dict[str, Any]) -> bool:
        return self._retry(obj).not_before <= self.clock()

    def _failed(self, obj: dict[str, Any], reason: str, message: str) -> None:
        retry = self._retries.setdefault(obj["metadata"]["uid"], _Retry())
        retry.failures += 1
        delay = provisioning.backoff_seconds(
            retry.failures, initial=self.retry_initial, maximum=self.retry_max
        )
        retry.not_before = self.clock() + delay
        log.info(
            reason, extra={"object": obj["metadata"]["name"], "error": message, "retry_s": delay}
        )
        self._event(obj, "Warning", reason, message)

    def _event(self, obj: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or EVENTS_NAMESPACE
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        component = f"{self.me.driver}_{self.me.node_id}"
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": obj.get("kind") or _kind_of(obj),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": self.me.node_id,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(namespace, body)
        except client.ApiException as exc:  # an Event is a courtesy; never fail for one
            log.info("could not record an event: %s", exc.reason)


def _kind_of(obj: dict[str, Any]) -> str:
    """List items carry no kind: a claim has a namespace, a PV none."""
    return "PersistentVolumeClaim" if obj["metadata"].get("namespace") else "PersistentVolume"
