# Allocations, permissions and channels as deadlines (RFC 8656 §7-§12).
#
# Rules:
# - An allocation belongs to one 5-tuple (ClientFlow) and one username; it has one relay
#   per family (two for a dual allocation) and expires at ``expires`` unless refreshed.
# - A permission is per peer IP address (port ignored, RFC 8656 §9), lasts 300 s and is
#   refreshed by CreatePermission and ChannelBind.
# - A channel (0x4000-0x7FFF: RFC 5766's range, coturn's clients use it) is bound to one
#   peer transport address and a peer to one channel (RFC 8656 §12); re-binding the same
#   pair refreshes it for 600 s. After expiry neither the number nor the peer may be bound
#   to something else for 300 s.
# - Everything that ends is a deadline; ``expire(now)`` returns the events it causes and
#   ``next_deadline()`` the earliest one left.
"""Allocation state: relays, permissions, channels and their deadlines."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Final

from rtc64.net.address import Family, IPAddress, unmap
from rtc64.turn.events import Bind, ClientFlow, Event, Permit, SockAddr, Unbind, Unpermit
from rtc64.turn.settings import CHANNEL_LIFETIME, CHANNEL_QUARANTINE, PERMISSION_LIFETIME

CHANNEL_MIN: Final = 0x4000
CHANNEL_MAX: Final = 0x7FFF


def peer_family(peer_ip: IPAddress) -> Family:
    """The family a peer is reached in; an IPv4-mapped IPv6 address is an IPv4 peer
    (an IPv6 relay socket is V6ONLY and cannot reach it, RFC 6156 §4)."""
    if isinstance(peer_ip, IPv6Address) and peer_ip.ipv4_mapped is None:
        return Family.INET6
    return Family.INET


def peer_address(peer: SockAddr) -> SockAddr:
    """A peer as the relay reaches it: an IPv4-mapped IPv6 address becomes IPv4, so
    permissions, policy and sockets all see the IPv4 peer it names."""
    return (unmap(peer[0]), peer[1])


@dataclass(slots=True)
class Channel:
    """A bound channel: number, peer, the relay it uses and its deadline."""

    number: int
    peer: SockAddr
    relay: SockAddr
    until: float


class Allocation:
    """One allocation's state (mutable; owned by the ``AllocationTable``)."""

    __slots__ = (
        "channel_of_peer",
        "channels",
        "client",
        "expires",
        "lifetime",
        "permissions",
        "protocol",
        "quarantine_number",
        "quarantine_peer",
        "relays",
        "transaction_id",
        "username",
    )

    def __init__(
        self,
        client: ClientFlow,
        *,
        username: str,
        transaction_id: bytes,
        relays: dict[Family, SockAddr],
        protocol: int,
        lifetime: int,
        now: float,
    ) -> None:
        self.client = client
        self.username = username
        self.transaction_id = transaction_id
        self.relays = relays
        self.protocol = protocol
        self.lifetime = lifetime
        self.expires = now + lifetime
        self.permissions: dict[IPAddress, float] = {}
        self.channels: dict[int, Channel] = {}
        self.channel_of_peer: dict[SockAddr, int] = {}
        self.quarantine_number: dict[int, tuple[SockAddr, float]] = {}
        self.quarantine_peer: dict[SockAddr, tuple[int, float]] = {}

    def refresh(self, lifetime: int, now: float) -> None:
        self.lifetime = lifetime
        self.expires = now + lifetime

    def relay_for(self, peer_ip: IPAddress) -> SockAddr | None:
        """The relay that reaches ``peer_ip``, None when the allocation lacks its family."""
        return self.relays.get(peer_family(peer_ip))

    def permitted(self, peer_ip: IPAddress, now: float) -> bool:
        until = self.permissions.get(peer_ip)
        return until is not None and until > now

    def new_permissions(self, peer_ips: list[IPAddress]) -> int:
        """How many of ``peer_ips`` are not yet permitted (for the per-allocation limit)."""
        return len({ip for ip in peer_ips if ip not in self.permissions})

    def permit(self, peer_ip: IPAddress, now: float) -> Permit:
        """Install or refresh the permission for ``peer_ip`` (its relay must exist)."""
        until = now + PERMISSION_LIFETIME
        self.permissions[peer_ip] = until
        relay = self.relays[peer_family(peer_ip)]
        return Permit(relay, peer_ip, until)

    def channel_conflict(self, number: int, peer: SockAddr, now: float) -> str | None:
        """Why ``number`` cannot be bound to ``peer`` (RFC 8656 §11.2), or None."""
        bound = self.channels.get(number)
        if bound is not None and bound.peer != peer:
            return "channel already bound to another peer"
        other = self.channel_of_peer.get(peer)
        if other is not None and other != number:
            return "peer already bound to another channel"
        held = self.quarantine_number.get(number)
        if held is not None and held[1] > now and held[0] != peer:
            return "channel number recently used for another peer"
        held_peer = self.quarantine_peer.get(peer)
        if held_peer is not None and held_peer[1] > now and held_peer[0] != number:
            return "peer recently bound to another channel"
        return None

    def bind(self, number: int, peer: SockAddr, now: float) -> list[Event]:
        """Bind or refresh channel ``number`` to ``peer`` (checked with
        ``channel_conflict`` first); refreshes the peer's permission too."""
        relay = self.relays[peer_family(peer[0])]
        until = now + CHANNEL_LIFETIME
        events: list[Event] = [self.permit(peer[0], now)]
        channel = self.channels.get(number)
        if channel is None:
            self.channels[number] = Channel(number, peer, relay, until)
            self.channel_of_peer[peer] = number
            self.quarantine_number.pop(number, None)
            self.quarantine_peer.pop(peer, None)
            events.append(Bind(relay, self.client, number, peer))
        else:
            channel.until = until
        return events

    def channel(self, number: int, now: float) -> Channel | None:
        channel = self.channels.get(number)
        return channel if channel is not None and channel.until > now else None

    def expire(self, now: float) -> list[Event]:
        """Drop expired permissions and channels; their Unpermit/Unbind events."""
        events: list[Event] = []
        for ip in [ip for ip, until in self.permissions.items() if until <= now]:
            del self.permissions[ip]
            relay = self.relays.get(peer_family(ip))
            if relay is not None:
                events.append(Unpermit(relay, ip))
        for channel in [c for c in self.channels.values() if c.until <= now]:
            del self.channels[channel.number]
            self.channel_of_peer.pop(channel.peer, None)
            hold = now + CHANNEL_QUARANTINE
            self.quarantine_number[channel.number] = (channel.peer, hold)
            self.quarantine_peer[channel.peer] = (channel.number, hold)
            events.append(Unbind(channel.relay, channel.number))
        for n in [n for n, (_, until) in self.quarantine_number.items() if until <= now]:
            del self.quarantine_number[n]
        for p in [p for p, (_, until) in self.quarantine_peer.items() if until <= now]:
            del self.quarantine_peer[p]
        return events

    def next_deadline(self) -> float:
        """The earliest moment something of this allocation ends."""
        when = self.expires
        for until in self.permissions.values():
            when = min(when, until)
        for channel in self.channels.values():
            when = min(when, channel.until)
        for _, until in self.quarantine_number.values():
            when = min(when, until)
        return when


COMPACT_MIN: Final = 256
"""Stale heap entries ``Deadlines`` tolerates before it considers a rebuild."""


class Deadlines:
    """One pending deadline per key on a heap: ``schedule`` keeps the earlier of the old
    and the new time (later ones are ignored, so repeated refreshes cost nothing); the
    owner re-schedules what is still alive after ``due``. Keys hash by identity.

    Cancelled and superseded entries are dropped lazily, and the heap is rebuilt when they
    outnumber the live ones: otherwise one long-lived key at the top would keep every
    deleted allocation behind it (and its objects) until its own deadline."""

    __slots__ = ("_at", "_heap", "_seq", "_stale")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, object]] = []
        self._at: dict[object, float] = {}
        self._seq = 0
        self._stale = 0

    def schedule(self, when: float, key: object) -> None:
        at = self._at.get(key)
        if at is not None:
            if at <= when:
                return
            self._stale += 1  # the later entry stays on the heap until popped
        self._at[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))

    def cancel(self, key: object) -> None:
        if self._at.pop(key, None) is not None:
            self._stale += 1
            if self._stale > COMPACT_MIN and self._stale > len(self._at):
                self._compact()

    def _compact(self) -> None:
        at = self._at
        self._heap = [e for e in self._heap if at.get(e[2]) == e[0]]
        heapq.heapify(self._heap)
        self._stale = 0

    @property
    def heap_size(self) -> int:
        """Entries on the heap, stale ones included (bounded by the compaction)."""
        return len(self._heap)

    def next(self) -> float | None:
        heap = self._heap
        while heap and self._at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # superseded or cancelled
            self._stale = max(0, self._stale - 1)
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[object]:
        """Keys whose deadline is at or before ``now``, in deadline order (each is then
        unscheduled)."""
        keys: list[object] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if self._at.get(key) == when:
                del self._at[key]
                keys.append(key)
            else:
                self._stale = max(0, self._stale - 1)
        return keys

    def __len__(self) -> int:
        return len(self._at)
