# What the API shows: JSON-able dicts built from the services' read-only snapshots.
#
# Rules: nothing here changes a service; every address is written with the one formatter
# (IPv6 in brackets with a port, bare without); families are ``IPv4``/``IPv6``; times are
# seconds (ages and time left, never a process clock value); wire bytes are decoded
# latin-1 (exact, never fails).
"""The sources the web reads, and their JSON views."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Protocol

from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.stats import (
    Block,
    BlockView,
    CallParty,
    CallView,
    KeepaliveView,
    ProxyView,
    RegistrationView,
)
from rtc64.net.address import Family, IPAddress, family_of, format_hostport
from rtc64.relay.stats import CallStats, LegStats, RelayView
from rtc64.tunnel.stats import TunnelView
from rtc64.turnserver.stats import AllocationView, TurnView
from rtc64.web.probes import ProbeRunner

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TurnRest:
    """What /api/turn-credentials needs: the signing secret and the server's URIs."""

    secret: str
    uris: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Status:
    """Static facts of the running gateway (built once at start)."""

    version: str
    services: tuple[str, ...]
    listeners: tuple[str, ...]
    relay_addresses: tuple[str, ...]
    turn_listeners: tuple[str, ...]
    nat64: tuple[str, ...]
    config: tuple[tuple[str, str], ...]
    """``(key, value)`` with secrets masked (``Config.describe``)."""
    started: float
    """Wall-clock start time."""
    tunnel: tuple[str, ...] = ()
    """The tunnel server's listen address, prefix and backend (empty: not running)."""


@dataclass(frozen=True, slots=True)
class Sources:
    """Everything the web app reads (``None``: that service does not run)."""

    status: Status
    wall: Callable[[], float]
    clock: Callable[[], float]
    """The relay's and the TURN server's clock (monotonic seconds)."""
    registrations: RegistrationView | None = None
    keepalive: KeepaliveView | None = None
    proxy: ProxyView | None = None
    relay: RelayView | None = None
    turn: TurnView | None = None
    blocks: BlockView | None = None
    turn_rest: TurnRest | None = None
    reload: Callable[[], bool] | None = field(default=None)
    """Ask the process to reload its configuration; False when it cannot."""
    probe: ProbeRunner | None = None
    """Runs ``rtc64 probe`` inside the gateway (handed over by the composition root)."""
    tunnel: TunnelView | None = None
    """The Public TSP tunnel server (``[tunnel]``)."""
    peers: PeerView | None = None
    """The gateway's other processes (SIP workers, the supervisor's TURN): ``web.peers``."""
    sip_io: Callable[[], SipIoCounters] | None = None
    """This process's SIP transport and worker channel counters."""


@dataclass(frozen=True, slots=True)
class SipIoCounters:
    """The SIP transports' counters (``io.stats.TransportStats`` by field name) and the
    worker channel's (empty without SIP workers)."""

    transport: dict[str, int]
    link: dict[str, int]


class PeerView(Protocol):
    """What the app asks of the other processes of the gateway."""

    answered: int

    async def fetch(self, route: str) -> list[bytes]:
        """``route`` of every process that answers in time."""
        ...


def addr(ip: IPAddress, port: int | None = None) -> str:
    return str(ip) if port is None else format_hostport(ip, port)


def label(family: Family | None) -> str:
    return "unknown" if family is None else family.label


# --- registrations -----------------------------------------------------------------------


def contact_view(b: Binding, now: float, keepalive: KeepaliveView | None) -> Json:
    health = None if keepalive is None else keepalive.health(b.aor, b.contact)
    return {
        "contact": b.contact.decode("latin-1"),
        "family": label(None if b.received_ip is None else family_of(b.received_ip)),
        "transport": b.transport,
        "received": None if b.received_ip is None else addr(b.received_ip, b.received_port or None),
        "listener": b.listener,
        "expires_in": b.remaining(now),
        "user_agent": b.user_agent.decode("latin-1"),
        "instance": None if b.instance is None else b.instance.decode("latin-1"),
        "reg_id": b.reg_id,
        "keepalive": None if health is None else health.state,
        "keepalive_failures": None if health is None else health.failures,
        "last_keepalive": None if health is None else health.last_keepalive,
        "rtt_ms": None if health is None or health.rtt is None else round(health.rtt * 1e3, 3),
    }


def registrations_view(
    bindings: list[Binding], now: float, keepalive: KeepaliveView | None, aor: str | None
) -> Json:
    by_aor: dict[str, list[Json]] = {}
    for b in bindings:
        if aor is None or b.aor == aor:
            by_aor.setdefault(b.aor, []).append(contact_view(b, now, keepalive))
    return {"aors": [{"aor": k, "contacts": v} for k, v in by_aor.items()]}


def registrations_by_family(bindings: list[Binding]) -> dict[str, int]:
    counts = Counter(
        label(None if b.received_ip is None else family_of(b.received_ip)) for b in bindings
    )
    return dict(sorted(counts.items()))


# --- calls --------------------------------------------------------------------------------


def stream_view(leg: LegStats) -> Json:
    return {
        "media": leg.media,
        "kind": leg.kind,
        "component": leg.component,
        "family": label(family_of(leg.local[0])),
        "relay_address": str(leg.local[0]),
        "relay_port": leg.local[1],
        "remote": None if leg.remote is None else addr(*leg.remote),
        "latched": None if leg.latched is None else addr(*leg.latched),
        "held": leg.held,
        "packets": leg.packets,
        "octets": leg.octets,
        "forwarded": leg.forwarded,
        "dropped": leg.dropped,
        "lost": leg.lost,
        "jitter_ms": round(leg.jitter_ms, 3),
    }


def party_family(call: CallStats, tag: bytes) -> Family | None:
    for leg in call.legs:
        if leg.tag == tag and leg.component == "rtp":
            return family_of(leg.local[0])
    return None


def call_view(call: CallStats, now: float) -> Json:
    legs = [
        {
            "tag": tag.decode("latin-1"),
            "family": label(party_family(call, tag)),
            "streams": [stream_view(leg) for leg in call.legs if leg.tag == tag],
        }
        for tag in call.tags
    ]
    return {
        "call_id": MediaBridge.call_of(call.call_id).decode("latin-1"),
        "session": call.call_id.decode("latin-1"),
        "age": round(max(0.0, now - call.created), 3),
        "answered": call.answered is not None,
        "families": [leg["family"] for leg in legs],
        "packets": call.packets,
        "octets": call.octets,
        "legs": legs,
    }


def live_calls(relay: RelayView | None) -> list[CallStats]:
    if relay is None:
        return []
    found = (relay.query(cid) for cid in relay.calls())
    return [c for c in found if c is not None]


def calls_view(calls: list[CallStats], now: float) -> Json:
    """The relay's calls only (``rtc64 ctl relay``'s view)."""
    return {"calls": [call_view(c, now) for c in sorted(calls, key=lambda c: c.created)]}


def party_view(party: CallParty | None) -> Json | None:
    if party is None:
        return None
    return {
        "family": label(party.family),
        "transport": party.transport or None,
        "address": None if party.address is None else addr(*party.address),
    }


def signalled_call_view(call: CallView, relayed: list[CallStats], now: float) -> Json:
    """A call through the proxy, with its relay sessions' legs when its media is relayed."""
    legs = [leg for c in relayed for leg in call_view(c, now)["legs"]]
    caller, callee = party_view(call.caller), party_view(call.callee)
    return {
        "call_id": call.call_id.decode("latin-1"),
        "session": relayed[0].call_id.decode("latin-1") if relayed else None,
        "from": call.caller_uri,
        "to": call.callee_uri,
        "state": call.state,
        "age": round(call.age, 3),
        "talk": None if call.talk is None else round(call.talk, 3),
        "answered": call.state == "confirmed",
        "caller": caller,
        "callee": callee,
        "families": [
            "unknown" if caller is None else caller["family"],
            "unknown" if callee is None else callee["family"],
        ],
        "relayed": bool(relayed) or call.relayed,
        "packets": sum(c.packets for c in relayed),
        "octets": sum(c.octets for c in relayed),
        "legs": legs,
    }


def all_calls_view(proxy: ProxyView | None, relay: RelayView | None, now: float) -> Json:
    """Calls in progress: every call through the proxy (relayed or not, legs with their
    signalling families and transports, relay legs attached), then relay sessions no
    proxy call owns (ng-controlled) as the relay sees them. ``now``: the relay's clock."""
    sessions = live_calls(relay)
    by_call: dict[bytes, list[CallStats]] = {}
    for session in sessions:
        by_call.setdefault(MediaBridge.call_of(session.call_id), []).append(session)
    found: list[Json] = []
    if proxy is not None:
        for call in proxy.calls_in_progress():
            found.append(signalled_call_view(call, by_call.pop(call.call_id, []), now))
    for rest in sorted((c for cs in by_call.values() for c in cs), key=lambda c: c.created):
        view = call_view(rest, now)
        view.update(
            {"from": None, "to": None, "state": "relay", "talk": None, "caller": None,
             "callee": None, "relayed": True}
        )  # fmt: skip
        found.append(view)
    return {"calls": found}


def call_families(call: CallStats) -> tuple[str, str]:
    """(caller family, callee family) by the order the parties joined."""
    fams = [label(party_family(call, t)) for t in call.tags]
    return (fams[0] if fams else "unknown", fams[1] if len(fams) > 1 else "unknown")


# --- TURN ---------------------------------------------------------------------------------


def allocation_view(a: AllocationView) -> Json:
    return {
        "client": {
            "transport": a.client.transport.value,
            "address": addr(*a.client.remote),
            "family": a.client.family.label,
        },
        "username": a.username,
        "relays": [{"family": f.label, "address": addr(*sa)} for f, sa in a.relays],
        "peers": [str(p) for p in a.peers],
        "channels": a.channels,
        "expires_in": round(a.expires_in, 1),
        "to_peer_packets": a.to_peer_packets,
        "to_peer_bytes": a.to_peer_bytes,
        "from_peer_packets": a.from_peer_packets,
        "from_peer_bytes": a.from_peer_bytes,
    }


def turn_view(turn: TurnView | None) -> Json:
    if turn is None:
        return {"enabled": False, "allocations": [], "traffic": []}
    stats = turn.stats()
    return {
        "enabled": True,
        "allocations": [allocation_view(a) for a in turn.allocations()],
        "traffic": [
            {
                "client_family": label(t.client_family),
                "relay_family": t.relay_family.label,
                "relays": t.relays,
                "to_peer_packets": t.to_peer_packets,
                "to_peer_bytes": t.to_peer_bytes,
                "from_peer_packets": t.from_peer_packets,
                "from_peer_bytes": t.from_peer_bytes,
            }
            for t in stats.traffic
        ],
    }


# --- status and blocks --------------------------------------------------------------------


def status_view(status: Status, now: float) -> Json:
    return {
        "version": status.version,
        "uptime": round(max(0.0, now - status.started), 1),
        "services": list(status.services),
        "listeners": list(status.listeners),
        "relay_addresses": list(status.relay_addresses),
        "turn_listeners": list(status.turn_listeners),
        "tunnel": list(status.tunnel),
        "nat64_prefixes": list(status.nat64),
        "config": [{"key": k, "value": v} for k, v in status.config],
    }


def block_view(block: Block) -> Json:
    key = block.key
    if isinstance(key, IPv4Network | IPv6Network):
        kind, source, user = "source", str(key), None
    elif isinstance(key, tuple):
        kind, source, user = "user-at-source", str(key[1]), key[0]
    else:
        kind, source, user = "user", None, key
    return {
        "kind": kind,
        "source": source,
        "user": user,
        "seconds_left": round(block.seconds_left, 1),
    }
