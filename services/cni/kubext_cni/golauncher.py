"""The compiled kubext-bridge launcher (``golauncher/main.go``): find it, build it, patch it.

The Go launcher speaks the Python launcher's protocol (``shim``) but starts in ~2 ms where
``python3 -SI`` needs 10 ms on a quiet node (50 ms under load), which alone is most of the
reference bridge's budget. Install copies it with the daemon's socket path written into
a NUL-padded field after ``MARKER``. ``rig/build.sh cni-launcher`` and ``build()`` cache it
under ``~/.cache/kubext/bin/cni-launcher-<hash of go.mod and *.go>`` (the same hash).

``python -m kubext_cni.golauncher`` builds it (if missing) and prints its path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_DIR = Path(__file__).parent / "golauncher"
MARKER = b"KXSOCK1:"
FIELD_SIZE = 256
BINARY_NAME = "kubext-bridge"
# Where the cni image ships the compiled launcher (the daemon installs it when present).
SHIPPED = "/app/kubext-bridge-launcher"


def source_hash() -> str:
    """sha256 of go.mod then the *.go files (sorted), 12 hex: rig/build.sh's cache key."""
    digest = hashlib.sha256((SOURCE_DIR / "go.mod").read_bytes())
    for path in sorted(SOURCE_DIR.glob("*.go")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_dir() -> Path:
    root = os.environ.get("KUBEXT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache/kubext")
    return Path(root) / "bin" / f"cni-launcher-{source_hash()}"


def _go() -> str | None:
    return shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(p, os.X_OK)), None
    )


def build() -> str | None:
    """The cached compiled launcher, built first if missing; None when there is no Go."""
    target = cache_dir() / BINARY_NAME
    if target.exists():
        return str(target)
    go = _go()
    if go is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build.", dir=target.parent)
    try:
        env = dict(
            os.environ,
            CGO_ENABLED="0",
            GOTOOLCHAIN="local",
            GOFLAGS="-mod=mod",
            GOPROXY="off",  # standard library only: nothing to download
            GOCACHE=os.environ.get("GOCACHE") or str(target.parent.parent.parent / "go-build"),
            HOME=os.environ.get("HOME") or os.path.expanduser("~"),
        )
        out = os.path.join(tmp, BINARY_NAME)
        subprocess.run(
            [go, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "."],
            cwd=SOURCE_DIR,
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        os.replace(out, target)  # atomic: a concurrent build wins or loses whole
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def find() -> str | None:
    """A compiled launcher to install: ``KUBEXT_CNI_LAUNCHER``, the image's, else the cache's."""
    for candidate in (
        os.environ.get("KUBEXT_CNI_LAUNCHER"),
        SHIPPED,
        str(cache_dir() / BINARY_NAME),
    ):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def patched(binary: bytes, socket_path: str) -> bytes:
    """The launcher with ``socket_path`` in its field; ValueError if it cannot hold it."""
    encoded = socket_path.encode()
    if not encoded or len(encoded) >= FIELD_SIZE or b"\x00" in encoded:
        raise ValueError(f"socket path must be 1..{FIELD_SIZE - 1} bytes without NUL")
    at = binary.find(MARKER)
    if at < 0 or binary.find(MARKER, at + 1) >= 0:
        raise ValueError("not a kubext-bridge compiled launcher (socket field marker)")
    start = at + len(MARKER)
    field = encoded + b"\x00" * (FIELD_SIZE - len(encoded))
    return binary[:start] + field + binary[start + FIELD_SIZE :]


if __name__ == "__main__":
    built = build()
    if built is None:
        print("no Go toolchain: the Python launcher will be installed", file=sys.stderr)
        sys.exit(1)
    print(built)
