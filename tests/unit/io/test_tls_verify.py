"""Outbound TLS checks (RFC 5922, RFC 5923 §6) and send failures reported with the
sender's handle (RFC 3261 §17.1.4), over real sockets on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from rtc64.errors import ConfigError
from rtc64.io import tls
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.net.endpoint import Transport
from tests.certs import issue

from .helpers import FAST, V4, Gateway, cseq, options, port_of, wait_for

DOMAIN = "example.test"


def make_cert(where: Path, names: list[x509.GeneralName], cn: str = "server") -> Path:
    """A self-signed certificate (its own CA) with these subjectAltName entries."""
    return issue(where, "cert", cn, names=names).cert_path


SIP_NAMES: list[x509.GeneralName] = [
    x509.UniformResourceIdentifier(f"sip:{DOMAIN}"),
    x509.DNSName(f"sip.{DOMAIN}"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
]


async def _pair(
    tmp_path: Path, names: list[x509.GeneralName], policy: tls.TlsClientPolicy | None
) -> tuple[Gateway, SipTransportLayer, Gateway, SipTransportLayer, int]:
    cert = make_cert(tmp_path / "b", names)
    server = tls.server_identity(tmp_path, cert, cert.with_name("cert.key"))
    a, b = Gateway(), Gateway()
    own = tls.server_identity(tmp_path / "a")
    layer_a = a.layer(["tls:127.0.0.1:0"], server_tls=own.context, client_tls=policy, limits=FAST)
    layer_b = b.layer(["tls:127.0.0.1:0"], server_tls=server.context)
    await layer_a.start()
    await layer_b.start()
    return a, layer_a, b, layer_b, port_of(layer_b, Transport.TLS, 4)


def test_untrusted_certificate_is_refused_and_reported_with_the_handle(tmp_path: Path) -> None:
    async def main() -> None:
        a, layer_a, b, layer_b, port = await _pair(tmp_path, SIP_NAMES, tls.TlsClientPolicy())
        try:
            assert layer_a.send(options(1), Transport.TLS, V4, port, server_name=DOMAIN, handle=7)
            await wait_for(lambda: len(a.send_errors) == 1)
            failure = a.send_errors[0]
            assert failure.handle == 7 and failure.transport is Transport.TLS
            assert "certificate verify failed" in failure.reason
            assert "TLS handshake with example.test" in failure.reason
            assert b.messages == []
        finally:
            await layer_a.stop()
            await layer_b.stop()

    asyncio.run(main())


@pytest.mark.parametrize("name", [DOMAIN, f"sip.{DOMAIN}", None])
def test_ca_bundle_and_sip_domain_accepted(tmp_path: Path, name: str | None) -> None:
    """URI entry (the domain), DNS entry, and the address itself for a numeric target."""

    async def main() -> None:
        cafile = make_cert(tmp_path / "b", SIP_NAMES)  # the same key is reused below
        policy = tls.TlsClientPolicy(cafile=cafile)
        a, layer_a, b, layer_b, port = await _pair_with(tmp_path, policy)
        try:
            assert layer_a.send(options(2), Transport.TLS, V4, port, server_name=name, handle=1)
            await wait_for(lambda: len(b.messages) == 1)
            assert cseq(b.messages[0][0]) == 2 and a.send_errors == []
        finally:
            await layer_a.stop()
            await layer_b.stop()

    asyncio.run(main())


async def _pair_with(
    tmp_path: Path, policy: tls.TlsClientPolicy
) -> tuple[Gateway, SipTransportLayer, Gateway, SipTransportLayer, int]:
    cert = tmp_path / "b" / "cert.pem"
    server = tls.server_identity(tmp_path, cert, cert.with_name("cert.key"))
    a, b = Gateway(), Gateway()
    own = tls.server_identity(tmp_path / "a")
    layer_a = a.layer(["tls:127.0.0.1:0"], server_tls=own.context, client_tls=policy, limits=FAST)
    layer_b = b.layer(["tls:127.0.0.1:0"], server_tls=server.context)
    await layer_a.start()
    await layer_b.start()
    return a, layer_a, b, layer_b, port_of(layer_b, Transport.TLS, 4)


def test_name_mismatch_is_refused_before_any_byte_and_not_reused(tmp_path: Path) -> None:
    async def main() -> None:
        cafile = make_cert(tmp_path / "b", SIP_NAMES)
        a, layer_a, b, layer_b, port = await _pair_with(
            tmp_path, tls.TlsClientPolicy(cafile=cafile)
        )
        try:
            # A trusted certificate, but for another domain: refused, nothing delivered.
            assert layer_a.send(options(3), Transport.TLS, V4, port, server_name="other.test")
            await wait_for(lambda: len(a.send_errors) == 1)
            assert "certificate does not name other.test" in a.send_errors[0].reason
            # A connection verified for example.test ...
            assert layer_a.send(options(4), Transport.TLS, V4, port, server_name=DOMAIN)
            await wait_for(lambda: len(b.messages) == 1)
            # ... is not reused for other.test (same address and port): refused again.
            assert layer_a.send(options(5), Transport.TLS, V4, port, server_name="other.test")
            await wait_for(lambda: len(a.send_errors) == 2)
            assert layer_a.send(options(6), Transport.TLS, V4, port, server_name=DOMAIN)
            await wait_for(lambda: len(b.messages) == 2)
            # Addressed by IP (a Record-Route with an address): the checked connection.
            opened = layer_a.connection_count
            assert layer_a.send(options(7), Transport.TLS, V4, port)
            await wait_for(lambda: len(b.messages) == 3)
            await asyncio.sleep(0.1)
            assert [cseq(m) for m, _ in b.messages] == [4, 6, 7]
            assert layer_a.connection_count == opened
            assert len({flow.connection_id for _, flow in b.messages}) == 1
        finally:
            await layer_a.stop()
            await layer_b.stop()

    asyncio.run(main())


def test_wildcard_certificate_does_not_name_a_sip_domain(tmp_path: Path) -> None:
    async def main() -> None:
        names: list[x509.GeneralName] = [x509.DNSName(f"*.{DOMAIN}")]
        cafile = make_cert(tmp_path / "b", names)
        a, layer_a, b, layer_b, port = await _pair_with(
            tmp_path, tls.TlsClientPolicy(cafile=cafile)
        )
        try:
            assert layer_a.send(options(1), Transport.TLS, V4, port, server_name=f"a.{DOMAIN}")
            await wait_for(lambda: len(a.send_errors) == 1)
            assert "does not name" in a.send_errors[0].reason and b.messages == []
        finally:
            await layer_a.stop()
            await layer_b.stop()

    asyncio.run(main())


@pytest.mark.parametrize("policy", ["global", "domain"])
def test_opt_out_accepts_any_certificate(tmp_path: Path, policy: str) -> None:
    async def main() -> None:
        make_cert(tmp_path / "b", [x509.DNSName("unrelated.test")])
        chosen = (
            tls.TlsClientPolicy(verify=False)
            if policy == "global"
            else tls.TlsClientPolicy(no_verify=["LAB.test."])
        )
        a, layer_a, b, layer_b, port = await _pair_with(tmp_path, chosen)
        try:
            assert layer_a.send(options(1), Transport.TLS, V4, port, server_name="lab.test")
            await wait_for(lambda: len(b.messages) == 1)
            if policy == "domain":  # other names are still verified
                assert layer_a.send(options(2), Transport.TLS, V4, port, server_name=DOMAIN)
                await wait_for(lambda: len(a.send_errors) == 1)
                assert "certificate verify failed" in a.send_errors[0].reason
        finally:
            await layer_a.stop()
            await layer_b.stop()

    asyncio.run(main())


def test_policy_contexts() -> None:
    policy = tls.TlsClientPolicy(no_verify=["lab.test", "192.0.2.7"])
    assert policy.verifies("example.test") and not policy.verifies("LAB.test")
    assert not policy.verifies("192.0.2.7")
    strict = policy.context_for("example.test")
    assert strict.verify_mode.name == "CERT_REQUIRED"
    assert policy.context_for("lab.test").verify_mode.name == "CERT_NONE"
    assert policy.check_peer("lab.test", None) is None
    assert policy.check_peer("example.test", {}) is not None


def test_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError) as info:
        tls.TlsClientPolicy(cafile=tmp_path / "bad.pem")
    assert "sip.tls_ca_file" in str(info.value)


def test_refused_connect_reports_every_queued_handle() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:127.0.0.1:0"], limits=FAST)
        await layer.start()
        closed = gw.layer(["tcp:127.0.0.1:0"])
        await closed.start()
        dead = port_of(closed, Transport.TCP, 4)
        await closed.stop()
        try:
            assert layer.send(options(1), Transport.TCP, V4, dead, handle="a")
            assert layer.send(options(2), Transport.TCP, V4, dead, handle="b")
            await wait_for(lambda: len(gw.send_errors) == 2)
            assert {f.handle for f in gw.send_errors} == {"a", "b"}
            reason = gw.send_errors[0].reason
            assert reason == f"tcp connection to 127.0.0.1:{dead} failed: Connection refused"
            assert "IPv4Address" not in str(gw.send_errors[0])
        finally:
            await layer.stop()

    asyncio.run(main())


def test_websocket_without_connection_reports_the_handle() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["ws:127.0.0.1:0"])
        await layer.start()
        try:
            assert not layer.send(options(), Transport.WS, V4, 40000, handle="ws-txn")
            await wait_for(lambda: len(gw.send_errors) == 1)
            assert gw.send_errors[0].handle == "ws-txn"
            assert "no WebSocket connection" in gw.send_errors[0].reason
        finally:
            await layer.stop()

    asyncio.run(main())


def test_refusal_text_quotes_certificate_names_safely() -> None:
    policy = tls.TlsClientPolicy()
    hostile = {"subjectAltName": tuple(("DNS", f"n{i}\r\nX: y") for i in range(9))}
    why = policy.check_peer(DOMAIN, hostile)
    assert why is not None and "\r" not in why and "\n" not in why
    assert why.endswith("and 5 more)")
