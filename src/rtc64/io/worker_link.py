# Rules (SIP workers and stream connections, issue 12): a TCP/TLS/WS connection belongs to
# the worker that accepted or opened it (connection ids of worker k start at
# k * CONNECTION_ID_SPAN + 1, so a flow names its owner).
# - Sending over a connection another worker owns (a flow's id, or a remote address another
#   worker announced a connection to) hands the message to that worker (SEND); it writes
#   it on its connection. A send the owner cannot make (the connection closed meanwhile,
#   or died with the owner's restart) comes back to the sender (FAILED, with the ticket the
#   SEND carried), which reports it to its transaction like a failure of its own
#   transports: RFC 3261 §17.1.4, the transaction fails over at once instead of timing out.
#   Tickets are kept for ``TICKET_LIFE`` seconds (64 x T1: no transaction waits longer)
#   and at most ``MAX_TICKETS``.
# - A message arriving on a worker's connection, or on its member of a shared UDP port,
#   that belongs to another worker (``worker_owners``: its transaction, dialog, nonce, or
#   a trusted source's requests spread by Call-ID/AOR) goes there with its flow: DELIVER
#   once parsed, RAW for a UDP request handed over before parsing (the owner admits it
#   under overload, parses, counts and taps it, or answers it 400). Requests toward
#   targets with no pinhole leave from the private port (``own_port``) and never cross.
# - Workers announce each connection they open or close (OPEN/CLOSE; an outbound TLS one
#   with the name its server was checked for) and, when they start, that they hold none
#   (RESET; the supervisor says it for a worker that died, ``announce_gone``): every
#   worker knows who owns a connection to a remote address (``has_connection``) without
#   asking. A worker hearing a RESET tells that worker what it holds (OPEN, ALIAS), so a
#   restarted worker learns the live connections and nothing stale.
# - Aliases and connection ids (issue 11, ``worker_conns``): a recorded RFC 5923 alias
#   is announced (ALIAS) and leaves with its connection or its worker. A send another
#   worker's connection serves (a flow's, a registered phone's, one opened and checked
#   for that name, an alias) is handed over with the connection id; the owner writes it
#   on that connection (or another open one to that peer), never a new one (RFC 5626
#   §5.3), else fails it back; an id of no worker, or one leading elsewhere (stale after
#   a restart), is refused and counted (``refused``). A response to a request written
#   for another worker goes back to it by its top Via branch (``SentFor``).
# - Failed authentications are shared (FAIL: source address, user name or none, time):
#   every worker counts every failure, so a source or a user is locked out after
#   ``auth.max_failures`` in all, whichever workers the guesses landed on.
# - Load (LOAD: the share of a core a worker used lately, on change or once a second):
#   with ``sip.spread = "busy"`` a worker hands a trusted source's new Call-IDs to the
#   others only while it is busy and another is less so (``spill_wanted``).
# - Happy eyeballs' memory is shared (HEALTH: family, works, destination): a family that
#   stayed silent for a destination is tried second by every worker, so each destination
#   costs one silent attempt in all, not one per worker.
# - Keepalives (``gateway.keepalive.service``): a worker storing an AOR another worker
#   keeps alive tells it (KEEP: the AOR); an answer to another worker's OPTIONS is handed
#   over as a DELIVER; a CRLF/WebSocket ping toward a connection another worker owns is
#   written by that worker (PING).
# - The channel is a mesh of connected Unix datagram pairs, one per two workers, made by
#   the supervisor, which keeps every end across restarts (what is sent to a restarting
#   worker waits for it); each end queues up to 4 MB (``Channel``: an unconnected
#   datagram socket would hold only ``net.unix.max_dgram_qlen``, 10, datagrams).
#   Malformed channel datagrams are dropped and counted.
#   State the others must learn (RESET, OPEN/CLOSE, ALIAS, failures, health) is never lost to a
#   full channel: it waits in ``worker_backlog``, in order, until the kernel takes it.
"""Messages and connection ownership between SIP worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Protocol, TypeVar

from rtc64.errors import RemoteProtocolError
from rtc64.io import eyeballs_tcp
from rtc64.io.sip_transport import OnSendError, SendFailure, SipTransportLayer
from rtc64.io.worker_backlog import Backlog
from rtc64.io.worker_conns import PeerConnection, PeerConnections, SentFor
from rtc64.io.worker_owners import Owners
from rtc64.net.address import Family, IPAddress
from rtc64.net.endpoint import Flow, SockAddr, Transport
from rtc64.net.eyeballs import HealthCache, Race
from rtc64.sip import tls_identity
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Message, Request

CONNECTION_ID_SPAN = 1 << 40  # connection ids of worker k start at k * span + 1
SEND, DELIVER, OPEN, CLOSE, RESET, FAIL = b"S", b"D", b"O", b"C", b"R", b"F"
KEEP, PING, FAILED, RAW = b"K", b"P", b"X", b"U"
ALIAS, HEALTH, LOAD = b"A", b"H", b"L"
TICKET_LIFE = 32.0  # seconds a handed-over send may still be reported as failed
MAX_TICKETS = 16384
_TICKET = struct.Struct("!I")
_FAIL = struct.Struct("!dH")  # wall-clock time, user name length
_HEALTH = struct.Struct("!B?")  # address family, whether it works
_LOAD = struct.Struct("!f")  # the share of a core the worker used lately
SPILL_SHARE = 0.5
"""``sip.spread = "busy"``: a worker using this share of a core or more..."""
SPILL_MARGIN = 0.15
"""...hands new Call-IDs over while another worker's share is at least this much lower."""
LOAD_EVERY = 1.0
"""Seconds between two load reports at the most (sooner when the share moved by 0.05)."""
LOAD_FRESH = 3 * LOAD_EVERY
"""A worker whose report is older takes nothing handed over for load (it may be gone)."""
_TRANSPORTS = tuple(Transport)
_HEAD = struct.Struct("!cBBQ")  # kind, worker, transport index, connection id (0: none)
_ADDR = struct.Struct("!B16sH")  # address length (4/16), address bytes, port
_TOP_VIA = re.compile(rb"\r\n(?:via|v)[ \t]*:([^\r\n,]*)", re.I)  # our Via: the first one
_BRANCH = re.compile(rb";[ \t]*branch[ \t]*=[ \t]*([^;,\s]+)", re.I)
_ALIAS = re.compile(rb";[ \t]*alias[ \t]*(?:;|$)", re.I)
OnMessage = Callable[[Message, Flow], None]
TargetT = TypeVar("TargetT", bound=eyeballs_tcp.StreamTarget)
KeyLike = IPAddress | str | tuple[str, IPAddress]  # as gateway.ratelimit counts failures


class FailureTracker(Protocol):
    """What the link needs of ``gateway.ratelimit.AuthFailureTracker``."""

    on_failure: Callable[[KeyLike, float], None] | None

    def record_failure(self, key: KeyLike, now: float, *, notify: bool = True) -> object: ...


@dataclass(frozen=True, slots=True)
class _Ticket:
    """The handle of a send made for another worker: whom to tell if it fails."""

    worker: int
    number: int


def owner_of(connection_id: int) -> int:
    """The worker whose transport layer made this connection id."""
    return (connection_id - 1) // CONNECTION_ID_SPAN


def channel_name(directory: str, index: int) -> bytes:
    """Worker ``index``'s name in ``directory`` (the supervisor's private directory)."""
    return os.path.join(directory, f"w{index}").encode()


CHANNEL_BUFFER = 4 * 1024 * 1024
"""Bytes each end of a worker pair may queue (thousands of SIP messages)."""


class Channel:
    """Worker ``index``'s ends of the channel mesh: ``ends[j]`` is one end of a connected
    Unix datagram pair whose other end is worker ``j``'s ``ends[index]`` (None at
    ``index``). Connected pairs, not one bound socket per worker: the kernel caps what
    waits on an unconnected datagram socket at ``net.unix.max_dgram_qlen`` datagrams
    (10 by default, whatever its buffer), which a busy worker's share of a burst exceeds;
    a pair's queue is bounded by its buffer only. The supervisor keeps every end, so what
    is sent to a restarting worker waits for it."""

    __slots__ = ("ends", "index")

    def __init__(self, index: int, ends: Sequence[socket.socket | None]) -> None:
        self.index = index
        self.ends = tuple(ends)

    def __getstate__(self) -> tuple[int, tuple[socket.socket | None, ...]]:
        return self.index, self.ends

    def __setstate__(self, state: tuple[int, tuple[socket.socket | None, ...]]) -> None:
        self.index, self.ends = state

    def readers(self) -> list[socket.socket]:
        """The ends this worker reads."""
        return [end for end in self.ends if end is not None]

    def close(self) -> None:
        for end in self.readers():
            end.close()


def _sized(sock: socket.socket) -> socket.socket:
    """``sock`` with CHANNEL_BUFFER of send and receive buffer (past the system's maximum
    when privileged), non-blocking."""
    for force, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):  # *BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, CHANNEL_BUFFER)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, CHANNEL_BUFFER)
    sock.setblocking(False)
    return sock


def bind_channels(directory: str, count: int) -> list[Channel]:
    """The channel mesh of ``count`` workers (one connected pair per two workers);
    ``directory`` (mode 0700) holds the workers' other private endpoints. The supervisor
    keeps the channels."""
    os.chmod(directory, 0o700)
    ends: list[list[socket.socket | None]] = [[None] * count for _ in range(count)]
    for i in range(count):
        for j in range(i + 1, count):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            ends[i][j], ends[j][i] = _sized(a), _sized(b)
    return [Channel(k, ends[k]) for k in range(count)]


def announce_gone(channels: Sequence[Channel], index: int) -> None:
    """The supervisor's word that worker ``index`` died: the others forget its
    connections and aliases at once (a RESET in its name, on its ends)."""
    for k, end in enumerate(channels[index].ends):
        if end is not None and k != index:
            with contextlib.suppress(OSError):
                end.send(_HEAD.pack(RESET, index, 0, 0))


def _addr(sockaddr: SockAddr) -> bytes:
    packed = sockaddr[0].packed
    return _ADDR.pack(len(packed), packed, sockaddr[1])


def _read_addr(data: bytes, offset: int) -> tuple[SockAddr, int]:
    size, raw, port = _ADDR.unpack_from(data, offset)
    if size not in (4, 16):
        raise ValueError("bad address length")
    return (ip_address(raw[:size]), port), offset + _ADDR.size


class WorkerLink:
    """One worker's side: a ``Sender`` over its transports and the other workers'
    connections, and the filter in front of its ``on_message``."""

    def __init__(
        self,
        index: int,
        channel: Channel,
        names: Sequence[bytes],
        private_ports: Mapping[tuple[Transport, int], int],
        log: logging.Logger,
    ) -> None:
        self.index = index
        self._channel = channel
        self._names = tuple(names)
        self._backlog = Backlog(channel.ends)
        self._peers = PeerConnections()  # the other workers' connections and aliases
        self._sent_for = SentFor()  # branches of requests written for other workers
        self.owners = Owners(index, len(self._names), private_ports, self._sent_for)
        """Which worker a received message belongs to (``worker_owners``)."""
        self._transports: SipTransportLayer | None = None
        self._next: OnMessage | None = None
        self._failed: Callable[[KeyLike, float], object] | None = None
        self._health: HealthCache | None = None
        self._share = 0.0  # this worker's, lately (``publish_load``)
        self._reported = (-1.0, 0.0)  # the share last reported, when
        self._shares: dict[int, tuple[float, float]] = {}  # worker -> (share, when heard)
        self._health_clock: Callable[[], float] = time.monotonic
        self.on_keepalive_changed: Callable[[str], None] | None = None
        self.on_raw_admit: Callable[[bytes, Flow], bool] | None = None
        """The owner's look at a spread request before parsing (True: answered, e.g. a
        503 under overload), as its own UDP listeners do."""
        self.on_send_error: OnSendError | None = None  # this worker's (the proxy's)
        self._tickets: dict[int, tuple[float, object]] = {}  # number -> (when, handle)
        self._next_ticket = 0
        self.log = log
        self.handed = 0  # messages handed to another worker
        self.spread_out = 0  # of which requests handed over unparsed (Route, Call-ID, AOR)
        self.taken = 0  # messages taken from another worker
        self.dropped = 0  # channel datagrams lost or malformed
        self.refused = 0  # sends naming a connection id no worker holds for that peer

    def counters(self) -> dict[str, int]:
        """The channel's counters by name (``/metrics``: ``rtc64_sip_worker_messages``)."""
        return {
            "handed": self.handed,
            "spread": self.spread_out,
            "taken": self.taken,
            "dropped": self.dropped,
            "refused": self.refused,
            "state_queued": self._backlog.queued,
            "state_dropped": self._backlog.dropped,
        }

    # wiring

    def attach(
        self, transports: SipTransportLayer, on_message: OnMessage, *, serve: bool = True
    ) -> None:
        """Wire to ``transports`` (a SipTransportLayer); ``serve``: read the channel now
        (else call ``serve`` once the transports listen: what waited for a restarting
        worker is handled on its sockets, not refused before they exist)."""
        self._transports = transports
        self._next = on_message
        transports.watch_aliases(self.alias_recorded)
        self._broadcast(_HEAD.pack(RESET, self.index, 0, 0))
        if serve:
            self.serve()

    def serve(self) -> None:
        """Start reading the channel."""
        loop = asyncio.get_running_loop()
        for end in self._channel.readers():
            end.setblocking(False)
            loop.add_reader(end.fileno(), self._read, end)

    def private_ports(self, private: Mapping[tuple[Transport, int], int]) -> None:
        """Every worker's private ports after a reload changed ``sip.listen``."""
        self.owners.private = dict(private)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            loop = asyncio.get_running_loop()
            for end in self._channel.readers():
                loop.remove_reader(end.fileno())
        self._backlog.close()
        self.log.info(
            "worker channel: %d messages handed to other workers (%d spread unparsed), "
            "%d taken, %d dropped, %d sends refused",
            self.handed,
            self.spread_out,
            self.taken,
            self.dropped,
            self.refused,
        )

    @property
    def count(self) -> int:
        """How many workers there are."""
        return len(self._names)

    @property
    def _layer(self) -> SipTransportLayer:
        assert self._transports is not None
        return self._transports

    # Sender

    def send(
        self,
        data: bytes,
        transport: Transport,
        address: IPAddress,
        port: int,
        *,
        flow: Flow | None = None,
        server_name: str | None = None,
        handle: object = None,
        own_port: bool = False,
    ) -> bool:
        if flow is not None and flow.transport is not transport:
            flow = None
        if transport.reliable:
            found = self._owner(transport, address, port, flow, server_name)
            if found is not None:
                owner, cid = found
                if not 0 <= owner < len(self._names):
                    self.refused += 1
                    why = f"connection #{cid} belongs to no worker"
                    return self._layer.report_failure(transport, (address, port), why, handle)
                head = _HEAD.pack(SEND, self.index, _TRANSPORTS.index(transport), cid)
                name = (server_name or "").encode()
                ticket = 0 if handle is None else self._ticket(handle)
                body = _addr((address, port)) + struct.pack("!H", len(name)) + name
                body += _TICKET.pack(ticket) + data
                self.log.debug("send over worker %d's %s connection", owner, transport.value)
                if self._send_to(owner, head + body):
                    return True
                self._tickets.pop(ticket, None)
                why = f"worker {owner}'s channel refused the message"
                return self._layer.report_failure(transport, (address, port), why, handle)
        return self._layer.send(
            data,
            transport,
            address,
            port,
            flow=flow,
            server_name=server_name,
            handle=handle,
            own_port=own_port,
        )

    def _ticket(self, handle: object) -> int:
        """A number for ``handle`` that a FAILED from another worker names."""
        now = time.monotonic()
        tickets = self._tickets
        while tickets:  # oldest first (insertion order): drop the expired and the excess
            first = next(iter(tickets))
            if len(tickets) < MAX_TICKETS and tickets[first][0] > now - TICKET_LIFE:
                break
            del tickets[first]
        self._next_ticket = self._next_ticket % 0xFFFFFFFF + 1
        tickets[self._next_ticket] = (now, handle)
        return self._next_ticket

    def send_error(self, failure: SendFailure) -> None:
        """The transport layer's ``on_send_error``: a send made for another worker goes
        back to it; this worker's own go to ``on_send_error``."""
        handle = failure.handle
        if not isinstance(handle, _Ticket):
            if self.on_send_error is not None:
                self.on_send_error(failure)
            return
        head = _HEAD.pack(FAILED, self.index, _TRANSPORTS.index(failure.transport), 0)
        why = failure.reason.encode("utf-8", "replace")[:1000]
        self._send_to(
            handle.worker, head + _addr(failure.remote) + _TICKET.pack(handle.number) + why
        )

    # keepalives (gateway.keepalive.service: KeepaliveSender, KeepaliveShare)

    def keepalive(
        self, transport: Transport, listener: str, remote: SockAddr, payload: bytes
    ) -> bool:
        """A keep-alive (``SipTransportLayer.keepalive``); a stream ping toward another
        worker's connection is written by that worker."""
        if transport.reliable and not self._layer.has_connection(transport, *remote):
            found = self._peers.find(transport, remote)
            if found is not None:
                head = _HEAD.pack(PING, self.index, _TRANSPORTS.index(transport), 0)
                return self._send_to(found.owner, head + _addr(remote) + payload)
        return self._layer.keepalive(transport, listener, remote, payload)

    def keepalive_changed(self, owner: int, aor: str) -> None:
        head = _HEAD.pack(KEEP, self.index, 0, 0)
        self._send_to(owner, head + aor.encode("utf-8", "surrogateescape"))

    def keepalive_answer(self, owner: int, data: bytes, flow: Flow) -> None:
        cid = flow.connection_id or 0
        head = _HEAD.pack(DELIVER, self.index, _TRANSPORTS.index(flow.transport), cid)
        self._send_to(owner, head + _addr(flow.local) + _addr(flow.remote) + data)

    def has_connection(self, transport: Transport, address: IPAddress, port: int) -> bool:
        if self._layer.has_connection(transport, address, port):
            return True
        return self._peers.has(transport, (address, port))

    def peer_connections(self) -> PeerConnections:
        """What this worker knows of the other workers' connections and aliases."""
        return self._peers

    async def connect_race(
        self,
        transport: Transport,
        targets: Sequence[TargetT],
        *,
        attempt_delay: float | None,
        server_name: str | None = None,
    ) -> tuple[TargetT, Race[TargetT] | None]:
        for target in targets:
            remote = (target.address, target.port)
            if self._layer.has_connection(transport, *remote, server_name):
                break  # ours: the transport layer reuses it
            if self._peers.find(transport, remote, server_name) is not None:
                return target, None  # another worker's connection: send() hands it over
        return await self._layer.connect_race(
            transport, targets, attempt_delay=attempt_delay, server_name=server_name
        )

    def _owner(
        self,
        transport: Transport,
        address: IPAddress,
        port: int,
        flow: Flow | None,
        server_name: str | None,
    ) -> tuple[int, int] | None:
        """(another worker that must send this, the id of its connection to use), or None
        (this worker sends it: over its own connection, or a new one)."""
        if flow is not None and flow.connection_id is not None:
            owner = owner_of(flow.connection_id)
            return None if owner == self.index else (owner, flow.connection_id)
        if self._layer.has_connection(transport, address, port, server_name):
            return None
        found = self._peers.find(transport, (address, port), server_name)
        return None if found is None else (found.owner, found.cid)

    # receiving

    def on_raw_request(self, data: bytes, flow: Flow) -> bool:
        """Before parsing, a UDP request: hand it unparsed to the worker its Route (or, on
        a shared port, its Call-ID) names when the rules decide on the raw bytes alone;
        else this worker's ``on_raw_admit``. True: taken (handed over or answered)."""
        owner = self.owners.raw_owner(data, flow)
        if owner is not None:
            head = _HEAD.pack(RAW, self.index, _TRANSPORTS.index(flow.transport), 0)
            if self._send_to(owner, head + _addr(flow.local) + _addr(flow.remote) + data):
                self.spread_out += 1
                return True  # else handled here rather than lost
        return self.on_raw_admit is not None and self.on_raw_admit(data, flow)

    def on_message(self, msg: Message, flow: Flow) -> None:
        """In front of the proxy: hand a message to the worker it belongs to."""
        assert self._next is not None
        if msg.wire is not None:
            owner = self.owners.of(msg, flow)
            if owner is not None and owner != self.index:
                cid = flow.connection_id or 0
                head = _HEAD.pack(DELIVER, self.index, _TRANSPORTS.index(flow.transport), cid)
                self._send_to(owner, head + _addr(flow.local) + _addr(flow.remote) + msg.wire)
                self.log.debug("%s from %s handed to worker %d", _kind(msg), flow, owner)
                return
        self._next(msg, flow)

    def share_failures(self, tracker: FailureTracker) -> None:
        """Every failure ``tracker`` records goes to the other workers' trackers too."""
        tracker.on_failure = self._failure

        def apply(key: KeyLike, when: float) -> object:
            return tracker.record_failure(key, when, notify=False)

        self._failed = apply

    def share_health(self, cache: HealthCache, clock: Callable[[], float]) -> None:
        """Happy eyeballs' memory is the gateway's, not the worker's: a family ``cache``
        learns is failing (or working again) for a destination is told to the others,
        which record it at once (at their ``clock``'s now: the channel takes
        microseconds), so each destination costs one silent attempt in all."""
        cache.on_change = self._health_changed
        self._health, self._health_clock = cache, clock

    def publish_load(self, share: float) -> None:
        """This worker's share of a core (``LagMonitor.on_share``, every tick): the
        others hear it when it moved by 0.05 or once a second (LOAD, lost if a channel
        is full: the next report replaces it)."""
        self._share = share
        last, when = self._reported
        now = time.monotonic()
        if abs(share - last) < 0.05 and now - when < LOAD_EVERY:
            return
        self._reported = (share, now)
        data = _HEAD.pack(LOAD, self.index, 0, 0) + _LOAD.pack(share)
        for k, end in enumerate(self._channel.ends):
            if end is not None and k != self.index:
                with contextlib.suppress(OSError):
                    end.send(data)

    def spill_wanted(self) -> bool:
        """Whether this worker should hand new Call-IDs over now (``sip.spread =
        "busy"``): it uses ``SPILL_SHARE`` of a core or more and another worker, heard
        from lately, uses ``SPILL_MARGIN`` less."""
        share = self._share
        if share < SPILL_SHARE:
            return False
        fresh = time.monotonic() - LOAD_FRESH
        return any(
            when >= fresh and other <= share - SPILL_MARGIN for other, when in self._shares.values()
        )

    def _health_changed(self, key: Hashable, family: Family, works: bool) -> None:
        if not isinstance(key, str):
            return  # the proxy's keys are host names or literals
        head = _HEAD.pack(HEALTH, self.index, 0, 0)
        self._broadcast(head + _HEALTH.pack(int(family), works) + key.encode())

    def _failure(self, key: KeyLike, now: float) -> None:
        if isinstance(key, str):
            return  # name-only keys are not recorded by the authenticator
        user, address = key if isinstance(key, tuple) else ("", key)
        name = user.encode()
        head = _HEAD.pack(FAIL, self.index, 0, 0)
        self._broadcast(head + _addr((address, 0)) + _FAIL.pack(now, len(name)) + name)

    def connection_changed(
        self, transport: Transport, remote: SockAddr, cid: int, up: bool
    ) -> None:
        """The transport layer opened (``up``) or closed a connection: tell the others."""
        if not up:
            head = _HEAD.pack(CLOSE, self.index, _TRANSPORTS.index(transport), cid)
            self._broadcast(head + _addr(remote))
            return
        conn = self._layer.connection(cid)
        name = conn.tls_name if conn is not None and conn.outbound else None
        self._broadcast(self._opened(transport, remote, cid, name))

    def _opened(self, transport: Transport, remote: SockAddr, cid: int, name: str | None) -> bytes:
        """OPEN: the head, the remote, and the name an outbound TLS connection was
        checked for (empty otherwise)."""
        head = _HEAD.pack(OPEN, self.index, _TRANSPORTS.index(transport), cid)
        return head + _addr(remote) + (name or "").encode("utf-8", "replace")

    def alias_recorded(self, key: tuple[str, int], cid: int) -> None:
        """The transport layer recorded an RFC 5923 alias: tell the others."""
        self._broadcast(self._alias(key, cid))

    def _alias(self, key: tuple[str, int], cid: int) -> bytes:
        head = _HEAD.pack(ALIAS, self.index, _TRANSPORTS.index(Transport.TLS), cid)
        return head + struct.pack("!H", key[1]) + key[0].encode("utf-8", "replace")

    def _tell_restarted(self, worker: int) -> None:
        """Worker ``worker`` (re)started: what this worker holds, so it knows the live
        connections and aliases (and nothing from before its restart)."""
        for transport, remote, cid, name in self._layer.connections():
            self._send_to(worker, self._opened(transport, remote, cid, name))
        for key, cid in self._layer.aliases().items():
            self._send_to(worker, self._alias(key, cid))

    def _refusal(
        self, transport: Transport, remote: SockAddr, cid: int, server_name: str | None
    ) -> str | None:
        """Why a SEND naming connection ``cid`` must not be written here, or None: the
        connection must lead to ``remote``, or hold an RFC 5923 alias for it."""
        if owner_of(cid) != self.index:
            return f"connection #{cid} is not worker {self.index}'s"
        conn = self._layer.connection(cid)
        if conn is None:
            return None  # closed: the transport layer finds another or fails (no new one)
        alias = (tls_identity.normalise(server_name or remote[0].compressed), remote[1])
        if conn.kind is transport and (conn.remote == remote or alias in conn.aliases):
            return None
        return f"connection #{cid} does not lead to {transport.value} {remote[0]}:{remote[1]}"

    def _read(self, end: socket.socket) -> None:
        for _ in range(256):
            try:
                data = end.recv(1 << 17)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.dropped += 1
                return
            try:
                self._handle(data)
            except (ValueError, struct.error, IndexError, RemoteProtocolError) as exc:
                self.dropped += 1
                self.log.debug("worker channel: dropped a datagram: %s", exc)

    def _handle(self, data: bytes) -> None:
        kind, worker, t, cid = _HEAD.unpack_from(data)
        transport = _TRANSPORTS[t]
        at = _HEAD.size
        if kind in (RESET, OPEN, CLOSE, ALIAS):
            self._announced(kind, worker, transport, cid, data[at:])
        elif kind == SEND:
            self._take_send(worker, transport, cid, data[at:])
        elif kind == FAILED:
            remote, at = _read_addr(data, at)
            (ticket,) = _TICKET.unpack_from(data, at)
            why = data[at + _TICKET.size :].decode("utf-8", "replace")
            found = self._tickets.pop(ticket, None)
            if found is not None and self.on_send_error is not None:
                self.log.info("worker %d could not send for us: %s", worker, why)
                self.on_send_error(SendFailure(transport, remote, why, found[1]))
        elif kind == FAIL:
            (address, _), at = _read_addr(data, at)
            when, size = _FAIL.unpack_from(data, at)
            user = data[at + _FAIL.size : at + _FAIL.size + size].decode()
            if self._failed is not None:
                self._failed((user, address) if user else address, when)
        elif kind == LOAD:
            (share,) = _LOAD.unpack_from(data, at)
            if worker == self.index or worker >= len(self._names) or not 0.0 <= share <= 1.0:
                raise ValueError(f"load {share!r} from worker {worker}")
            self._shares[worker] = (share, time.monotonic())
        elif kind == HEALTH:
            number, works = _HEALTH.unpack_from(data, at)
            family, key = Family(number), data[at + _HEALTH.size :].decode()
            if key and self._health is not None:
                learn = self._health.record_success if works else self._health.record_failure
                learn(key, family, self._health_clock(), notify=False)
        elif kind == KEEP:
            aor = data[at:].decode("utf-8", "surrogateescape")
            if aor and self.on_keepalive_changed is not None:
                self.on_keepalive_changed(aor)
        elif kind == PING:
            remote, at = _read_addr(data, at)
            self._layer.keepalive(transport, "", remote, data[at:])
        elif kind == DELIVER:
            local, at = _read_addr(data, at)
            remote, at = _read_addr(data, at)
            msg = parse_datagram(data[at:])
            self.taken += 1
            assert self._next is not None
            self._next(msg, Flow(transport, local, remote, cid or None))
        elif kind == RAW:  # as the UDP listener would have: admit, parse, tap, or a 400
            local, at = _read_addr(data, at)
            remote, at = _read_addr(data, at)
            flow = Flow(transport, local, remote)
            self.taken += 1
            raw = data[at:]
            if self.on_raw_admit is not None and self.on_raw_admit(raw, flow):
                return
            try:
                parsed = parse_datagram(raw)
            except RemoteProtocolError as exc:
                self._layer.bad_message(raw, exc, flow)
                return
            self._layer.deliver(parsed, flow, counted=True)
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def _announced(
        self, kind: bytes, worker: int, transport: Transport, cid: int, body: bytes
    ) -> None:
        """RESET, OPEN, CLOSE or ALIAS from ``worker``: the peer table follows."""
        if worker == self.index or worker >= len(self._names):
            raise ValueError(f"announcement in the name of worker {worker}")
        if kind == RESET:
            self._peers.forget_worker(worker)
            self._tell_restarted(worker)
            return
        if owner_of(cid) != worker:
            raise ValueError(f"connection #{cid} announced by worker {worker}")
        if kind == ALIAS:
            (port,) = struct.unpack_from("!H", body)
            alias = body[2:].decode("utf-8", "replace")
            if not alias or not self._peers.aliased(worker, cid, alias, port):
                raise ValueError(f"alias for unknown connection #{cid}")
            return
        remote, at = _read_addr(body, 0)
        if kind == CLOSE:
            self._peers.closed(cid)
            return
        name = body[at:].decode("utf-8", "replace")
        tls_name = tls_identity.normalise(name) if name else None
        self._peers.opened(PeerConnection(worker, cid, transport, remote, tls_name))

    def _take_send(self, worker: int, transport: Transport, cid: int, body: bytes) -> None:
        """SEND: write ``worker``'s message on our connection ``cid`` (or, without an
        id, on any connection of ours to that peer, else a new one)."""
        (address, port), at = _read_addr(body, 0)
        (size,) = struct.unpack_from("!H", body, at)
        name = body[at + 2 : at + 2 + size].decode() or None
        (ticket,) = _TICKET.unpack_from(body, at + 2 + size)
        payload = body[at + 2 + size + _TICKET.size :]
        handle = _Ticket(worker, ticket) if ticket else None
        self.taken += 1
        refused = self._refusal(transport, (address, port), cid, name) if cid else None
        if refused is not None:
            self.refused += 1
            self.log.info("worker %d's send refused: %s", worker, refused)
            if handle is not None:
                self.send_error(SendFailure(transport, (address, port), refused, handle))
            return
        if not payload.startswith(b"SIP/2.0 "):
            self._remember(payload, worker)
        flow = Flow(transport, (address, port), (address, port), cid) if cid else None
        self._layer.send(
            payload, transport, address, port, flow=flow, server_name=name, handle=handle
        )

    def _remember(self, request: bytes, worker: int) -> None:
        """A request written for ``worker`` whose Via (``;alias``) names the shared port,
        not ``worker``'s own: its responses go back to ``worker`` by the branch."""
        via = _TOP_VIA.search(request)
        if via is None or _ALIAS.search(via.group(1)) is None:
            return
        branch = _BRANCH.search(via.group(1))
        if branch is not None:
            self._sent_for.add(branch.group(1), worker, time.monotonic())

    def _send_to(self, worker: int, data: bytes) -> bool:
        try:
            end = self._channel.ends[worker]
            if end is None:
                raise OSError(f"no channel to worker {worker}")
            end.send(data)
        except OSError as exc:
            self.dropped += 1
            self.log.info("worker channel: cannot reach worker %d: %s", worker, exc)
            return False
        self.handed += 1
        return True

    def _broadcast(self, data: bytes) -> None:
        """State every other worker must learn: never lost to a full channel (queued)."""
        for k in range(len(self._names)):
            if k != self.index:
                self._backlog.send(k, data)


def _kind(msg: Message) -> str:
    if isinstance(msg, Request):
        return msg.method.decode("ascii", "replace")
    return str(msg.status)
