"""The WebApp sample's web server: serves the static files of its directory on 8080 (PORT).

Standard library only (the kubext base image's Python 3.11). GET /healthz answers 200 "ok" for
probes; every other path is a file under the directory, / its index.html. One access log line
per request on stderr. SIGTERM stops it at once (a Deployment's rolling update).
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import sys
from pathlib import Path

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()


class Handler(http.server.SimpleHTTPRequestHandler):
    server_version = f"kubext-webapp-sample/{VERSION}"
    sys_version = ""

    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


def main(argv: list[str]) -> int:
    if argv[1:] == ["--version"]:
        print(f"kubext-webapp-sample {VERSION}")
        return 0
    port = int(os.environ.get("PORT", "8080"))
    root = os.environ.get("WEB_ROOT", str(Path(__file__).parent / "www"))
    handler = functools.partial(Handler, directory=root)
    server = http.server.ThreadingHTTPServer(("", port), handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"kubext-webapp-sample {VERSION}: serving {root} on :{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
