"""PrioritySort: the queue pops the highest ``spec.priority`` first, then the oldest."""

from __future__ import annotations

from kubext_scheduler.framework import interfaces
from kubext_scheduler.framework.interfaces import QueuedPodInfo

NAME = "PrioritySort"


def priority(info: QueuedPodInfo) -> int:
    value = (info.pod.get("spec") or {}).get("priority")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class PrioritySort:
    name = NAME

    def less(self, a: QueuedPodInfo, b: QueuedPodInfo) -> bool:
        pa, pb = priority(a), priority(b)
        return pa > pb or (pa == pb and a.timestamp < b.timestamp)


def new(args: None) -> PrioritySort:
    return PrioritySort()


_sort: type[interfaces.QueueSortPlugin] = PrioritySort
