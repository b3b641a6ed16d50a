# Rules (RFC 3261 §18.1.1, §18.2.1, §18.3): one datagram is one SIP message; a
# Content-Length is optional. A datagram that does not parse goes to the owner's
# bad-message hook (it decides between a 400 and a silent drop) and is counted; it never
# stops the listener. Datagrams of only CR, LF or NUL bytes are keep-alives (RFC 5626
# §3.5.1 names CRLF; some phones send NULs): counted and dropped. STUN messages (RFC 5626
# §4.4.2, told apart by RFC 7983's first byte and the magic cookie; SIP starts with a letter)
# go to ``stun`` when set, whose answer is sent back from this socket; without it they are
# counted and dropped, never parsed as SIP. A response may be taken whole by
# ``raw_response`` before parsing (keepalive answers), and a request by ``raw_request``
# (SIP workers hand a request to the worker it belongs to unparsed); the rest is parsed as
# usual. ICMP errors are logged.
"""SIP over UDP: one listening socket, receive and send."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import cast

from rtc64.errors import RemoteProtocolError
from rtc64.io.connection import ConnectionOwner
from rtc64.net.address import format_hostport, from_sockaddr, to_sockaddr
from rtc64.net.endpoint import Flow, SockAddr, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.stun.message import looks_like_stun

StunHandler = Callable[[bytes, SockAddr], bytes | None]
"""A STUN datagram and its source in, the answer to send back (or None) out."""
RawResponseHandler = Callable[[bytes, Flow], bool]
"""A SIP response datagram before parsing; True: it was taken (not parsed nor delivered)."""
RawRequestHandler = Callable[[bytes, Flow], bool]
"""Any other SIP datagram before parsing; True: it was taken (not parsed nor delivered)."""

_KEEPALIVE_BYTES = b"\r\n\x00"
# Only a datagram starting with one of these (or empty) can be a keep-alive: testing the
# first byte spares every SIP message a stripped copy of itself.
_KEEPALIVE_FIRST = (b"", b"\r", b"\n", b"\x00")
_STUN_FIRST = (b"\x00", b"\x01")  # RFC 7983: STUN's first byte is 0..3; methods here < 0x200


def _sockaddr(remote: SockAddr) -> tuple[str, int]:
    """``to_sockaddr``, with IPv6 text from ``inet_ntop`` (20x faster than ``str``)."""
    ip, port = remote
    if isinstance(ip, IPv6Address) and ip.scope_id is None:
        return socket.inet_ntop(socket.AF_INET6, ip.packed), port
    return to_sockaddr(ip, port)


class UdpListener(asyncio.DatagramProtocol):
    """Receives SIP datagrams on one socket and sends from it."""

    def __init__(
        self,
        owner: ConnectionOwner,
        sock: socket.socket,
        stun: StunHandler | None = None,
        raw_response: RawResponseHandler | None = None,
        raw_request: RawRequestHandler | None = None,
    ) -> None:
        self.owner = owner
        self.sock = sock
        self.stun = stun
        self.raw_response = raw_response
        self.raw_request = raw_request
        self.local: SockAddr = from_sockaddr(sock.getsockname())
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        try:
            remote = from_sockaddr(addr)
        except (TypeError, ValueError):
            return
        if data[:1] in _STUN_FIRST and looks_like_stun(data):
            self._stun(data, remote)
            return
        if data[:1] in _KEEPALIVE_FIRST and not data.strip(_KEEPALIVE_BYTES):
            self.owner.stats.keepalives += 1
            return
        flow = Flow(Transport.UDP, self.local, remote)
        raw = self.raw_response if data[:8] == b"SIP/2.0 " else self.raw_request
        if raw is not None:
            try:
                if raw(data, flow):
                    self.owner.stats.received += 1
                    return
            except Exception:
                self.owner.log.exception("raw datagram handler failed on %s", flow)
        try:
            msg = parse_datagram(data)
        except RemoteProtocolError as exc:
            self.owner.bad_message(data, exc, flow)
            return
        self.owner.deliver(msg, flow)

    def _stun(self, data: bytes, remote: SockAddr) -> None:
        stats = self.owner.stats
        stats.stun_received += 1
        if self.stun is None:
            return
        try:
            reply = self.stun(data, remote)
        except Exception:
            self.owner.log.exception("STUN handler failed on a datagram from %s", remote)
            return
        if reply is not None and self.send(reply, remote, count=False):
            stats.stun_answered += 1

    def error_received(self, exc: Exception) -> None:
        self.owner.log.debug("UDP %s: %s", format_hostport(*self.local), exc)

    def send(self, data: bytes, remote: SockAddr, *, count: bool = True) -> bool:
        """Send one datagram to ``remote``; False if the socket refused it. ``count``
        False: not a SIP message (a keepalive, a STUN answer), not counted as sent."""
        if self._transport is None or self._transport.is_closing():
            self.owner.stats.send_errors += 1
            return False
        try:
            self._transport.sendto(data, _sockaddr(remote))
        except (OSError, ValueError) as exc:
            self.owner.stats.send_errors += 1
            self.owner.log.debug("UDP send to %s failed: %s", format_hostport(*remote), exc)
            return False
        if count:
            self.owner.stats.sent += 1
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        else:
            self.sock.close()
