"""RFC 5923 connection reuse between servers over mutual TLS, on loopback sockets: an
alias is recorded only for a Via host the client's verified certificate names, requests
to that host then go over the client's connection, and the alias leaves with it."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from rtc64.errors import ConfigError
from rtc64.io import tls
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.io.tls_aliases import MAX_ALIASES
from rtc64.net.endpoint import Transport
from tests.certs import issue

from .helpers import FAST, V4, Gateway, cseq, port_of, wait_for

A_NAME = "a.example.test"
NO_ONE = 5061  # nothing listens here on loopback: a new connection to it fails


def request(n: int, host: str, *, alias: bool = True, transport: str = "TLS") -> bytes:
    via = f"SIP/2.0/{transport} {host};branch=z9hG4bK-{n};rport" + (";alias" if alias else "")
    return (
        f"OPTIONS sip:b.example.test SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
        f"To: <sip:b.example.test>\r\nFrom: <sip:a@{A_NAME}>;tag={n}\r\n"
        f"Call-ID: alias-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Lab:
    """Server B (asks for client certificates, trusting ``trusted``) and a client A."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        b_names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        self.b_cert = issue(tmp_path, "b", "b", names=b_names).cert_path
        self.a_cert = issue(tmp_path, "a", "a", names=[x509.DNSName(A_NAME)]).cert_path
        self.evil_cert = issue(
            tmp_path, "evil", "evil", names=[x509.DNSName("evil.test")]
        ).cert_path
        self.ca = tmp_path / "clients.pem"  # A and evil both chain to a trusted anchor
        self.ca.write_bytes(self.a_cert.read_bytes() + self.evil_cert.read_bytes())
        self.a, self.b = Gateway(), Gateway()

    async def server(self, transport: str = "tls") -> tuple[SipTransportLayer, int]:
        server = tls.server_identity(
            self.tmp, self.b_cert, self.b_cert.with_suffix(".key"), client_ca=self.ca
        )
        layer = self.b.layer([f"{transport}:127.0.0.1:0"], server_tls=server.context, limits=FAST)
        await layer.start()
        return layer, port_of(layer, Transport(transport), 4)

    async def client(self, cert: Path | None) -> SipTransportLayer:
        pair = None if cert is None else (cert, cert.with_suffix(".key"))
        policy = tls.TlsClientPolicy(cafile=self.b_cert, certificate=pair)
        own = tls.server_identity(self.tmp / "own")
        layer = self.a.layer(["tls:127.0.0.1:0"], server_tls=own.context, client_tls=policy)
        await layer.start()
        return layer


def test_verified_alias_carries_requests_back_over_the_clients_connection(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        lab = Lab(tmp_path)
        layer_b, port = await lab.server()
        layer_a = await lab.client(lab.a_cert)
        try:
            assert layer_a.send(request(1, f"{A_NAME}:{NO_ONE}"), Transport.TLS, V4, port)
            await wait_for(lambda: len(lab.b.messages) == 1)
            conn_id = lab.b.messages[0][1].connection_id
            assert layer_b.aliases() == {(A_NAME, NO_ONE): conn_id}
            # B -> A for A's SIP domain at its Via port: over A's own connection, not a
            # new one (nothing listens on that port, so a new connection would fail).
            assert layer_b.send(request(2, "b"), Transport.TLS, V4, NO_ONE, server_name=A_NAME)
            await wait_for(lambda: len(lab.a.messages) == 1)
            assert cseq(lab.a.messages[0][0]) == 2 and lab.b.send_errors == []
            assert layer_b.connection_count == 1 and layer_a.connection_count == 1
            assert layer_b.stats.aliases == 1 and layer_b.stats.alias_reuses == 1
            # The alias leaves with the connection: the next send tries a new one and fails.
            layer_a.connection(next(iter(layer_a._conns))).close()  # type: ignore[union-attr]
            await wait_for(lambda: layer_b.connection_count == 0)
            assert layer_b.aliases() == {}
            layer_b.send(request(3, "b"), Transport.TLS, V4, NO_ONE, server_name=A_NAME)
            await wait_for(lambda: len(lab.b.send_errors) == 1)
            assert len(lab.a.messages) == 1
        finally:
            await layer_a.stop()
            await layer_b.stop()

    asyncio.run(main())


@pytest.mark.parametrize("who", ["no certificate", "another server's certificate", "no alias"])
def test_attacker_cannot_capture_another_servers_requests(tmp_path: Path, who: str) -> None:
    """A client without a certificate, or with a trusted one naming someone else, sends
    ``;alias`` naming server A: no alias, and requests for A never use its connection."""

    async def main() -> None:
        lab = Lab(tmp_path)
        layer_b, port = await lab.server()
        cert = {"no certificate": None, "another server's certificate": lab.evil_cert}.get(
            who, lab.a_cert
        )
        attacker = await lab.client(cert)
        try:
            alias = who != "no alias"
            sent = request(1, f"{A_NAME}:{NO_ONE}", alias=alias)
            assert attacker.send(sent, Transport.TLS, V4, port)
            await wait_for(lambda: len(lab.b.messages) == 1)
            assert layer_b.aliases() == {}
            assert layer_b.stats.aliases_refused == (1 if alias else 0)
            layer_b.send(request(2, "b"), Transport.TLS, V4, NO_ONE, server_name=A_NAME)
            await wait_for(lambda: len(lab.b.send_errors) == 1)
            await asyncio.sleep(0.05)
            assert lab.a.messages == [] and layer_b.stats.alias_reuses == 0
        finally:
            await attacker.stop()
            await layer_b.stop()

    asyncio.run(main())


def test_untrusted_client_certificate_is_refused_in_the_handshake(tmp_path: Path) -> None:
    async def main() -> None:
        lab = Lab(tmp_path)
        layer_b, port = await lab.server()
        stranger = issue(tmp_path, "stranger", "stranger", names=[x509.DNSName(A_NAME)]).cert_path
        attacker = await lab.client(stranger)
        try:
            attacker.send(request(1, f"{A_NAME}:{NO_ONE}"), Transport.TLS, V4, port)
            await asyncio.sleep(0.3)
            assert lab.b.messages == [] and layer_b.aliases() == {}
        finally:
            await attacker.stop()
            await layer_b.stop()

    asyncio.run(main())


def test_alias_over_plain_tcp_is_ignored(tmp_path: Path) -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:127.0.0.1:0"], limits=FAST)
        await layer.start()
        port = port_of(layer, Transport.TCP, 4)
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request(1, f"{A_NAME}:{NO_ONE}", transport="TCP"))
            await writer.drain()
            await wait_for(lambda: len(gw.messages) == 1)
            assert layer.aliases() == {} and layer.stats.aliases_refused == 0
            writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_aliases_per_connection_are_bounded(tmp_path: Path) -> None:
    async def main() -> None:
        lab = Lab(tmp_path)
        layer_b, port = await lab.server()
        layer_a = await lab.client(lab.a_cert)
        try:
            for n in range(MAX_ALIASES + 3):
                layer_a.send(request(n + 1, f"{A_NAME}:{6000 + n}"), Transport.TLS, V4, port)
            await wait_for(lambda: len(lab.b.messages) == MAX_ALIASES + 3)
            assert len(layer_b.aliases()) == MAX_ALIASES
            assert layer_b.stats.aliases_refused == 3
        finally:
            await layer_a.stop()
            await layer_b.stop()

    asyncio.run(main())


def test_unreadable_client_ca_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ConfigError) as err:
        tls.request_client_certificates(context, bad)
    assert "sip.tls_client_ca" in str(err.value) and str(bad) in str(err.value)
