# The TURN service's read-only snapshot for its readers: the core's counters
# (allocations by client and relay family, errors by code, drops by reason), the
# listeners' (garbage, oversize, idle closes...), and the relayed packets and bytes per
# direction and per (client family, relay family), live allocations included.
# ``TurnView`` is what a reader (the web console, metrics) may call: snapshots only.
"""TurnServiceStats: a read-only snapshot of the TURN server's counters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rtc64.io.turn_listeners import ListenerStats
from rtc64.io.turn_relay import RelayCounters, Totals
from rtc64.net.address import Family, IPAddress
from rtc64.turn.events import ClientFlow
from rtc64.turn.stats import TurnStats

if TYPE_CHECKING:
    from rtc64.turn.allocation import Allocation


@dataclass(frozen=True, slots=True)
class Traffic:
    """Relayed packets and bytes of one (client family, relay family); ``client_family`` is
    None for relays whose client was unknown."""

    client_family: Family | None
    relay_family: Family
    relays: int
    to_peer_packets: int
    to_peer_bytes: int
    from_peer_packets: int
    from_peer_bytes: int
    no_permission: int
    over_limit: int


@dataclass(frozen=True, slots=True)
class ListenerCounters:
    """A frozen copy of ``ListenerStats``."""

    datagrams: int
    frames: int
    garbage: int
    channel_unbound: int
    channel_refused: int
    oversize: int
    idle_closed: int
    refused_connections: int
    send_dropped: int
    connections: int


@dataclass(frozen=True, slots=True)
class TcpCounters:
    """RFC 6062 peer connections: open now, bytes relayed, refusals and failures."""

    relays: int = 0
    connections: int = 0
    bytes_from_peers: int = 0
    bytes_to_peers: int = 0
    refused: int = 0
    connect_failures: int = 0
    throttled: int = 0


@dataclass(frozen=True, slots=True)
class TurnServiceStats:
    """The TURN server at one moment."""

    core: TurnStats
    listeners: ListenerCounters
    traffic: tuple[Traffic, ...]
    """Totals since start (closed and live relays)."""
    relays: tuple[RelayCounters, ...]
    """Each live UDP relay with its client (per-allocation counters)."""
    tcp: TcpCounters = TcpCounters()
    failures: int = 0
    lookups_dropped: int = 0
    challenges_dropped: int = 0
    """401 answers not sent: their source prefix was over its challenge budget."""


def snapshot(
    core: TurnStats,
    listeners: ListenerStats,
    live: Sequence[RelayCounters],
    closed: Mapping[tuple[Family | None, Family], Totals],
    *,
    tcp: TcpCounters | None = None,
    failures: int = 0,
    lookups_dropped: int = 0,
    challenges_dropped: int = 0,
) -> TurnServiceStats:
    """Merge the counters of the core, the listeners and the relays into one snapshot."""
    totals: dict[tuple[Family | None, Family], Totals] = {
        key: dataclasses.replace(value) for key, value in closed.items()
    }
    for counters in live:
        key = (None if counters.client is None else counters.client.family, counters.family)
        totals.setdefault(key, Totals()).add(counters)
    traffic = tuple(
        Traffic(
            client_family=key[0],
            relay_family=key[1],
            relays=t.relays,
            to_peer_packets=t.to_peer_packets,
            to_peer_bytes=t.to_peer_bytes,
            from_peer_packets=t.from_peer_packets,
            from_peer_bytes=t.from_peer_bytes,
            no_permission=t.no_permission,
            over_limit=t.over_limit,
        )
        for key, t in sorted(totals.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1]))
    )
    return TurnServiceStats(
        core=core,
        listeners=ListenerCounters(**dataclasses.asdict(listeners)),
        traffic=traffic,
        relays=tuple(live),
        tcp=tcp or TcpCounters(),
        failures=failures,
        lookups_dropped=lookups_dropped,
        challenges_dropped=challenges_dropped,
    )


@dataclass(frozen=True, slots=True)
class AllocationView:
    """One live allocation: its client, relayed addresses per family, permitted peers and
    the bytes relayed through it (UDP relays)."""

    client: ClientFlow
    username: str
    relays: tuple[tuple[Family, tuple[IPAddress, int]], ...]
    peers: tuple[IPAddress, ...]
    channels: int
    expires_in: float
    to_peer_packets: int
    to_peer_bytes: int
    from_peer_packets: int
    from_peer_bytes: int


class TurnView(Protocol):
    """What readers of a running TURN server may ask (read-only snapshots)."""

    def stats(self) -> TurnServiceStats: ...

    def allocations(self) -> list[AllocationView]: ...


def allocation_views(
    allocations: Iterable[Allocation], live: Sequence[RelayCounters], now: float
) -> list[AllocationView]:
    """Frozen views of ``allocations`` with the byte counters of their relays."""
    by_relay = {c.relay: c for c in live}
    views = []
    for alloc in allocations:
        relays = tuple(sorted(alloc.relays.items()))
        counters = [by_relay[a] for _, a in relays if a in by_relay]
        views.append(
            AllocationView(
                client=alloc.client,
                username=alloc.username,
                relays=relays,
                peers=tuple(sorted(alloc.permissions, key=lambda a: (a.version, int(a)))),
                channels=len(alloc.channels),
                expires_in=max(0.0, alloc.expires - now),
                to_peer_packets=sum(c.to_peer_packets for c in counters),
                to_peer_bytes=sum(c.to_peer_bytes for c in counters),
                from_peer_packets=sum(c.from_peer_packets for c in counters),
                from_peer_bytes=sum(c.from_peer_bytes for c in counters),
            )
        )
    return views
