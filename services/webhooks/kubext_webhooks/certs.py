"""Self-managed webhook PKI: a CA and a serving certificate, and when to renew each (pure).

:func:`plan` takes what is stored (or nothing) and the time, and returns what should be
stored. Renewal keeps everything in use valid: a new CA joins the trust bundle next to the
old one, and the serving certificate moves to the new CA only after the bundle has had
``ca_propagation`` to reach the API server (the old certificate is valid throughout).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, types
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Clocks of the API server and the webhook may disagree by a little.
CLOCK_SKEW = dt.timedelta(minutes=5)


class CertError(Exception):
    """Stored certificate material that cannot be used."""


@dataclass(frozen=True)
class Settings:
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()
    ca_validity: dt.timedelta = dt.timedelta(days=365)
    serving_validity: dt.timedelta = dt.timedelta(days=150)
    ca_renew_before: dt.timedelta = dt.timedelta(days=30)
    serving_renew_before: dt.timedelta = dt.timedelta(days=15)
    ca_propagation: dt.timedelta = dt.timedelta(seconds=60)

    @property
    def common_name(self) -> str:
        return (self.dns_names or self.ip_addresses or ("kubext-webhooks",))[0]


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes

    @functools.cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc


@dataclass(frozen=True)
class Bundle:
    """Everything the Secret holds: the serving pair, the signing CA, the CAs to trust."""

    serving: KeyPair
    signer: KeyPair
    trust: tuple[bytes, ...]  # CA certificates (PEM), newest first: the caBundle
    trust_updated_at: dt.datetime
    changes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def ca_bundle(self) -> bytes:
        return b"".join(self.trust)


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: the cheapest handshake Go's TLS (the API server) and OpenSSL both do fast.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_ca(settings: Settings, now: dt.datetime) -> KeyPair:
    key = _key()
    # A distinct name per CA, so a bundle holding the old and the new one stays unambiguous.
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"kubext-webhooks-ca@{int(now.timestamp())}")]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + settings.ca_validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def new_serving(settings: Settings, signer: KeyPair, now: dt.datetime) -> KeyPair:
    ca_cert = signer.cert
    ca_key = serialization.load_pem_private_key(signer.key_pem, password=None)
    key = _key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in settings.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in settings.ip_addresses]
    not_after = min(now + settings.serving_validity, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, settings.common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = set(ext.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return dns, ips


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _public(key: types.PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def split_pem(blob: bytes) -> tuple[bytes, ...]:
    """The certificates of a PEM bundle, one PEM block each."""
    marker = b"-----END CERTIFICATE-----"
    parts = [p.strip() for p in blob.split(marker) if p.strip()]
    return tuple(p + b"\n" + marker + b"\n" for p in parts)


def plan(stored: Bundle | None, settings: Settings, now: dt.datetime) -> Bundle:
    """What to store at ``now``; ``result.changes`` names what was (re)issued, empty if nothing."""
    if stored is None:
        signer = new_ca(settings, now)
        return Bundle(
            serving=new_serving(settings, signer, now),
            signer=signer,
            trust=(signer.cert_pem,),
            trust_updated_at=now,
            changes=("ca", "serving"),
        )
    changes: list[str] = []
    signer = stored.signer
    trust = [
        pem for pem in stored.trust if x509.load_pem_x509_certificate(pem).not_valid_after_utc > now
    ]
    trust_updated_at = stored.trust_updated_at
    if len(trust) != len(stored.trust):
        changes.append("trust")  # expired CAs leave the bundle
        trust_updated_at = now
    if signer.not_after - now < settings.ca_renew_before:
        signer = new_ca(settings, now)
        changes.append("ca")
    if signer.cert_pem not in trust:
        trust.insert(0, signer.cert_pem)
        trust_updated_at = now
    serving = stored.serving
    cert = serving.cert
    dns, ips = _sans(cert)
    trusted = any(_issued_by(cert, x509.load_pem_x509_certificate(pem)) for pem in trust)
    stale = (
        cert.not_valid_after_utc - now < settings.serving_renew_before
        or dns != set(settings.dns_names)
        or ips != {str(ipaddress.ip_address(ip)) for ip in settings.ip_addresses}
        or not trusted
    )
    # Move to a new CA only once the API server has had time to learn it.
    moved = not _issued_by(cert, signer.cert) and now - trust_updated_at >= settings.ca_propagation
    if stale or moved:
        serving = new_serving(settings, signer, now)
        changes.append("serving")
    return Bundle(serving, signer, tuple(trust), trust_updated_at, tuple(changes))


# Secret keys: the serving pair under the names kubernetes.io/tls requires, plus the CA.
SERVING_CERT, SERVING_KEY = "tls.crt", "tls.key"
TRUST, SIGNER_CERT, SIGNER_KEY = "ca.crt", "ca-signer.crt", "ca-signer.key"
TRUST_UPDATED_ANNOTATION = "webhooks.kubext.io/trust-updated-at"


def to_secret_data(bundle: Bundle) -> tuple[dict[str, bytes], dict[str, str]]:
    """(data, annotations) of the Secret holding ``bundle`` (data not yet base64-encoded)."""
    data = {
        SERVING_CERT: bundle.serving.cert_pem,
        SERVING_KEY: bundle.serving.key_pem,
        TRUST: bundle.ca_bundle,
        SIGNER_CERT: bundle.signer.cert_pem,
        SIGNER_KEY: bundle.signer.key_pem,
    }
    return data, {TRUST_UPDATED_ANNOTATION: bundle.trust_updated_at.isoformat()}


def from_secret_data(data: dict[str, bytes], annotations: dict[str, str]) -> Bundle:
    """The stored bundle; :class:`CertError` if anything is missing or unreadable."""
    try:
        missing = [
            k
            for k in (SERVING_CERT, SERVING_KEY, TRUST, SIGNER_CERT, SIGNER_KEY)
            if not data.get(k)
        ]
        if missing:
            raise CertError(f"missing keys {missing}")
        bundle = Bundle(
            serving=KeyPair(data[SERVING_CERT], data[SERVING_KEY]),
            signer=KeyPair(data[SIGNER_CERT], data[SIGNER_KEY]),
            trust=split_pem(data[TRUST]),
            trust_updated_at=dt.datetime.fromisoformat(annotations[TRUST_UPDATED_ANNOTATION]),
        )
        for pair in (bundle.serving, bundle.signer):
            key = serialization.load_pem_private_key(pair.key_pem, password=None)
            if _public(key.public_key()) != _public(pair.cert.public_key()):
                raise CertError("a stored key does not match its certificate")
        for pem in bundle.trust:
            x509.load_pem_x509_certificate(pem)
    except CertError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise CertError(f"unreadable certificate material: {exc}") from None
    return bundle
