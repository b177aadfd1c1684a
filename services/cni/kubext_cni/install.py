"""Install the kubext-bridge launcher into a CNI bin directory.

``python -m kubext_cni.install --bin-dir /opt/cni/bin [--python P] [--socket S] [--standalone]
[--launcher auto|python|PATH]``

The launcher is the compiled one (``golauncher``: ``--launcher PATH``, or with ``auto`` the
first ``golauncher.find()`` finds) with the socket path patched in, else ``shim.py`` with
its constants filled in. ``--standalone`` (Python only) also bakes this interpreter's
``sys.path`` into it, so it runs the plugin in-process when no daemon answers (only useful
where the package is on the same filesystem, e.g. development and tests).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kubext_cni import golauncher, shim
from kubext_cni.core import versions

PLUGIN_NAME = "kubext-bridge"
DEFAULT_SOCKET = "/run/kubext-cni/plugin.sock"


def render(*, python: str, socket_path: str, fallback_path: Sequence[str] = ()) -> str:
    """The launcher's text: the shim template with shebang and constants replaced."""
    template = Path(shim.__file__).read_text()
    lines = template.splitlines(keepends=True)
    lines[0] = f"#!{python} -SI\n"
    text = "".join(lines)
    replacements = {
        'SOCKET = "/run/kubext-cni/plugin.sock"\n': f"SOCKET = {socket_path!r}\n",
        "FALLBACK_PATH: list = []\n": f"FALLBACK_PATH: list = {list(fallback_path)!r}\n",
        'SUPPORTED = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]\n': (
            f"SUPPORTED = {list(versions.SUPPORTED)!r}\n"
        ),
    }
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"shim template lost its {old.split('=')[0].strip()} line")
        text = text.replace(old, new, 1)
    return text


def install(
    bin_dir: str,
    *,
    python: str = sys.executable,
    socket_path: str = DEFAULT_SOCKET,
    standalone: bool = False,
    name: str = PLUGIN_NAME,
    compiled: str | None = None,
) -> str:
    """Write the launcher atomically (a runtime may exec it at any moment); return its path.

    ``compiled``: the Go launcher's path, installed instead of the Python one (not with
    ``standalone``: the in-process fallback is Python's).
    """
    if compiled and standalone:
        raise ValueError("the in-process fallback (standalone) needs the Python launcher")
    if compiled:
        content = golauncher.patched(Path(compiled).read_bytes(), socket_path)
    else:
        fallback = [p for p in sys.path if p] if standalone else []
        content = render(python=python, socket_path=socket_path, fallback_path=fallback).encode()
    os.makedirs(bin_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=bin_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, 0o755)
        target = os.path.join(bin_dir, name)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubext-cni-install", description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", required=True, help="CNI bin directory, e.g. /opt/cni/bin")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the shebang")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help="the daemon's plugin socket")
    parser.add_argument("--standalone", action="store_true", help="in-process fallback")
    parser.add_argument(
        "--launcher",
        default="auto",
        help="auto (the compiled one if found, unless --standalone), python, or a compiled one's path",
    )
    args = parser.parse_args(argv)
    print(
        install(
            args.bin_dir,
            python=args.python,
            socket_path=args.socket,
            standalone=args.standalone,
            compiled=pick_launcher(args.launcher, standalone=args.standalone),
        )
    )
    return 0


def pick_launcher(choice: str | None, *, standalone: bool) -> str | None:
    """``auto``/None: the compiled launcher if one is found and not standalone; ``python``:
    none; anything else: that compiled launcher's path."""
    if choice in (None, "auto"):
        return None if standalone else golauncher.find()
    if choice == "python":
        return None
    return choice


if __name__ == "__main__":
    sys.exit(main())
