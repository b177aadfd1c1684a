"""The result of a plugin at one extension point (kube-scheduler's framework.Status)."""

from __future__ import annotations

import dataclasses
import enum


class Code(enum.Enum):
    SUCCESS = "Success"
    # An internal problem (bad input, a plugin bug): the pod is retried, the node not blamed.
    ERROR = "Error"
    # The pod does not fit this node now; preemption may help.
    UNSCHEDULABLE = "Unschedulable"
    # The pod does not fit this node, and evicting pods would not change that.
    UNSCHEDULABLE_AND_UNRESOLVABLE = "UnschedulableAndUnresolvable"
    # Permit: hold the pod until allowed or timed out.
    WAIT = "Wait"
    # PreFilter/PreScore: the plugin has nothing to do for this pod (its Filter/Score is skipped);
    # Bind: the plugin leaves binding to the next binder.
    SKIP = "Skip"


@dataclasses.dataclass(frozen=True)
class Status:
    code: Code
    reasons: tuple[str, ...] = ()
    # The plugin that returned it, filled in by the runtime.
    plugin: str = ""

    @property
    def is_success(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def is_rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return dataclasses.replace(self, plugin=plugin)


SUCCESS = Status(Code.SUCCESS)
SKIP = Status(Code.SKIP)


def error(message: str) -> Status:
    return Status(Code.ERROR, (message,))


def unschedulable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE, reasons)


def unresolvable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons)


def ok(status: Status | None) -> bool:
    """Plugins return None for success, as Go plugins return a nil *Status."""
    return status is None or status.is_success
