"""One server SSLContext for the life of the process, whose certificate is replaced in place.

``SSLContext.load_cert_chain`` on a live context changes what *new* handshakes present; open
connections keep the certificate they were set up with, so a rotation drops nothing. Reloads
run on the event loop thread, where the handshakes run too, so none sees a half-loaded pair.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


class ReloadableContext:
    def __init__(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION
        ctx.set_alpn_protocols(["http/1.1"])
        self.context = ctx
        self.fingerprint = ""

    @property
    def loaded(self) -> bool:
        return bool(self.fingerprint)

    def load_pem(self, cert_pem: bytes, key_pem: bytes) -> bool:
        """Serve ``cert_pem``/``key_pem`` from now on; False (and no change) if identical.

        Raises ``ssl.SSLError`` for a pair OpenSSL refuses; the previous pair stays in use.
        """
        fingerprint = hashlib.sha256(cert_pem + key_pem).hexdigest()
        if fingerprint == self.fingerprint:
            return False
        # load_cert_chain reads files; a private directory keeps the key from other users.
        with tempfile.TemporaryDirectory(prefix="kubext-webhooks-tls-") as tmp:
            cert_path, key_path = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_path.write_bytes(cert_pem)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(key_pem)
            self._check(cert_path, key_path)
            self.context.load_cert_chain(cert_path, key_path)
        self.fingerprint = fingerprint
        log.info("serving certificate loaded", extra={"sha256": fingerprint[:16]})
        return True

    def load_files(self, cert_file: str, key_file: str) -> bool:
        """Serve the pair in ``cert_file``/``key_file`` (cert-manager mode); False if unchanged."""
        return self.load_pem(Path(cert_file).read_bytes(), Path(key_file).read_bytes())

    @staticmethod
    def _check(cert_path: Path, key_path: Path) -> None:
        # Try the pair on a scratch context first: a failed load_cert_chain on the live
        # context could leave it with a certificate but no matching key.
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        probe.load_cert_chain(cert_path, key_path)
