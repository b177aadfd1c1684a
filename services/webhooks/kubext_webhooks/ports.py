"""What the HTTP edge needs from the adapters, as interfaces: so it imports none of them.

:mod:`kube` (the Kubernetes client) and :mod:`policy_store` (the policy file) implement these;
tests pass their own. With them here, ``app`` and the deciders import without the
``kubernetes`` package and without touching the filesystem.
"""

from __future__ import annotations

from typing import Protocol

from kubext_webhooks import policy


class KubeError(Exception):
    """An API call failed; the message says which object and why."""


class NamespaceLookup(Protocol):
    async def get(self, name: str) -> dict[str, str]:
        """The labels of Namespace ``name`` ({} if it does not exist); :class:`KubeError` if
        they cannot be known."""
        ...


class PolicySource(Protocol):
    @property
    def policy(self) -> policy.PodPolicy:
        """The pod policy in force now."""
        ...
