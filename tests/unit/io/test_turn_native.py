"""The native ChannelData forward (``io/turn_native.c``) against the pure path: the same
sends and counters for every datagram a client can send, bad input handed to the pure
path untouched. Skipped when the native build is absent (``make test`` runs these
compiled, where ``RTC64_COMPILED=1`` makes a missing build an error)."""

from __future__ import annotations

import asyncio
import os
import random
import struct
from ipaddress import ip_address

import pytest

from rtc64.io.turn_fastpath import NATIVE, RelaySocket, channel_data
from rtc64.io.turn_listeners import UdpListener
from rtc64.net.endpoint import Transport
from rtc64.relay.ports import PortPool
from rtc64.turn.events import Bind, Permit

from .turn_helpers import (
    V4,
    V6,
    Rig,
    allocation,
    endpoint,
    port_range,
    raw,
    rig,
    settle,
    wait_for,
)

pytestmark = pytest.mark.skipif(NATIVE is None, reason="native build absent (pure path only)")


def _listener(r: Rig, version: int = 4) -> UdpListener:
    return r.listeners.udp[r.local(Transport.UDP, version)]


@pytest.mark.parametrize(
    "addr",
    [("127.0.0.1", 5), ("10.1.2.3", 65535), ("::1", 3478, 0, 0), ("fe80::1", 9, 7, 3)],
)
def test_sockaddr_round_trip(addr: tuple[object, ...]) -> None:
    assert NATIVE is not None
    raw = NATIVE.sockaddr(addr)
    assert len(raw) == (16 if len(addr) == 2 else 28)
    assert NATIVE.address(raw) == addr


@pytest.mark.parametrize(
    "addr",
    [("127.0.0.1",), ("127.0.0.1", 70000), ("::1", 1), ("1.2.3.4.5", 1), ("::1", 1, -1, 0),
     ("::g", 1, 0, 0), (b"127.0.0.1", 1), ("127.0.0.1", "1"), "127.0.0.1:1"],
)  # fmt: skip
def test_sockaddr_refuses_what_is_not_a_socket_address(addr: object) -> None:
    assert NATIVE is not None
    with pytest.raises((TypeError, ValueError, OverflowError)):
        NATIVE.sockaddr(addr)  # type: ignore[arg-type]


def test_bad_channel_data_goes_to_the_pure_path_and_nothing_is_sent() -> None:
    async def main() -> None:
        r = await rig()
        client, mallory, peer = await endpoint(), await endpoint(), await endpoint()
        try:
            flow, relay, sock = await allocation(r, client)
            listener = _listener(r)
            reader = listener.reader
            assert reader is not None
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))
            to = raw(r.local(Transport.UDP))
            stats = r.listeners.stats
            client.send(channel_data(0x4000, b"no permission yet", stream=False), to)
            await wait_for(lambda: stats.channel_refused == 1)
            assert sock.no_permission == 1
            r.relays.permit(Permit(relay, V4, 1e9))
            client.send(b"\x40", to)  # shorter than a header
            client.send(b"\x40\x00\x00", to)
            client.send(struct.pack("!HH", 0x4000, 9) + b"short", to)  # length past the end
            client.send(channel_data(0x4001, b"unbound", stream=False), to)
            mallory.send(channel_data(0x4000, b"wrong source", stream=False), to)
            await wait_for(lambda: stats.garbage + stats.channel_unbound == 5)
            assert (stats.garbage, stats.channel_unbound) == (2, 3)
            await settle()
            assert peer.got == [] and sock.to_peer_packets == 0
            assert reader.counters()["forwarded"] == 0
            assert reader.counters()["handed"] == 6

            client.send(channel_data(0x4000, b"ok" * 3, stream=False) + b"trailing", to)
            await wait_for(lambda: len(peer.got) == 1)
            assert peer.got[0] == (b"okokok", raw(relay))
            assert (sock.to_peer_packets, sock.to_peer_bytes) == (1, 6)
            assert reader.counters()["forwarded"] == 1
            assert r.sink.got == []
        finally:
            for e in (client, mallory, peer):
                e.close()
            await r.stop()

    asyncio.run(main())


def test_ipv6_client_forwarded_natively_and_forgotten_with_itsallocation() -> None:
    async def main() -> None:
        r = await rig()
        client, peer = await endpoint("::1"), await endpoint()
        try:
            flow, relay, _ = await allocation(r, client)
            listener = _listener(r, 6)
            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x7FFF, peer.address))
            assert len(listener.native_clients) == 1
            client.send(channel_data(0x7FFF, b"v6 to v4", stream=False), raw(flow.local))
            await wait_for(lambda: len(peer.got) == 1)
            assert listener.reader is not None and listener.reader.counters()["forwarded"] == 1
            assert peer.got[0][0] == b"v6 to v4"
            r.relays.release(relay)
            assert listener.native_clients == {} and listener.clients == {}
            client.send(channel_data(0x7FFF, b"after release", stream=False), raw(flow.local))
            await wait_for(lambda: r.listeners.stats.channel_unbound == 1)
            assert len(peer.got) == 1
            assert flow.remote[0] == V6
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_a_failed_send_goes_through_the_loop_transport_and_is_counted() -> None:
    async def main() -> None:
        r = await rig()
        client, peer = await endpoint(), await endpoint()
        try:
            flow, relay, sock = await allocation(r, client)
            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))
            sent: list[tuple[bytes, object]] = []

            class FakeTransport:
                def sendto(self, data: bytes, addr: object) -> None:
                    sent.append((data, addr))

                def get_write_buffer_size(self) -> int:
                    return len(sent)  # never drains: later packets queue behind

                def close(self) -> None:
                    pass

            real = sock.transport
            sock.transport = FakeTransport()  # type: ignore[assignment]
            # sendto(2) on a file that is no socket fails: the loop transport takes it
            devnull = os.open(os.devnull, os.O_WRONLY)
            sock.fd = devnull
            to = raw(r.local(Transport.UDP))
            client.send(channel_data(0x4000, b"one", stream=False), to)
            await wait_for(lambda: sock.to_peer_packets == 1)
            assert sent == [(b"one", raw(peer.address))] and sock.queued
            client.send(channel_data(0x4000, b"two", stream=False), to)  # queued: pure path
            await wait_for(lambda: sock.to_peer_packets == 2)
            assert [d for d, _ in sent] == [b"one", b"two"]
            sock.transport = real
            sock.fd = sock.sock.fileno()
            os.close(devnull)
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def _datagrams(rng: random.Random, channels: list[int]) -> list[tuple[int, bytes]]:
    """(sender index, datagram): ChannelData good and bad, STUN-looking, garbage."""
    out = []
    for _ in range(600):
        who = rng.randrange(3)  # 0, 1 have allocations; 2 has none
        kind = rng.randrange(8)
        payload = rng.randbytes(rng.randrange(0, 300))
        if kind <= 2:
            number = rng.choice(channels)
            data = channel_data(number, payload, stream=False)
        elif kind == 3:
            number = rng.randrange(0x4000, 0x8000)
            data = struct.pack("!HH", number, rng.randrange(0, 0x10000)) + payload
        elif kind == 4:
            data = channel_data(rng.choice(channels), payload, stream=False)[: rng.randrange(0, 6)]
        elif kind == 5:
            data = bytes([rng.randrange(0, 0x40)]) + rng.randbytes(19) + payload  # STUN-ish
        else:
            data = rng.randbytes(rng.randrange(0, 40))
        if data:  # an empty datagram is valid UDP but tells nothing here
            out.append((who, data))
    return out


async def _fuzz_run(
    native: bool, datagrams: list[tuple[int, bytes]], low: int
) -> dict[str, object]:
    r = await rig(native=native, pool=PortPool([V4, V6], low, low + 40))
    clients = [await endpoint() for _ in range(3)]
    peers = [await endpoint() for _ in range(2)]
    try:
        socks: list[RelaySocket] = []
        for i in range(2):
            flow, relay, sock = await allocation(r, clients[i])
            socks.append(sock)
            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x4000, peers[0].address))
            r.relays.bind(Bind(relay, flow, 0x4001 + i, peers[1].address))
            if i == 0:  # bound to a peer without permission: refused
                r.relays.bind(Bind(relay, flow, 0x4003, (ip_address("127.0.0.2"), 9)))
        to = raw(r.local(Transport.UDP))
        stats = r.listeners.stats
        for who, data in datagrams:
            clients[who].send(data, to)
            await asyncio.sleep(0)

        def total() -> int:
            fwd = sum(x.to_peer_packets for x in socks)
            return (
                stats.datagrams
                + stats.garbage
                + stats.channel_unbound
                + stats.channel_refused
                + fwd
            )

        await wait_for(lambda: total() == len(datagrams), timeout=20)
        # (an empty payload is counted, not sent: the loop's sendto skips it; bytes tell)
        await wait_for(
            lambda: (
                sum(len(d) for p in peers for d, _ in p.got) == sum(x.to_peer_bytes for x in socks)
            )
        )
        reader = _listener(r).reader
        return {
            "stats": (stats.datagrams, stats.garbage, stats.channel_unbound, stats.channel_refused),
            "relays": [
                (x.to_peer_packets, x.to_peer_bytes, x.no_permission, x.over_limit) for x in socks
            ],
            "peers": [sorted(d for d, _ in p.got) for p in peers],
            "sink": sorted(d for d, *_ in r.sink.got),
            "forwarded_natively": 0 if reader is None else reader.counters()["forwarded"],
        }
    finally:
        for e in (*clients, *peers):
            e.close()
        await r.stop()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_native_and_pure_send_and_count_the_same(seed: int) -> None:
    rng = random.Random(seed)
    datagrams = _datagrams(rng, [0x4000, 0x4001, 0x4002, 0x4003])
    low, _ = port_range(80)
    pure = asyncio.run(_fuzz_run(False, datagrams, low))
    native = asyncio.run(_fuzz_run(True, datagrams, low + 40))
    assert pure.pop("forwarded_natively") == 0
    forwarded = native.pop("forwarded_natively")
    assert native == pure
    # every payload the peers got (the empty ones are never sent) went out natively
    sent = [d for got in native["peers"] for d in got if d]  # type: ignore[attr-defined]
    assert forwarded == len(sent) > 0


def test_a_relay_whose_socket_the_loop_closed_is_never_sent_from_by_number() -> None:
    """After ``connection_lost`` the socket's number may belong to another socket: the
    native path leaves such a relay to the pure path (its loop transport decides)."""

    async def main() -> None:
        r = await rig()
        client, peer = await endpoint(), await endpoint()
        try:
            flow, relay, sock = await allocation(r, client)
            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))
            reader = _listener(r).reader
            assert reader is not None
            to = raw(r.local(Transport.UDP))
            client.send(channel_data(0x4000, b"native", stream=False), to)
            await wait_for(lambda: len(peer.got) == 1)
            assert reader.counters()["forwarded"] == 1
            sock.connection_lost(None)
            assert sock.fd == -1
            client.send(channel_data(0x4000, b"pure", stream=False), to)
            await wait_for(lambda: sock.to_peer_packets == 2)
            assert reader.counters()["forwarded"] == 1
            assert reader.counters()["handed"] == 1
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_bandwidth_limit_on_the_native_path_drops_and_counts_as_the_pure_path() -> None:
    async def main() -> None:
        r = await rig(bandwidth=2000)
        client, peer = await endpoint(), await endpoint()
        try:
            flow, relay, sock = await allocation(r, client)
            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x4000, peer.address))
            reader = _listener(r).reader
            assert reader is not None
            to = raw(r.local(Transport.UDP))
            for _ in range(20):
                client.send(channel_data(0x4000, b"c" * 1000, stream=False), to)
            await wait_for(lambda: sock.to_peer_packets + sock.over_limit == 20)
            assert 0 < sock.to_peer_packets < 20
            assert r.listeners.stats.channel_refused == sock.over_limit
            assert reader.counters()["forwarded"] == sock.to_peer_packets
            assert reader.counters()["handed"] == 0  # refused in C, counted as the pure path
            await wait_for(lambda: len(peer.got) == sock.to_peer_packets)
        finally:
            client.close()
            peer.close()
            await r.stop()

    asyncio.run(main())
