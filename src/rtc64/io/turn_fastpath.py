# The TURN data path without the core (RFC 8656 §11-§12, RFC 6156): what one relayed UDP
# socket and the clients' channel tables do per packet once the core installed a
# permission or a channel.
#
# Rules:
# - Peer -> client: a datagram from a peer whose IP holds a permission goes to the
#   allocation's client as ChannelData when the peer's transport address has a channel
#   (padded to 4 on streams, §12.5), else as a Data indication (XOR-PEER-ADDRESS + DATA,
#   a fresh transaction id per packet). Anything else is dropped and counted: the core's
#   Permit/Unpermit/Bind/Unbind events keep these tables exact, so nothing here needs it.
# - Client -> peer: ChannelData whose channel is bound on that client goes out of the
#   channel's relay socket, if the peer's permission still stands (§12.4).
# - Per allocation, one token bucket per direction (bytes/s, ``net.tokenbucket.Bucket``)
#   drops and counts what is over the limit. Counters per relay socket: packets and
#   bytes per direction (the relay's family is the peer side's family).
# - Peer addresses are compared as the socket-address tuples the loop hands in (IPv4
#   ``(host, port)``, IPv6 ``(host, port, 0, 0)``; hosts written by ``inet_ntop``). No
#   logging and no per-packet objects beyond the bytes sent.
# - With the native build (``io._turn_native``, optional) a UDP listener's ChannelData is
#   forwarded in C from the same tables: a ``Route`` then also carries its peer as a
#   ``struct sockaddr`` (``sa``), a relay its socket's ``fd`` (-1 once closed, by us or
#   by the loop: the number may soon belong to another socket) and ``queued`` (a send the
#   kernel refused went to the loop transport's queue: the pure path sends until it
#   drained). Without it nothing changes.
"""Per-packet TURN forwarding: permissions, channels, Data indications, bandwidth."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from ipaddress import IPv4Address, IPv6Address
from time import monotonic
from typing import Protocol, cast

from rtc64.net.address import Family, IPAddress, family_of, from_sockaddr
from rtc64.net.tokenbucket import Bucket

try:
    from rtc64.io import _turn_native
except ImportError:  # no native build, a stale one or RTC64_PURE=1: the pure path only
    _turn_native = None  # type: ignore[assignment]

NATIVE = _turn_native
"""The native forward's module, None when it is not built (``rtc64._compiled``)."""

MAGIC_COOKIE = 0x2112A442
DATA_INDICATION = 0x0017  # method DATA (0x007), class indication
XOR_PEER_ADDRESS = 0x0012
DATA = 0x0013
CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x7FFF

_CD = struct.Struct("!HH")
_HDR = struct.Struct("!HHI")
_XPA4 = struct.Struct("!HHBBH")  # type, length, 0, family, x-port (then 4 address bytes)
_ATTR = struct.Struct("!HH")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")

_RANDOM_BATCH = 256
"""Relays' transaction-id bases drawn per ``os.urandom`` call (one system call per 256
allocations instead of one each; every base is still 96 fresh bits from the kernel)."""
_random_pool: list[int] = []
if hasattr(os, "register_at_fork"):  # a forked worker never reuses its parent's bases
    os.register_at_fork(after_in_child=_random_pool.clear)


def _tid_base() -> int:
    """A fresh random transaction-id base with its low 32 bits clear (the per-packet count)."""
    if not _random_pool:
        raw = os.urandom(12 * _RANDOM_BATCH)
        _random_pool.extend(
            int.from_bytes(raw[i : i + 12], "big") & ~0xFFFFFFFF for i in range(0, len(raw), 12)
        )
    return _random_pool.pop()


SockAddr = tuple[object, ...]
"""A socket address as the event loop hands it in."""


class _Cached:
    """An IP with its hash computed once and its text cached: relay and client addresses
    key a dozen tables per allocation and ``ipaddress`` hashes in Python. Equal to (and
    hashed as) the plain address; ``text`` is the address's own form when known (the
    loop's ``inet_ntop`` text of an IPv4 source), else computed when first asked."""

    __slots__ = ()
    _hash: int
    _text: str | None

    def __init__(self, address: IPAddress | int, text: str | None = None) -> None:
        super().__init__(int(address))  # type: ignore[call-arg]  # the address class
        # the slots are the concrete classes' (two slotted bases cannot share a layout)
        self._hash = super().__hash__()  # type: ignore[misc]
        self._text = text  # type: ignore[misc]

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self._text = super().__str__()  # type: ignore[misc]
        return text

    def __repr__(self) -> str:
        return f"{'IPv4' if isinstance(self, IPv4Address) else 'IPv6'}Address({str(self)!r})"


class _HashedIPv4(_Cached, IPv4Address):
    __slots__ = ("_hash", "_text")


class _HashedIPv6(_Cached, IPv6Address):
    """(For addresses without a scope id.)"""

    __slots__ = ("_hash", "_text")


def hashed_ip(address: IPAddress) -> IPAddress:
    """``address`` with its hash cached (an address with a scope id as it is)."""
    if isinstance(address, IPv4Address):
        return _HashedIPv4(address)
    return address if address.scope_id else _HashedIPv6(address)


def source_address(addr: SockAddr) -> tuple[IPAddress, int]:
    """A datagram's source as the loop gives it, as ``(hashed_ip, port)``: the IP read from
    its binary form (``inet_pton``), not by ``ipaddress``'s text parser. A link-local
    source with a scope id goes through ``net.address.from_sockaddr``. Raises
    ``TypeError``/``ValueError`` for what is not a socket address."""
    host, port = addr[0], addr[1]
    if type(port) is int and isinstance(host, str):
        try:
            if len(addr) == 2:
                packed = socket.inet_pton(socket.AF_INET, host)
                return _HashedIPv4(int.from_bytes(packed, "big"), host), port
            if len(addr) == 4 and not addr[3] and "%" not in host:
                packed = socket.inet_pton(socket.AF_INET6, host)
                return _HashedIPv6(int.from_bytes(packed, "big")), port
        except OSError as exc:
            raise ValueError(f"bad socket address {addr!r}") from exc
    ip, port = from_sockaddr(addr)
    return hashed_ip(ip), port


def raw_address(ip: IPAddress, port: int) -> SockAddr:
    """``(ip, port)`` in the form the loop gives for a datagram from it."""
    if family_of(ip) is Family.INET6:
        host = socket.inet_ntop(socket.AF_INET6, ip.packed)
        scope = getattr(ip, "scope_id", None)  # link-local: the loop gives the index
        if not scope:
            return (host, port, 0, 0)
        index = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
        return (host, port, 0, index)
    return (socket.inet_ntop(socket.AF_INET, ip.packed), port)


def host_text(ip: IPAddress) -> str:
    """The host part of ``raw_address`` (the key of permissions)."""
    af = socket.AF_INET6 if family_of(ip) is Family.INET6 else socket.AF_INET
    return socket.inet_ntop(af, ip.packed)


class ClientOut(Protocol):
    """Where an allocation's client is reached: a UDP source or a stream connection."""

    stream: bool
    channels: dict[int, Route]
    holds: int
    """Relays of this client's allocations (the io's count: the entry goes at 0)."""

    def send(self, data: bytes) -> None: ...


class Route:
    """A bound channel seen from the client: the relay socket and the peer."""

    __slots__ = ("host", "peer", "relay", "sa")

    def __init__(self, relay: RelaySocket, peer: SockAddr) -> None:
        self.relay = relay
        self.peer = peer
        self.host = cast(str, peer[0])
        self.sa: bytes | None = None
        """The peer as a ``struct sockaddr`` for the native forward (None: pure path)."""
        if NATIVE is not None:
            with contextlib.suppress(TypeError, ValueError):  # the pure path sends it
                self.sa = NATIVE.sockaddr(peer)


class RelaySocket(asyncio.DatagramProtocol):
    """One relayed transport address (UDP) of an allocation."""

    __slots__ = (
        "_tid",
        "_tid_base",
        "address",
        "bucket_in",
        "bucket_out",
        "channels",
        "client",
        "closed",
        "errors",
        "family",
        "fd",
        "from_peer_bytes",
        "from_peer_packets",
        "no_permission",
        "over_limit",
        "permitted",
        "queued",
        "sock",
        "to_peer_bytes",
        "to_peer_packets",
        "transport",
    )

    def __init__(
        self,
        address: tuple[IPAddress, int],
        sock: socket.socket,
        client: ClientOut,
        buckets: tuple[Bucket | None, Bucket | None] = (None, None),
    ) -> None:
        self.address = address
        self.family = family_of(address[0])
        self.sock = sock
        self.fd = sock.fileno()
        self.queued = False
        self.transport: asyncio.DatagramTransport | None = None
        self.permitted: dict[str, bytes] = {}  # host -> the address XOR-ed as for IPv4
        self.channels: dict[SockAddr, int] = {}  # peer address -> channel number
        self.reopen(client, buckets)

    def reopen(
        self, client: ClientOut, buckets: tuple[Bucket | None, Bucket | None] = (None, None)
    ) -> None:
        """Serve a new allocation from now on: its client and buckets, counters from zero,
        a fresh transaction-id base; socket and loop transport stay. (Taking over an idle
        socket so: ``transport.set_protocol`` would make uvloop stop and restart reading,
        an epoll change, one ``io_uring_enter``, per allocation.) The caller has emptied
        ``permitted`` and ``channels`` and read what the socket still queued."""
        self.client = client
        self.bucket_in, self.bucket_out = buckets  # peer -> client, client -> peer
        self.closed = False
        self.permitted.clear()
        self.channels.clear()
        self.from_peer_packets = 0
        self.from_peer_bytes = 0
        self.to_peer_packets = 0
        self.to_peer_bytes = 0
        self.no_permission = 0
        self.over_limit = 0
        self.errors = 0
        self._tid_base = _tid_base()
        self._tid = 0

    # --- asyncio -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.closed:
            transport.close()
            return
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fd = -1  # the loop closed the socket: its number may serve another one soon

    def error_received(self, exc: Exception) -> None:
        self.errors += 1

    def datagram_received(self, data: bytes, addr: SockAddr) -> None:
        host = addr[0]
        xaddr = self.permitted.get(host)  # type: ignore[call-overload]
        if xaddr is None:
            self.no_permission += 1
            return
        n = len(data)
        bucket = self.bucket_in
        if bucket is not None and not bucket.take(n, monotonic()):
            self.over_limit += 1
            return
        self.from_peer_packets += 1
        self.from_peer_bytes += n
        client = self.client
        channel = self.channels.get(addr)
        if channel is not None:
            if client.stream:
                client.send(_CD.pack(channel, n) + data + _PAD[n & 3])
            else:
                client.send(_CD.pack(channel, n) + data)
            return
        client.send(self._data_indication(xaddr, cast(int, addr[1]), data))

    # --- the path toward peers ------------------------------------------------------------

    def to_peer(self, data: bytes | memoryview, host: str, peer: SockAddr) -> bool:
        """Send ``data`` to ``peer`` if its IP (``host``) is permitted; False if dropped."""
        if host not in self.permitted:
            self.no_permission += 1
            return False
        n = len(data)
        bucket = self.bucket_out
        if bucket is not None and not bucket.take(n, monotonic()):
            self.over_limit += 1
            return False
        transport = self.transport
        if transport is not None:
            transport.sendto(data, peer)
        elif not self._send_early(data, peer):
            return False
        self.to_peer_packets += 1
        self.to_peer_bytes += n
        return True

    def _send_early(self, data: bytes | memoryview, peer: SockAddr) -> bool:
        """Before the loop's endpoint exists (the first loop turn after Allocate) the bound
        socket sends itself, so a client's first Send indication is never lost."""
        if self.closed:
            self.errors += 1
            return False
        try:
            self.sock.sendto(data, peer)
        except OSError:  # non-blocking: a full buffer drops, as the loop's sendto would
            self.errors += 1
            return False
        return True

    def _data_indication(self, xaddr: bytes, port: int, data: bytes) -> bytes:
        self._tid = tid = (self._tid + 1) & 0xFFFFFFFF
        tid_int = self._tid_base | tid
        n = len(data)
        if len(xaddr) == 4:
            xpa = _XPA4.pack(XOR_PEER_ADDRESS, 8, 0, 1, port ^ 0x2112) + xaddr
            length = 12 + 4 + n + (-n & 3)
        else:
            mask = (MAGIC_COOKIE << 96) | tid_int
            xip = (int.from_bytes(xaddr, "big") ^ mask).to_bytes(16, "big")
            xpa = _XPA4.pack(XOR_PEER_ADDRESS, 20, 0, 2, port ^ 0x2112) + xip
            length = 24 + 4 + n + (-n & 3)
        return b"".join(
            (
                _HDR.pack(DATA_INDICATION, length, MAGIC_COOKIE),
                tid_int.to_bytes(12, "big"),
                xpa,
                _ATTR.pack(DATA, n),
                data,
                _PAD[n & 3],
            )
        )

    # --- tables (from the core's events) ----------------------------------------------------

    def permit(self, ip: IPAddress) -> None:
        if family_of(ip) is Family.INET:
            packed = bytes(a ^ b for a, b in zip(ip.packed, _COOKIE_BYTES, strict=True))
        else:
            packed = ip.packed  # XOR-ed per packet with the cookie and transaction id
        self.permitted[host_text(ip)] = packed

    def unpermit(self, ip: IPAddress) -> None:
        self.permitted.pop(host_text(ip), None)

    def close(self) -> None:
        self.closed = True
        self.fd = -1
        self.permitted.clear()
        self.channels.clear()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        else:
            self.sock.close()


if NATIVE is not None:
    NATIVE.layout(Route, RelaySocket)  # where the native forward reads their slots


def channel_data(channel: int, payload: bytes, *, stream: bool) -> bytes:
    """A ChannelData message (padded to 4 on streams)."""
    n = len(payload)
    return _CD.pack(channel, n) + payload + (_PAD[n & 3] if stream else b"")


def forward_channel_data(client: ClientOut, data: bytes) -> int:
    """Send a client's ChannelData to its peer; 0 sent, 1 unbound/short, 2 refused."""
    route = client.channels.get((data[0] << 8) | data[1])
    length = (data[2] << 8) | data[3]
    if route is None or length > len(data) - 4:
        return 1
    # a copy of the payload costs less than the two memoryview objects of a view
    return 0 if route.relay.to_peer(data[4 : 4 + length], route.host, route.peer) else 2
