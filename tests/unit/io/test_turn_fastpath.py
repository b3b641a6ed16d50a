"""TURN fast path on real loopback sockets: permissions, Data indications, channels both
ways, no forwarding without permission, bandwidth limit, relay ports vs media ports."""

from __future__ import annotations

import asyncio
import socket as s
import struct
from ipaddress import ip_address

import pytest

from rtc64.io.sockets import v6only
from rtc64.io.turn_fastpath import channel_data, raw_address, source_address
from rtc64.io.turn_relay import DRAIN_LIMIT
from rtc64.net.address import Family, from_sockaddr
from rtc64.net.endpoint import Transport
from rtc64.relay.ports import PortPool
from rtc64.stun import message as stun
from rtc64.stun.attributes import DATA, XOR_PEER_ADDRESS
from rtc64.turn.events import Bind, ClientFlow, Permit, RelayClosed, ToPeer, Unbind, Unpermit
from rtc64.turn.protocols import UDP, RelayUnavailable

from .turn_helpers import (
    V4,
    V6,
    Endpoint,
    Rig,
    allocation,
    endpoint,
    port_range,
    raw,
    rig,
    settle,
    wait_for,
)


def test_data_indication_only_after_permission() -> None:
    async def main() -> None:
        r = await rig()
        client, peer = await endpoint(), await endpoint()
        try:
            _flow, relay, sock = await allocation(r, client)
            peer.send(b"early", raw(relay))
            await wait_for(lambda: sock.no_permission == 1)
            assert client.got == []

            r.relays.permit(Permit(relay, V4, 1e9))
            peer.send(b"hello", raw(relay))
            await wait_for(lambda: len(client.got) == 1)
            data = client.got[0][0]
            msg = stun.decode(data)
            assert (msg.method, msg.cls) == (stun.Method.DATA, stun.Class.INDICATION)
            assert msg.get(XOR_PEER_ADDRESS) == peer.address
            assert msg.get(DATA) == b"hello"
            # byte for byte what the codec's own fast helper writes with that id
            assert data == stun.data_indication(peer.address, b"hello", msg.transaction_id)
            peer.send(b"again", raw(relay))
            await wait_for(lambda: len(client.got) == 2)
            assert stun.decode(client.got[1][0]).transaction_id != msg.transaction_id

            r.relays.unpermit(Unpermit(relay, V4))
            peer.send(b"late", raw(relay))
            await wait_for(lambda: sock.no_permission == 2)
            await settle()
            assert len(client.got) == 2
            assert sock.from_peer_packets == 2
            assert sock.from_peer_bytes == 10
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_ipv6_data_indication_xor_uses_transaction_id() -> None:
    async def main() -> None:
        r = await rig()
        client, peer = await endpoint("::1"), await endpoint("::1")
        try:
            _flow, relay, _sock = await allocation(r, client, Family.INET6)
            assert relay[0] == V6
            r.relays.permit(Permit(relay, V6, 1e9))
            for i in range(3):
                peer.send(b"x" * (i + 1), (str(relay[0]), relay[1]))
            await wait_for(lambda: len(client.got) == 3)
            for i, (data, _) in enumerate(client.got):
                msg = stun.decode(data)
                assert msg.get(XOR_PEER_ADDRESS) == peer.address
                assert msg.get(DATA) == b"x" * (i + 1)
                assert data == stun.data_indication(
                    peer.address, b"x" * (i + 1), msg.transaction_id
                )
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_channel_both_ways_and_unbind() -> None:
    async def main() -> None:
        r = await rig()
        client, peer = await endpoint(), await endpoint()
        try:
            flow, relay, sock = await allocation(r, client)
            listener = r.local(Transport.UDP)
            # a ChannelData before any channel: dropped and counted, nothing reaches the peer
            client.send(channel_data(0x4000, b"nope", stream=False), raw(listener))
            await wait_for(lambda: r.listeners.stats.channel_unbound == 1)

            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))
            peer.send(b"to client", raw(relay))
            await wait_for(lambda: len(client.got) == 1)
            assert client.got[0][0] == struct.pack("!HH", 0x4000, 9) + b"to client"

            client.send(channel_data(0x4000, b"to peer", stream=False), raw(listener))
            await wait_for(lambda: len(peer.got) == 1)
            assert peer.got[0] == (b"to peer", raw(relay))
            # a length field beyond the datagram is refused
            client.send(struct.pack("!HH", 0x4000, 200) + b"short", raw(listener))
            # another channel number of the same client is not bound
            client.send(channel_data(0x4001, b"other", stream=False), raw(listener))
            await wait_for(lambda: r.listeners.stats.channel_unbound == 3)
            assert sock.to_peer_packets == 1 and sock.to_peer_bytes == 7
            assert r.sink.got == []  # none of it needed the core

            r.relays.unbind(Unbind(relay, 0x4000))
            peer.send(b"as data", raw(relay))
            await wait_for(lambda: len(client.got) == 2)
            assert stun.decode(client.got[1][0]).get(DATA) == b"as data"
            client.send(channel_data(0x4000, b"gone", stream=False), raw(listener))
            await wait_for(lambda: r.listeners.stats.channel_unbound == 4)
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_channel_without_permission_is_not_forwarded() -> None:
    async def main() -> None:
        r = await rig()
        client, peer = await endpoint(), await endpoint()
        try:
            flow, relay, sock = await allocation(r, client)
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))  # no Permit
            client.send(channel_data(0x4000, b"x", stream=False), raw(r.local(Transport.UDP)))
            await wait_for(lambda: r.listeners.stats.channel_refused == 1)
            peer.send(b"y", raw(relay))
            await wait_for(lambda: sock.no_permission == 2)
            await settle()
            assert peer.got == [] and client.got == []
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_send_indication_slow_path_and_another_clients_channel() -> None:
    async def main() -> None:
        r = await rig()
        alice, mallory, peer = await endpoint(), await endpoint(), await endpoint()
        try:
            flow, relay, _ = await allocation(r, alice)
            await allocation(r, mallory)
            r.relays.permit(Permit(relay, V4, 1e9))
            assert r.relays.to_peer(ToPeer(relay, peer.address, b"via send"))
            await wait_for(lambda: len(peer.got) == 1)
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))
            # mallory uses alice's channel number from her own source: not hers, dropped
            mallory.send(channel_data(0x4000, b"spoof", stream=False), raw(r.local(Transport.UDP)))
            await wait_for(lambda: r.listeners.stats.channel_unbound == 1)
            await settle()
            assert len(peer.got) == 1
        finally:
            for e in (alice, mallory, peer):
                e.close()
            await r.stop()

    asyncio.run(main())


def test_bandwidth_limit_drops_and_counts() -> None:
    async def main() -> None:
        r = await rig(bandwidth=2000)
        client, peer = await endpoint(), await endpoint()
        try:
            flow, relay, sock = await allocation(r, client)
            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))
            for _ in range(20):
                peer.send(b"p" * 1000, raw(relay))
            await wait_for(lambda: sock.from_peer_packets + sock.over_limit == 20)
            assert sock.over_limit > 0
            assert sock.from_peer_packets < 20
            await wait_for(lambda: len(client.got) == sock.from_peer_packets)
            # the other direction has its own budget: still a burst's worth to send
            over = sock.over_limit
            listener = raw(r.local(Transport.UDP))
            for _ in range(20):
                client.send(channel_data(0x4000, b"c" * 1000, stream=False), listener)
            await wait_for(lambda: sock.to_peer_packets + sock.over_limit - over == 20)
            assert 0 < sock.to_peer_packets < 20
            await wait_for(lambda: len(peer.got) == sock.to_peer_packets)
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_relay_ports_never_collide_with_media_ports() -> None:
    async def main() -> None:
        low, _ = port_range()
        pool = PortPool([V4], low, low + 8)  # 4 pairs
        media = pool.allocate(V4)  # the media relay holds one pair
        r = await rig(pool=pool)
        try:
            got = [
                r.relays.reserve(Family.INET, UDP, even=False, reserve_next=False) for _ in range(6)
            ]
            ports = {p for _, p in got}
            assert len(ports) == 6  # two plain relays per pair, 3 pairs left
            assert not ports & {media.port, media.rtcp_port}
            with pytest.raises(RelayUnavailable):
                r.relays.reserve(Family.INET, UDP, even=False, reserve_next=False)
            for relay in got:
                r.relays.release(relay)
            assert pool.in_use == 1  # only the media pair
            again = pool.allocate(V4)
            assert again.port not in (media.port,)
        finally:
            await r.stop()

    asyncio.run(main())


def test_even_port_with_reservation_and_busy_port_skipped() -> None:
    async def main() -> None:
        low, _ = port_range()
        pool = PortPool([V4], low, low + 8)
        r = await rig(pool=pool)
        squatter = s.socket(s.AF_INET, s.SOCK_DGRAM)
        try:
            squatter.bind(("127.0.0.1", low))  # someone else has the first even port
            relay = r.relays.reserve(Family.INET, UDP, even=True, reserve_next=True)
            assert relay[1] % 2 == 0 and relay[1] != low
            assert r.relays.bind_failures >= 1
            kept = (relay[0], relay[1] + 1)
            with pytest.raises(OSError):
                s.socket(s.AF_INET, s.SOCK_DGRAM).bind(("127.0.0.1", kept[1]))
            assert r.relays.take_reserved(kept) == kept
            assert r.relays.take_reserved(kept) is None  # only once
            r.relays.release(relay)
            r.relays.release(kept)
            assert pool.in_use == 0
        finally:
            squatter.close()
            await r.stop()

    asyncio.run(main())


def test_relay_closed_forgets_tables_and_port() -> None:
    async def main() -> None:
        r = await rig()
        client, peer = await endpoint(), await endpoint()
        try:
            flow, relay, _ = await allocation(r, client)
            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))
            udp_listener = r.listeners.udp[r.local(Transport.UDP)]
            assert udp_listener.clients
            r.relays.relay_closed(RelayClosed(relay))
            assert r.relays.relay_of(relay) is None
            assert not udp_listener.clients
            assert r.pool.in_use == 1 and r.relays.idle == 1  # kept bound for reuse
            client.send(channel_data(0x4000, b"x", stream=False), raw(r.local(Transport.UDP)))
            await wait_for(lambda: r.listeners.stats.channel_unbound == 1)
            total = r.relays.closed_totals[(Family.INET, Family.INET)]
            assert total.relays == 1
            r.relays.stop()
            assert r.pool.in_use == 0 and r.relays.idle == 0  # stop frees the idle ports
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_garbage_datagrams_counted_listener_keeps_working() -> None:
    async def main() -> None:
        r = await rig()
        client = await endpoint()
        try:
            listener = raw(r.local(Transport.UDP))
            for junk in (b"\xff" * 40, b"\x00" * 5, b"\x80" + b"\0" * 30, b"\xbf\xff\0\0"):
                client.send(junk, listener)
            await wait_for(lambda: r.listeners.stats.garbage == 4)
            assert r.listeners.stats.channel_unbound == 0
            request = stun.encode(stun.build(stun.Method.BINDING, stun.Class.REQUEST, b"t" * 12))
            client.send(request, listener)
            await wait_for(lambda: len(r.sink.got) == 1)
            data, transport, local, remote, conn = r.sink.got[0]
            assert data == request and transport is Transport.UDP
            assert remote == client.address and conn == 0 and local[1] == listener[1]
        finally:
            client.close()
            await r.stop()

    asyncio.run(main())


def test_ipv6_listener_is_v6only() -> None:
    async def main() -> None:
        r = await rig()
        try:
            local = r.local(Transport.UDP, 6)
            assert local[0] == ip_address("::1")
            assert v6only(r.listeners.udp[local].sock)
        finally:
            await r.stop()

    asyncio.run(main())


def test_raw_address_matches_what_the_loop_hands_in() -> None:
    assert raw_address(ip_address("127.0.0.1"), 5) == ("127.0.0.1", 5)
    assert raw_address(ip_address("2001:db8::1"), 5) == ("2001:db8::1", 5, 0, 0)
    assert raw_address(ip_address("::ffff:1.2.3.4"), 5)[0] == "::ffff:1.2.3.4"  # inet_ntop form
    assert raw_address(ip_address("fe80::1%1"), 5) == ("fe80::1", 5, 0, 1)
    lo = s.if_nametoindex("lo")
    assert raw_address(ip_address("fe80::1%lo"), 5) == ("fe80::1", 5, 0, lo)


def test_ipv4_mapped_peer_is_relayed_as_ipv4() -> None:
    async def main() -> None:
        r = await rig()
        client, peer = await endpoint(), await endpoint()
        try:
            flow, relay, _ = await allocation(r, client)
            mapped = (ip_address("::ffff:127.0.0.1"), peer.address[1])
            r.relays.permit(Permit(relay, mapped[0], 1e9))
            assert r.relays.to_peer(ToPeer(relay, mapped, b"via mapped"))
            await wait_for(lambda: len(peer.got) == 1)
            peer.send(b"back", raw(relay))
            await wait_for(lambda: len(client.got) == 1)
            assert stun.decode(client.got[0][0]).get(XOR_PEER_ADDRESS) == peer.address
            r.relays.bind(Bind(relay, flow, 0x4000, mapped))
            peer.send(b"chan", raw(relay))
            await wait_for(lambda: len(client.got) == 2)
            assert client.got[1][0] == channel_data(0x4000, b"chan", stream=False)
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_listener_source_cache_is_bounded_and_answers_reach_each_source() -> None:
    from rtc64.io import turn_listeners as tl  # noqa: PLC0415 - this test only

    class Sink:
        def __init__(self) -> None:
            self.remotes: list[tuple[object, ...]] = []

        def from_client(
            self, data: bytes, kind: object, local: object, remote: tuple[object, ...], conn: int
        ) -> None:
            self.remotes.append(remote)

    class FakeTransport:
        def __init__(self) -> None:
            self.sent: list[tuple[bytes, object]] = []

        def is_closing(self) -> bool:
            return False

        def sendto(self, data: bytes, addr: object) -> None:
            self.sent.append((data, addr))

    sink = Sink()
    sock = s.socket(s.AF_INET, s.SOCK_DGRAM)
    listener = tl.UdpListener((V4, 3478), sock, sink, tl.ListenerStats())  # type: ignore[arg-type]
    transport = FakeTransport()
    listener.transport = transport  # type: ignore[assignment]
    request = stun.encode(stun.build(stun.Method.BINDING, stun.Class.REQUEST, b"t" * 12))
    try:
        for i in range(tl.SOURCE_CACHE + 10):  # a flood of sources: the cache stays bounded
            listener.datagram_received(request, (f"10.0.{i >> 8}.{i & 255}", 1000 + i))
            assert len(listener._sources) <= tl.SOURCE_CACHE
        listener.datagram_received(request, ("10.9.9.9", 5))
        listener.datagram_received(request, ("10.9.9.9", 5))
        first, again = sink.remotes[-2:]
        assert first == again == (ip_address("10.9.9.9"), 5)
        assert hash(first) == hash((ip_address("10.9.9.9"), 5))
        listener.send(b"answer", (ip_address("10.9.9.9"), 5))
        listener.send(b"other", (ip_address("10.8.8.8"), 6))  # never seen: converted
        assert transport.sent[-2:] == [(b"answer", ("10.9.9.9", 5)), (b"other", ("10.8.8.8", 6))]
        listener.datagram_received(request, ("not an address", 5))
        assert listener.stats.garbage == 1
    finally:
        sock.close()


def test_first_send_before_the_loop_started_the_relay_reaches_the_peer() -> None:
    """A client's Send indication right behind its Allocate is relayed, not lost, even
    though the loop has not yet made the relay socket's endpoint (same turn)."""

    async def main() -> None:
        r = await rig()
        client, peer = await endpoint(), await endpoint()
        try:
            version = 4
            flow = ClientFlow(Transport.UDP, client.address, r.local(Transport.UDP, version), 0)
            r.relays.serving = flow
            try:
                relay = r.relays.reserve(Family.INET, UDP, even=False, reserve_next=False)
            finally:
                r.relays.serving = None
            sock = r.relays.relay_of(relay)
            assert sock is not None and sock.transport is None  # no loop turn yet
            r.relays.permit(Permit(relay, V4, 1e9))
            assert r.relays.to_peer(ToPeer(relay, peer.address, b"first"))
            await wait_for(lambda: len(peer.got) == 1)
            assert peer.got[0][0] == b"first"
            assert sock.errors == 0 and sock.to_peer_packets == 1
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_relay_released_before_it_started_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """Allocate followed at once by Refresh 0: the relay closes before the loop started its
    endpoint; nothing is logged as a failure and the port goes back to the pool."""

    async def main() -> None:
        r = await rig()
        client = await endpoint()
        try:
            flow = ClientFlow(Transport.UDP, client.address, r.local(Transport.UDP, 4), 0)
            for _ in range(20):
                r.relays.serving = flow
                try:
                    relay = r.relays.reserve(Family.INET, UDP, even=False, reserve_next=False)
                finally:
                    r.relays.serving = None
                r.relays.relay_closed(RelayClosed(relay))
            await settle()
            assert r.pool.in_use == 0
        finally:
            client.close()
            await r.stop()

    with caplog.at_level("ERROR"):
        asyncio.run(main())
    assert not [rec for rec in caplog.records if "failed to start" in rec.getMessage()]


def _reserve(r: Rig, client: Endpoint) -> tuple:  # type: ignore[type-arg]
    """Reserve a relay for ``client`` without yielding to the loop."""
    flow = ClientFlow(Transport.UDP, client.address, r.local(Transport.UDP, 4), 0)
    r.relays.serving = flow
    try:
        return flow, r.relays.reserve(Family.INET, UDP, even=False, reserve_next=False)
    finally:
        r.relays.serving = None


def test_reused_relay_port_never_hands_the_old_allocations_datagrams_to_the_new_client() -> None:
    """A released relay socket is kept bound and taken by the next allocation (no new socket);
    datagrams a peer sent to the old allocation, whether still queued in the kernel at reuse
    (drained) or read while idle (dropped), never reach the new client, even one that
    permits the same peer IP and binds the same peer to a channel."""

    async def main() -> None:
        r = await rig()
        old, new, newer = await endpoint(), await endpoint(), await endpoint()
        peer = s.socket(s.AF_INET, s.SOCK_DGRAM)  # blocking: each sendto is queued at once
        peer.bind(("127.0.0.1", 0))
        peer_address = (ip_address("127.0.0.1"), peer.getsockname()[1])
        try:
            _, relay, sock = await allocation(r, old)
            r.relays.permit(Permit(relay, V4, 1e9))
            peer.sendto(b"for the old client", raw(relay))
            await wait_for(lambda: len(old.got) == 1)

            # released, then at once (no loop turn) a late datagram and the next allocation
            r.relays.relay_closed(RelayClosed(relay))
            assert r.relays.idle == 1 and r.pool.in_use == 1
            peer.sendto(b"late, queued at reuse", raw(relay))
            flow2, relay2 = _reserve(r, new)
            assert relay2 == relay and r.relays.reused == 1 and r.relays.drained == 1
            sock2 = r.relays.relay_of(relay2)
            # the same protocol object, reopened for the new client (no set_protocol, which
            # makes uvloop restart reading): counters from zero, nothing permitted
            assert sock2 is sock and sock2.transport is not None and not sock2.closed
            assert sock2.transport.get_protocol() is sock2
            assert sock2.from_peer_packets == 0 and sock2.to_peer_packets == 0
            assert sock2.permitted == {} and sock2.channels == {}
            r.relays.permit(Permit(relay2, V4, 1e9))
            r.relays.bind(Bind(relay2, flow2, 0x4000, peer_address))
            peer.sendto(b"fresh", raw(relay2))
            await wait_for(lambda: len(new.got) == 1)
            assert new.got[0][0] == channel_data(0x4000, b"fresh", stream=False)

            # released again; this time the loop reads the late datagram while it is idle
            r.relays.relay_closed(RelayClosed(relay2))
            peer.sendto(b"late, read while idle", raw(relay2))
            await settle()
            _, relay3 = _reserve(r, newer)
            assert relay3 == relay and r.relays.reused == 2 and r.relays.drained == 1
            r.relays.permit(Permit(relay3, V4, 1e9))
            await settle()
            assert newer.got == [] and len(new.got) == 1 and len(old.got) == 1
            peer.sendto(b"for the newest", raw(relay3))
            await wait_for(lambda: len(newer.got) == 1)
            assert stun.decode(newer.got[0][0]).get(DATA) == b"for the newest"
            assert r.pool.in_use == 1  # one port served all three allocations
        finally:
            for e in (old, new, newer):
                e.close()
            peer.close()
            await r.stop()
        assert r.pool.in_use == 0

    asyncio.run(main())


def test_flooded_idle_relay_socket_is_closed_not_reused() -> None:
    async def main() -> None:
        r = await rig()
        old, new = await endpoint(), await endpoint()
        peer = s.socket(s.AF_INET, s.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        try:
            _, relay, _ = await allocation(r, old)
            r.relays.relay_closed(RelayClosed(relay))
            for _ in range(DRAIN_LIMIT + 1):  # more than a reuse may drain
                peer.sendto(b"flood", raw(relay))
            _, relay2 = _reserve(r, new)
            assert relay2 != relay and r.relays.reused == 0 and r.relays.idle == 0
            r.relays.permit(Permit(relay2, V4, 1e9))
            await settle()
            assert new.got == [] and old.got == []
            assert r.pool.in_use == 1  # the flooded socket's port went back to the pool
        finally:
            old.close()
            new.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_idle_relay_sockets_are_bounded_and_freed_by_stop() -> None:
    async def main() -> None:
        r = await rig()
        r.relays.idle_limit = 2
        clients = [await endpoint() for _ in range(4)]
        try:
            relays = [(await allocation(r, c))[1] for c in clients]
            for relay in relays:
                r.relays.relay_closed(RelayClosed(relay))
            assert r.relays.idle == 2  # the two oldest were closed, their pair freed
            assert r.pool.in_use == 1  # relays 2 and 3: the two ports of one pair
            _, again = _reserve(r, clients[0])
            assert again == relays[2]  # the longest idle is reused first
            r.relays.stop()
            assert r.relays.idle == 0 and r.pool.in_use == 0
        finally:
            for c in clients:
                c.close()
            await r.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    "addr",
    [
        ("192.0.2.7", 3478),
        ("127.77.3.200", 1),
        ("0.0.0.0", 0),
        ("2001:db8::7", 50000, 0, 0),
        ("::ffff:192.0.2.7", 9, 0, 0),  # IPv4-mapped: stays IPv6, as from_sockaddr says
        ("::1", 65535, 7, 0),  # a flow label changes nothing
        ("fe80::1", 5, 0, 1),  # a scope id: through from_sockaddr
    ],
)
def test_source_address_is_what_from_sockaddr_gives_with_a_cached_hash(
    addr: tuple[object, ...],
) -> None:
    ip, port = source_address(addr)
    plain_ip, plain_port = from_sockaddr(addr)
    assert (ip, port) == (plain_ip, plain_port)
    assert ip.version == plain_ip.version
    assert hash(ip) == hash(plain_ip) and hash((ip, port)) == hash((plain_ip, plain_port))
    assert str(ip) == str(plain_ip) and repr(ip) == repr(plain_ip)
    assert {plain_ip: 1}[ip] == 1 and {ip: 1}[plain_ip] == 1


@pytest.mark.parametrize(
    "addr",
    [
        ("192.0.2", 1),
        ("999.0.0.1", 1),
        ("2001:db8::g", 1, 0, 0),
        ("192.0.2.1", "1"),
        (b"192.0.2.1", 1),
        ("192.0.2.1",),
        ("2001:db8::1", 1, 0),
    ],
)
def test_source_address_refuses_what_is_not_a_socket_address(addr: tuple[object, ...]) -> None:
    with pytest.raises((TypeError, ValueError, IndexError)):
        source_address(addr)
