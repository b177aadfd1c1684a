"""The HTTP edge and the deciders import, and answer, without the kubernetes client."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from kubext_webhooks import (
    app,
    certs,
    conversion,
    databases,
    mutation,
    podshape,
    policy,
    policy_store,
    review,
    validation,
)
from kubext_webhooks.tests import asgi, pods

WITHOUT_KUBERNETES = [
    app,
    certs,
    conversion,
    databases,
    mutation,
    podshape,
    policy,
    review,
    validation,
]


def test_the_edge_and_the_deciders_work_with_kubernetes_blocked() -> None:
    names = [module.__name__ for module in WITHOUT_KUBERNETES]
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        sys.modules["kubernetes"] = None  # any import of it now raises ImportError
        for name in {names!r}:
            __import__(name)
        from {app.__name__} import Context, create_app
        from {policy_store.__name__} import PolicyStore
        from {asgi.__name__} import call
        from {pods.__name__} import compliant_pod, review

        application = create_app(Context(policies=PolicyStore.open(None)))
        body = json.dumps(review(compliant_pod())).encode()
        status, _, out = asyncio.run(call(application, "/validate/pods", body))
        assert status == 200 and json.loads(out)["response"]["allowed"] is True, out
        assert not any(m == "kubernetes" or m.startswith("kubernetes.") for m in sys.modules
                       if sys.modules[m] is not None)
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
