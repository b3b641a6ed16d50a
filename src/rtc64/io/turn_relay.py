# Relayed transport addresses of the TURN server (RFC 8656 §7.2, §14.6 EVEN-PORT, §14.9
# RESERVATION-TOKEN; RFC 6062 TCP allocations), the core's ``relays`` collaborator.
#
# Rules:
# - Ports come from the media relay's ``PortPool`` (``relay.ports``): TURN and RTP never
#   get the same port. A pool hands out even/odd pairs; a pair serves an EVEN-PORT relay
#   on its even port (+ the kept odd port with the R bit) or two ordinary relays (one per
#   port). The pair goes back to the pool when both its ports are free again.
# - ``reserve`` binds at once (a bind failure tries another pair, a few times, then
#   ``RelayUnavailable``: 508); reading starts right after on the loop (the kernel queues
#   what arrives meanwhile). A kept port+1 stays bound, unread, until ``take_reserved``.
# - A released plain UDP relay whose loop transport runs is kept bound and read, idle (up
#   to ``idle`` sockets, oldest reused first; its port stays taken from the pool): the
#   next plain UDP relay of its family takes it over without a socket(), bind(), loop
#   transport and close() per allocation (~9 system calls and a task), its protocol object
#   reopened (``RelaySocket.reopen``; no ``set_protocol``: uvloop would restart reading, an
#   epoll change per allocation). Nothing of the old
#   allocation reaches the new client: while idle every datagram is dropped (no
#   permissions), and on reuse what the kernel still queues is read and dropped first; a
#   socket with more than ``DRAIN_LIMIT`` queued (a flood) or a closing transport is
#   closed instead. ``stop`` closes the idle ones and frees their ports. After a reload
#   changed a pool's range, ``retire`` closes idle sockets outside it, and the free half of
#   a pair outside it is never handed out (relays in use stay until released).
# - The allocation a relay belongs to is the client being served when the core asks
#   (``serving``): its fast-path handle, its bandwidth buckets (one per direction, shared
#   by a dual allocation's relays) and its counters.
# - ``apply`` installs what the core decided (Permit/Unpermit/Bind/Unbind/RelayClosed,
#   ToPeer for Send indications) into the per-socket tables of ``io.turn_fastpath``. An
#   IPv4-mapped peer (``::ffff:a.b.c.d``, an IPv4 peer to the core) is written as IPv4:
#   that is how its datagrams arrive on the IPv4 relay socket.
"""Relay sockets from the shared port pool, and the fast-path tables they carry."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any, Protocol, TypeVar

from rtc64.errors import ProtocolError
from rtc64.io.sockets import fragment_at_min_mtu, udp_socket
from rtc64.io.turn_fastpath import (
    ClientOut,
    RelaySocket,
    Route,
    hashed_ip,
    host_text,
    raw_address,
)
from rtc64.io.turn_listeners import TurnListeners, UdpClient
from rtc64.io.turn_tcp import TcpRelays, tcp_relay_socket
from rtc64.net.address import Family, IPAddress, family_of, unmap
from rtc64.net.tokenbucket import Bucket
from rtc64.turn.events import Bind, ClientFlow, Permit, RelayClosed, ToPeer, Unbind, Unpermit
from rtc64.turn.protocols import TCP, RelayUnavailable

Address = tuple[IPAddress, int]
RELAY_RCVBUF = 512 * 1024
KEPT_RCVBUF = 16 * 1024
BIND_ATTEMPTS = 8
IDLE_SOCKETS = 64
"""Released relay sockets kept bound for reuse, per family (their ports stay in use)."""
DRAIN_LIMIT = 64
"""Datagrams read and dropped from an idle socket on reuse; more than that: closed."""


class PortPair(Protocol):
    """An even port and the odd one after it on one address (``relay.ports.LocalPair``)."""

    @property
    def address(self) -> IPAddress: ...

    @property
    def port(self) -> int: ...


P = TypeVar("P", bound=PortPair)


class PortPool(Protocol[P]):
    """The media relay's pool of port pairs (``relay.ports.PortPool``); ``allocate`` raises
    a ``ProtocolError`` when the address has no free pair."""

    def addresses(self, family: Family) -> tuple[IPAddress, ...]: ...

    def least_used_worker(self) -> int: ...

    def allocate(self, address: IPAddress, worker: int = 0) -> P: ...

    def release(self, pair: P) -> None: ...

    def holds(self, pair: P) -> bool:
        """``pair`` is still in the pool's addresses and range (a reload may change them)."""
        ...


@dataclass(frozen=True, slots=True)
class RelayCounters:
    """Packets and bytes through one relayed address (its family is the peer side's)."""

    relay: Address
    family: Family
    client: ClientFlow | None
    to_peer_packets: int
    to_peer_bytes: int
    from_peer_packets: int
    from_peer_bytes: int
    no_permission: int
    over_limit: int


@dataclass(slots=True)
class Totals:
    """Packets and bytes summed over relays (mutable; the service copies it)."""

    relays: int = 0
    to_peer_packets: int = 0
    to_peer_bytes: int = 0
    from_peer_packets: int = 0
    from_peer_bytes: int = 0
    no_permission: int = 0
    over_limit: int = 0

    def add(self, c: RelayCounters | RelaySocket) -> None:
        self.relays += 1
        self.to_peer_packets += c.to_peer_packets
        self.to_peer_bytes += c.to_peer_bytes
        self.from_peer_packets += c.from_peer_packets
        self.from_peer_bytes += c.from_peer_bytes
        self.no_permission += c.no_permission
        self.over_limit += c.over_limit


class _Null:
    """The fast-path handle of a relay whose client is unknown (drops everything)."""

    __slots__ = ("channels", "holds", "stream")

    def __init__(self) -> None:
        self.channels: dict[int, Route] = {}
        self.stream = False
        self.holds = 0

    def send(self, data: bytes) -> None:
        pass


_IDLE_CLIENT = _Null()
"""The client of an idle relay socket: nothing reaches anyone."""


def drain(sock: socket.socket, limit: int = DRAIN_LIMIT) -> int | None:
    """Read and drop what ``sock`` (non-blocking) has queued; the count, None if more than
    ``limit`` (the socket is being flooded) or the socket failed."""
    for n in range(limit + 1):
        try:
            sock.recv(1)  # UDP: the rest of the datagram is discarded
        except (BlockingIOError, InterruptedError):
            return n
        except OSError:  # a queued ICMP error, or the socket is gone
            return None
    return None


class _Pair:
    """A pool pair and which of its two ports are in use."""

    __slots__ = ("pair", "pool", "used")

    def __init__(self, pool: PortPool[Any], pair: PortPair) -> None:
        self.pool = pool
        self.pair = pair
        self.used: set[int] = set()


class _Group:
    """An allocation as the io sees it: its client, buckets and relays."""

    __slots__ = ("buckets", "client", "out", "relays")

    def __init__(
        self,
        client: ClientFlow | None,
        out: ClientOut,
        buckets: tuple[Bucket | None, Bucket | None],
    ) -> None:
        self.client = client
        self.out = out
        self.buckets = buckets
        self.relays: set[Address] = set()


_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)


def relay_udp_socket(ip: IPAddress, port: int) -> socket.socket:
    """``io.sockets.udp_socket(ip, port, RELAY_RCVBUF)`` with one system call less per
    allocation: non-blocking from ``socket()`` (Linux ``SOCK_NONBLOCK``)."""
    v6 = ip.version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM | _NONBLOCK)
    try:
        if not _NONBLOCK:
            sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RELAY_RCVBUF)
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            fragment_at_min_mtu(sock)
        sock.bind((str(ip), port))
    except OSError:
        sock.close()
        raise
    return sock


class TurnRelays:
    """The core's ``relays``: binds relay sockets from the shared pools, applies events."""

    def __init__(
        self,
        pools: Sequence[PortPool[Any]],
        addresses: Sequence[IPAddress],
        listeners: TurnListeners | None,
        tcp: TcpRelays | None = None,
        *,
        bandwidth: int = 0,
        idle: int = IDLE_SOCKETS,
        log: logging.Logger | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.pools = tuple(pools)
        self.addresses: dict[Family, list[IPAddress]] = {}
        for address in addresses:
            known = self.addresses.setdefault(family_of(address), [])
            if address not in known:
                known.append(address)
        for address in addresses:
            if self._pool_of(address) is None:
                raise ValueError(f"relay address {address} is in no port pool")
        self._hashed = {a: hashed_ip(a) for a in addresses}
        self.listeners = listeners
        self.tcp = tcp
        self.bandwidth = bandwidth
        self.log = log or logging.getLogger("rtc64.io.turn")
        self.serving: ClientFlow | None = None
        """The client whose request the core is handling (set by the service)."""
        self.udp: dict[Address, RelaySocket] = {}
        self._kept: dict[Address, socket.socket] = {}
        self._pairs: dict[Address, _Pair] = {}  # by even address
        self._halves: deque[_Pair] = deque()  # pairs with one free port for a plain relay
        self._groups: dict[ClientFlow | None, _Group] = {}
        self._group_of: dict[Address, _Group] = {}
        self._next: dict[Family, int] = dict.fromkeys(self.addresses, 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self.idle_limit = idle
        self._idle: dict[Family, deque[RelaySocket]] = {f: deque() for f in self.addresses}
        self.reused = 0
        """Relays served by an idle socket (no new socket, bind or loop transport)."""
        self.drained = 0
        """Datagrams read and dropped from idle sockets when they were reused."""
        self.bind_failures = 0
        self.closed_totals: dict[tuple[Family | None, Family], Totals] = {}
        """Packets and bytes of the relays already closed, per (client, relay) family."""

    # --- the core's Relays protocol ---------------------------------------------------------

    def reserve(self, family: Family, protocol: int, *, even: bool, reserve_next: bool) -> Address:
        choices = self.addresses.get(family)
        if not choices:
            raise RelayUnavailable(f"no IPv{4 if family is Family.INET else 6} relay address")
        if not even and not reserve_next:
            if protocol != TCP:
                address = self._from_idle(family)
                if address is not None:
                    return address
            address = self._from_half(family, protocol)
            if address is not None:
                return address
        for _ in range(BIND_ATTEMPTS):
            pair = self._new_pair(family)
            ip, port = self._hashed.get(pair.pair.address, pair.pair.address), pair.pair.port
            sock: socket.socket | None = None
            kept: socket.socket | None = None
            try:
                sock = self._bind(ip, port, protocol)
                if reserve_next:
                    kept = udp_socket(ip, port + 1, KEPT_RCVBUF)
            except OSError as exc:
                self.bind_failures += 1
                self.log.debug("TURN relay bind %s:%d failed: %s", ip, port, exc)
                if sock is not None:
                    sock.close()
                pair.pool.release(pair.pair)
                continue
            self._pairs[(ip, port)] = pair
            pair.used.add(port)
            if kept is not None:
                pair.used.add(port + 1)
                self._kept[(ip, port + 1)] = kept
            else:
                self._halves.append(pair)  # the other port serves a plain relay later
            self._start((ip, port), sock, protocol)
            return (ip, port)
        raise RelayUnavailable("no relay port could be bound")

    def take_reserved(self, address: Address) -> Address | None:
        kept = self._kept.pop(address, None)
        if kept is None:
            return None
        kept.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RELAY_RCVBUF)
        self._start(address, kept, 17)
        return address

    def release(self, relay: Address) -> None:
        kept = self._kept.pop(relay, None)
        if kept is not None:
            kept.close()
        elif self._close_socket(relay):
            return  # kept bound, idle: its port stays in use
        self._free_port(relay)

    @property
    def idle(self) -> int:
        """Relay sockets kept bound for reuse."""
        return sum(len(q) for q in self._idle.values())

    # --- the core's events ---------------------------------------------------------------------

    def permit(self, event: Permit) -> None:
        sock = self.udp.get(event.relay)
        if sock is not None:
            sock.permit(unmap(event.peer_ip))

    def unpermit(self, event: Unpermit) -> None:
        sock = self.udp.get(event.relay)
        if sock is not None:
            sock.unpermit(unmap(event.peer_ip))

    def bind(self, event: Bind) -> None:
        sock = self.udp.get(event.relay)
        if sock is None:
            return
        peer = raw_address(unmap(event.peer[0]), event.peer[1])
        for old_peer, number in list(sock.channels.items()):
            if number == event.channel and old_peer != peer:
                del sock.channels[old_peer]
        sock.channels[peer] = event.channel
        sock.client.channels[event.channel] = Route(sock, peer)

    def unbind(self, event: Unbind) -> None:
        sock = self.udp.get(event.relay)
        if sock is None:
            return
        for peer, number in list(sock.channels.items()):
            if number == event.channel:
                del sock.channels[peer]
        route = sock.client.channels.get(event.channel)
        if route is not None and route.relay is sock:
            del sock.client.channels[event.channel]

    def relay_closed(self, event: RelayClosed) -> None:
        if event.relay in self.udp or (self.tcp is not None and event.relay in self.tcp.relays):
            self.release(event.relay)

    def to_peer(self, event: ToPeer) -> bool:
        sock = self.udp.get(event.relay)
        if sock is None:
            return False
        peer_ip = unmap(event.peer[0])
        return sock.to_peer(event.data, host_text(peer_ip), raw_address(peer_ip, event.peer[1]))

    # --- counters ------------------------------------------------------------------------------

    def counters(self) -> list[RelayCounters]:
        out = []
        for address, sock in self.udp.items():
            group = self._group_of.get(address)
            out.append(_counters(sock, None if group is None else group.client))
        return out

    def relay_of(self, address: Address) -> RelaySocket | None:
        return self.udp.get(address)

    def retire(self) -> int:
        """After a reload changed the pools' ranges: idle sockets on ports the pools no
        longer hold are closed (their ports are never handed out again); relays in use
        stay until released. Returns how many were closed."""
        closed = 0
        for idle in self._idle.values():
            for relay in list(idle):
                if not self._held(relay.address):
                    idle.remove(relay)
                    self._close_idle(relay)
                    closed += 1
        return closed

    def _held(self, address: Address) -> bool:
        """The pair of the relay port ``address`` is still in its pool's range."""
        ip, port = address
        pair = self._pairs.get((ip, port - (port & 1)))
        return pair is None or pair.pool.holds(pair.pair)

    def stop(self) -> None:
        self.idle_limit = 0
        for address in list(self.udp):
            self.release(address)
        for idle in self._idle.values():
            while idle:
                self._close_idle(idle.popleft())
        for address in list(self._kept):
            self.release(address)
        if self.tcp is not None:
            for address in list(self.tcp.relays):
                self.release(address)
        for task in self._tasks:
            task.cancel()

    # --- internals -----------------------------------------------------------------------------

    def _pool_of(self, address: IPAddress) -> PortPool[Any] | None:
        for pool in self.pools:
            if address in pool.addresses(family_of(address)):
                return pool
        return None

    def _new_pair(self, family: Family) -> _Pair:
        choices = self.addresses[family]
        for _ in range(len(choices)):
            i = self._next[family]
            self._next[family] = (i + 1) % len(choices)
            address = choices[i]
            pool = self._pool_of(address)
            assert pool is not None
            try:
                return _Pair(pool, pool.allocate(address, pool.least_used_worker()))
            except ProtocolError:  # relay.ports.RelayUnavailableError: none free there
                continue
        raise RelayUnavailable("no free relay port")

    def _from_half(self, family: Family, protocol: int) -> Address | None:
        halves = self._halves
        for _ in range(len(halves)):
            pair = halves.popleft()
            if not pair.pool.holds(pair.pair):
                continue  # outside a reloaded range: its other port is not handed out
            if len(pair.used) != 1 or family_of(pair.pair.address) is not family:
                if len(pair.used) == 1:
                    halves.append(pair)
                continue
            ip, even_port = self._hashed.get(pair.pair.address, pair.pair.address), pair.pair.port
            port = even_port + 1 if even_port in pair.used else even_port
            try:
                sock = self._bind(ip, port, protocol)
            except OSError:
                self.bind_failures += 1
                continue  # this half stays unused until the pair is released
            pair.used.add(port)
            self._start((ip, port), sock, protocol)
            return (ip, port)
        return None

    def _from_idle(self, family: Family) -> Address | None:
        idle = self._idle.get(family)
        while idle:
            relay = idle.popleft()
            transport = relay.transport
            dropped = None if transport is None or transport.is_closing() else drain(relay.sock)
            if dropped is None:
                self._close_idle(relay)
                continue
            self.drained += dropped
            self.reused += 1
            address = relay.address
            self._start(address, relay.sock, 17, relay)
            return address
        return None

    def _close_idle(self, relay: RelaySocket) -> None:
        relay.close()
        self._free_port(relay.address)

    def _bind(self, ip: IPAddress, port: int, protocol: int) -> socket.socket:
        if protocol == TCP:
            if self.tcp is None:
                raise OSError("no TCP relays")
            return tcp_relay_socket(ip, port)
        return relay_udp_socket(ip, port)

    def _group(self) -> _Group:
        client = self.serving
        group = self._groups.get(client)
        if group is None:
            out: ClientOut | None = None
            if client is not None and self.listeners is not None:
                out = self.listeners.client_out(
                    client.transport, client.local, client.remote, client.connection
                )
            rate = self.bandwidth
            now = monotonic()
            buckets = (Bucket(rate, now=now), Bucket(rate, now=now)) if rate > 0 else (None, None)
            group = self._groups[client] = _Group(client, out or _Null(), buckets)
        return group

    def _start(
        self,
        address: Address,
        sock: socket.socket,
        protocol: int,
        idle: RelaySocket | None = None,
    ) -> None:
        """The relay at ``address`` serves the client being served; ``idle``: an idle
        socket's relay (its loop transport running), reopened for this client."""
        group = self._group()
        group.relays.add(address)
        self._group_of[address] = group
        group.out.holds += 1
        if protocol == TCP:
            assert self.tcp is not None
            self.tcp.open(address, sock)
            return
        out = group.out
        if idle is not None:
            idle.reopen(out, group.buckets)
            self.udp[address] = idle
            return
        relay = self.udp[address] = RelaySocket(address, sock, out, group.buckets)

        def released() -> bool:
            return relay.closed

        async def start() -> None:
            if released():  # released before the loop got to it (Allocate, Refresh 0)
                return
            try:
                await self.loop.create_datagram_endpoint(lambda: relay, sock=sock)
            except OSError as exc:
                if released():
                    return
                self.log.error("TURN relay %s failed to start: %s", address, exc)
                sock.close()

        task = self.loop.create_task(start())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _close_socket(self, address: Address) -> bool:
        """Close the relay at ``address``; True if its socket was kept bound, idle."""
        kept = False
        relay = self.udp.pop(address, None)
        if relay is not None:
            group = self._group_of.get(address)
            client = None if group is None else group.client
            key = (None if client is None else client.family, relay.family)
            totals = self.closed_totals.get(key)
            if totals is None:
                totals = self.closed_totals[key] = Totals()
            totals.add(relay)
            channels = relay.client.channels
            if channels:  # most allocations end without a channel
                for number, route in list(channels.items()):
                    if route.relay is relay:
                        del channels[number]
            kept = self._keep_idle(relay)
            if not kept:
                relay.close()
        elif self.tcp is not None and address in self.tcp.relays:
            self.tcp.close(address)
        else:
            return False
        group = self._group_of.pop(address, None)
        if group is None:
            return kept
        group.relays.discard(address)
        out = group.out
        out.holds -= 1
        if out.holds <= 0 and self.listeners is not None and isinstance(out, UdpClient):
            self.listeners.forget_client(out)
        if not group.relays and self._groups.get(group.client) is group:
            del self._groups[group.client]
        return kept

    def _keep_idle(self, relay: RelaySocket) -> bool:
        """Park a released relay's socket for reuse: it drops everything meanwhile."""
        transport = relay.transport
        if transport is None or transport.is_closing() or relay.closed:
            return False
        idle = self._idle.get(relay.family)
        if idle is None or self.idle_limit <= 0 or not self._held(relay.address):
            return False
        relay.closed = True
        relay.permitted.clear()
        relay.channels.clear()
        relay.client = _IDLE_CLIENT
        relay.bucket_in = relay.bucket_out = None
        idle.append(relay)
        if len(idle) > self.idle_limit:
            self._close_idle(idle.popleft())
        return True

    def _free_port(self, address: Address) -> None:
        ip, port = address
        pair = self._pairs.get((ip, port - (port & 1)))
        if pair is None:
            return
        pair.used.discard(port)
        if not pair.used:
            del self._pairs[(ip, pair.pair.port)]
            if pair in self._halves:
                self._halves.remove(pair)
            pair.pool.release(pair.pair)
        elif pair not in self._halves:
            self._halves.append(pair)


def _counters(sock: RelaySocket, client: ClientFlow | None) -> RelayCounters:
    return RelayCounters(
        relay=sock.address,
        family=sock.family,
        client=client,
        to_peer_packets=sock.to_peer_packets,
        to_peer_bytes=sock.to_peer_bytes,
        from_peer_packets=sock.from_peer_packets,
        from_peer_bytes=sock.from_peer_bytes,
        no_permission=sock.no_permission,
        over_limit=sock.over_limit,
    )
