"""Counters of the signalling gateway (monotonic; for logs, tests and metrics), and the
read-only views a reader (web console, metrics) may use on the running gateway.

SIP traffic is counted by (method or status code, transport, family); an unknown method
counts as ``OTHER`` so a peer cannot grow the label set."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from rtc64.net.address import Family

if TYPE_CHECKING:
    from rtc64.gateway.location.bindings import Binding
    from rtc64.gateway.ratelimit import Key
    from rtc64.net.address import IPAddress

KNOWN_METHODS = frozenset(
    b"INVITE ACK BYE CANCEL REGISTER OPTIONS PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER "
    b"MESSAGE UPDATE".split()
)


@dataclass(slots=True)
class ProxyStats:
    """Monotonic counters (Prometheus ``_total`` semantics)."""

    requests_in: int = 0
    responses_in: int = 0
    raw_replies: int = 0  # of which forwarded from their raw bytes (``proxy/quick.py``)
    raw_acks: int = 0  # requests_in: ACKs forwarded from their raw bytes (``proxy/indialog.py``)
    in_dialog_at_once: int = 0  # requests_in: in-dialog requests (BYE...) routed at once
    messages_out: int = 0
    forwarded: int = 0
    errors_sent: int = 0
    bad_messages: int = 0
    rate_limited: int = 0
    throttled_sources: int = 0  # throttle episodes: a source went over sip.request_rate
    overloaded: int = 0
    auth_challenges: int = 0
    stateless_replies: int = 0  # answered without a transaction (REGISTER challenges)
    registrations: int = 0
    registrations_forbidden: int = 0  # REGISTER for an AOR not the authenticated user's
    registrations_too_many: int = 0  # 503: the AOR would exceed registrar.max_contacts
    registrations_first_hop: int = 0  # 439: outbound flow through a first hop without it
    send_failures: int = 0
    dropped: int = 0
    in_dialog_refused: int = 0
    byes_sent: int = 0
    race_attempts: int = 0
    race_fallbacks: int = 0
    tcp_upgrades: int = 0  # large requests sent over TCP instead of UDP (RFC 3261 §18.1.1)
    tcp_upgrade_fallbacks: int = 0  # ... whose TCP connection failed: sent over UDP after all
    response_loops: int = 0
    """Responses not sent because they would reach one of our own sockets (loop guard)."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class SipTraffic:
    """SIP messages received, by (method, transport, family) and (code, transport, family)."""

    requests: Counter[tuple[str, str, Family]] = field(default_factory=Counter)
    responses: Counter[tuple[int, str, Family]] = field(default_factory=Counter)
    rate_limited: Counter[Family] = field(default_factory=Counter)
    """New requests dropped by ``sip.request_rate``, by the source's family."""
    throttled: Counter[Family] = field(default_factory=Counter)
    """Throttle episodes (a source went over the rate), by family."""

    def request(self, method: bytes, transport: str, family: Family) -> None:
        name = method.decode("ascii") if method in KNOWN_METHODS else "OTHER"
        self.requests[name, transport, family] += 1

    def response(self, status: int, transport: str, family: Family) -> None:
        self.responses[status, transport, family] += 1


@dataclass(slots=True)
class Fallbacks:
    """Routing fallbacks by the family finally used (Prometheus ``_total`` semantics).

    ``happy_eyeballs``: a branch answered (UDP) or connected (TCP/TLS) on an address after
    the first one of its race. ``dns``, keyed ``(kind, family)``: ``nat64`` an IPv4-only
    target reached through the NAT64 prefix (RFC 6052 synthesis), ``family`` a target that
    named addresses of a family we have no listener for, reached on the other one."""

    happy_eyeballs: Counter[Family] = field(default_factory=Counter)
    dns: Counter[tuple[str, Family]] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class CallParty:
    """One side of a call as the proxy sees its signalling."""

    family: Family | None
    transport: str
    address: tuple[IPAddress, int] | None
    """The caller's source, or the callee's address the answering branch went to."""


@dataclass(frozen=True, slots=True)
class CallView:
    """A call in progress through the proxy (relayed or not), read-only."""

    call_id: bytes
    caller_uri: str
    callee_uri: str
    state: str
    """``early`` (no 2xx yet) or ``confirmed``."""
    age: float
    """Seconds since the INVITE was forwarded."""
    talk: float | None
    """Seconds since the 2xx (None: not answered)."""
    caller: CallParty
    callee: CallParty | None
    """None until a 2xx says who answered."""
    relayed: bool


class ProxyView(Protocol):
    """What a reader may see of the running proxy."""

    @property
    def stats(self) -> ProxyStats: ...

    @property
    def traffic(self) -> SipTraffic: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def fallbacks(self) -> Fallbacks: ...

    def calls_in_progress(self) -> list[CallView]: ...


class RegistrationView(Protocol):
    """The location service, read-only (every ``LocationStore`` is one)."""

    async def all_bindings(self, now: float) -> list[Binding]: ...


@dataclass(frozen=True, slots=True)
class ContactHealth:
    """Keepalive state of one registered contact (when keepalives run)."""

    state: str
    """The keepalive schedule's state of the contact (e.g. reachable, unreachable)."""
    failures: int
    """Keepalives unanswered in a row."""
    last_keepalive: float | None
    """Wall-clock time of the last answered keepalive."""
    rtt: float | None
    """Seconds, of the last answered keepalive."""


@dataclass(frozen=True, slots=True)
class KeepaliveCounters:
    """Keepalive totals since start (Prometheus ``_total`` semantics) and the contacts
    tracked now."""

    tracked: int
    pings: int
    options: int
    replies: int
    failures: dict[Family, int]
    """OPTIONS unanswered within the timeout, by the contact's family."""
    unreachable: dict[Family, int]
    """Contacts marked unreachable, by family."""
    removed: int
    """Bindings removed for being unreachable."""
    ping_failures: int
    options_unsent: int


class KeepaliveView(Protocol):
    """Per-contact keepalive state, keyed as the registrar keys contacts."""

    def health(self, aor: str, contact: bytes) -> ContactHealth | None: ...

    def counters(self) -> KeepaliveCounters: ...


@dataclass(frozen=True, slots=True)
class Block:
    """A source prefix, a user from a source prefix, or a user name blocked after failed
    authentications, with the seconds left."""

    key: Key
    seconds_left: float


class BlockView(Protocol):
    """The failed-authentication blocks: list them, lift some."""

    def blocked(self, now: float) -> list[Block]: ...

    def unblock(self, target: str, now: float) -> int: ...
