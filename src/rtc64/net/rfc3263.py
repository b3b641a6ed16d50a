"""Locating SIP servers: RFC 3263 §4 target selection, sans-I/O.

Rules (RFC 3263 §4.1-§4.2, RFC 2782, RFC 3403 §4, RFC 7118 §8, RFC 8305 §4, RFC 7984 §3):

- ``select`` is a generator: it yields batches of DNS queries (``Query``), is sent back a
  mapping ``{Query: Answer}`` and finally returns the ordered ``Target`` list. It does no
  I/O and reads no clock; ``io.resolver`` runs the queries (each batch in parallel),
  tests answer them from a table. Randomness (SRV weights) is injected.
- The target host is ``maddr`` if present, else the URI host. Transport: the
  ``transport=`` parameter (``sips`` makes tcp TLS and ws WSS; ``sips`` with udp is
  refused); else, for a numeric IP or an explicit port, UDP for ``sip`` and TLS for
  ``sips`` with no NAPTR/SRV lookup (§4.1); else NAPTR.
- NAPTR (§4.1, RFC 3403): only flag ``s``, empty regexp and the services ``SIP+D2U``,
  ``SIP+D2T``, ``SIPS+D2T``, ``SIP+D2W``, ``SIPS+D2W`` (RFC 7118) whose transport we
  support; a ``sips`` URI keeps only ``SIPS+`` services. Sorted by order then preference;
  every usable record is kept so later ones serve as fail-over.
- SRV (§4.2, RFC 2782): the NAPTR replacements, else ``_sip._udp``, ``_sip._tcp``,
  ``_sips._tcp`` (``sips``: only the last) for the supported transports, in the order
  they are supported. Priority ascending; within a priority the RFC 2782 weighted
  random order (zero weights first; the pick starts at 1 when none is zero, so positive
  weights get exactly their share). A lone target ``.`` means "decidedly not available".
  With no SRV record at all, the host's A/AAAA on the transport's default port (§4.2).
  WebSocket has no SRV.
- Addresses: AAAA and A are always both asked (RFC 7984 §3: never drop a family because
  the other answered, nor wait for a failed one). Each host's addresses are interleaved
  IPv6 first, then alternating families (RFC 8305 §4, First Address Family Count 1).
- Errors: ``ResolveError`` (a ``RemoteProtocolError``) with the status a proxy answers:
  404 when the name does not exist or has no address, 503 when DNS failed (timeout,
  SERVFAIL) and nothing usable remains, naming the query ("Service Unavailable: DNS
  timeout for _sip._udp.example.net SRV").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol, TypeVar

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.net.address import Host, IPAddress, parse_host
from rtc64.net.endpoint import Transport

DEFAULT_SUPPORTED: tuple[Transport, ...] = (Transport.UDP, Transport.TCP, Transport.TLS)

# NAPTR service field (upper-case) -> transport (RFC 3263 §4.1, RFC 7118 §8).
NAPTR_SERVICES: dict[str, Transport] = {
    "SIP+D2U": Transport.UDP,
    "SIP+D2T": Transport.TCP,
    "SIPS+D2T": Transport.TLS,
    "SIP+D2W": Transport.WS,
    "SIPS+D2W": Transport.WSS,
}
# transport -> SRV service prefix (RFC 3263 §4.1; TLS is "_sips._tcp", RFC 5630 §3.3).
SRV_PREFIXES: dict[Transport, str] = {
    Transport.UDP: "_sip._udp",
    Transport.TCP: "_sip._tcp",
    Transport.TLS: "_sips._tcp",
}
_PARAM_TRANSPORTS = {"udp": Transport.UDP, "tcp": Transport.TCP, "tls": Transport.TLS}
_PARAM_TRANSPORTS |= {"ws": Transport.WS, "wss": Transport.WSS}
_SECURE = {Transport.TCP: Transport.TLS, Transport.WS: Transport.WSS}


class ResolveError(RemoteProtocolError):
    """A SIP target did not resolve; ``status`` is what a proxy answers (404 or 503)."""


class RdType(enum.Enum):
    NAPTR = "NAPTR"
    SRV = "SRV"
    A = "A"
    AAAA = "AAAA"


class Status(enum.Enum):
    """Outcome of one query. ``NOERROR`` with no records is NODATA."""

    NOERROR = "NOERROR"
    NXDOMAIN = "NXDOMAIN"
    SERVFAIL = "SERVFAIL"
    TIMEOUT = "TIMEOUT"

    @property
    def failed(self) -> bool:
        return self in (Status.SERVFAIL, Status.TIMEOUT)

    @property
    def text(self) -> str:
        return "timeout" if self is Status.TIMEOUT else "server failure (SERVFAIL)"


@dataclass(frozen=True, slots=True)
class Query:
    """One DNS question; ``name`` is lower-case without the final dot."""

    name: str
    rdtype: RdType

    def __str__(self) -> str:
        return f"{self.name} {self.rdtype.value}"


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


Record = Naptr | Srv | IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class Answer:
    """What DNS said; ``ttl`` is for caches (negative TTL for NXDOMAIN/NODATA)."""

    records: tuple[Record, ...] = ()
    status: Status = Status.NOERROR
    ttl: float = 0.0


@dataclass(frozen=True, slots=True)
class Target:
    """One place to send a request.

    ``host`` is the name the address came from (the SRV target or the A/AAAA name), for
    TLS SNI and logs; for a numeric URI it is the address's text (never use it as SNI).
    """

    transport: Transport
    address: IPAddress
    port: int
    host: str


class UriLike(Protocol):
    """The parts of a ``SipUri`` that routing reads."""

    @property
    def host(self) -> Host: ...
    @property
    def port(self) -> int | None: ...
    @property
    def secure(self) -> bool: ...
    def param(self, name: bytes) -> bytes | None: ...


class RandInt(Protocol):
    """``random.Random`` or a test fake: an integer N with a <= N <= b."""

    def randint(self, a: int, b: int) -> int: ...


Lookups = Generator[tuple[Query, ...], Mapping[Query, Answer], list[Target]]
_T = TypeVar("_T")


def normalise(name: str) -> str:
    """A DNS name lower-case without the final dot; the root stays ``.``."""
    return name.lower().rstrip(".") or "."


@dataclass(frozen=True, slots=True)
class _Hop:
    transport: Transport
    host: str
    port: int


def select(
    uri: UriLike, *, rng: RandInt, supported: Sequence[Transport] = DEFAULT_SUPPORTED
) -> Lookups:
    """Yield query batches, receive answers, return the targets in the order to try."""
    host = _target_host(uri)
    explicit = _transport_param(uri, supported)
    if not isinstance(host, str):
        transport = explicit or _default_transport(uri.secure, supported)
        port = uri.port if uri.port is not None else transport.default_port
        return [Target(transport, host, port, host.compressed)]
    name = normalise(host)
    if uri.port is not None:
        transport = explicit or _default_transport(uri.secure, supported)
        return (yield from _addresses([_Hop(transport, name, uri.port)], name))
    if explicit is not None:
        srv = SRV_PREFIXES.get(explicit)
        services = [(explicit, f"{srv}.{name}")] if srv else []
        return (yield from _srv_then_addresses(services, explicit, name, rng))
    naptr_query = Query(name, RdType.NAPTR)
    answers = yield (naptr_query,)
    naptr = answers[naptr_query]
    if naptr.status is Status.NXDOMAIN:
        raise ResolveError(f"Not Found: {name} does not exist", 404)
    if naptr.status.failed:
        raise _unavailable(naptr_query, naptr.status)
    services = naptr_services(_only(naptr.records, Naptr), secure=uri.secure, supported=supported)
    if services:
        return (yield from _srv_then_addresses(services, services[0][0], name, rng))
    wanted = [t for t in supported if t in SRV_PREFIXES and (t.secure or not uri.secure)]
    services = [(t, f"{SRV_PREFIXES[t]}.{name}") for t in wanted]
    fallback = _default_transport(uri.secure, supported)
    return (yield from _srv_then_addresses(services, fallback, name, rng))


def run(lookups: Lookups, answer: Callable[[Query], Answer]) -> list[Target]:
    """Drive ``select`` synchronously, answering each query with ``answer``."""
    try:
        batch = next(lookups)
        while True:
            batch = lookups.send({q: answer(q) for q in batch})
    except StopIteration as done:
        result: list[Target] = done.value
        return result


def naptr_services(
    records: Iterable[Naptr], *, secure: bool, supported: Sequence[Transport]
) -> list[tuple[Transport, str]]:
    """Usable NAPTR records as ``(transport, SRV name)``, by order then preference."""
    usable: list[tuple[int, int, Transport, str]] = []
    for r in records:
        transport = NAPTR_SERVICES.get(r.service.upper())
        if transport is None or transport not in supported or r.flags.lower() != "s":
            continue
        if r.regexp or normalise(r.replacement) == "." or (secure and not transport.secure):
            continue
        usable.append((r.order, r.preference, transport, normalise(r.replacement)))
    usable.sort(key=lambda u: (u[0], u[1]))
    seen: set[tuple[Transport, str]] = set()
    out: list[tuple[Transport, str]] = []
    for _, _, transport, replacement in usable:
        if (transport, replacement) not in seen:
            seen.add((transport, replacement))
            out.append((transport, replacement))
    return out


def order_srv(records: Iterable[Srv], rng: RandInt) -> list[Srv]:
    """SRV records in the order to try (RFC 2782): priority, then weighted random."""
    by_priority: dict[int, list[Srv]] = {}
    for r in records:
        if normalise(r.target) != ".":
            by_priority.setdefault(r.priority, []).append(r)
    out: list[Srv] = []
    for priority in sorted(by_priority):
        # Zero-weight records first, so they get a small chance to be picked (RFC 2782).
        remaining = sorted(by_priority[priority], key=lambda r: r.weight != 0)
        while remaining:
            # RFC 2782 picks in [0, sum]; starting at 1 when no weight is 0 removes its bias
            # towards the first record (weights 1 and 2 would otherwise split 50/50).
            low = 0 if remaining[0].weight == 0 else 1
            pick = rng.randint(low, max(low, sum(r.weight for r in remaining)))
            running = 0
            for i, r in enumerate(remaining):
                running += r.weight
                if running >= pick:
                    out.append(remaining.pop(i))
                    break
    return out


def interleave(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    """IPv6 first, then alternating families, each family in its given order (RFC 8305 §4)."""
    v6 = [a for a in addresses if isinstance(a, IPv6Address)]
    v4 = [a for a in addresses if isinstance(a, IPv4Address)]
    out: list[IPAddress] = []
    for i in range(max(len(v6), len(v4))):
        out.extend(fam[i] for fam in (v6, v4) if i < len(fam))
    return out


def _srv_then_addresses(
    services: list[tuple[Transport, str]], fallback: Transport, name: str, rng: RandInt
) -> Lookups:
    queries = tuple(dict.fromkeys(Query(srv, RdType.SRV) for _, srv in services))
    answers = yield from _ask(queries)
    hops: list[_Hop] = []
    found = False
    failure: tuple[Query, Status] | None = None
    for transport, srv in services:
        q = Query(srv, RdType.SRV)
        answer = answers[q]
        if answer.status.failed:
            failure = failure or (q, answer.status)
            continue
        records = _only(answer.records, Srv)
        found = found or bool(records)
        hops.extend(_Hop(transport, normalise(r.target), r.port) for r in order_srv(records, rng))
    if hops:
        return (yield from _addresses(hops, name))
    if failure is not None:
        raise _unavailable(*failure)
    if found:
        raise ResolveError(f"Not Found: {name} offers no SIP service (SRV target '.')", 404)
    return (yield from _addresses([_Hop(fallback, name, fallback.default_port)], name))


def _addresses(hops: list[_Hop], name: str) -> Lookups:
    hosts = list(dict.fromkeys(h.host for h in hops))
    queries = tuple(Query(h, t) for h in hosts for t in (RdType.AAAA, RdType.A))
    answers = yield from _ask(queries)
    per_host: dict[str, list[IPAddress]] = {}
    failure: tuple[Query, Status] | None = None
    missing = True
    for q in queries:
        answer = answers[q]
        if answer.status.failed:
            failure = failure or (q, answer.status)
        missing = missing and answer.status is Status.NXDOMAIN
        per_host.setdefault(q.name, []).extend(
            r for r in answer.records if isinstance(r, IPv4Address | IPv6Address)
        )
    targets: list[Target] = []
    seen: set[tuple[Transport, IPAddress, int]] = set()
    for hop in hops:
        for address in interleave(per_host[hop.host]):
            if (hop.transport, address, hop.port) not in seen:
                seen.add((hop.transport, address, hop.port))
                targets.append(Target(hop.transport, address, hop.port, hop.host))
    if targets:
        return targets
    if failure is not None:
        raise _unavailable(*failure)
    shown = ", ".join(hosts)
    if missing:
        raise ResolveError(f"Not Found: {shown} does not exist", 404)
    raise ResolveError(f"Not Found: {shown} has no A or AAAA record", 404)


def _ask(
    queries: tuple[Query, ...],
) -> Generator[tuple[Query, ...], Mapping[Query, Answer], Mapping[Query, Answer]]:
    if not queries:
        return {}
    answers = yield queries
    absent = [q for q in queries if q not in answers]
    if absent:
        raise LocalProtocolError(f"select() was sent no answer for {absent[0]}")
    return answers


def _only(records: Iterable[Record], kind: type[_T]) -> list[_T]:
    return [r for r in records if isinstance(r, kind)]


def _unavailable(query: Query, status: Status) -> ResolveError:
    return ResolveError(f"Service Unavailable: DNS {status.text} for {query}", 503)


def _target_host(uri: UriLike) -> Host:
    maddr = uri.param(b"maddr")
    if maddr is None:
        return uri.host
    try:
        return parse_host(maddr)
    except RemoteProtocolError:
        raise ResolveError(
            f"Bad Request: invalid maddr {maddr.decode('ascii', 'replace')!r}", 400
        ) from None


def _transport_param(uri: UriLike, supported: Sequence[Transport]) -> Transport | None:
    value = uri.param(b"transport")
    if value is None:
        return None
    text = value.decode("ascii", "replace").lower()
    transport = _PARAM_TRANSPORTS.get(text)
    if transport is None:
        raise ResolveError(f"Service Unavailable: transport={text} is not supported", 503)
    if uri.secure:
        if transport is Transport.UDP:
            raise ResolveError("Bad Request: a sips URI cannot use transport=udp", 400)
        transport = _SECURE.get(transport, transport)
    if transport not in supported:
        raise ResolveError(
            f"Service Unavailable: transport {transport.value} is not enabled here", 503
        )
    return transport


def _default_transport(secure: bool, supported: Sequence[Transport]) -> Transport:
    """UDP for ``sip`` and TLS for ``sips`` (§4.1), else the first supported that fits."""
    preferred = Transport.TLS if secure else Transport.UDP
    if preferred in supported:
        return preferred
    for transport in supported:
        if transport.secure or not secure:
            return transport
    raise ResolveError("Service Unavailable: no secure transport is enabled for sips", 503)
