"""The probe's sockets on loopback: retransmission, refusal, stream framing, sessions."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from typing import cast

import pytest

from rtc64.probe import sipcheck, wire

LOOP = ip_address("127.0.0.1")
ANSWER = b"SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2\r\n\r\nhi"


class _DropFirst(asyncio.DatagramProtocol):
    """Answers every request but the first (a lost datagram)."""

    def __init__(self) -> None:
        self.seen = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen += 1
        if self.seen > 1 and self.transport is not None:
            self.transport.sendto(b"SIP/2.0 100 Trying\r\n\r\n", addr)  # not final: ignored
            self.transport.sendto(ANSWER, addr)


def test_udp_retransmits_until_an_answer_is_accepted() -> None:
    async def main() -> tuple[wire.Answer, int]:
        loop = asyncio.get_running_loop()
        transport, server = await loop.create_datagram_endpoint(
            _DropFirst, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        try:
            answer = await wire.udp_exchange(
                LOOP, port, b"OPTIONS", sipcheck.is_final_response, timeout=3.0
            )
        finally:
            transport.close()
        return answer, server.seen

    answer, seen = asyncio.run(main())
    assert answer.data == ANSWER
    assert seen == 2


def test_a_closed_port_is_refused_or_times_out_with_a_reason() -> None:
    async def main() -> wire.ProbeIOError:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        transport.close()
        with pytest.raises(wire.ProbeIOError) as info:
            await wire.udp_exchange(LOOP, port, b"x", lambda _: True, timeout=0.6)
        return info.value

    err = asyncio.run(main())
    assert err.reason in ("net.refused", "net.timeout")


def test_stream_framing_and_refused_tcp() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER[:30])  # split across writes: framing must wait for the rest
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(ANSWER[30:] + b"SIP/2.0 200 OK\r\n")
        await writer.drain()
        writer.close()

    async def main() -> tuple[wire.Answer, wire.ProbeIOError]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            answer = await wire.stream_exchange(
                LOOP, port, b"OPTIONS x SIP/2.0\r\n\r\n", sipcheck.frame_length, 2.0
            )
        with pytest.raises(wire.ProbeIOError) as info:
            await wire.stream_exchange(LOOP, port, b"x", sipcheck.frame_length, 2.0)
        return answer, info.value

    answer, refused = asyncio.run(main())
    assert answer.data == ANSWER
    assert answer.connect_time is not None
    assert refused.reason == "net.refused"


def test_a_message_session_keeps_its_socket_and_skips_unmatched_messages() -> None:
    async def main() -> tuple[bytes, bytes, set[tuple[str, int]]]:
        sources: set[tuple[str, int]] = set()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.DatagramTransport, transport)

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                sources.add(addr)
                self.transport.sendto(b"noise", addr)
                self.transport.sendto(b"re:" + data, addr)

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        session = wire.MessageSession(2.0, sipcheck.frame_length)
        try:
            await session.open(LOOP, port, "udp")
            first = await session.request(b"one", lambda m: m.startswith(b"re:"))
            second = await session.request(b"two", lambda m: m == b"re:two")
        finally:
            await session.close()
            transport.close()
        return first, second, sources

    first, second, sources = asyncio.run(main())
    assert (first, second) == (b"re:one", b"re:two")
    assert len(sources) == 1  # one 5-tuple: what a registration or an allocation needs
