"""Configuration of the cni node daemon (file + KUBEXT_CNI_* environment)."""

from __future__ import annotations

from kubext import cli


class Config(cli.ServiceConfig):
    """Every key the cni service accepts; unknown keys are errors."""

    # The unix socket the kubext-bridge launcher talks to (root only, 0600).
    socket_path: str = "/run/kubext-cni/plugin.sock"
    # Where to install the kubext-bridge launcher at start (e.g. /host/opt/cni/bin); None: don't.
    cni_bin_dir: str | None = None
    # The interpreter in the launcher's shebang, as the host sees it.
    plugin_python: str = "/usr/bin/python3"
    # Bake this process's sys.path into the launcher so it can run without the daemon.
    standalone_fallback: bool = False
    # Which launcher to install: auto (the compiled Go one when found: the image ships it at
    # /app/kubext-bridge-launcher; not with standalone_fallback), python, or a compiled one's path.
    launcher: str = "auto"
