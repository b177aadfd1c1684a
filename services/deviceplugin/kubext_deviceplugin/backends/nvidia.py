"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` binding, module ``pynvml``).

IDs are the GPU (or MIG device) UUIDs; NUMA nodes come from sysfs by PCI bus ID; health comes
from NVML's critical-Xid events, with NVIDIA's device plugin's policy: the Xids an application
causes (13, 31, 43, 45, 68, 109) leave the GPU healthy, any other critical Xid marks it Unhealthy.
The binding is imported only when this backend is chosen (it is in the lockfile); an
environment without it gets one clear error. Tests pass a fake binding (``nvml=``).
"""

from __future__ import annotations

import logging
import os
import threading
from types import ModuleType
from typing import Any

from ..config import NvidiaConfig
from ..core import model

log = logging.getLogger(__name__)
# Xids caused by applications, not by the GPU (NVIDIA k8s-device-plugin's default skip list).
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})
EVENT_WAIT_MS = 200  # short, so close() is prompt; events queue in NVML meanwhile
CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


class NvmlMissing(RuntimeError):
    pass


def import_nvml() -> ModuleType:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        raise NvmlMissing(
            "backend nvidia needs the nvidia-ml-py package (module pynvml), which this build "
            "does not include; use backend simulated or generic"
        ) from None
    return pynvml  # type: ignore[no-any-return]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def sysfs_bus_id(nvml_bus_id: str) -> str:
    """NVML's ``00000000:3B:00.0`` -> sysfs's ``0000:3b:00.0``."""
    domain, rest = nvml_bus_id.split(":", 1)
    return f"{int(domain, 16):04x}:{rest.lower()}"


class Nvidia:
    def __init__(
        self, cfg: NvidiaConfig, *, nvml: Any = None, sysfs: str = "/sys", start: bool = True
    ) -> None:
        self._cfg = cfg
        self._nvml = nvml if nvml is not None else import_nvml()
        self._sysfs = sysfs
        self._skip = APPLICATION_XIDS | set(cfg.ignored_xids)
        self._unhealthy: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._nvml.nvmlInit()
        self._events = self._register_events()
        self._thread = threading.Thread(target=self._watch, name="nvml-events", daemon=True)
        if start:
            self._thread.start()

    def _numa(self, handle: Any) -> int | None:
        bus_id = _text(self._nvml.nvmlDeviceGetPciInfo(handle).busId)
        path = os.path.join(self._sysfs, "bus/pci/devices", sysfs_bus_id(bus_id), "numa_node")
        try:
            with open(path) as fh:
                node = int(fh.read().strip())
        except (OSError, ValueError):
            return None
        return node if node >= 0 else None

    def _gpus(self) -> list[Any]:
        nvml = self._nvml
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]

    def _mig_devices(self, handle: Any) -> list[Any]:
        nvml = self._nvml
        if not self._cfg.mig:
            return []
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        except nvml.NVMLError:  # not MIG-capable
            return []
        if current != nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        found = []
        for i in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                found.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i))
            except nvml.NVMLError:  # an empty slot
                continue
        return found

    def _register_events(self) -> Any:
        nvml = self._nvml
        events = nvml.nvmlEventSetCreate()
        for handle in self._gpus():
            try:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, events)
            except nvml.NVMLError as exc:  # no events from this GPU: treat it as broken
                log.warning("GPU does not report Xid events: %s", exc)
                self._unhealthy.add(_text(nvml.nvmlDeviceGetUUID(handle)))
        return events

    def handle_event(self, event: Any) -> None:
        """One NVML event: a critical Xid outside the skip list marks its GPU (or all) Unhealthy."""
        nvml = self._nvml
        if event.eventType != nvml.nvmlEventTypeXidCriticalError or event.eventData in self._skip:
            return
        if event.device is None:
            uuids = {_text(nvml.nvmlDeviceGetUUID(h)) for h in self._gpus()}
        else:
            uuids = {_text(nvml.nvmlDeviceGetUUID(event.device))}
        log.warning("critical Xid %s: marking %s Unhealthy", event.eventData, sorted(uuids))
        with self._lock:
            self._unhealthy |= uuids

    def _watch(self) -> None:
        nvml = self._nvml
        while not self._stop.is_set():
            try:
                self.handle_event(nvml.nvmlEventSetWait_v2(self._events, EVENT_WAIT_MS))
            except nvml.NVMLError_Timeout:
                continue
            except nvml.NVMLError as exc:  # NVML itself failing: nothing is known to be healthy
                log.error("waiting for NVML events failed: %s", exc)
                with self._lock:
                    self._unhealthy |= {_text(nvml.nvmlDeviceGetUUID(h)) for h in self._gpus()}
                self._stop.wait(1)

    def scan(self) -> model.Inventory:
        nvml = self._nvml
        root = self._cfg.driver_root.rstrip("/")
        control = tuple(
            model.DeviceNode(p, p, "rw") for p in CONTROL_NODES if os.path.exists(root + p)
        )
        with self._lock:
            unhealthy = set(self._unhealthy)
        devices = []
        for gpu in self._gpus():
            uuid = _text(nvml.nvmlDeviceGetUUID(gpu))
            node = f"/dev/nvidia{nvml.nvmlDeviceGetMinorNumber(gpu)}"
            nodes = (model.DeviceNode(node, node, "rw"), *control)
            numa = self._numa(gpu)
            migs = self._mig_devices(gpu)
            for handle in migs or [gpu]:
                device_id = _text(nvml.nvmlDeviceGetUUID(handle))
                devices.append(
                    model.Device(
                        device_id,
                        healthy=uuid not in unhealthy and device_id not in unhealthy,
                        numa_node=numa,
                        nodes=nodes,
                    )
                )
        return model.Inventory.of(devices)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        try:
            self._nvml.nvmlEventSetFree(self._events)
        finally:
            self._nvml.nvmlShutdown()
