# The media relay's packet path: one UDP socket per local port, legs on them, forwarding.
#
# Rules:
# - One socket per local port, never dual-stack (``io.sockets``: IPv6 sockets are
#   V6ONLY); bound synchronously so a bind failure is reported to the engine at once, read
#   through an asyncio datagram endpoint started right after (the kernel queues what
#   arrives meanwhile).
# - ``datagram_received`` does the minimum on the fast path: compare the source with the
#   leg's learned source, count, (optionally) update RFC 3550 reception statistics, and
#   ``sendto`` out of the peer leg's socket toward the peer's destination. No logging,
#   no allocation beyond what the loop hands in. Sources are compared as the socket
#   address tuples the loop gives (the same form for the same peer every time).
# - Anything else takes the slow path: the latching decision of ``rtp.legs.admit`` over
#   the port's legs (several only for forks sharing the port), drop and count otherwise.
# - Times are ``time.monotonic()`` (CLOCK_MONOTONIC, the same in every process).
# - Configuration (``open``/``update``/``close``) comes from the relay engine; this module
#   knows nothing about calls or SDP.
"""Per-packet RTP/RTCP forwarding on asyncio (uvloop) datagram endpoints."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable, Sequence
from ipaddress import ip_address
from time import monotonic
from typing import cast

from rtc64.io.sockets import udp_socket
from rtc64.net.address import IPAddress, format_hostport, to_sockaddr
from rtc64.rtp.legs import LatchMode, LegCounters, LegSpec, LocalPort, Verdict, admit
from rtc64.rtp.stats import ReceptionStats

MEDIA_RCVBUF = 512 * 1024
SockAddr = tuple[object, ...]


class _Leg:
    """One party's media on one local port (see ``rtp.legs``)."""

    __slots__ = (
        "dest",
        "forwarded",
        "id",
        "last",
        "latched",
        "mode",
        "octets",
        "packets",
        "peer",
        "peer_id",
        "port",
        "remote",
        "source",
        "stats",
        "strict",
        "window_end",
    )

    def __init__(self, leg: int) -> None:
        self.id = leg
        self.port: _Port | None = None
        self.peer_id: int | None = None
        self.peer: _Leg | None = None
        self.remote: tuple[IPAddress, int] | None = None
        self.dest: tuple[str, int] | SockAddr | None = None
        self.source: SockAddr | None = None
        self.latched: tuple[IPAddress, int] | None = None
        self.mode = LatchMode.ANY
        self.strict = False
        self.window_end = 0.0
        self.packets = 0
        self.octets = 0
        self.forwarded = 0
        self.last: float | None = None
        self.stats: ReceptionStats | None = None

    def forget_source(self) -> None:
        self.source = None
        self.latched = None
        self.dest = None if self.remote is None else to_sockaddr(*self.remote)


class _Port(asyncio.DatagramProtocol):
    """The protocol of one local socket."""

    __slots__ = ("closed", "dropped", "errors", "leg", "legs", "local", "transport")

    def __init__(self, local: LocalPort) -> None:
        self.local = local
        self.transport: asyncio.DatagramTransport | None = None
        self.legs: list[_Leg] = []
        self.leg: _Leg | None = None
        self.dropped = 0
        self.errors = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.closed:
            transport.close()
            return
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: SockAddr) -> None:
        leg = self.leg
        if leg is None or addr != leg.source:
            leg = self._admit(addr)
            if leg is None:
                return
        leg.packets += 1
        leg.octets += len(data)
        now = monotonic()
        leg.last = now
        stats = leg.stats
        if stats is not None:
            stats.update(data, now)
        peer = leg.peer
        if peer is not None:
            dest = peer.dest
            port = peer.port
            if dest is not None and port is not None and port.transport is not None:
                port.transport.sendto(data, dest)
                leg.forwarded += 1

    def _admit(self, addr: SockAddr) -> _Leg | None:
        legs = self.legs
        for leg in legs:
            if leg.source == addr:
                self.leg = leg
                return leg
        try:
            host = str(addr[0]).partition("%")[0]
            ip = ip_address(host)
            port = int(addr[1])  # type: ignore[call-overload,unused-ignore]
        except (ValueError, TypeError, IndexError):
            self.dropped += 1
            return None
        now = monotonic()
        if len(legs) > 1:  # forks sharing the port: a fork still unlatched learns first
            legs = sorted(legs, key=lambda leg: leg.latched is not None)
        for leg in legs:
            remote = leg.remote
            verdict = admit(
                leg.mode,
                strict=leg.strict,
                window_open=now < leg.window_end,
                latched=leg.latched is not None,
                signalled_ip=None if remote is None else remote[0],
                signalled_port=None if remote is None else remote[1],
                source_ip=ip,
                source_port=port,
            )
            if verdict is Verdict.LATCH:
                leg.source = addr
                leg.latched = (ip, port)
                leg.dest = addr
                self.leg = leg
                return leg
            if verdict is Verdict.FORWARD:
                if leg.mode is LatchMode.OFF and leg.source is None:
                    leg.source = addr  # fast path for the usual sender; dest stays signalled
                return leg
        self.dropped += 1
        return None

    def error_received(self, exc: Exception) -> None:
        self.errors += 1

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class MediaForwarder:
    """In-process forwarder: the engine's ``Forwarder`` on the running loop."""

    def __init__(self, log: logging.Logger | None = None, *, rcvbuf: int = MEDIA_RCVBUF) -> None:
        self._loop = asyncio.get_running_loop()
        self.log = log or logging.getLogger("rtc64.io.media")
        self.rcvbuf = rcvbuf
        self._ports: dict[LocalPort, _Port] = {}
        self._legs: dict[int, _Leg] = {}
        self._tasks: set[asyncio.Task[object]] = set()

    # --- Forwarder ----------------------------------------------------------------------

    def open(self, worker: int, ports: Sequence[LocalPort]) -> list[LocalPort]:
        failed: list[LocalPort] = []
        for local in ports:
            if local in self._ports:
                continue
            try:
                sock = udp_socket(local[0], local[1], self.rcvbuf)
            except OSError as exc:
                self.log.debug("media: bind %s failed: %s", format_hostport(*local), exc)
                failed.append(local)
                continue
            self._start(local, sock)
        return failed

    def close(self, worker: int, ports: Sequence[LocalPort]) -> None:
        for local in ports:
            port = self._ports.pop(local, None)
            if port is None:
                continue
            for leg in port.legs:
                leg.port = None
            port.legs.clear()
            port.leg = None
            port.close()

    def update(self, worker: int, legs: Sequence[LegSpec], removed: Sequence[int]) -> None:
        now = monotonic()
        for leg_id in removed:
            leg = self._legs.pop(leg_id, None)
            if leg is not None:
                self._detach(leg)
                leg.peer = None
        touched = [self._apply(spec, now) for spec in legs]
        for leg in touched:
            leg.peer = None if leg.peer_id is None else self._legs.get(leg.peer_id)
        for leg in self._legs.values():  # peers of legs not in this batch
            if leg.peer is not None and leg.peer_id not in self._legs:
                leg.peer = None

    def counters(self, legs: Iterable[int]) -> dict[int, LegCounters]:
        out: dict[int, LegCounters] = {}
        for leg_id in legs:
            leg = self._legs.get(leg_id)
            if leg is None:
                continue
            port = leg.port
            dropped = port.dropped if port is not None and port.legs[:1] == [leg] else 0
            out[leg_id] = LegCounters(
                leg=leg_id,
                packets=leg.packets,
                octets=leg.octets,
                dropped=dropped,
                forwarded=leg.forwarded,
                last_packet=leg.last,
                latched=leg.latched,
                reception=None if leg.stats is None else leg.stats.snapshot(),
            )
        return out

    def leg_ids(self) -> list[int]:
        return list(self._legs)

    def shutdown(self) -> None:
        self.close(0, list(self._ports))
        self._legs.clear()
        for task in self._tasks:
            task.cancel()

    # --- internals ----------------------------------------------------------------------

    def _start(self, local: LocalPort, sock: socket.socket) -> None:
        port = _Port(local)
        self._ports[local] = port

        async def start() -> None:
            try:
                await self._loop.create_datagram_endpoint(lambda: port, sock=sock)
            except OSError as exc:
                self.log.error("media: port %s failed to start: %s", format_hostport(*local), exc)
                sock.close()

        task: asyncio.Task[object] = self._loop.create_task(start())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _detach(self, leg: _Leg) -> None:
        port = leg.port
        if port is None:
            return
        if leg in port.legs:
            port.legs.remove(leg)
        port.leg = port.legs[0] if len(port.legs) == 1 else None
        leg.port = None

    def _apply(self, spec: LegSpec, now: float) -> _Leg:
        leg = self._legs.get(spec.leg)
        if leg is None:
            leg = self._legs[spec.leg] = _Leg(spec.leg)
        port = self._ports.get(spec.local)
        moved = leg.port is not port
        if moved:
            self._detach(leg)
            if port is not None:
                port.legs.append(leg)
                port.leg = port.legs[0] if len(port.legs) == 1 else None
                leg.port = port
            else:
                self.log.error(
                    "media: leg %d on unopened port %s", spec.leg, format_hostport(*spec.local)
                )
        if moved or spec.remote != leg.remote or spec.mode is not leg.mode:
            leg.remote = spec.remote
            leg.mode = spec.mode
            leg.forget_source()
        leg.strict = spec.strict
        leg.peer_id = spec.peer
        if spec.window > 0:
            leg.window_end = now + spec.window
        if spec.clock_rates:
            if leg.stats is None:
                leg.stats = ReceptionStats(dict(spec.clock_rates))
            else:
                leg.stats.clock_rates = dict(spec.clock_rates)
        return leg
