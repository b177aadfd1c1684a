"""The built-in provisioner's edge over a fake API and a fake driver: what one pass does (PV,
Events, DeleteVolume, finalizer), and the backoff after a failure. Fake time."""

from __future__ import annotations

import json
import types
from typing import Any

import grpc
from kubernetes import client

from kubext_proto.csi.v1 import csi_pb2

from .. import provisioner as prov
from .. import provisioning as p
from .test_provisioning import ME, claim, released_pv, storage_class, volume


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeController:
    def __init__(self) -> None:
        self.fail: RpcError | None = None
        self.calls: list[tuple[str, Any]] = []

    def CreateVolume(self, request: csi_pb2.CreateVolumeRequest, timeout: float) -> Any:
        self.calls.append(("CreateVolume", request.name))
        if self.fail:
            raise self.fail
        return csi_pb2.CreateVolumeResponse(volume=volume())

    def DeleteVolume(self, request: csi_pb2.DeleteVolumeRequest, timeout: float) -> Any:
        self.calls.append(("DeleteVolume", request.volume_id))
        if self.fail:
            raise self.fail
        return csi_pb2.DeleteVolumeResponse()


def _listing(items: list[dict[str, Any]]) -> Any:
    return lambda **_: types.SimpleNamespace(data=json.dumps({"items": items}))


class FakeApi:
    """CoreV1Api and StorageV1Api in one: lists what it holds, records what is done."""

    def __init__(self) -> None:
        self.classes = [storage_class()]
        self.claims: list[dict[str, Any]] = []
        self.volumes: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.done: list[tuple[str, Any]] = []

    def list_storage_class(self, **kw: Any) -> Any:
        return _listing(self.classes)(**kw)

    def list_persistent_volume_claim_for_all_namespaces(self, **kw: Any) -> Any:
        return _listing(self.claims)(**kw)

    def list_persistent_volume(self, **kw: Any) -> Any:
        return _listing(self.volumes)(**kw)

    def create_persistent_volume(self, body: dict[str, Any]) -> None:
        self.done.append(("create", body["metadata"]["name"]))
        self.volumes.append(body | {"metadata": body["metadata"] | {"uid": "pv-uid"}})

    def patch_persistent_volume(
        self, name: str, body: dict[str, Any], _content_type: str | None = None
    ) -> None:
        """Applies metadata.finalizers as the API server would for the patch's content type."""
        self.done.append(("patch", name, body))
        meta = next(v for v in self.volumes if v["metadata"]["name"] == name)["metadata"]
        patched = body["metadata"].get("finalizers")
        if patched is None:
            return
        if _content_type == "application/merge-patch+json":
            meta["finalizers"] = list(patched)  # RFC 7386: a list is replaced
        else:
            # The client's default for a dict body is a strategic merge patch, and ObjectMeta's
            # finalizers have patchStrategy merge: the lists are merged, nothing is removed.
            meta["finalizers"] += [f for f in patched if f not in meta["finalizers"]]

    def delete_persistent_volume(self, name: str) -> None:
        self.done.append(("delete", name))

    def patch_namespaced_persistent_volume_claim(
        self, name: str, ns: str, body: Any, _content_type: str | None = None
    ) -> None:
        self.done.append(("take", name))
        raise client.ApiException(status=409)  # another node was first

    def create_namespaced_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.events.append(body)


def provisioner_with(api: FakeApi, controller: FakeController) -> tuple[prov.Provisioner, list]:
    now = [1000.0]
    the = prov.Provisioner(
        api=client.ApiClient(), controller=controller, me=ME, clock=lambda: now[0]
    )
    the.core = the.storage = api  # type: ignore[assignment]
    return the, now


def test_a_failure_is_an_event_then_retried_after_the_backoff() -> None:
    api, controller = FakeApi(), FakeController()
    api.claims = [claim()]
    controller.fail = RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "the pool is full")
    the, now = provisioner_with(api, controller)

    the.reconcile()
    assert [e["reason"] for e in api.events] == ["Provisioning", "ProvisioningFailed"]
    failed = api.events[-1]
    assert failed["type"] == "Warning" and failed["involvedObject"]["kind"] == (
        "PersistentVolumeClaim"
    )
    assert failed["message"] == (
        'failed to provision volume with StorageClass "local": '
        "rpc error: code = RESOURCE_EXHAUSTED desc = the pool is full"
    )
    assert api.done == [], "no PV for a volume that was not created"

    the.reconcile()  # within the backoff: not tried again
    assert len(controller.calls) == 1
    now[0] += 1.0
    controller.fail = None
    the.reconcile()
    assert controller.calls == [("CreateVolume", "pvc-1234-abcd")] * 2
    assert api.done == [("create", "pvc-1234-abcd")]
    assert api.events[-1]["reason"] == "ProvisioningSucceeded"

    the.reconcile()  # the PV exists now: nothing more to do
    assert len(controller.calls) == 2


def test_a_failed_claim_deleted_since_leaves_no_retry_behind() -> None:
    api, controller = FakeApi(), FakeController()
    api.claims = [claim()]
    controller.fail = RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "the pool is full")
    the, now = provisioner_with(api, controller)
    the.reconcile()
    assert the._next_wait() == 1.0  # the claim's retry, after the initial backoff
    api.claims = []  # the user deleted it
    now[0] += 5.0
    the.reconcile()
    assert the._next_wait() == the.resync_seconds, "a gone claim's retry keeps the loop awake"


def test_a_bad_claim_is_an_event_without_calling_the_driver() -> None:
    api, controller = FakeApi(), FakeController()
    api.claims = [claim(accessModes=["ReadWriteSometimes"])]
    the, _ = provisioner_with(api, controller)
    the.reconcile()
    assert controller.calls == []
    assert api.events[-1]["reason"] == "ProvisioningFailed"
    assert "'ReadWriteSometimes'" in api.events[-1]["message"]


def test_losing_the_race_for_an_immediate_claim_is_no_error() -> None:
    api, controller = FakeApi(), FakeController()
    api.classes = [storage_class(volumeBindingMode="Immediate")]
    unclaimed = claim()
    del unclaimed["metadata"]["annotations"][p.SELECTED_NODE]
    api.claims = [unclaimed]
    the, _ = provisioner_with(api, controller)
    the.reconcile()
    assert api.done == [("take", "data")] and controller.calls == [] and api.events == []


def test_a_released_pv_loses_its_volume_its_finalizer_and_then_itself() -> None:
    api, controller = FakeApi(), FakeController()
    api.volumes = [released_pv()]
    controller.fail = RpcError(grpc.StatusCode.FAILED_PRECONDITION, "volume vol-1 is staged")
    the, now = provisioner_with(api, controller)

    the.reconcile()
    assert api.done == [], "the PV stays while its volume cannot be deleted"
    assert api.events[-1]["reason"] == "VolumeFailedDelete"
    assert api.events[-1]["involvedObject"]["kind"] == "PersistentVolume"
    assert api.events[-1]["metadata"]["namespace"] == "default"

    now[0] += 1.0
    controller.fail = None
    the.reconcile()
    assert controller.calls == [("DeleteVolume", "vol-1")] * 2
    finalizers = {"resourceVersion": "90", "finalizers": ["kubernetes.io/pv-protection"]}
    assert api.done == [
        ("patch", "pvc-1234-abcd", {"metadata": finalizers}),
        ("delete", "pvc-1234-abcd"),
    ]
    # As the API server applies the patch: ours gone, pv-protection kept.
    assert api.volumes[0]["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
