"""io.v6proxy: the IPv6-only forward proxy's decisions, and the proxy on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from ipaddress import IPv6Address

import pytest

from rtc64.io import v6proxy as vp


def test_parse_connect_and_absolute_form() -> None:
    assert vp.parse_request_line("CONNECT a.test:443 HTTP/1.1") == vp.Target(
        "a.test", 443, "", tunnel=True
    )
    assert vp.parse_request_line("CONNECT [2001:db8::1]:8443 HTTP/1.1") == vp.Target(
        "2001:db8::1", 8443, "", tunnel=True
    )
    assert vp.parse_request_line("GET http://a.test/x?y=1 HTTP/1.1") == vp.Target(
        "a.test", 80, "/x?y=1", tunnel=False
    )
    assert vp.parse_request_line("GET http://a.test:8080 HTTP/1.0") == vp.Target(
        "a.test", 8080, "/", tunnel=False
    )


@pytest.mark.parametrize(
    "line",
    [
        "GET /origin-form HTTP/1.1",
        "GET https://a.test/ HTTP/1.1",
        "CONNECT a.test HTTP/1.1",
        "CONNECT a.test:99999 HTTP/1.1",
        "GET http://a.test:x/ HTTP/1.1",
        "GET http://a.test/ SIP/2.0",
        "GET  http://a.test/ HTTP/1.1",
        "",
    ],
)
def test_parse_rejects_other_forms(line: str) -> None:
    assert vp.parse_request_line(line) is None


def test_literal_decision() -> None:
    assert vp.literal_decision("192.0.2.1") == vp.IPV4_LITERAL
    assert vp.literal_decision("::ffff:192.0.2.1") == vp.IPV4_LITERAL
    assert vp.literal_decision("[2001:db8::1]") == IPv6Address("2001:db8::1")
    assert vp.literal_decision("a.test") is None


async def _origin(host: str) -> tuple[asyncio.Server, int, list[bytes]]:
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, host, 0)
    return server, int(server.sockets[0].getsockname()[1]), seen


async def _ask(proxy: vp.V6Proxy, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("::1", proxy.port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def _lookup(host: str) -> Sequence[IPv6Address]:
    return [IPv6Address("::1")] if host == "six.test" else []


async def _reaches_and_refuses() -> None:
    six, six_port, seen = await _origin("::1")
    four, four_port, four_seen = await _origin("127.0.0.1")
    try:
        async with vp.V6Proxy(_lookup, timeout=5) as proxy:
            got = await _ask(
                proxy,
                f"GET http://six.test:{six_port}/p?q HTTP/1.1\r\nHost: six.test\r\n"
                "Proxy-Connection: keep-alive\r\n\r\n".encode(),
            )
            assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"ok")
            assert seen[0].startswith(b"GET /p?q HTTP/1.1\r\n")
            assert b"Proxy-Connection" not in seen[0]
            tunnel = await _ask(
                proxy,
                f"CONNECT [::1]:{six_port} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n".encode(),
            )
            assert tunnel.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200")
            v4 = await _ask(proxy, f"CONNECT 127.0.0.1:{four_port} HTTP/1.1\r\n\r\n".encode())
            assert v4.startswith(b"HTTP/1.1 502 IPv4 literal")
            named = await _ask(
                proxy, f"GET http://four.test:{four_port}/ HTTP/1.1\r\n\r\n".encode()
            )
            assert named.startswith(b"HTTP/1.1 502 no AAAA")
            bad = await _ask(proxy, b"GET / HTTP/1.1\r\n\r\n")
            assert bad.startswith(b"HTTP/1.1 400")
            assert proxy.reason_for("127.0.0.1") == vp.IPV4_LITERAL
            assert proxy.reason_for("FOUR.test") == vp.NO_AAAA
            assert proxy.reason_for("six.test") is None
            assert four_seen == []
    finally:
        for server in (six, four):
            server.close()
            await server.wait_closed()


async def _survives() -> None:
    async with vp.V6Proxy(_lookup, timeout=5) as proxy:
        big = b"GET http://six.test/ HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
        assert (await _ask(proxy, big)).startswith(b"HTTP/1.1 431")
        huge = b"GET http://six.test/ HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
        reader, writer = await asyncio.open_connection("::1", proxy.port)
        writer.write(huge)
        try:
            await writer.drain()
            answer = await reader.read()
        except ConnectionResetError:  # closed with the unread rest of the head: RST
            answer = b""
        assert answer == b""
        writer.close()
        reader, writer = await asyncio.open_connection("::1", proxy.port)
        writer.write(b"GET http://six")
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        # still serving
        assert (await _ask(proxy, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400")


def test_proxy_reaches_ipv6_and_refuses_ipv4_with_reason() -> None:
    asyncio.run(_reaches_and_refuses())


def test_proxy_survives_oversize_and_truncated_heads() -> None:
    asyncio.run(_survives())
