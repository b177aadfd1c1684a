"""The gRPC edge: the DevicePlugin servicer over one resource's shared inventory state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import grpc
import prometheus_client

from kubext_proto.deviceplugin.v1beta1 import api_pb2, api_pb2_grpc

from .core import allocation, model
from .core.errors import PluginError

log = logging.getLogger(__name__)
ALLOCATIONS = prometheus_client.Counter(
    "kubext_deviceplugin_allocations_total",
    "Allocate calls (one per container request), by resource and result (OK or the gRPC code).",
    ["resource", "result"],
)
WATCH_WAKE_SECONDS = 0.5  # how often an idle ListAndWatch checks that its stream is still wanted


class ResourceState:
    """One resource's inventory, shared by discovery (the one writer) and the servicer (readers).

    Readers take no lock: the inventory is immutable and swapped as one reference, so Allocate
    never waits behind a scan (on busy cores a scan holding a lock could be descheduled for ms).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._inventory = model.Inventory()
        self._version = 0

    def update(self, inventory: model.Inventory) -> bool:
        """Store a scan's result; True (and every watcher woken) when it differs."""
        if inventory == self._inventory and self._version:  # the writer's own read: no lock
            return False
        with self._changed:
            self._inventory, self._version = inventory, self._version + 1
            self._changed.notify_all()
            return True

    def snapshot(self) -> model.Inventory:
        return self._inventory

    def wait(
        self, seen: int, timeout: float, stopping: threading.Event | None = None
    ) -> tuple[model.Inventory, int]:
        """The inventory and its version, once the version is no longer ``seen``, ``stopping``
        is set and wake() was called, or ``timeout`` passed."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._version != seen or (stopping is not None and stopping.is_set()),
                timeout=timeout,
            )
            return self._inventory, self._version

    def wake(self) -> None:
        """Wake every waiter to look at its ``stopping`` again."""
        with self._changed:
            self._changed.notify_all()


def _devices(inventory: model.Inventory) -> list[api_pb2.Device]:
    out = []
    for d in inventory.devices:
        device = api_pb2.Device(ID=d.id, health=d.health)
        if d.numa_node is not None:
            device.topology.nodes.add(ID=d.numa_node)
        out.append(device)
    return out


# Distinct ID lists answered from the cache per inventory; past this the cache starts again.
RESPONSE_CACHE_SIZE = 1024
_Answers = dict[tuple[str, ...], api_pb2.ContainerAllocateResponse]


def _container_response(got: allocation.ContainerAllocation) -> api_pb2.ContainerAllocateResponse:
    return api_pb2.ContainerAllocateResponse(
        envs=got.envs,
        annotations=got.annotations,
        mounts=[
            api_pb2.Mount(
                container_path=m.container_path, host_path=m.host_path, read_only=m.read_only
            )
            for m in got.mounts
        ],
        devices=[
            api_pb2.DeviceSpec(
                container_path=n.container_path, host_path=n.host_path, permissions=n.permissions
            )
            for n in got.devices
        ],
        cdi_devices=[api_pb2.CDIDevice(name=name) for name in got.cdi_devices],
    )


class DevicePluginServicer(api_pb2_grpc.DevicePluginServicer):
    """validate -> look up in a snapshot -> answer; the core decides, this only translates."""

    def __init__(
        self,
        *,
        resource: str,
        state: ResourceState,
        options: allocation.AllocateOptions,
        pre_start_required: bool,
        preferred_allocation: bool,
        stopping: threading.Event,
    ) -> None:
        self._resource = resource
        self._state = state
        self._options = options
        self._plugin_options = api_pb2.DevicePluginOptions(
            pre_start_required=pre_start_required,
            get_preferred_allocation_available=preferred_allocation,
        )
        self._stopping = stopping
        self._allocated_ok = ALLOCATIONS.labels(resource, "OK")
        # Allocate is a pure function of the inventory and the IDs: answers are kept per
        # inventory (swapped whole when it changes), so a repeated request costs a lookup.
        self._answers: tuple[model.Inventory, _Answers] = (model.Inventory(), {})

    def GetDevicePluginOptions(self, request, context):  # - gRPC's naming
        return self._plugin_options

    def ListAndWatch(self, request, context) -> Iterator[api_pb2.ListAndWatchResponse]:
        seen = 0
        while context.is_active() and not self._stopping.is_set():
            inventory, version = self._state.wait(seen, WATCH_WAKE_SECONDS, self._stopping)
            if self._stopping.is_set():
                return
            if version != seen:  # the whole list, at start and after every change
                seen = version
                yield api_pb2.ListAndWatchResponse(devices=_devices(inventory))

    def _answer(
        self, inventory: model.Inventory, ids: tuple[str, ...]
    ) -> api_pb2.ContainerAllocateResponse:
        cached_for, answers = self._answers
        if cached_for is not inventory or len(answers) >= RESPONSE_CACHE_SIZE:
            answers = {}
            self._answers = (inventory, answers)
        response = answers.get(ids)
        if response is None:  # raises PluginError for bad IDs (never cached)
            response = _container_response(allocation.allocate(inventory, ids, self._options))
            answers[ids] = response
        return response

    def Allocate(self, request, context):
        inventory = self._state.snapshot()
        responses = []
        for req in request.container_requests:
            try:
                responses.append(self._answer(inventory, tuple(req.devices_ids)))
            except PluginError as exc:
                ALLOCATIONS.labels(self._resource, exc.code.name).inc()
                log.info("allocate refused", extra={"resource": self._resource, "error": str(exc)})
                context.abort(grpc.StatusCode[exc.code.name], exc.message)
            self._allocated_ok.inc()
        return api_pb2.AllocateResponse(container_responses=responses)

    def GetPreferredAllocation(self, request, context):
        if not self._plugin_options.get_preferred_allocation_available:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "preferred allocation is turned off")
        inventory = self._state.snapshot()
        answers = [
            api_pb2.ContainerPreferredAllocationResponse(
                deviceIDs=allocation.preferred(
                    inventory,
                    list(req.available_deviceIDs),
                    list(req.must_include_deviceIDs),
                    req.allocation_size,
                )
            )
            for req in request.container_requests
        ]
        return api_pb2.PreferredAllocationResponse(container_responses=answers)

    def PreStartContainer(self, request, context):
        try:
            allocation.check(self._state.snapshot(), list(request.devices_ids))
        except PluginError as exc:
            context.abort(grpc.StatusCode[exc.code.name], exc.message)
        return api_pb2.PreStartContainerResponse()
