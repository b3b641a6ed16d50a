# A loopback forward proxy that makes its client an IPv6-only client (issue 13 --browser).
# Rules: RFC 9110 §9.3.6 CONNECT and absolute-form requests (RFC 9112 §3.2.2) only; a
# name is resolved with AAAA only and reached only over IPv6; an IPv4 literal or a name
# without AAAA gets 502 with the reason in the status line, recorded in ``refused``;
# request head bounded (MAX_HEAD), one request per client connection (Connection: close).
"""An IPv6-only forward proxy on loopback for headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from urllib.parse import urlsplit

MAX_HEAD = 16384
NO_AAAA = "no AAAA"
IPV4_LITERAL = "IPv4 literal"
UNREACHABLE = "IPv6 connect failed"

Lookup = Callable[[str], Awaitable[Sequence[IPv6Address]]]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: host (name or literal), port, and the origin-form path."""

    host: str
    port: int
    path: str
    tunnel: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the proxy refused, and why."""

    host: str
    port: int
    reason: str


def parse_request_line(line: str) -> Target | None:
    """The target of ``CONNECT host:port`` or ``GET http://host[:port]/path``, else None."""
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    method, uri, _ = parts
    if method == "CONNECT":
        split = urlsplit("//" + uri)
        try:
            port = split.port
        except ValueError:
            return None
        if not split.hostname or port is None:
            return None
        return Target(split.hostname, port, "", tunnel=True)
    split = urlsplit(uri)
    if split.scheme != "http" or not split.hostname:
        return None
    try:
        port = split.port or 80
    except ValueError:
        return None
    path = split.path or "/"
    if split.query:
        path += "?" + split.query
    return Target(split.hostname, port, path, tunnel=False)


def literal_decision(host: str) -> IPv6Address | str | None:
    """An IPv6 literal to connect to, a refusal reason for an IPv4 literal, None for a name."""
    try:
        address = ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, IPv4Address):
        return IPV4_LITERAL
    if address.ipv4_mapped is not None:
        return IPV4_LITERAL
    return address


class V6Proxy:
    """``async with V6Proxy(lookup) as proxy``: listens on ``proxy.url``."""

    def __init__(self, lookup: Lookup, *, host: str = "::1", timeout: float = 10.0) -> None:
        self._lookup = lookup
        self._host = host
        self._timeout = timeout
        self._server: asyncio.Server | None = None
        self.refused: list[Refusal] = []
        self.port = 0

    @property
    def url(self) -> str:
        """The ``--proxy-server`` value."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> V6Proxy:
        self._server = await asyncio.start_server(self._client, self._host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def reason_for(self, host: str) -> str | None:
        """Why requests to ``host`` were refused, if they were."""
        bare = host.strip("[]").lower()
        for refusal in self.refused:
            if refusal.host.strip("[]").lower() == bare:
                return refusal.reason
        return None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._timeout)
        if len(head) > MAX_HEAD:
            await _reply(writer, 431, "Request Header Fields Too Large")
            return
        lines = head.decode("latin-1").split("\r\n")
        target = parse_request_line(lines[0])
        if target is None:
            await _reply(writer, 400, "Bad Request")
            return
        address = await self._address(target)
        if isinstance(address, str):
            self.refused.append(Refusal(target.host, target.port, address))
            await _reply(writer, 502, address)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(str(address), target.port), self._timeout
            )
        except (OSError, TimeoutError):
            self.refused.append(Refusal(target.host, target.port, UNREACHABLE))
            await _reply(writer, 502, UNREACHABLE)
            return
        try:
            if target.tunnel:
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            else:
                up_writer.write(_forwarded_head(lines, target).encode("latin-1"))
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _address(self, target: Target) -> IPv6Address | str:
        decided = literal_decision(target.host)
        if decided is not None:
            return decided
        try:
            found = await asyncio.wait_for(self._lookup(target.host), self._timeout)
        except (OSError, TimeoutError):
            found = ()
        return found[0] if found else NO_AAAA


def _forwarded_head(lines: list[str], target: Target) -> str:
    method = lines[0].split(" ")[0]
    keep = [
        line
        for line in lines[1:]
        if line
        and line.split(":", 1)[0].strip().lower()
        not in ("proxy-connection", "connection", "keep-alive", "proxy-authorization")
    ]
    return "\r\n".join([f"{method} {target.path} HTTP/1.1", *keep, "Connection: close", "", ""])


async def _reply(writer: asyncio.StreamWriter, code: int, reason: str) -> None:
    body = f"{code} {reason}\n".encode()
    writer.write(
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
        + body
    )
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass
