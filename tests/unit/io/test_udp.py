"""UDP listeners: both families, replies via the flow, family choice, bad datagrams, V6ONLY."""

from __future__ import annotations

import asyncio
import logging
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.io import sockets
from rtc64.io.stats import TransportStats
from rtc64.io.udp import UdpListener
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.framing import parse_datagram

from .helpers import V4, V6, Gateway, cseq, ok, options, port_of, wait_for


class Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[object, ...]]] = []

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.got.append((data, addr))


async def _peer(host: str) -> tuple[asyncio.DatagramTransport, Peer]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=(host, 0))
    return transport, peer


def test_receive_both_families_and_reply_via_flow() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["udp:127.0.0.1:0", "udp:[::1]:0"])
        await layer.start()
        try:
            for n, (host, version) in enumerate([("127.0.0.1", 4), ("::1", 6)], start=1):
                tr, peer = await _peer(host)
                port = port_of(layer, Transport.UDP, version)
                tr.sendto(options(n), (host, port))
                await wait_for(lambda n=n: len(gw.messages) == n)
                msg, flow = gw.messages[-1]
                assert cseq(msg) == n
                assert flow.transport is Transport.UDP and flow.connection_id is None
                assert flow.local == (V4 if version == 4 else V6, port)
                assert flow.remote[1] == tr.get_extra_info("sockname")[1]
                assert flow.family.value == (socket.AF_INET if version == 4 else socket.AF_INET6)
                assert layer.send(ok(n), Transport.UDP, *flow.remote, flow=flow)
                await wait_for(lambda peer=peer: len(peer.got) == 1)
                data, src = peer.got[0]
                assert data == ok(n)
                assert src[1] == port  # the reply left from the listener it arrived on
                tr.close()
            assert layer.stats.received == 2
            assert layer.stats.sent == 2
        finally:
            await layer.stop()

    asyncio.run(main())


def test_send_picks_the_destination_family() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["udp:127.0.0.1:0", "udp:[::1]:0"])
        await layer.start()
        try:
            tr4, p4 = await _peer("127.0.0.1")
            tr6, p6 = await _peer("::1")
            assert layer.send(options(1), Transport.UDP, V4, tr4.get_extra_info("sockname")[1])
            assert layer.send(options(2), Transport.UDP, V6, tr6.get_extra_info("sockname")[1])
            await wait_for(lambda: len(p4.got) == 1 and len(p6.got) == 1)
            assert p4.got[0][1][1] == port_of(layer, Transport.UDP, 4)
            assert p6.got[0][1][1] == port_of(layer, Transport.UDP, 6)
            tr4.close()
            tr6.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_send_without_listener_of_that_family_fails_and_counts() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["udp:127.0.0.1:0"])
        await layer.start()
        try:
            assert not layer.send(options(), Transport.UDP, V6, 5060, handle="txn-1")
            assert layer.stats.send_errors == 1
            assert gw.send_errors == []  # reported from the loop, never from inside send()
            await wait_for(lambda: len(gw.send_errors) == 1)
            assert gw.send_errors[0].handle == "txn-1"
        finally:
            await layer.stop()

    asyncio.run(main())


def test_bad_datagram_is_reported_counted_and_listener_keeps_working() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["udp:[::1]:0"])
        await layer.start()
        try:
            tr, _ = await _peer("::1")
            port = port_of(layer, Transport.UDP, 6)
            tr.sendto(b"this is not SIP\r\n\r\n", ("::1", port))
            tr.sendto(b"\r\n\r\n", ("::1", port))  # keep-alive: neither bad nor delivered
            tr.sendto(options(7), ("::1", port))
            await wait_for(lambda: len(gw.messages) == 1)
            assert cseq(gw.messages[0][0]) == 7
            assert len(gw.bad) == 1
            data, error, flow = gw.bad[0]
            assert data == b"this is not SIP\r\n\r\n"
            assert error.status == 400
            assert flow.remote == (V6, tr.get_extra_info("sockname")[1])
            assert layer.stats.bad_datagrams == 1
            assert layer.stats.keepalives == 1
            tr.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_callback_failure_does_not_stop_the_listener() -> None:
    async def main() -> None:
        gw = Gateway()
        calls: list[int] = []

        def explode(msg: object, flow: object) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("gateway bug")

        gw.on_message = explode  # type: ignore[method-assign]
        layer = gw.layer(["udp:127.0.0.1:0"])
        await layer.start()
        try:
            tr, _ = await _peer("127.0.0.1")
            port = port_of(layer, Transport.UDP, 4)
            tr.sendto(options(1), ("127.0.0.1", port))
            tr.sendto(options(2), ("127.0.0.1", port))
            await wait_for(lambda: len(calls) == 2)
            tr.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_v6only_lets_v4_and_v6_share_a_port_number() -> None:
    async def main() -> None:
        gw = Gateway()
        first = gw.layer(["udp:127.0.0.1:0", "tcp:127.0.0.1:0"])
        await first.start()
        try:
            udp_port = port_of(first, Transport.UDP, 4)
            tcp_port = port_of(first, Transport.TCP, 4)
            second = gw.layer([f"udp:[::1]:{udp_port}", f"tcp:[::1]:{tcp_port}"])
            await second.start()
            try:
                assert port_of(second, Transport.UDP, 6) == udp_port
                assert port_of(second, Transport.TCP, 6) == tcp_port
            finally:
                await second.stop()
        finally:
            await first.stop()

    asyncio.run(main())


def test_ipv6_sockets_are_v6only_and_udp_rcvbuf_is_large() -> None:
    udp = sockets.udp_socket(V6, 0)
    tcp = sockets.listen_socket(V6, 0)
    udp4 = sockets.udp_socket(V4, 0)
    try:
        assert sockets.v6only(udp) and sockets.v6only(tcp)
        assert not sockets.v6only(udp4)
        assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert not udp.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        default = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= default.getsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF
            )
        finally:
            default.close()
    finally:
        udp.close()
        tcp.close()
        udp4.close()


def test_binding_a_busy_port_names_the_endpoint() -> None:
    async def main() -> None:
        gw = Gateway()
        first = gw.layer(["udp:127.0.0.1:0"])
        await first.start()
        try:
            port = port_of(first, Transport.UDP, 4)
            second = gw.layer(["udp:[::1]:0", f"udp:127.0.0.1:{port}"])
            try:
                await second.start()
            except Exception as exc:  # ConfigError
                assert f"127.0.0.1:{port}" in str(exc)
            else:
                raise AssertionError("bind should fail")
            assert second.listeners == ()
        finally:
            await first.stop()

    asyncio.run(main())


def test_own_port_sends_from_the_receive_only_listener() -> None:
    """SIP workers: ``own_port`` requests leave from the worker's private (receive-only)
    port, everything else from the shared one; a flow wins over both."""

    async def main() -> None:
        from rtc64.net.endpoint import parse_listen  # noqa: PLC0415

        shared, private = parse_listen("udp:127.0.0.1:0"), parse_listen("udp:127.0.0.2:0")
        gw = Gateway()
        layer = gw.layer([private, shared], receive_only=[private])
        await layer.start()
        try:
            tr, peer = await _peer("127.0.0.1")
            dest = tr.get_extra_info("sockname")[1]
            by_ip = {str(b.spec.address): b for b in layer.listeners}
            assert layer.send(options(1), Transport.UDP, V4, dest)
            assert layer.send(options(2), Transport.UDP, V4, dest, own_port=True)
            flow = Flow(Transport.UDP, by_ip["127.0.0.1"].local, (V4, dest))
            assert layer.send(options(3), Transport.UDP, V4, dest, flow=flow, own_port=True)
            await wait_for(lambda: len(peer.got) == 3)
            sources = {cseq(parse_datagram(data)): src for data, src in peer.got}
            assert sources[1] == ("127.0.0.1", by_ip["127.0.0.1"].port)
            assert sources[2] == ("127.0.0.2", by_ip["127.0.0.2"].port)
            assert sources[3] == ("127.0.0.1", by_ip["127.0.0.1"].port)
            tr.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_own_port_without_a_private_listener_uses_the_shared_one() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["udp:127.0.0.1:0"])
        await layer.start()
        try:
            tr, peer = await _peer("127.0.0.1")
            dest = tr.get_extra_info("sockname")[1]
            assert layer.send(options(1), Transport.UDP, V4, dest, own_port=True)
            await wait_for(lambda: len(peer.got) == 1)
            assert peer.got[0][1][1] == port_of(layer, Transport.UDP, 4)
            tr.close()
        finally:
            await layer.stop()

    asyncio.run(main())


class _Owner:
    """A ``ConnectionOwner`` that records what the listener did with each datagram."""

    def __init__(self) -> None:
        self.stats = TransportStats()
        self.log = logging.getLogger("test_udp")
        self.delivered: list[object] = []
        self.bad: list[bytes] = []

    def deliver(self, msg: object, flow: Flow) -> None:
        self.delivered.append(msg)

    def bad_message(self, data: bytes, exc: Exception, flow: Flow) -> None:
        self.bad.append(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=6) | st.text("\r\n\x00 A", max_size=6).map(str.encode))
def test_keepalive_is_exactly_a_datagram_of_cr_lf_nul(data: bytes) -> None:
    """Only the first byte is tested before the strip: the verdict is the full rule's."""
    owner = _Owner()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        listener = UdpListener(owner, sock)  # type: ignore[arg-type]
        listener.datagram_received(data, ("198.51.100.7", 5060))
        listener.datagram_received(options(1), ("198.51.100.7", 5060))
    keepalive = not data.strip(b"\r\n\x00")
    stun = owner.stats.stun_received == 1
    assert owner.stats.keepalives == (1 if keepalive and not stun else 0)
    assert len(owner.delivered) + len(owner.bad) + owner.stats.keepalives + stun == 2
    assert cseq(owner.delivered[-1]) == 1  # type: ignore[arg-type]
