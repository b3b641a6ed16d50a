"""DNS lookups for SIP targets with dnspython's async resolver.

Rules (RFC 3263 §4 via ``net.rfc3263``, RFC 2308 §5 and §7, RFC 7984 §3):

- ``targets(uri)`` runs ``rfc3263.select``: each batch of queries it yields (NAPTR; the
  SRV names; AAAA and A of every host) goes out in parallel. ``addresses(name)`` asks
  AAAA and A together and lists IPv6 first (RFC 7984: never abandon a family).
- Answers are cached for their TTL (at most ``MAX_TTL``); NXDOMAIN and NODATA for the
  SOA negative TTL or ``NEGATIVE_TTL`` (RFC 2308 §5); timeouts and SERVFAIL for
  ``failure_ttl`` (RFC 2308 §7 allows up to 5 min), so a dead server costs one timeout,
  not one per call. Identical queries in flight are shared.
- A configured server list (``dns.servers``, ``HOST[:PORT]``/``[v6]:port``) replaces the
  system's resolv.conf. Names in /etc/hosts (``localhost``) are answered without DNS and
  have no NAPTR/SRV.
- Failures raise ``ResolveError`` (``status`` 503 naming the failed query, 404 for a
  name that does not exist or has no address). The query function is injectable
  (``backend``), so tests need no network.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.NAPTR
import dns.rdtypes.IN.SRV
import dns.resolver

from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.net.address import IPAddress, parse_hostport
from rtc64.net.endpoint import Transport
from rtc64.net.rfc3263 import (
    DEFAULT_SUPPORTED,
    Answer,
    Naptr,
    Query,
    RandInt,
    RdType,
    Record,
    ResolveError,
    Srv,
    Status,
    Target,
    UriLike,
    normalise,
    select,
)

__all__ = ["Backend", "ResolveError", "Resolver", "Target", "read_hosts"]

NEGATIVE_TTL = 30.0
MAX_TTL = 3600.0
FAILURE_TTL = 5.0
MAX_CACHE = 10_000

Backend = Callable[[Query], Awaitable[Answer]]
"""Runs one DNS query; NXDOMAIN, SERVFAIL and timeouts are ``Answer.status``, not raised."""


class Resolver:
    """NAPTR/SRV/A/AAAA lookups with a TTL cache; RFC 3263 targets, IPv6 first."""

    def __init__(
        self,
        servers: Sequence[str] = (),
        timeout: float = 2.0,
        *,
        supported: Sequence[Transport] = DEFAULT_SUPPORTED,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: RandInt | None = None,
        hosts: Mapping[str, tuple[IPAddress, ...]] | None = None,
        failure_ttl: float = FAILURE_TTL,
    ) -> None:
        self._dns = _dns_resolver(servers, timeout) if backend is None else None
        self._backend: Backend = backend or self._dnspython
        self.supported = tuple(supported)
        self._clock = clock
        self._rng: RandInt = rng or random.Random()  # noqa: S311 - SRV load spreading, not secrets
        self._hosts = read_hosts() if hosts is None else dict(hosts)
        self._failure_ttl = failure_ttl
        self._cache: dict[Query, tuple[Answer, float]] = {}
        self._inflight: dict[Query, asyncio.Future[Answer]] = {}
        self.queries = 0
        self.failures = 0

    async def targets(self, uri: UriLike) -> list[Target]:
        """Where to send a request for ``uri``, in the order to try (RFC 3263 §4)."""
        lookups = select(uri, rng=self._rng, supported=self.supported)
        try:
            batch = next(lookups)
            while True:
                answers = await asyncio.gather(*(self.query(q) for q in batch))
                batch = lookups.send(dict(zip(batch, answers, strict=True)))
        except StopIteration as done:
            result: list[Target] = done.value
            return result
        except ResolveError:
            self.failures += 1
            raise

    async def addresses(self, name: str) -> tuple[IPAddress, ...]:
        """IPv6 then IPv4 addresses of ``name`` (an IP literal answers itself)."""
        try:
            return (ip_address(name),)
        except ValueError:
            pass
        key = normalise(name)
        local = self._hosts.get(key)
        if local:
            return local
        v6, v4 = await asyncio.gather(
            self.query(Query(key, RdType.AAAA)), self.query(Query(key, RdType.A))
        )
        found = tuple(
            r for a in (v6, v4) for r in a.records if isinstance(r, IPv4Address | IPv6Address)
        )
        if found:
            return found
        self.failures += 1
        for q, a in ((Query(key, RdType.AAAA), v6), (Query(key, RdType.A), v4)):
            if a.status.failed:
                raise ResolveError(f"Service Unavailable: DNS {a.status.text} for {q}", 503)
        if v6.status is Status.NXDOMAIN and v4.status is Status.NXDOMAIN:
            raise ResolveError(f"Not Found: {key} does not exist", 404)
        raise ResolveError(f"Not Found: {key} has no A or AAAA record", 404)

    async def query(self, q: Query) -> Answer:
        """One query through the cache (and /etc/hosts); never raises for DNS failures."""
        now = self._clock()
        cached = self._cache.get(q)
        if cached is not None and cached[1] > now:
            return cached[0]
        local = self._local(q)
        if local is not None:
            return local
        pending = self._inflight.get(q)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[q] = future
        try:
            self.queries += 1
            answer = await self._backend(q)
            future.set_result(answer)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[q]
        self._store(q, answer)
        return answer

    def _store(self, q: Query, answer: Answer) -> None:
        if answer.status.failed:
            ttl = self._failure_ttl
        elif not answer.records:
            ttl = answer.ttl if answer.ttl > 0 else NEGATIVE_TTL
        else:
            ttl = answer.ttl
        if ttl <= 0:
            return
        now = self._clock()
        if len(self._cache) >= MAX_CACHE:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
        self._cache[q] = (answer, now + min(ttl, MAX_TTL))

    def _local(self, q: Query) -> Answer | None:
        """Answers for names in /etc/hosts: their addresses, and no NAPTR or SRV."""
        labels = q.name.split(".")
        while labels and labels[0].startswith("_"):
            labels.pop(0)
        local = self._hosts.get(".".join(labels))
        if local is None:
            return None
        version = {RdType.A: 4, RdType.AAAA: 6}.get(q.rdtype)
        return Answer(tuple(a for a in local if a.version == version), Status.NOERROR, 0.0)

    async def _dnspython(self, q: Query) -> Answer:
        assert self._dns is not None
        try:
            answer = await self._dns.resolve(
                q.name, q.rdtype.value, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return Answer((), Status.NXDOMAIN, _negative_ttl(exc.kwargs.get("responses", {})))
        except dns.exception.Timeout:
            return Answer((), Status.TIMEOUT)
        except dns.exception.DNSException:
            return Answer((), Status.SERVFAIL)
        if answer.rrset is None:
            return Answer((), Status.NOERROR, _negative_ttl({None: answer.response}))
        records = tuple(r for rdata in answer.rrset if (r := _record(rdata)) is not None)
        return Answer(records, Status.NOERROR, float(answer.rrset.ttl))


def _record(rdata: object) -> Record | None:
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return ip_address(rdata.address)
    if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
        return Srv(rdata.priority, rdata.weight, rdata.port, _name(rdata.target))
    if isinstance(rdata, dns.rdtypes.IN.NAPTR.NAPTR):
        return Naptr(
            rdata.order,
            rdata.preference,
            _text(rdata.flags),
            _text(rdata.service),
            _text(rdata.regexp),
            _name(rdata.replacement),
        )
    return None


def _name(value: object) -> str:
    if isinstance(value, dns.name.Name):
        return normalise(value.to_text(omit_final_dot=True))
    return normalise(str(value))


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _negative_ttl(responses: Mapping[object, object]) -> float:
    """RFC 2308 §5: the SOA's TTL, capped by its MINIMUM field, from the authority section."""
    for response in responses.values():
        if isinstance(response, dns.message.Message):
            for rrset in response.authority:
                soa = rrset[0] if rrset.rdtype == dns.rdatatype.SOA and len(rrset) else None
                if isinstance(soa, dns.rdtypes.ANY.SOA.SOA):
                    return float(min(rrset.ttl, soa.minimum))
    return NEGATIVE_TTL


def _dns_resolver(servers: Sequence[str], timeout: float) -> dns.asyncresolver.Resolver:
    if servers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = []
        ports = set()
        for text in servers:
            try:
                hp = parse_hostport(text)
            except RemoteProtocolError:
                raise ConfigError("dns.servers", text, "HOST[:PORT] or [IPv6]:PORT") from None
            if isinstance(hp.host, str):
                raise ConfigError("dns.servers", text, "an IP address, not a name")
            resolver.nameservers.append(hp.host.compressed)
            ports.add(hp.port or 53)
        if len(ports) > 1:
            raise ConfigError("dns.servers", list(servers), "one port for all servers")
        resolver.port = ports.pop()
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1", "::1"]
    resolver.lifetime = timeout
    return resolver


def read_hosts(path: str = "/etc/hosts") -> dict[str, tuple[IPAddress, ...]]:
    """Names in a hosts file and their addresses, IPv6 first."""
    table: dict[str, list[IPAddress]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return {}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        for name in fields[1:]:
            table.setdefault(name.lower(), []).append(address)
    return {
        name: tuple(sorted(a for a in addrs if isinstance(a, IPv6Address)))
        + tuple(sorted(a for a in addrs if isinstance(a, IPv4Address)))
        for name, addrs in table.items()
    }
