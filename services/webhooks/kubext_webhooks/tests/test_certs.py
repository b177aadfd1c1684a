"""The self-managed PKI: renewal timing, overlap during rotation, Secret encoding, live reload."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from kubext_webhooks import app, certs, policy_store, tlsctx

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
DER = Encoding.DER
SETTINGS = certs.Settings(
    dns_names=("kubext-webhooks.kubext-system.svc",), ip_addresses=("127.0.0.1",)
)


def verifies(serving: certs.KeyPair, trust: tuple[bytes, ...], at: dt.datetime) -> bool:
    cert = serving.cert
    if not (cert.not_valid_before_utc <= at < cert.not_valid_after_utc):
        return False
    for pem in trust:
        ca = x509.load_pem_x509_certificate(pem)
        if ca.not_valid_before_utc <= at < ca.not_valid_after_utc:
            try:
                cert.verify_directly_issued_by(ca)
                return True
            except (ValueError, TypeError, InvalidSignature):
                continue
    return False


def test_first_plan_issues_a_ca_and_a_serving_cert_with_the_sans() -> None:
    bundle = certs.plan(None, SETTINGS, T0)
    assert bundle.changes == ("ca", "serving")
    assert verifies(bundle.serving, bundle.trust, T0)
    sans = bundle.serving.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["kubext-webhooks.kubext-system.svc"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert bundle.serving.not_after - T0 == dt.timedelta(days=150)
    assert certs.plan(bundle, SETTINGS, T0 + DAY).changes == ()


def test_serving_cert_renews_15_days_early_under_the_same_ca() -> None:
    first = certs.plan(None, SETTINGS, T0)
    before = certs.plan(first, SETTINGS, T0 + 134 * DAY)
    assert before.changes == ()
    renewed = certs.plan(first, SETTINGS, T0 + 136 * DAY)
    assert renewed.changes == ("serving",)
    assert renewed.signer == first.signer and renewed.trust == first.trust
    assert first.serving.not_after > T0 + 136 * DAY  # the old one is still good meanwhile


def test_ca_rollover_keeps_both_cas_trusted_and_waits_before_moving() -> None:
    settings = certs.Settings(dns_names=("svc",), ca_propagation=dt.timedelta(minutes=10))
    bundle = certs.plan(None, settings, T0)
    for day in (136, 272):  # serving renewals; the second is cut at the CA's expiry
        bundle = certs.plan(bundle, settings, T0 + day * DAY)
        assert bundle.changes == ("serving",)
    assert bundle.serving.not_after == bundle.signer.not_after
    at = T0 + 336 * DAY  # 29 days before the CA expires
    rolled = certs.plan(bundle, settings, at)
    assert rolled.changes == ("ca",)
    assert len(rolled.trust) == 2 and rolled.trust[1] == bundle.signer.cert_pem
    assert rolled.serving == bundle.serving  # still served: the new CA is not yet known
    soon = certs.plan(rolled, settings, at + dt.timedelta(minutes=5))
    assert soon.changes == ()
    moved = certs.plan(rolled, settings, at + dt.timedelta(minutes=11))
    assert moved.changes == ("serving",)
    moved.serving.cert.verify_directly_issued_by(rolled.signer.cert)
    expired = certs.plan(moved, settings, T0 + 366 * DAY)
    assert expired.changes == ("trust",) and expired.trust == (rolled.signer.cert_pem,)


def test_san_change_reissues() -> None:
    bundle = certs.plan(None, SETTINGS, T0)
    other = certs.Settings(dns_names=("new.ns.svc",))
    assert certs.plan(bundle, other, T0 + DAY).changes == ("serving",)


def test_a_year_in_two_hour_steps_never_serves_an_untrusted_cert() -> None:
    """Safety over many rotations: whatever is served verifies against a bundle published
    at least ``ca_propagation`` earlier (what the API server may still hold)."""
    settings = certs.Settings(
        dns_names=("svc",),
        ca_validity=dt.timedelta(days=40),
        serving_validity=dt.timedelta(days=10),
        ca_renew_before=dt.timedelta(days=8),
        serving_renew_before=dt.timedelta(days=3),
        ca_propagation=dt.timedelta(hours=4),
    )
    step = dt.timedelta(hours=2)
    now = T0
    bundle = certs.plan(None, settings, now)
    published: list[tuple[dt.datetime, tuple[bytes, ...]]] = [(now, bundle.trust)]
    rotations = 0
    while now < T0 + 365 * DAY:
        now += step
        bundle = certs.plan(bundle, settings, now)
        rotations += "serving" in bundle.changes
        if published[-1][1] != bundle.trust:
            published.append((now, bundle.trust))
        # The API server may still use any bundle from the last propagation window.
        window = [trust for at, trust in published if at > now - settings.ca_propagation]
        older = [trust for at, trust in published if at <= now - settings.ca_propagation]
        for trust in [*window, older[-1]] if older else window:
            assert verifies(bundle.serving, trust, now), f"untrusted at {now}"
    assert rotations > 40


def test_secret_round_trip_and_corruption() -> None:
    bundle = certs.plan(None, SETTINGS, T0)
    data, annotations = certs.to_secret_data(bundle)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "ca-signer.crt", "ca-signer.key"}
    assert certs.from_secret_data(data, annotations) == bundle
    with pytest.raises(certs.CertError, match="missing keys"):
        certs.from_secret_data({**data, "tls.key": b""}, annotations)
    other = certs.plan(None, SETTINGS, T0)
    with pytest.raises(certs.CertError, match="does not match"):
        certs.from_secret_data({**data, "tls.key": other.serving.key_pem}, annotations)
    with pytest.raises(certs.CertError, match="unreadable"):
        certs.from_secret_data({**data, "ca.crt": b"garbage"}, annotations)


# --- live reload through uvicorn -------------------------------------------------------


class LiveServer:
    """The real app on a background thread, TLS from a ReloadableContext."""

    def __init__(self, tls: tlsctx.ReloadableContext) -> None:
        self.tls = tls
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        ctx = app.Context(policies=policy_store.PolicyStore.open(None))
        self.server = uvicorn.Server(
            uvicorn.Config(
                app.create_app(ctx),
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                lifespan="off",
                ssl_context_factory=lambda *_: tls.context,
                access_log=False,
            )
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            threading.Event().wait(0.02)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    def on_loop(self, fn, *args):
        async def call():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(5)


@pytest.fixture
def live() -> Iterator[tuple[LiveServer, certs.Bundle]]:
    bundle = certs.plan(None, SETTINGS, dt.datetime.now(dt.UTC))
    tls = tlsctx.ReloadableContext()
    tls.load_pem(bundle.serving.cert_pem, bundle.serving.key_pem)
    with LiveServer(tls) as server:
        yield server, bundle


def _client(trust: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=trust.decode())


def test_reload_changes_new_handshakes_and_keeps_open_connections(live) -> None:
    server, bundle = live
    old = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=_client(bundle.ca_bundle), timeout=5
    )
    old.request("GET", "/healthz")
    assert old.getresponse().read() == b"ok\n"
    first_cert = old.sock.getpeercert(binary_form=True)

    # A new SAN forces a new serving certificate from the same CA.
    wider = certs.Settings(
        dns_names=(*SETTINGS.dns_names, "extra.svc"), ip_addresses=("127.0.0.1",)
    )
    rotated = certs.plan(bundle, wider, dt.datetime.now(dt.UTC))
    assert rotated.changes == ("serving",)
    assert server.on_loop(server.tls.load_pem, rotated.serving.cert_pem, rotated.serving.key_pem)
    assert not server.on_loop(
        server.tls.load_pem, rotated.serving.cert_pem, rotated.serving.key_pem
    )

    old.request("GET", "/healthz")  # same connection, still the first certificate
    assert old.getresponse().read() == b"ok\n"
    assert old.sock.getpeercert(binary_form=True) == first_cert
    new = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=_client(bundle.ca_bundle), timeout=5
    )
    new.request("GET", "/readyz")
    assert new.getresponse().status == 200
    assert new.sock.getpeercert(binary_form=True) != first_cert
    assert new.sock.getpeercert(binary_form=True) == rotated.serving.cert.public_bytes(DER)
    old.close()
    new.close()


def test_a_bad_pair_is_refused_and_the_old_one_stays(live) -> None:
    server, bundle = live
    other = certs.plan(None, SETTINGS, dt.datetime.now(dt.UTC))
    with pytest.raises(ssl.SSLError):
        server.on_loop(server.tls.load_pem, bundle.serving.cert_pem, other.serving.key_pem)
    conn = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=_client(bundle.ca_bundle), timeout=5
    )
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_below_1_2_is_refused(live, version) -> None:
    server, bundle = live
    ctx = _client(bundle.ca_bundle)
    try:
        ctx.minimum_version = version
        ctx.maximum_version = version
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer old TLS")
    with (
        pytest.raises((ssl.SSLError, ConnectionError)),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
    ):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
