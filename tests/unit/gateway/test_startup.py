"""Traffic while the gateway starts: the listeners are bound before the proxy exists (it
needs them), so requests in that window get 503 Retry-After and nothing raises."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from rtc64 import config, serve
from rtc64.serve import Gateway


def _options(n: int, port: int) -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK-early-{n}\r\n"
        f"Max-Forwards: 70\r\n"
        f"To: <sip:127.0.0.1>\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=early{n}\r\n"
        f"Call-ID: early-{n}@127.0.0.1\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


async def _ask(sock: socket.socket, target: tuple[str, int], data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    sock.sendto(data, target)
    return await asyncio.wait_for(loop.sock_recv(sock, 65535), 5.0)


def test_requests_during_start_get_503_and_nothing_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config.load(
        None,
        {
            "sip.listen": ["udp:127.0.0.1:0"],
            "general.data_dir": str(tmp_path),
            "media.addresses": ["127.0.0.1"],
            "ng.listen": "udp:127.0.0.1:0",  # start-up stalls in its start (below)
        },
    )
    release = asyncio.Event()
    real = serve.ngserver.start

    async def slow_ng(*args: Any, **kwargs: Any) -> Any:
        await release.wait()  # start-up stalls after the listeners are bound
        return await real(*args, **kwargs)

    monkeypatch.setattr(serve.ngserver, "start", slow_ng)
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        gw = Gateway(cfg, logging.getLogger("rtc64.test"))
        starting = asyncio.create_task(gw.start())
        while gw.transports is None or not gw.transports.listeners:
            assert not starting.done(), starting
            await asyncio.sleep(0.01)
        target = ("127.0.0.1", gw.transports.listeners[0].port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        try:
            early = await _ask(sock, target, _options(1, port))
            assert early.startswith(b"SIP/2.0 503 "), early
            assert b"\r\nRetry-After: " in early
            assert b"branch=z9hG4bK-early-1" in early
            # A response, an ACK and garbage are dropped without a word.
            sock.sendto(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1\r\n\r\n", target)
            sock.sendto(_options(2, port).replace(b"OPTIONS", b"ACK"), target)
            sock.sendto(b"\x00garbage", target)
            assert not starting.done()
            release.set()
            await asyncio.wait_for(starting, 20.0)
            ready = await _ask(sock, target, _options(3, port))
            assert ready.startswith(b"SIP/2.0 "), ready
            assert b"early-3" in ready and b"(starting)" not in ready
        finally:
            sock.close()
            await gw.stop()

    asyncio.run(main())
    failures = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]
