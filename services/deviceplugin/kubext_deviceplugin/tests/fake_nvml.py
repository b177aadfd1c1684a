"""A fake of the ``pynvml`` binding: the calls the NVIDIA backend makes, over plain records."""

from __future__ import annotations

import dataclasses
import queue
import types
from typing import Any


class NVMLError(Exception):
    pass


class NVMLError_Timeout(NVMLError):  # - pynvml's naming
    pass


@dataclasses.dataclass
class Gpu:
    uuid: str
    minor: int
    bus_id: str
    mig: list[str] | None = None  # MIG device UUIDs when MIG mode is on


@dataclasses.dataclass
class Event:
    eventType: int  # - pynvml's naming
    eventData: int
    device: Any


def fake(gpus: list[Gpu]) -> types.SimpleNamespace:
    """A module-like object; ``.events`` is the queue nvmlEventSetWait_v2 reads."""
    events: queue.Queue[Event] = queue.Queue()
    xid = 8

    def wait(_set: object, timeout_ms: int) -> Event:
        try:
            return events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise NVMLError_Timeout() from None

    def mig_mode(gpu: Gpu) -> tuple[int, int]:
        return (1, 1) if gpu.mig is not None else (0, 0)

    def mig_handle(gpu: Gpu, i: int) -> Gpu:
        if gpu.mig is None or i >= len(gpu.mig):
            raise NVMLError("not found")
        return Gpu(gpu.mig[i], gpu.minor, gpu.bus_id)

    return types.SimpleNamespace(
        events=events,
        NVMLError=NVMLError,
        NVMLError_Timeout=NVMLError_Timeout,
        NVML_DEVICE_MIG_ENABLE=1,
        nvmlEventTypeXidCriticalError=xid,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: gpus[i],
        nvmlDeviceGetUUID=lambda h: h.uuid,
        nvmlDeviceGetMinorNumber=lambda h: h.minor,
        nvmlDeviceGetPciInfo=lambda h: types.SimpleNamespace(busId=h.bus_id.encode()),
        nvmlDeviceGetMigMode=mig_mode,
        nvmlDeviceGetMaxMigDeviceCount=lambda h: 7,
        nvmlDeviceGetMigDeviceHandleByIndex=mig_handle,
        nvmlEventSetCreate=lambda: object(),
        nvmlEventSetFree=lambda s: None,
        nvmlDeviceRegisterEvents=lambda h, t, s: None,
        nvmlEventSetWait_v2=wait,
    )
