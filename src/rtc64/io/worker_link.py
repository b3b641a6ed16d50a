# Rules (SIP workers and stream connections, issue 12): a TCP/TLS/WS connection belongs to
# the worker that accepted or opened it (connection ids of worker k start at
# k * CONNECTION_ID_SPAN + 1, so a flow names its owner).
# - Sending over a connection another worker owns (a flow's id, or a remote address another
#   worker announced a connection to) hands the message to that worker (SEND); it writes
#   it on its connection. A send the owner cannot make is dropped there (the sender's
#   transaction times out: RFC 3261 §17.1.1.2 Timer B/F).
# - A message arriving on a worker's connection, or on its member of a shared UDP port,
#   that belongs to another worker's transaction or dialog goes there with its flow
#   (DELIVER): a response whose top Via names another worker's private port (UDP: a
#   request sent from the shared port, toward a pinhole, is answered there by a UA
#   honouring our ``rport``), a request whose top Route does. Requests toward targets
#   with no pinhole leave from the private port (``own_port``) and never cross.
# - Workers announce each connection they open or close (OPEN/CLOSE) and, when they
#   start, that they hold none (RESET): every worker knows who owns a connection to a
#   remote address (``has_connection``) without asking.
# - Failed authentications are shared (FAIL: source address, user name or none, time):
#   every worker counts every failure, so a source or a user is locked out after
#   ``auth.max_failures`` in all, whichever workers the guesses landed on.
# - The channel is one Unix datagram socket per worker, bound by the supervisor in a
#   directory only its user can enter (0700), kept across restarts (what is sent to a
#   restarting worker waits for it). Malformed channel datagrams are dropped and counted.
"""Messages and connection ownership between SIP worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from ipaddress import ip_address
from typing import Protocol, TypeVar

from rtc64.errors import RemoteProtocolError
from rtc64.io import eyeballs_tcp
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, SockAddr, Transport
from rtc64.net.eyeballs import Race
from rtc64.sip import headers as sh
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Message, Request
from rtc64.sip.uri import SipUri

CONNECTION_ID_SPAN = 1 << 40  # connection ids of worker k start at k * span + 1
SEND, DELIVER, OPEN, CLOSE, RESET, FAIL = b"S", b"D", b"O", b"C", b"R", b"F"
_FAIL = struct.Struct("!dH")  # wall-clock time, user name length
_TRANSPORTS = tuple(Transport)
_HEAD = struct.Struct("!cBBQ")  # kind, worker, transport index, connection id (0: none)
_ADDR = struct.Struct("!B16sH")  # address length (4/16), address bytes, port
OnMessage = Callable[[Message, Flow], None]
TargetT = TypeVar("TargetT", bound=eyeballs_tcp.StreamTarget)
KeyLike = IPAddress | str | tuple[str, IPAddress]  # as gateway.ratelimit counts failures


class FailureTracker(Protocol):
    """What the link needs of ``gateway.ratelimit.AuthFailureTracker``."""

    on_failure: Callable[[KeyLike, float], None] | None

    def record_failure(self, key: KeyLike, now: float, *, notify: bool = True) -> object: ...


def owner_of(connection_id: int) -> int:
    """The worker whose transport layer made this connection id."""
    return (connection_id - 1) // CONNECTION_ID_SPAN


def channel_name(directory: str, index: int) -> bytes:
    """The Unix socket path of worker ``index``'s channel in ``directory``."""
    return os.path.join(directory, f"w{index}").encode()


def bind_channels(directory: str, count: int) -> list[socket.socket]:
    """One bound channel socket per worker in ``directory`` (mode 0700: no other user
    can send to them); the supervisor keeps them."""
    os.chmod(directory, 0o700)
    out = []
    for k in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(channel_name(directory, k))
        out.append(sock)
    return out


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
        channel: socket.socket,
        names: Sequence[bytes],
        private_ports: Mapping[tuple[Transport, int], int],
        log: logging.Logger,
    ) -> None:
        self.index = index
        self._channel = channel
        self._names = tuple(names)
        self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._out.setblocking(False)
        self._private = dict(private_ports)  # (transport, port) -> worker
        self._owners: dict[tuple[Transport, SockAddr], int] = {}
        self._transports: SipTransportLayer | None = None
        self._next: OnMessage | None = None
        self._failed: Callable[[KeyLike, float], object] | None = None
        self.log = log
        self.handed = 0  # messages handed to another worker
        self.taken = 0  # messages taken from another worker
        self.dropped = 0  # channel datagrams lost or malformed

    # wiring

    def attach(self, transports: SipTransportLayer, on_message: OnMessage) -> None:
        """Start serving the channel for ``transports`` (a SipTransportLayer)."""
        self._transports = transports
        self._next = on_message
        self._channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self._channel.fileno(), self._read)
        self._broadcast(_HEAD.pack(RESET, self.index, 0, 0))

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(self._channel.fileno())
        self._out.close()
        self.log.info(
            "worker channel: %d messages handed to other workers, %d taken, %d dropped",
            self.handed,
            self.taken,
            self.dropped,
        )

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
        if transport.reliable:
            owner = self._owner(transport, address, port, flow)
            if owner is not None:
                cid = flow.connection_id if flow is not None and flow.connection_id else 0
                head = _HEAD.pack(SEND, self.index, _TRANSPORTS.index(transport), cid)
                name = (server_name or "").encode()
                body = _addr((address, port)) + struct.pack("!H", len(name)) + name + data
                self.log.debug("send over worker %d's %s connection", owner, transport.value)
                return self._send_to(owner, head + body)
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

    def has_connection(self, transport: Transport, address: IPAddress, port: int) -> bool:
        if self._layer.has_connection(transport, address, port):
            return True
        return (transport, (address, port)) in self._owners

    async def connect_race(
        self,
        transport: Transport,
        targets: Sequence[TargetT],
        *,
        attempt_delay: float | None,
        server_name: str | None = None,
    ) -> tuple[TargetT, Race[TargetT] | None]:
        for target in targets:
            if (transport, (target.address, target.port)) in self._owners:
                return target, None  # another worker's connection: send() hands it over
        return await self._layer.connect_race(
            transport, targets, attempt_delay=attempt_delay, server_name=server_name
        )

    def _owner(
        self, transport: Transport, address: IPAddress, port: int, flow: Flow | None
    ) -> int | None:
        """Another worker that must send this, or None (this worker sends it)."""
        if flow is not None and flow.connection_id is not None:
            owner = owner_of(flow.connection_id)
            return None if owner == self.index else owner
        if self._layer.has_connection(transport, address, port):
            return None
        known = self._owners.get((transport, (address, port)))
        return None if known == self.index else known

    # receiving

    def on_message(self, msg: Message, flow: Flow) -> None:
        """In front of the proxy: hand a stream message to the worker it belongs to."""
        assert self._next is not None
        if msg.wire is not None:
            owner = self._belongs_to(msg, flow.transport)
            if owner is not None and owner != self.index:
                cid = flow.connection_id or 0
                head = _HEAD.pack(DELIVER, self.index, _TRANSPORTS.index(flow.transport), cid)
                self._send_to(owner, head + _addr(flow.local) + _addr(flow.remote) + msg.wire)
                self.log.debug("%s from %s handed to worker %d", _kind(msg), flow, owner)
                return
        self._next(msg, flow)

    def _belongs_to(self, msg: Message, transport: Transport) -> int | None:
        if isinstance(msg, Request):
            if msg.get(b"route") is None:
                return None
            try:
                found = sh.routes(msg)
            except RemoteProtocolError:
                return None
            if not found or not isinstance(found[0].uri, SipUri):
                return None
            uri = found[0].uri
            param = uri.param(b"transport")
            try:
                named = Transport(param.decode().lower()) if param else transport
            except ValueError:
                return None
            return None if uri.port is None else self._private.get((named, uri.port))
        top = msg.vias[0]
        try:
            sent = Transport(top.transport.decode().lower())
        except ValueError:
            return None
        return None if top.port is None else self._private.get((sent, top.port))

    def share_failures(self, tracker: FailureTracker) -> None:
        """Every failure ``tracker`` records goes to the other workers' trackers too."""
        tracker.on_failure = self._failure

        def apply(key: KeyLike, when: float) -> object:
            return tracker.record_failure(key, when, notify=False)

        self._failed = apply

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
        kind = OPEN if up else CLOSE
        self._broadcast(
            _HEAD.pack(kind, self.index, _TRANSPORTS.index(transport), cid) + _addr(remote)
        )

    def _read(self) -> None:
        for _ in range(256):
            try:
                data = self._channel.recv(1 << 17)
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
        if kind == RESET:
            self._owners = {key: k for key, k in self._owners.items() if k != worker}
        elif kind in (OPEN, CLOSE):
            remote, _ = _read_addr(data, at)
            if kind == OPEN:
                self._owners[(transport, remote)] = worker
            elif self._owners.get((transport, remote)) == worker:
                del self._owners[(transport, remote)]
        elif kind == SEND:
            (address, port), at = _read_addr(data, at)
            (size,) = struct.unpack_from("!H", data, at)
            name = data[at + 2 : at + 2 + size].decode() or None
            payload = data[at + 2 + size :]
            flow = Flow(transport, (address, port), (address, port), cid) if cid else None
            self.taken += 1
            self._layer.send(payload, transport, address, port, flow=flow, server_name=name)
        elif kind == FAIL:
            (address, _), at = _read_addr(data, at)
            when, size = _FAIL.unpack_from(data, at)
            user = data[at + _FAIL.size : at + _FAIL.size + size].decode()
            if self._failed is not None:
                self._failed((user, address) if user else address, when)
        elif kind == DELIVER:
            local, at = _read_addr(data, at)
            remote, at = _read_addr(data, at)
            msg = parse_datagram(data[at:])
            self.taken += 1
            assert self._next is not None
            self._next(msg, Flow(transport, local, remote, cid or None))
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def _send_to(self, worker: int, data: bytes) -> bool:
        try:
            self._out.sendto(data, self._names[worker])
        except OSError as exc:
            self.dropped += 1
            self.log.info("worker channel: cannot reach worker %d: %s", worker, exc)
            return False
        self.handed += 1
        return True

    def _broadcast(self, data: bytes) -> None:
        for k in range(len(self._names)):
            if k != self.index:
                with contextlib.suppress(OSError):
                    self._out.sendto(data, self._names[k])


def _kind(msg: Message) -> str:
    if isinstance(msg, Request):
        return msg.method.decode("ascii", "replace")
    return str(msg.status)
