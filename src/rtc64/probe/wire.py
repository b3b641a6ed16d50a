"""Sockets for the probe: one request, one answer, measured; nothing kept open.

Rules (RFC 3261 §17.1.2.2 timer E for SIP over UDP, RFC 8489 §6.2.1 RTO for STUN):

- UDP: a connected socket to one address; the request is retransmitted at 0.5 s, 1 s,
  2 s... until ``timeout``; the first datagram ``accept`` takes is the answer. An ICMP
  port unreachable surfaces as ``ConnectionRefusedError``.
- Streams: TCP connect (TLS when a context is given, SNI = ``server_name`` unless it is
  an IP literal), one write, frames read with a ``frame_length`` function until one is
  complete; the connection is closed after the answer. Reads are capped (``MAX_READ``).
- WebSocket (``ws_exchange``): wsproto's client handshake offering a subprotocol, one
  text message, the first whole message back.
- DHCPv4 (``dhcp_discover``): one broadcast from port 68 bound to an interface (root),
  the first answer the caller accepts.
- Every call is bounded by its timeout and reports the elapsed time; ``ProbeIOError``
  carries the reason code (``net.timeout``, ``net.refused``, ``net.unreachable``,
  ``tls.*``) for the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsLocalError
from wsproto.utilities import RemoteProtocolError as WsRemoteError

from rtc64.net.address import IPAddress, from_sockaddr
from rtc64.sip import tls_identity

MAX_READ = 512 * 1024
RTO = 0.5
T = TypeVar("T")
WsError = (WsLocalError, WsRemoteError)


class ProbeIOError(Exception):
    """A network operation failed; ``reason`` is a probe reason code."""

    def __init__(self, reason: str, text: str, elapsed: float = 0.0) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text
        self.elapsed = elapsed


@dataclass(frozen=True, slots=True)
class Answer:
    data: bytes
    elapsed: float
    local: tuple[IPAddress, int]
    connect_time: float | None = None
    peercert: dict[str, object] | None = None
    tls_error: str | None = None


def _classify(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, TimeoutError):
        return "net.timeout", "no answer (timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return "net.refused", "connection refused"
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = exc.verify_message or str(exc)
        if "expired" in text:
            return "tls.expired", text
        if "mismatch" in text or "match" in text:
            return "tls.name-mismatch", text
        return "tls.untrusted", text
    if isinstance(exc, ssl.SSLError):
        return "tls.handshake", exc.reason or str(exc)
    if isinstance(exc, OSError):
        return "net.unreachable", exc.strerror or str(exc)
    return "net.unreachable", str(exc)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, accept: Callable[[bytes], bool]) -> None:
        self.accept = accept
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.done.done() and self.accept(data):
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def udp_exchange(
    address: IPAddress,
    port: int,
    request: bytes | Callable[[tuple[IPAddress, int]], bytes],
    accept: Callable[[bytes], bool],
    timeout: float,
) -> Answer:
    """Send ``request`` (or build it from the local address) until ``accept`` takes a reply."""
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    transport: asyncio.DatagramTransport | None = None
    try:
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _Datagrams(accept), remote_addr=(str(address), port)
        )
        local = from_sockaddr(transport.get_extra_info("sockname"))
        data = request(local) if callable(request) else request
        rto = RTO
        deadline = start + timeout
        while True:
            transport.sendto(data)
            wait = min(rto, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                reply = await asyncio.wait_for(asyncio.shield(proto.done), wait)
                return Answer(reply, time.monotonic() - start, local)
            rto *= 2
    except (OSError, TimeoutError) as exc:
        reason, text = _classify(exc)
        raise ProbeIOError(reason, text, time.monotonic() - start) from None
    finally:
        if transport is not None:
            transport.close()


FrameLength = Callable[[bytes], int | None]
"""Length of the first complete frame in a buffer, None while incomplete."""


async def stream_exchange(
    address: IPAddress,
    port: int,
    request: bytes | Callable[[tuple[IPAddress, int]], bytes],
    frame_length: FrameLength,
    timeout: float,
    *,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
    accept: Callable[[bytes], bool] = lambda _: True,
    until_close: bool = False,
) -> Answer:
    """Connect, send ``request``, read frames until ``accept`` takes one; close.
    ``until_close``: the answer is everything read until the server closes (HTTP/1.0)."""
    start = time.monotonic()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                str(address),
                port,
                ssl=tls,
                server_hostname=server_name if tls is not None else None,
            )
            connected = time.monotonic() - start
            local = from_sockaddr(writer.get_extra_info("sockname"))
            peercert = writer.get_extra_info("peercert") if tls is not None else None
            writer.write(request(local) if callable(request) else request)
            await writer.drain()
            buffer = b""
            while True:
                size = frame_length(buffer)
                if size is not None:
                    frame, buffer = buffer[:size], buffer[size:]
                    if accept(frame):
                        return Answer(frame, time.monotonic() - start, local, connected, peercert)
                    continue
                if len(buffer) > MAX_READ:
                    if until_close:
                        return Answer(buffer, time.monotonic() - start, local, connected, peercert)
                    raise ProbeIOError("net.unreachable", "answer too large")
                chunk = await reader.read(65536)
                if not chunk:
                    if until_close and buffer:
                        return Answer(buffer, time.monotonic() - start, local, connected, peercert)
                    raise ConnectionResetError("connection closed before an answer")
                buffer += chunk
    except ProbeIOError:
        raise
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        reason, text = _classify(exc)
        raise ProbeIOError(reason, text, time.monotonic() - start) from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


async def tls_certificate_error(
    address: IPAddress,
    port: int,
    context: ssl.SSLContext,
    name: str,
    timeout: float,
    *,
    sip_domain: str = "",
) -> tuple[str, str] | None:
    """Handshake with a verifying ``context`` only: None if the certificate is valid for
    ``name`` (or, with ``sip_domain``, names that SIP domain as RFC 5922 §7.2 requires:
    SNI is the domain, the chain is verified, the names are matched by
    ``sip.tls_identity``), else (reason code, text). A failure before TLS (refused,
    timeout) is None: reachability is the request's verdict, not the certificate's."""
    writer: asyncio.StreamWriter | None = None
    if sip_domain:
        context.check_hostname = False  # the chain is still verified; names below
        name = sip_domain
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                str(address), port, ssl=context, server_hostname=name
            )
        if sip_domain:
            peercert = writer.get_extra_info("peercert")
            if not tls_identity.peercert_matches(sip_domain, peercert):
                return (
                    "tls.name-mismatch",
                    f"the certificate does not name the SIP domain {sip_domain} (RFC 5922 "
                    "§7.2 wants the domain, not only the server's host name)",
                )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        reason, text = _classify(exc)
        return (reason, text) if reason.startswith("tls.") else None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
    return None


class StunSession:
    """One client 5-tuple toward a STUN/TURN server (an allocation lives on it).

    UDP retransmits a request at RTO 0.5 s doubling (RFC 8489 §6.2.1) until ``timeout``;
    streams (TCP, TLS) send once and read STUN frames (``frame_length``). Answers are
    matched by transaction id; anything else (Data indications) waits in ``inbox``.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self.local: tuple[IPAddress, int] | None = None
        self.connect_time: float | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[bytes, asyncio.Future[bytes]] = {}

    async def open(
        self,
        address: IPAddress,
        port: int,
        transport: str,
        frame_length: FrameLength,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        start = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                if transport == "udp":
                    loop = asyncio.get_running_loop()
                    self._udp, _ = await loop.create_datagram_endpoint(
                        lambda: _Inbound(self._deliver), remote_addr=(str(address), port)
                    )
                    self.local = from_sockaddr(self._udp.get_extra_info("sockname"))
                else:
                    reader, self._writer = await asyncio.open_connection(
                        str(address), port, ssl=tls, server_hostname=server_name if tls else None
                    )
                    self.local = from_sockaddr(self._writer.get_extra_info("sockname"))
                    self._reader_task = asyncio.create_task(self._read(reader, frame_length))
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            reason, text = _classify(exc)
            raise ProbeIOError(reason, text, time.monotonic() - start) from None
        self.connect_time = time.monotonic() - start

    def _deliver(self, data: bytes) -> None:
        tid = data[8:20] if len(data) >= 20 else b""
        waiter = self._waiting.get(tid)
        if waiter is not None and not waiter.done():
            waiter.set_result(data)
        elif not self.inbox.full():
            self.inbox.put_nowait(data)

    async def _read(self, reader: asyncio.StreamReader, frame_length: FrameLength) -> None:
        buffer = b""
        try:
            while True:
                try:
                    size = frame_length(buffer)
                except ValueError:
                    return
                if size is not None and len(buffer) >= size:
                    self._deliver(buffer[:size])
                    buffer = buffer[size:]
                    continue
                chunk = await reader.read(65536)
                if not chunk or len(buffer) > MAX_READ:
                    return
                buffer += chunk
        except (OSError, ssl.SSLError):
            return

    async def request(self, data: bytes) -> tuple[bytes, float]:
        """Send a request; the answer with its transaction id, and the round-trip time."""
        tid = data[8:20]
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[tid] = future
        start = time.monotonic()
        try:
            if self._udp is not None:
                rto, deadline = RTO, start + self.timeout
                while True:
                    self._udp.sendto(data)
                    wait = min(rto, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError
                    with contextlib.suppress(TimeoutError):
                        answer = await asyncio.wait_for(asyncio.shield(future), wait)
                        return answer, time.monotonic() - start
                    rto *= 2
            assert self._writer is not None
            self._writer.write(data)
            answer = await asyncio.wait_for(future, self.timeout)
            return answer, time.monotonic() - start
        except (OSError, TimeoutError) as exc:
            reason, text = _classify(exc)
            raise ProbeIOError(reason, text, time.monotonic() - start) from None
        finally:
            self._waiting.pop(tid, None)

    @property
    def udp(self) -> bool:
        return self._udp is not None

    def send(self, data: bytes) -> None:
        """Send an indication (no answer expected)."""
        if self._udp is not None:
            self._udp.sendto(data)
        elif self._writer is not None:
            self._writer.write(data)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)


class _Inbound(asyncio.DatagramProtocol):
    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.deliver = deliver

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.deliver(data)


class PeerSocket:
    """A UDP socket playing the remote peer of a relayed echo."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, tuple[IPAddress, int]]] = asyncio.Queue(64)
        self._transport: asyncio.DatagramTransport | None = None
        self.local: tuple[IPAddress, int] | None = None

    async def open(self, local: IPAddress) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _PeerProtocol(self.inbox), local_addr=(str(local), 0)
        )
        self.local = from_sockaddr(self._transport.get_extra_info("sockname"))

    def sendto(self, data: bytes, address: tuple[IPAddress, int]) -> None:
        assert self._transport is not None
        self._transport.sendto(data, (str(address[0]), address[1]))

    async def receive(self, timeout: float) -> tuple[bytes, tuple[IPAddress, int]]:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _PeerProtocol(asyncio.DatagramProtocol):
    def __init__(self, inbox: asyncio.Queue[tuple[bytes, tuple[IPAddress, int]]]) -> None:
        self.inbox = inbox

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.inbox.full():
            self.inbox.put_nowait((data, from_sockaddr(addr)))


async def ws_exchange(
    address: IPAddress,
    port: int,
    request: Callable[[tuple[IPAddress, int]], bytes],
    accept: Callable[[bytes], bool],
    timeout: float,
    *,
    host: str,
    path: str = "/",
    subprotocol: str = "sip",
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> Answer:
    """WebSocket (RFC 6455) upgrade offering ``subprotocol``, one text message out, the
    first message ``accept`` takes back (RFC 7118: one SIP message per WebSocket message).
    A refused upgrade raises ``ProbeIOError`` with reason ``sip.ws-rejected``."""
    start = time.monotonic()
    writer: asyncio.StreamWriter | None = None
    ws = WSConnection(ConnectionType.CLIENT)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                str(address), port, ssl=tls, server_hostname=server_name if tls else None
            )
            connected = time.monotonic() - start
            local = from_sockaddr(writer.get_extra_info("sockname"))
            writer.write(ws.send(Request(host=host, target=path, subprotocols=[subprotocol])))
            parts: list[bytes] = []
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionResetError("connection closed before an answer")
                ws.receive_data(chunk)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        text = request(local).decode("utf-8", "replace")
                        writer.write(ws.send(TextMessage(data=text)))
                    elif isinstance(event, RejectConnection):
                        raise ProbeIOError(
                            "sip.ws-rejected", f"upgrade refused with HTTP {event.status_code}"
                        )
                    elif isinstance(event, TextMessage | BytesMessage):
                        data = event.data
                        parts.append(data.encode() if isinstance(data, str) else bytes(data))
                        if sum(map(len, parts)) > MAX_READ:
                            raise ProbeIOError("sip.bad-response", "WebSocket message too large")
                        if event.message_finished:
                            message = b"".join(parts)
                            parts.clear()
                            if accept(message):
                                return Answer(message, time.monotonic() - start, local, connected)
                    elif isinstance(event, CloseConnection):
                        raise ConnectionResetError("WebSocket closed before an answer")
    except ProbeIOError:
        raise
    except WsError as exc:
        raise ProbeIOError("sip.ws-rejected", str(exc), time.monotonic() - start) from None
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        reason, text = _classify(exc)
        raise ProbeIOError(reason, text, time.monotonic() - start) from None
    finally:
        if writer is not None:
            if ws.state is ConnectionState.OPEN:
                with contextlib.suppress(OSError, *WsError):
                    writer.write(ws.send(CloseConnection(code=1000)))
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


class MessageSession:
    """One client connection for several SIP transactions (REGISTER, INVITE, ACK, BYE).

    UDP retransmits a request (timer E style: 0.5 s doubling) until its answer or
    ``timeout``; TCP/TLS send once and split the stream with ``frame_length``. Every
    received message goes to ``inbox``; ``request`` takes the first one ``match`` accepts
    and drops the others (provisional answers, server pings).
    """

    def __init__(self, timeout: float, frame_length: FrameLength) -> None:
        self._stun = StunSession(timeout)
        self._frame_length = frame_length
        self.timeout = timeout

    @property
    def local(self) -> tuple[IPAddress, int] | None:
        return self._stun.local

    async def open(
        self,
        address: IPAddress,
        port: int,
        transport: str,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        await self._stun.open(
            address, port, "udp" if transport == "udp" else "tcp", self._frame_length,
            tls=tls, server_name=server_name,
        )  # fmt: skip

    def send(self, data: bytes) -> None:
        self._stun.send(data)

    async def request(self, data: bytes, match: Callable[[bytes], bool]) -> bytes:
        start = time.monotonic()
        udp = self._stun.udp
        rto = RTO
        next_send = start
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    now = time.monotonic()
                    if now >= next_send:
                        self._stun.send(data)
                        next_send = now + rto if udp else float("inf")
                        rto *= 2
                    wait = None if next_send == float("inf") else max(next_send - now, 0.01)
                    with contextlib.suppress(TimeoutError):
                        message = await asyncio.wait_for(self._stun.inbox.get(), wait)
                        if match(message):
                            return message
        except (OSError, TimeoutError) as exc:
            reason, text = _classify(exc)
            raise ProbeIOError(reason, text, time.monotonic() - start) from None

    async def close(self) -> None:
        await self._stun.close()


def interfaces_up() -> list[tuple[str, bytes]]:
    """(name, MAC) of every up, non-loopback Ethernet-like interface."""
    found = []
    for _, name in socket.if_nameindex():
        base = Path("/sys/class/net") / name
        try:
            flags = int((base / "flags").read_text().strip(), 16)
            mac = bytes.fromhex((base / "address").read_text().strip().replace(":", ""))
        except (OSError, ValueError):
            continue
        if flags & 0x1 and not flags & 0x8 and len(mac) == 6 and any(mac):
            found.append((name, mac))
    return found


async def dhcp_discover(
    interface: str, packet: bytes, accept: Callable[[bytes], T | None], timeout: float
) -> T | None:
    """Broadcast ``packet`` from 0.0.0.0:68 on ``interface`` (root: SO_BINDTODEVICE) and
    return the first answer ``accept`` makes something of, or None after ``timeout``."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    transport: asyncio.DatagramTransport | None = None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind(("0.0.0.0", 68))  # noqa: S104 - a DHCP client has no address yet
        sock.setblocking(False)
        inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Inbound(lambda d: None if inbox.full() else inbox.put_nowait(d)), sock=sock
        )
        transport.sendto(packet, ("255.255.255.255", 67))
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(inbox.get(), left)
            except TimeoutError:
                return None
            got = accept(data)
            if got is not None:
                return got
        return None
    finally:
        if transport is not None:
            transport.close()
        else:
            sock.close()
