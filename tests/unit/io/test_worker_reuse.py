"""RFC 5923 aliases and stream connections shared by SIP workers, on loopback sockets:
server B runs two workers (two transport layers, each behind its ``WorkerLink``, talking
over real worker channels); a request B's worker 1 sends goes over the connection B's
worker 0 holds, the alias rules of one process hold in every worker, and a worker
cannot be made to write on a connection that does not exist or leads elsewhere."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path

import pytest
from cryptography import x509

from rtc64.io import tls
from rtc64.io.connection import Limits
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.io.worker_link import CONNECTION_ID_SPAN, WorkerLink, announce_gone, bind_channels
from rtc64.io.worker_link import channel_name as name_of
from rtc64.net.endpoint import Flow, Transport, parse_listen
from tests.certs import issue

from .helpers import V4, Gateway, cseq, port_of, wait_for

A_NAME = "a.example.test"
NO_ONE = 5061  # nothing listens here on loopback: a new connection to it fails
LIMITS = Limits(idle_timeout=30.0, connect_timeout=2.0, handshake_timeout=2.0)


def request(n: int, via_host: str, *, alias: bool = True, branch: str = "") -> bytes:
    via = f"SIP/2.0/TLS {via_host};branch=z9hG4bK-{branch or n};rport"
    via += ";alias" if alias else ""
    return (
        f"OPTIONS sip:b.example.test SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
        f"To: <sip:b.example.test>\r\nFrom: <sip:a@{A_NAME}>;tag={n}\r\n"
        f"Call-ID: reuse-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def answer(req: bytes) -> bytes:
    """A 200 to ``req`` (its Via, From, Call-ID and CSeq copied)."""
    lines = req.split(b"\r\n")
    keep = [ln for ln in lines if ln.split(b":", 1)[0] in (b"Via", b"From", b"Call-ID", b"CSeq")]
    to = next(ln for ln in lines if ln.startswith(b"To:"))
    body = b"\r\n".join([b"SIP/2.0 200 OK", *keep, to + b";tag=a"])
    return body + b"\r\nContent-Length: 0\r\n\r\n"


class Worker:
    """One of B's workers: a transport layer behind a worker link."""

    def __init__(self, lab: Lab, k: int) -> None:
        self.k = k
        self.gw = Gateway()
        self.link = WorkerLink(k, lab.channels[k], lab.names, {}, logging.getLogger(f"t.w{k}"))
        self.link.on_send_error = self.gw.on_send_error
        server = tls.server_identity(
            lab.tmp, lab.b_cert, lab.b_cert.with_suffix(".key"), client_ca=lab.ca
        )
        self.layer = SipTransportLayer(
            [parse_listen("tls:127.0.0.1:0")],
            self.link.on_message,
            self.gw.on_bad,
            server_tls=server.context,
            client_tls=tls.TlsClientPolicy(cafile=lab.b_cert),
            limits=LIMITS,
            on_send_error=self.link.send_error,
            first_connection_id=k * CONNECTION_ID_SPAN + 1,
            on_connection=self.link.connection_changed,
        )

    async def start(self) -> None:
        self.link.attach(self.layer, self.gw.on_message)
        await self.layer.start()

    @property
    def port(self) -> int:
        return port_of(self.layer, Transport.TLS, 4)

    async def stop(self) -> None:
        self.link.close()
        await self.layer.stop()


class Lab:
    """B (two workers; client certificates asked, ``a`` and ``evil`` trusted) and clients."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        b_names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        self.b_cert = issue(tmp_path, "b", "b", names=b_names).cert_path
        self.a_cert = issue(tmp_path, "a", "a", names=[x509.DNSName(A_NAME)]).cert_path
        self.evil_cert = issue(
            tmp_path, "evil", "evil", names=[x509.DNSName("evil.test")]
        ).cert_path
        self.ca = tmp_path / "clients.pem"
        self.ca.write_bytes(self.a_cert.read_bytes() + self.evil_cert.read_bytes())
        chans = tmp_path / "chan"
        chans.mkdir()
        self.channels = bind_channels(str(chans), 2)
        self.names = [name_of(str(chans), k) for k in range(2)]
        self.b: list[Worker] = []
        self.clients: list[SipTransportLayer] = []
        self.a = Gateway()

    async def start(self) -> list[Worker]:
        self.b = [Worker(self, 0), Worker(self, 1)]
        for w in self.b:
            await w.start()
        return self.b

    async def client(self, cert: Path | None, *, server: bool = False) -> SipTransportLayer:
        """A client (``cert``: the certificate it presents); ``server``: it also serves
        TLS with B's certificate (so B's workers can open connections to it)."""
        pair = None if cert is None else (cert, cert.with_suffix(".key"))
        policy = tls.TlsClientPolicy(cafile=self.b_cert, certificate=pair)
        own = (
            tls.server_identity(self.tmp, self.b_cert, self.b_cert.with_suffix(".key"))
            if server
            else tls.server_identity(self.tmp / f"own{len(self.clients)}")
        )
        layer = self.a.layer(
            ["tls:127.0.0.1:0"], server_tls=own.context, client_tls=policy, limits=LIMITS
        )
        await layer.start()
        self.clients.append(layer)
        return layer

    async def stop(self) -> None:
        for layer in self.clients:
            await layer.stop()
        for w in self.b:
            await w.stop()
        for c in self.channels:
            c.close()


def run(tmp_path: Path, body: object) -> None:
    async def main() -> None:
        lab = Lab(tmp_path)
        try:
            await body(lab)  # type: ignore[operator]
        finally:
            await lab.stop()

    asyncio.run(main())


def test_an_alias_recorded_by_one_worker_carries_the_other_workers_requests(
    tmp_path: Path,
) -> None:
    async def body(lab: Lab) -> None:
        b0, b1 = await lab.start()
        a = await lab.client(lab.a_cert)
        assert a.send(request(1, f"{A_NAME}:{NO_ONE}"), Transport.TLS, V4, b0.port)
        await wait_for(lambda: len(b0.gw.messages) == 1)
        cid, peer = b0.gw.messages[0][1].connection_id, b0.gw.messages[0][1].remote
        assert b0.layer.aliases() == {(A_NAME, NO_ONE): cid}
        await wait_for(lambda: b1.link.peer_connections().aliases() == {(A_NAME, NO_ONE): cid})
        # B's worker 1 sends to A's domain at its Via port: over worker 0's connection
        assert b1.link.send(
            request(2, "127.0.0.1:1", alias=False), Transport.TLS, V4, NO_ONE, server_name=A_NAME
        )
        await wait_for(lambda: len(lab.a.messages) == 1)
        assert cseq(lab.a.messages[0][0]) == 2
        assert b1.layer.connection_count == 0 and b0.layer.connection_count == 1
        assert a.connection_count == 1 and b1.gw.send_errors == [] and b1.link.handed >= 1
        # the alias leaves worker 1 with the connection; the next send tries its own
        a.connection(next(iter(a._conns))).close()  # type: ignore[union-attr]
        await wait_for(lambda: not b1.link.peer_connections().aliases())
        await wait_for(lambda: not b1.link.has_connection(Transport.TLS, *peer))
        b1.link.send(request(3, "b"), Transport.TLS, V4, NO_ONE, server_name=A_NAME)
        await wait_for(lambda: len(b1.gw.send_errors) == 1)
        assert len(lab.a.messages) == 1

    run(tmp_path, body)


@pytest.mark.parametrize("at", [0, 1])
@pytest.mark.parametrize("who", ["no certificate", "another server's certificate", "no alias"])
def test_a_forged_alias_captures_requests_in_no_worker(tmp_path: Path, who: str, at: int) -> None:
    """A client without a certificate, or with a trusted one naming someone else, sends
    ``;alias`` naming server A to worker ``at``: no worker records or learns an alias,
    and requests for A from either worker never use the attacker's connection."""

    async def body(lab: Lab) -> None:
        workers = await lab.start()
        cert = {"no certificate": None, "another server's certificate": lab.evil_cert}.get(
            who, lab.a_cert
        )
        attacker = await lab.client(cert)
        alias = who != "no alias"
        target = workers[at]
        assert attacker.send(request(1, f"{A_NAME}:{NO_ONE}", alias=alias), Transport.TLS, V4,
                             target.port)  # fmt: skip
        await wait_for(lambda: len(target.gw.messages) == 1)
        other = workers[1 - at]
        await wait_for(lambda: other.link.has_connection(Transport.TLS, *_peer(target)))
        assert target.layer.stats.aliases_refused == (1 if alias else 0)
        for w in workers:
            assert w.layer.aliases() == {} and w.link.peer_connections().aliases() == {}
            w.link.send(request(2, "b"), Transport.TLS, V4, NO_ONE, server_name=A_NAME)
        await wait_for(lambda: all(len(w.gw.send_errors) == 1 for w in workers))
        await asyncio.sleep(0.05)
        assert lab.a.messages == []
        assert all(w.layer.stats.alias_reuses == 0 for w in workers)
        assert all(w.link.peer_connections().aliases() == {} for w in workers)

    run(tmp_path, body)


def _peer(w: Worker) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    (conn,) = w.layer.connections()
    return conn[1]


def test_a_connection_one_worker_opened_serves_the_others_sends_for_its_name(
    tmp_path: Path,
) -> None:
    """Worker 0 opens TLS to a server checked for its address: worker 1's sends to that
    address go over it (answered through it: the branch brings the response back to
    worker 1 although our ``;alias`` Via names the shared port, no worker's own); a send
    for another SIP domain must not use it (RFC 5923 §6) and fails the certificate check
    on its own."""

    async def body(lab: Lab) -> None:
        b0, b1 = await lab.start()
        s = await lab.client(None, server=True)
        port = port_of(s, Transport.TLS, 4)
        assert b0.link.send(request(1, "127.0.0.1:9"), Transport.TLS, V4, port)
        await wait_for(lambda: len(lab.a.messages) == 1)
        await wait_for(lambda: b1.link.has_connection(Transport.TLS, V4, port))
        assert b1.link.send(request(2, "127.0.0.1:5061", branch="w1"), Transport.TLS, V4, port)
        await wait_for(lambda: len(lab.a.messages) == 2)
        assert b1.layer.connection_count == 0 and s.connection_count == 1
        req, flow = lab.a.messages[1]
        assert req.wire is not None
        assert s.send(answer(req.wire), Transport.TLS, *flow.remote, flow=flow)
        await wait_for(lambda: len(b1.gw.messages) == 1)
        assert b0.gw.messages == [] and cseq(b1.gw.messages[0][0]) == 2
        ((_, _, held, checked),) = b0.layer.connections()
        assert b1.gw.messages[0][1].connection_id == held and checked == "127.0.0.1"
        # without ;alias our Via names the worker's own port: no branch is remembered
        # (this Via names none, so the answer stays with the connection's worker)
        plain = request(4, "127.0.0.1:5061", alias=False, branch="w1b")
        assert b1.link.send(plain, Transport.TLS, V4, port)
        await wait_for(lambda: len(lab.a.messages) == 3)
        req, flow = lab.a.messages[2]
        assert req.wire is not None and s.send(
            answer(req.wire), Transport.TLS, *flow.remote, flow=flow
        )
        await wait_for(lambda: len(b0.gw.messages) == 1)
        assert cseq(b0.gw.messages[0][0]) == 4 and len(b1.gw.messages) == 1
        # a send for a SIP domain the connection was not checked for: not over it
        b1.link.send(request(3, "x"), Transport.TLS, V4, port, server_name="other.test")
        await wait_for(lambda: len(b1.gw.send_errors) == 1)
        assert "certificate" in b1.gw.send_errors[0].reason or "TLS" in b1.gw.send_errors[0].reason
        assert len(lab.a.messages) == 3

    run(tmp_path, body)


def test_a_worker_cannot_be_made_to_send_over_a_connection_that_is_not_there(
    tmp_path: Path,
) -> None:
    async def body(lab: Lab) -> None:
        b0, b1 = await lab.start()
        a = await lab.client(lab.a_cert)
        a.send(request(1, f"{A_NAME}:{NO_ONE}"), Transport.TLS, V4, b0.port)
        await wait_for(lambda: len(b0.gw.messages) == 1)
        real = b0.gw.messages[0][1]
        assert real.connection_id is not None
        # an id no worker has: refused at once by the sender, counted
        nobody = Flow(Transport.TLS, real.local, real.remote, 7 * CONNECTION_ID_SPAN + 1)
        assert not b1.link.send(request(2, "b"), Transport.TLS, *real.remote, flow=nobody,
                                handle="h-nobody")  # fmt: skip
        await wait_for(lambda: len(b1.gw.send_errors) == 1)
        assert b1.gw.send_errors[0].handle == "h-nobody" and b1.link.refused == 1
        assert "no worker" in b1.gw.send_errors[0].reason
        # worker 0's id that names no connection of it: no new connection, failed back
        gone = Flow(Transport.TLS, real.local, (V4, NO_ONE), real.connection_id + 99)
        b1.link.send(request(3, "b"), Transport.TLS, V4, NO_ONE, flow=gone, handle="h-gone")
        await wait_for(lambda: len(b1.gw.send_errors) == 2)
        assert b1.gw.send_errors[1].handle == "h-gone" and b0.layer.connection_count == 1
        # worker 0's real id, but toward another peer (a stale id after a restart):
        # refused by worker 0, counted, failed back; nothing reaches A
        stale = Flow(Transport.TLS, real.local, (V4, NO_ONE), real.connection_id)
        b1.link.send(request(4, "b"), Transport.TLS, V4, NO_ONE, flow=stale, handle="h-stale")
        await wait_for(lambda: len(b1.gw.send_errors) == 3)
        assert b1.gw.send_errors[2].handle == "h-stale" and b0.link.refused == 1
        assert "does not lead" in b1.gw.send_errors[2].reason
        await asyncio.sleep(0.05)
        assert lab.a.messages == [] and a.connection_count == 1

    run(tmp_path, body)


def test_a_restarted_worker_learns_the_live_connections_and_a_dead_ones_are_forgotten(
    tmp_path: Path,
) -> None:
    async def body(lab: Lab) -> None:
        b0, b1 = await lab.start()
        a = await lab.client(lab.a_cert)
        a.send(request(1, f"{A_NAME}:{NO_ONE}"), Transport.TLS, V4, b0.port)
        await wait_for(lambda: len(b1.link.peer_connections().aliases()) == 1)
        # worker 1 restarts: a fresh link on the same channel (a RESET), told by worker 0
        b1.link.close()
        fresh = WorkerLink(1, lab.channels[1], lab.names, {}, logging.getLogger("t.w1b"))
        fresh.attach(b1.layer, b1.gw.on_message)
        b1.link = fresh
        await wait_for(lambda: fresh.peer_connections().aliases() == b0.layer.aliases())
        assert len(fresh.peer_connections()) == 1
        # worker 0 dies: the supervisor says so; worker 1 forgets its connection and alias
        announce_gone(lab.channels, 0)
        await wait_for(lambda: len(fresh.peer_connections()) == 0)
        assert fresh.peer_connections().aliases() == {}
        assert a.connection_count == 1  # (in this test worker 0 did not really die)

    run(tmp_path, body)
