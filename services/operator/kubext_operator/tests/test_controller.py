"""The controller's queueing: which events queue which owner, and in which order they come out."""

from __future__ import annotations

import asyncio
from typing import Any

from kubext_operator import controller, store


class _NoReconciler:
    """The workers are not started here; only forget_* is called by the event paths."""

    def forget_child(self, key: store.Key) -> None:
        pass

    def forget_owner(self, uid: str) -> None:
        pass


def _webapp(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
        "spec": {"replicas": 1, "image": "nginx:1.21", "port": 8080},
    }


def _deployment(owner: str, ready: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": owner,
            "namespace": "ns",
            "uid": f"dep-{owner}",
            "generation": 1,
            "ownerReferences": [
                {"kind": "WebApp", "name": owner, "uid": f"uid-{owner}", "controller": True}
            ],
        },
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "readyReplicas": ready,
            "updatedReplicas": 1,
        },
    }


def test_an_owner_whose_child_changed_goes_before_a_burst_of_new_owners() -> None:
    async def scenario() -> list[str]:
        work = controller.Controller(
            cache=store.Store(),
            reconcile=_NoReconciler(),  # type: ignore[arg-type]
            workers=1,
        )
        work.owner_event("WebApp", _webapp("first"), deleted=False)
        first = await work.queue.get()  # its first reconcile created the Deployment
        work.queue.done(first)
        for n in range(3):
            work.owner_event("WebApp", _webapp(f"new-{n}"), deleted=False)
        work.child_upsert("Deployment", _deployment("first", ready=1))  # its rollout completed
        return [(await work.queue.get())[2] for _ in range(4)]

    assert asyncio.run(scenario()) == ["first", "new-0", "new-1", "new-2"]


def test_other_child_changes_keep_their_turn() -> None:
    """A rollout still under way, or a deleted child, queues the owner behind the others (its
    status may not be written early: Pending before Running would be one write more)."""

    async def scenario() -> list[str]:
        work = controller.Controller(
            cache=store.Store(),
            reconcile=_NoReconciler(),  # type: ignore[arg-type]
            workers=1,
        )
        for name in ("rolling", "deleted"):
            work.owner_event("WebApp", _webapp(name), deleted=False)
            work.child_upsert("Deployment", _deployment(name, ready=0))
            work.queue.done(await work.queue.get())
        work.owner_event("WebApp", _webapp("new-0"), deleted=False)
        work.child_upsert("Deployment", _deployment("rolling", ready=0))
        work.child_delete("Deployment", "ns", "deleted")
        return [(await work.queue.get())[2] for _ in range(3)]

    assert asyncio.run(scenario()) == ["new-0", "rolling", "deleted"]
