"""Whether a Service that the API server calls (a webhook, a conversion webhook, an APIService)
exists and has a ready endpoint: judged only on a live inventory, where absent means absent."""

from __future__ import annotations

from kubext_audit.checks.model import Inventory, get, items


def service_problem(inventory: Inventory, *, namespace: str, name: str) -> str | None:
    """Why the Service cannot answer (missing, no ready endpoint), or None when it can."""
    service = inventory.get("Service", name, namespace)
    if service is None:
        return f"Service {namespace}/{name} does not exist"
    if get(service, "spec", "type") == "ExternalName":
        return None
    for endpoint_slice in inventory.of_kind("EndpointSlice"):
        meta = endpoint_slice.get("metadata") or {}
        if meta.get("namespace") != namespace:
            continue
        if (meta.get("labels") or {}).get("kubernetes.io/service-name") != name:
            continue
        for _, endpoint in items(endpoint_slice, "endpoints"):
            # An unset ready condition means ready (discovery.k8s.io/v1).
            if get(endpoint, "conditions", "ready") is not False:
                return None
    return f"Service {namespace}/{name} has no ready endpoints"
