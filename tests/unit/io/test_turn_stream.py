"""TURN over TCP on real loopback sockets: framing of split and coalesced STUN and
ChannelData, oversize and garbage streams closed, idle connections closed, ChannelData
padded on streams, RFC 6062 peer connections and the splice."""

from __future__ import annotations

import asyncio
import ssl
import struct
from pathlib import Path

import pytest

from rtc64.errors import ConfigError
from rtc64.io.tls import server_identity
from rtc64.io.turn_fastpath import channel_data
from rtc64.io.turn_listeners import ListenerLimits, TurnListeners
from rtc64.net.address import Family
from rtc64.net.endpoint import Transport, parse_listen
from rtc64.stun import message as stun
from rtc64.turn.events import Bind, ClientFlow, Permit
from rtc64.turn.protocols import TCP, UDP

from .turn_helpers import V4, Rig, Sink, endpoint, rig, settle, wait_for


def _binding(n: int, pad: int = 0) -> bytes:
    """A Binding request whose transaction id says ``n`` (``pad``: a SOFTWARE attribute)."""
    fields = [(0x8022, b"s" * pad)] if pad else []
    msg = stun.build(stun.Method.BINDING, stun.Class.REQUEST, n.to_bytes(12, "big"), *fields)
    return stun.encode(msg)


async def _connect(r: Rig) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = r.local(Transport.TCP)
    return await asyncio.open_connection(str(host), port)


def test_split_and_coalesced_frames() -> None:
    async def main() -> None:
        r = await rig()
        reader, writer = await _connect(r)
        try:
            a, b, c = _binding(1), _binding(2, pad=5), _binding(3, pad=300)
            writer.write(a + b)  # two messages in one segment
            await writer.drain()
            await wait_for(lambda: len(r.sink.got) == 2)
            for i in range(len(c)):  # one message a byte at a time
                writer.write(c[i : i + 1])
                await writer.drain()
            await wait_for(lambda: len(r.sink.got) == 3)
            assert [g[0] for g in r.sink.got] == [a, b, c]
            conn = r.sink.got[0][4]
            assert conn > 0 and all(g[4] == conn for g in r.sink.got)
            assert all(g[1] is Transport.TCP for g in r.sink.got)
            # a frame split across the 4-byte header
            writer.write(a[:3])
            await writer.drain()
            await settle()
            writer.write(a[3:] + b[:10])
            await writer.drain()
            await wait_for(lambda: len(r.sink.got) == 4)
            writer.write(b[10:])
            await writer.drain()
            await wait_for(lambda: len(r.sink.got) == 5)
            assert r.sink.got[3][0] == a and r.sink.got[4][0] == b
            # the service answers on the same connection
            local, remote = r.sink.got[0][2], r.sink.got[0][3]
            assert r.listeners.send(b"answer", Transport.TCP, local, remote, conn)
            assert await reader.readexactly(6) == b"answer"
        finally:
            writer.close()
            await r.stop()

    asyncio.run(main())


def test_oversize_frame_closes_the_connection() -> None:
    async def main() -> None:
        r = await rig(limits=ListenerLimits(max_frame=1000))
        reader, writer = await _connect(r)
        try:
            big = _binding(1, pad=1200)
            writer.write(big[:100])
            await writer.drain()
            assert await reader.read() == b""  # closed by the server
            await wait_for(lambda: r.listeners.stats.oversize == 1)
            assert r.sink.got == []
            await wait_for(lambda: len(r.sink.closed) == 1)
        finally:
            writer.close()
            await r.stop()

    asyncio.run(main())


def test_garbage_stream_closes_only_that_connection() -> None:
    async def main() -> None:
        r = await rig()
        bad_reader, bad = await _connect(r)
        good_reader, good = await _connect(r)
        try:
            bad.write(b"GET / HTTP/1.1\r\n\r\n")
            await bad.drain()
            assert await bad_reader.read() == b""
            assert r.listeners.stats.garbage == 1
            good.write(_binding(7))
            await good.drain()
            await wait_for(lambda: len(r.sink.got) == 1)
            # ChannelData on a connection without allocation is not a TURN client
            good.write(struct.pack("!HH", 0x5000, 4) + b"abcd")
            await good.drain()
            assert await good_reader.read() == b""
            assert r.listeners.stats.garbage == 2
        finally:
            bad.close()
            good.close()
            await r.stop()

    asyncio.run(main())


def test_idle_connection_without_allocation_closed() -> None:
    async def main() -> None:
        r = await rig(limits=ListenerLimits(idle_timeout=0.2, sweep_interval=0.05))
        reader, writer = await _connect(r)
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert r.listeners.stats.idle_closed == 1
        finally:
            writer.close()
            await r.stop()

    asyncio.run(main())


def test_too_many_connections_refused() -> None:
    async def main() -> None:
        r = await rig(limits=ListenerLimits(max_connections=1))
        _, first = await _connect(r)
        reader, second = await _connect(r)
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert r.listeners.stats.refused_connections == 1
            assert r.listeners.stats.connections == 1
        finally:
            first.close()
            second.close()
            await r.stop()

    asyncio.run(main())


def test_channel_data_over_tcp_is_padded_and_framed() -> None:
    async def main() -> None:
        r = await rig()
        reader, writer = await _connect(r)
        peer = await endpoint()
        try:
            writer.write(_binding(1))
            await writer.drain()
            await wait_for(lambda: len(r.sink.got) == 1)
            _, _, local, remote, conn = r.sink.got[0]
            flow = ClientFlow(Transport.TCP, remote, local, conn)
            r.relays.serving = flow
            relay = r.relays.reserve(Family.INET, UDP, even=False, reserve_next=False)
            r.relays.serving = None
            sock = r.relays.relay_of(relay)
            assert sock is not None
            await wait_for(lambda: sock.transport is not None)
            r.relays.permit(Permit(relay, V4, 1e9))
            r.relays.bind(Bind(relay, flow, 0x4001, peer.address))
            peer.send(b"abcde", (str(relay[0]), relay[1]))
            assert await reader.readexactly(12) == struct.pack("!HH", 0x4001, 5) + b"abcde\0\0\0"
            # two padded frames in one segment, then one split in the middle
            one = channel_data(0x4001, b"123", stream=True)
            two = channel_data(0x4001, b"4567", stream=True)
            writer.write(one + two + one[:3])
            await writer.drain()
            await wait_for(lambda: len(peer.got) == 2)
            writer.write(one[3:])
            await writer.drain()
            await wait_for(lambda: len(peer.got) == 3)
            assert [g[0] for g in peer.got] == [b"123", b"4567", b"123"]
            assert len(r.sink.got) == 1  # the core saw none of it
            # the connection holds an allocation: the idle rule spares it
            assert r.listeners.connections[conn].holds == 1
        finally:
            writer.close()
            peer.close()
            await r.stop()

    asyncio.run(main())


def test_rfc6062_incoming_peer_spliced_to_client_data_connection() -> None:
    async def main() -> None:
        r = await rig()
        offered: list[tuple[object, object]] = []

        def incoming(relay: object, peer: object) -> int | None:
            offered.append((relay, peer))
            return 0x1234 if len(offered) == 1 else None  # the core refuses the second

        r.tcp.incoming = incoming
        try:
            relay = r.relays.reserve(Family.INET, TCP, even=False, reserve_next=False)
            await wait_for(lambda: r.tcp.relays[relay].server is not None)
            peer_reader, peer_writer = await asyncio.open_connection(str(relay[0]), relay[1])
            await wait_for(lambda: 0x1234 in r.tcp.peers)
            peer_writer.write(b"early bytes ")  # before ConnectionBind: held
            await peer_writer.drain()
            refused_reader, refused = await asyncio.open_connection(str(relay[0]), relay[1])
            assert await refused_reader.read() == b""
            assert r.tcp.refused == 1

            data_reader, data_writer = await _connect(r)
            data_writer.write(_binding(9))
            await data_writer.drain()
            await wait_for(lambda: len(r.sink.got) == 1)
            conn = r.listeners.connections[r.sink.got[0][4]]
            peer = r.tcp.peer(0x1234)
            assert peer is not None
            conn.splice(peer)
            peer.splice(conn)
            assert await data_reader.readexactly(12) == b"early bytes "
            data_writer.write(b"from client")
            await data_writer.drain()
            assert await peer_reader.readexactly(11) == b"from client"
            peer_writer.write(b"from peer")
            await peer_writer.drain()
            assert await data_reader.readexactly(9) == b"from peer"
            assert len(r.sink.got) == 1  # raw bytes, never framed as STUN
            peer_writer.close()
            assert await data_reader.read() == b""  # the peer's close reaches the client
            refused.close()
            data_writer.close()
        finally:
            await r.stop()

    asyncio.run(main())


def test_rfc6062_connect_reports_to_the_core() -> None:
    async def main() -> None:
        results: list[tuple[int, bool]] = []
        accepted: list[asyncio.StreamWriter] = []

        async def on_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)

        server = await asyncio.start_server(on_peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r = await rig()

        def connected(cid: int, ok: bool) -> bool:
            results.append((cid, ok))
            return True

        r.tcp.connected = connected
        try:
            relay = r.relays.reserve(Family.INET, TCP, even=False, reserve_next=False)
            await wait_for(lambda: r.tcp.relays[relay].server is not None)
            r.tcp.connect(relay, (V4, port), 77)
            await wait_for(lambda: results == [(77, True)])
            await wait_for(lambda: len(accepted) == 1)
            sockname = accepted[0].get_extra_info("peername")
            assert sockname[1] == relay[1]  # from the relayed transport address (RFC 6062 §5.2)
            server.close()
            await server.wait_closed()
            r.tcp.connect(relay, (V4, port), 78)  # nobody listens any more
            await wait_for(lambda: (78, False) in results)
            assert 78 not in r.tcp.peers
        finally:
            for w in accepted:
                w.close()
            await r.stop()

    asyncio.run(main())


def test_tls_listener_frames_like_tcp(tmp_path: Path) -> None:
    async def main() -> None:
        identity = server_identity(tmp_path, addresses=[V4])
        sink = Sink()
        listeners = TurnListeners(
            [parse_listen("tls:127.0.0.1:0")], sink, server_tls=identity.context
        )
        (bound,) = await listeners.start()
        client_ctx = ssl.create_default_context()
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", bound.port, ssl=client_ctx)
        try:
            a, b = _binding(1), _binding(2, pad=8)
            writer.write(a + b[:7])
            await writer.drain()
            writer.write(b[7:])
            await writer.drain()
            await wait_for(lambda: len(sink.got) == 2)
            assert [g[0] for g in sink.got] == [a, b]
            assert sink.got[0][1] is Transport.TLS
            _, kind, local, remote, conn = sink.got[0]
            assert listeners.send(b"back", kind, local, remote, conn)
            assert await reader.readexactly(4) == b"back"
        finally:
            writer.close()
            await listeners.stop()

    asyncio.run(main())


def test_tls_listener_without_certificate_is_a_config_error() -> None:
    async def main() -> None:
        listeners = TurnListeners([parse_listen("tls:127.0.0.1:0")], Sink())
        with pytest.raises(ConfigError) as err:
            await listeners.start()
        assert err.value.key == "turn.tls_cert"

    asyncio.run(main())


def test_rfc6062_bandwidth_pauses_instead_of_dropping() -> None:
    async def main() -> None:
        r = await rig()
        r.tcp.bandwidth = 50_000
        r.tcp.incoming = lambda relay, peer: 0x77
        try:
            relay = r.relays.reserve(Family.INET, TCP, even=False, reserve_next=False)
            await wait_for(lambda: r.tcp.relays[relay].server is not None)
            peer_reader, peer_writer = await asyncio.open_connection(str(relay[0]), relay[1])
            await wait_for(lambda: 0x77 in r.tcp.peers)
            data_reader, data_writer = await _connect(r)
            data_writer.write(_binding(1))
            await data_writer.drain()
            await wait_for(lambda: len(r.sink.got) == 1)
            conn = r.listeners.connections[r.sink.got[0][4]]
            peer = r.tcp.peer(0x77)
            assert peer is not None
            conn.splice(peer)
            peer.splice(conn)
            blob = bytes(range(256)) * 400  # 100 KiB, twice the budget per second
            peer_writer.write(blob)
            data_writer.write(blob[::-1])
            got_client, got_peer = await asyncio.gather(
                data_reader.readexactly(len(blob)), peer_reader.readexactly(len(blob))
            )
            assert got_client == blob and got_peer == blob[::-1]  # nothing dropped
            assert r.tcp.throttled >= 2  # both directions were held back
            peer_writer.close()
            data_writer.close()
        finally:
            await r.stop()

    asyncio.run(main())


def test_splice_half_close_lets_the_peer_answer() -> None:
    async def main() -> None:
        r = await rig()
        r.tcp.incoming = lambda relay, peer: 0x55
        try:
            relay = r.relays.reserve(Family.INET, TCP, even=False, reserve_next=False)
            await wait_for(lambda: r.tcp.relays[relay].server is not None)
            peer_reader, peer_writer = await asyncio.open_connection(str(relay[0]), relay[1])
            await wait_for(lambda: 0x55 in r.tcp.peers)
            data_reader, data_writer = await _connect(r)
            data_writer.write(_binding(1))
            await data_writer.drain()
            await wait_for(lambda: len(r.sink.got) == 1)
            conn = r.listeners.connections[r.sink.got[0][4]]
            peer = r.tcp.peer(0x55)
            assert peer is not None
            conn.splice(peer)
            peer.splice(conn)
            data_writer.write(b"request")
            data_writer.write_eof()  # the client is done sending
            assert await peer_reader.read() == b"request"  # EOF passed on
            peer_writer.write(b"response")
            peer_writer.close()
            assert await data_reader.read() == b"response"
            data_writer.close()
        finally:
            await r.stop()

    asyncio.run(main())
