"""TCP: framing across split writes, CRLF keep-alives, violations, outbound connections,
idle timeout and limits."""

from __future__ import annotations

import asyncio
import dataclasses

from rtc64.io.connection import Limits
from rtc64.net.endpoint import Transport

from .helpers import FAST, V4, V6, Gateway, cseq, ok, options, port_of, wait_for


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


def test_split_writes_keepalive_and_reply_via_flow() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:[::1]:0"])
        await layer.start()
        try:
            reader, writer = await _connect("::1", port_of(layer, Transport.TCP, 6))
            data = options(1, body=b"v=0\r\n") + options(2)
            for i in range(0, len(data), 7):  # byte dribble across message boundaries
                writer.write(data[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0)
            await wait_for(lambda: len(gw.messages) == 2)
            assert [cseq(m) for m, _ in gw.messages] == [1, 2]
            flow = gw.messages[0][1]
            assert flow.transport is Transport.TCP
            assert flow.connection_id is not None
            assert flow.remote == (V6, writer.get_extra_info("sockname")[1])
            assert gw.messages[1][1] == flow

            writer.write(b"\r\n\r\n")  # RFC 5626 ping: answered with a CRLF pong
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
            assert layer.stats.keepalives == 1

            assert layer.send(ok(1), Transport.TCP, *flow.remote, flow=flow)
            reply = await asyncio.wait_for(reader.readexactly(len(ok(1))), 5)
            assert reply == ok(1)
            assert layer.stats.connections_accepted == 1
            assert layer.stats.connections_open == 1
            writer.close()
            await wait_for(lambda: layer.stats.connections_open == 0)
            assert layer.stats.connections_closed == 1
        finally:
            await layer.stop()

    asyncio.run(main())


def test_framing_violation_closes_only_that_connection() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:127.0.0.1:0"])
        await layer.start()
        try:
            port = port_of(layer, Transport.TCP, 4)
            _, good_w = await _connect("127.0.0.1", port)
            bad_r, bad_w = await _connect("127.0.0.1", port)
            await wait_for(lambda: layer.stats.connections_open == 2)
            bad_w.write(b"GARBAGE GARBAGE\r\n\r\n")
            await bad_w.drain()
            assert await asyncio.wait_for(bad_r.read(), 5) == b""  # closed by the layer
            assert layer.stats.framing_errors == 1
            await wait_for(lambda: layer.stats.connections_open == 1)

            good_w.write(options(3))
            await good_w.drain()
            await wait_for(lambda: len(gw.messages) == 1)
            _, new_w = await _connect("127.0.0.1", port)  # the listener still accepts
            new_w.write(options(4))
            await new_w.drain()
            await wait_for(lambda: len(gw.messages) == 2)
            assert [cseq(m) for m, _ in gw.messages] == [3, 4]
            for w in (good_w, new_w, bad_w):
                w.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_outbound_connection_queues_then_carries_both_directions() -> None:
    async def main() -> None:
        a, b = Gateway(), Gateway()
        layer_a = a.layer(["tcp:127.0.0.1:0", "tcp:[::1]:0"])
        layer_b = b.layer(["tcp:[::1]:0"])
        await layer_a.start()
        await layer_b.start()
        try:
            port_b = port_of(layer_b, Transport.TCP, 6)
            # Sent before the connection is up: queued, then flushed in order.
            assert layer_a.send(options(1), Transport.TCP, V6, port_b)
            assert layer_a.send(options(2), Transport.TCP, V6, port_b)
            await wait_for(lambda: len(b.messages) == 2)
            assert [cseq(m) for m, _ in b.messages] == [1, 2]
            flow_b = b.messages[0][1]
            assert flow_b.remote[0] == V6  # left from the IPv6 side of A
            assert layer_a.connection_count == 1
            assert layer_a.stats.connections_connected == 1

            assert layer_b.send(ok(1), Transport.TCP, *flow_b.remote, flow=flow_b)
            await wait_for(lambda: len(a.messages) == 1)
            flow_a = a.messages[0][1]
            assert flow_a.remote == (V6, port_b)
            # Another send to B reuses the same connection.
            assert layer_a.send(options(3), Transport.TCP, V6, port_b)
            await wait_for(lambda: len(b.messages) == 3)
            assert b.messages[2][1] == flow_b
            assert layer_a.connection_count == 1
        finally:
            await layer_a.stop()
            await layer_b.stop()

    asyncio.run(main())


def test_connect_failure_reports_and_counts() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:127.0.0.1:0"], limits=FAST)
        await layer.start()
        closed = gw.layer(["tcp:127.0.0.1:0"])
        await closed.start()
        dead_port = port_of(closed, Transport.TCP, 4)
        await closed.stop()
        try:
            assert layer.send(options(), Transport.TCP, V4, dead_port)
            await wait_for(lambda: len(gw.send_errors) == 1)
            assert layer.stats.send_errors == 1  # the queued message was dropped
            assert layer.connection_count == 0
            # No TCP listener of that family: refused at once.
            assert not layer.send(options(), Transport.TCP, V6, 5060)
            # WebSocket has no outbound connections.
            assert not layer.send(options(), Transport.WS, V4, 80)
        finally:
            await layer.stop()

    asyncio.run(main())


def test_idle_connections_are_closed() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:127.0.0.1:0"], limits=FAST)
        await layer.start()
        try:
            reader, writer = await _connect("127.0.0.1", port_of(layer, Transport.TCP, 4))
            await wait_for(lambda: layer.stats.connections_open == 1)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert layer.stats.connections_idle_closed == 1
            assert layer.stats.connections_open == 0
            writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_connection_cap_and_buffer_cap() -> None:
    async def main() -> None:
        gw = Gateway()
        limits = dataclasses.replace(Limits(), max_connections=1, max_buffered=1000)
        layer = gw.layer(["tcp:127.0.0.1:0"], limits=limits)
        await layer.start()
        try:
            port = port_of(layer, Transport.TCP, 4)
            _, first = await _connect("127.0.0.1", port)
            await wait_for(lambda: layer.stats.connections_open == 1)
            second_r, second_w = await _connect("127.0.0.1", port)
            assert await asyncio.wait_for(second_r.read(), 5) == b""
            assert layer.stats.connections_rejected == 1
            flow_remote = (V4, first.get_extra_info("sockname")[1])
            assert not layer.send(b"x" * 2000, Transport.TCP, *flow_remote)
            assert layer.stats.overflows == 1
            for w in (first, second_w):
                w.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_malformed_but_framed_message_is_reported_and_the_stream_goes_on() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:127.0.0.1:0"])
        await layer.start()
        try:
            _, writer = await _connect("127.0.0.1", port_of(layer, Transport.TCP, 4))
            broken = options(1).replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS")
            writer.write(broken + options(2))
            await writer.drain()
            await wait_for(lambda: len(gw.messages) == 1)
            assert cseq(gw.messages[0][0]) == 2
            assert len(gw.bad) == 1 and gw.bad[0][1].status == 400
            assert gw.bad[0][2] == gw.messages[0][1]  # same flow
            assert layer.stats.bad_datagrams == 1 and layer.stats.framing_errors == 0
            writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_reply_on_a_closed_flow_fails_without_dialling() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:127.0.0.1:0"])
        await layer.start()
        try:
            _, writer = await _connect("127.0.0.1", port_of(layer, Transport.TCP, 4))
            writer.write(options(1))
            await writer.drain()
            await wait_for(lambda: len(gw.messages) == 1)
            flow = gw.messages[0][1]
            writer.close()
            await wait_for(lambda: layer.connection_count == 0)
            assert not layer.send(ok(1), Transport.TCP, *flow.remote, flow=flow)
            assert layer.connection_count == 0
            assert layer.stats.connections_connected == 0
        finally:
            await layer.stop()

    asyncio.run(main())
