"""Certificates for the local control plane: one CA, the API server's serving cert, client certs."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = datetime.timedelta(days=365)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# The real node's address (kubext_rig.node.NODE_IP): the API server serves there too when a real
# node runs, so every serving certificate names it.
NODE_IP = "10.255.255.1"
_SERVER_IPS = ("127.0.0.1", "10.0.0.1", NODE_IP)


def create(pki: Path) -> None:
    """Write ca, apiserver, admin, controller-manager, scheduler certs and the SA key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("kubext-rig-ca"))
        .issuer_name(_name("kubext-rig-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(ca_key, pki / "ca.key")
    _write_cert(ca, pki / "ca.crt")
    issue(pki, "apiserver", "kube-apiserver", None, server=True)
    issue(pki, "admin", "kubext-admin", "system:masters")
    issue(pki, "controller-manager", "system:kube-controller-manager", None)
    issue(pki, "scheduler", "system:kube-scheduler", None)
    issue(pki, "kwok", "kwok-controller", "system:masters")
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(sa, pki / "sa.key")
    (pki / "sa.pub").write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def issue(pki: Path, stem: str, cn: str, org: str | None, *, server: bool = False) -> None:
    """Sign ``<stem>.crt``/``.key`` with the CA in ``pki``: a client cert (CN user, O group), or
    with ``server`` the API server's serving cert (its DNS names and _SERVER_IPS)."""
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        sans: list[x509.GeneralName] = [
            x509.DNSName(n)
            for n in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in _SERVER_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(key, pki / f"{stem}.key")
    _write_cert(builder.sign(ca_key, hashes.SHA256()), pki / f"{stem}.crt")


def serves_ip(pki: Path, stem: str, ip: str) -> bool:
    """Whether ``<stem>.crt`` names ``ip`` (a state dir's certs may predate NODE_IP)."""
    cert = x509.load_pem_x509_certificate((pki / f"{stem}.crt").read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return ipaddress.ip_address(ip) in sans.get_values_for_type(x509.IPAddress)


def kubeconfig(*, server: str, pki: Path, user: str) -> str:
    """A kubeconfig for ``user`` (a cert stem under ``pki``) against ``server``."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: kubext
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
contexts:
- name: kubext
  context: {{cluster: kubext, user: {user}}}
current-context: kubext
"""
