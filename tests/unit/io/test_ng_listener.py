"""ng UDP listener: loopback requests on both families, failures answered, never fatal."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from rtc64.io import ng_listener
from rtc64.net.endpoint import parse_listen
from rtc64.relay.bencode import decode, encode
from rtc64.relay.ng import NgProtocol
from tests.unit.relay.fakes import FakeEngine, kamailio_offer

from .helpers import wait_for

LOG = logging.getLogger("rtc64.test.ng")


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.got.append(data)


async def _client(host: str) -> tuple[asyncio.DatagramTransport, Client]:
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Client, local_addr=(host, 0))


async def _ask(host: str, port: int, data: bytes, replies: int = 1) -> list[bytes]:
    transport, client = await _client(host)
    try:
        transport.sendto(data, (host, port))
        await wait_for(lambda: len(client.got) >= replies)
        return client.got
    finally:
        transport.close()


@pytest.mark.parametrize("spec", ["udp:127.0.0.1:0", "udp:[::1]:0"])
def test_offer_and_ping_over_loopback(spec: str) -> None:
    async def main() -> None:
        engine = FakeEngine()
        listener = await ng_listener.start(parse_listen(spec), NgProtocol(engine), LOG)
        host = str(listener.local[0])
        try:
            (out,) = await _ask(host, listener.port, b"0_1_0 " + encode({"command": "ping"}))
            assert out == b"0_1_0 d6:result4:ponge"
            (out,) = await _ask(host, listener.port, b"0_1_1 " + encode(kamailio_offer()))
            cookie, _, body = out.partition(b" ")
            assert cookie == b"0_1_1"
            assert decode(body)[b"sdp"] == b"offer-sdp:IP4"  # type: ignore[index]
            assert engine.calls() == [b"cid1"]
            assert listener.stats.received == listener.stats.sent == 2
        finally:
            await listener.stop()

    asyncio.run(main())


class Boom:
    """A handler that fails in every way the listener must survive."""

    def __init__(self) -> None:
        self.inner = NgProtocol(FakeEngine())

    def handle(self, data: bytes, now: float, wall: float | None = None) -> bytes | None:
        if data.startswith(b"boom "):
            raise RuntimeError("engine bug")
        if data.startswith(b"big "):
            return b"big " + encode({"result": "ok", "sdp": b"x" * 70000})
        return self.inner.handle(data, now, wall)

    def error_for(self, data: bytes, reason: str) -> bytes | None:
        return self.inner.error_for(data, reason)


def test_failures_are_answered_counted_and_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        listener = await ng_listener.start(parse_listen("udp:127.0.0.1:0"), Boom(), LOG)
        port = listener.port
        try:
            (out,) = await _ask("127.0.0.1", port, b"boom " + encode({"command": "ping"}))
            assert decode(out[5:]) == {b"result": b"error", b"error-reason": b"internal error"}
            (out,) = await _ask("127.0.0.1", port, b"big " + encode({"command": "ping"}))
            reason = decode(out[4:])[b"error-reason"]  # type: ignore[index]
            assert reason == b"reply too large for a datagram"
            # No cookie: nothing to answer with; the next request is still served.
            transport, client = await _client("127.0.0.1")
            transport.sendto(b"no-cookie-here", ("127.0.0.1", port))
            transport.sendto(b"\xff\x00 \x01", ("127.0.0.1", port))
            transport.sendto(b"ok1 " + encode({"command": "ping"}), ("127.0.0.1", port))
            await wait_for(lambda: len(client.got) == 1)
            assert client.got == [b"ok1 d6:result4:ponge"]
            transport.close()
            assert listener.stats.internal_errors == 1
            assert listener.stats.oversized == 1
            assert listener.stats.received == 5 and listener.stats.sent == 3
        finally:
            await listener.stop()

    with caplog.at_level(logging.ERROR, logger="rtc64.test.ng"):
        asyncio.run(main())
    assert "engine bug" in caplog.text


def test_start_refuses_non_udp_and_busy_port_and_stop_frees_it() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="must be UDP"):
            await ng_listener.start(parse_listen("tcp:127.0.0.1:0"), Boom(), LOG)
        listener = await ng_listener.start(parse_listen("udp:127.0.0.1:0"), Boom(), LOG)
        port = listener.port
        with pytest.raises(OSError):
            await ng_listener.start(parse_listen(f"udp:127.0.0.1:{port}"), Boom(), LOG)
        await listener.stop()
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", port))  # free again
        probe.close()

    asyncio.run(main())
