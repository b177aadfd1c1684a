"""Wiring details of the operator process that need no API server."""

from __future__ import annotations

import asyncio

from kubext_operator import app


def test_waiting_for_stop_or_loss_leaves_no_task_behind() -> None:
    async def scenario() -> set[asyncio.Task]:
        stop, lost = asyncio.Event(), asyncio.Event()
        waiting = asyncio.ensure_future(app.first_of(stop, lost))
        await asyncio.sleep(0)
        lost.set()
        await asyncio.wait_for(waiting, timeout=1)
        await asyncio.sleep(0)  # let cancellations land
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(scenario()) == set()


def test_a_cancelled_wait_leaves_no_task_behind() -> None:
    async def scenario() -> set[asyncio.Task]:
        waiting = asyncio.ensure_future(app.first_of(asyncio.Event(), asyncio.Event()))
        await asyncio.sleep(0)
        waiting.cancel()  # kopf ended on its own: the flag is cancelled
        await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.sleep(0)
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(scenario()) == set()


def test_in_a_pod_the_api_server_is_the_kubernetes_service_address_not_its_dns_name() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert app.in_cluster_server(env) == "https://10.96.0.1:443"
    v6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert app.in_cluster_server(v6) == "https://[fd00::1]:6443"
    assert app.in_cluster_server({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}) is None
