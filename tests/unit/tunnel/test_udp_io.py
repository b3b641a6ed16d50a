"""The tunnel's UDP adapter on loopback: IPv4 peers on an IPv4 and a dual-stack socket."""

from __future__ import annotations

import asyncio
import socket

import pytest

from rtc64.io import tunnel_udp


@pytest.mark.parametrize("host", ["127.0.0.1", "::"])
def test_echo_to_ipv4_peer(host: str) -> None:
    if host == "::" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")

    async def main() -> tuple[bytes, tunnel_udp.Addr]:
        seen: list[tunnel_udp.Addr] = []

        def on_server(data: bytes, addr: tunnel_udp.Addr) -> None:
            seen.append(addr)
            server.send(data[::-1], addr)

        server = await tunnel_udp.open_server(host, 0, on_server)
        got: asyncio.Queue[bytes] = asyncio.Queue()
        client = await tunnel_udp.open_client(
            "127.0.0.1", server.local[1], lambda d, a: got.put_nowait(d)
        )
        try:
            client.send(b"abc")
            reply = await asyncio.wait_for(got.get(), 5)
            return reply, seen[0]
        finally:
            client.close()
            server.close()

    reply, source = asyncio.run(main())
    assert reply == b"cba"
    assert source[0] == "127.0.0.1"  # never the ::ffff: form
