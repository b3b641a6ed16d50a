"""What every check of one run shares: settings, the resolver, limits, the check sink.

Rules (issue 13 "Per-check timeouts; the whole run bounded; concurrent but never flood"):

- ``ProbeSettings`` is the whole configuration of a run (the command line builds it).
- ``Probe.limit(host)`` admits at most ``concurrency`` network operations in the run and
  ``per_host`` toward one destination at a time, so a target sees a handful of requests,
  never a burst. Every operation gets ``timeout`` seconds; the runner bounds the run.
- DNS64 awareness: an AAAA inside a NAT64 prefix (the well-known one or the resolver's,
  RFC 7050) is synthesised, not the server's: ``split_synthesised`` sets it apart. On an
  IPv6-only host with NAT64, ``via_nat64`` gives the address an IPv4 destination is
  reached at, so IPv4 checks run through the translator instead of being skipped.
- ``family_skip`` turns a family the user excluded (``--family``) or that has no local
  route into a ``skipped`` check: a host with one family reports, it does not fail.
- ``Sink`` collects one target's checks as they finish and tells the progress display.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from rtc64.io import interfaces, nat64
from rtc64.io.resolver import Resolver
from rtc64.net import rfc6052
from rtc64.net.address import IPAddress
from rtc64.probe.verdict import Aspect, Check, Status

# Documentation addresses: a route lookup toward them tells whether a family has a
# default route (a connected UDP socket sends nothing).
_PROBE_V6 = IPv6Address("2001:db8::1")
_PROBE_V4 = IPv4Address("192.0.2.1")


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    families: frozenset[int] = frozenset((4, 6))
    dns_servers: tuple[str, ...] = ()
    timeout: float = 3.0
    deadline: float = 60.0
    concurrency: int = 8
    per_host: int = 2
    transports: tuple[str, ...] = ()
    user: str | None = None
    password: str | None = None
    call: str | None = None
    turn_user: str | None = None
    turn_password: str | None = None
    turn_secret: str | None = None
    ice_servers: tuple[str, ...] = ()
    cafile: str | None = None
    nat64_target: str | None = None
    ra_listen: float = 2.0
    browser: bool = False
    max_addresses: int = 4
    ws_path: str = "/"
    dhcp: bool = True


OnCheck = Callable[[str, Check], None]


@dataclass
class Sink:
    """The checks of one target, in the order they finished."""

    target: str
    checks: list[Check] = field(default_factory=list)
    on_check: OnCheck | None = None

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        if self.on_check is not None:
            self.on_check(self.target, check)
        return check


class Probe:
    """The shared state of one run."""

    def __init__(
        self,
        settings: ProbeSettings,
        resolver: Resolver | None = None,
        *,
        route: Callable[[IPAddress], IPAddress | None] = interfaces.source_address,
    ) -> None:
        self.settings = settings
        self.resolver = resolver or Resolver(settings.dns_servers, timeout=settings.timeout)
        self._route = route
        self._all = asyncio.Semaphore(settings.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._nat64: asyncio.Future[nat64.Dns64] | None = None

    def limit(self, host: object) -> _Limit:
        """``async with probe.limit(address):`` around one network operation."""
        key = str(host)
        sem = self._hosts.get(key)
        if sem is None:
            sem = self._hosts[key] = asyncio.Semaphore(self.settings.per_host)
        return _Limit(self._all, sem)

    def routable(self, destination: IPAddress) -> bool:
        return self._route(destination) is not None

    def local_source(self, destination: IPAddress) -> IPAddress | None:
        """The local address the kernel sends from toward ``destination``."""
        return self._route(destination)

    async def split_synthesised(
        self, addresses: Sequence[IPv6Address]
    ) -> tuple[list[IPv6Address], list[IPv6Address]]:
        """(real, synthesised) AAAA answers: inside the well-known or the resolver's NAT64
        prefix (RFC 7050) an address is DNS64's invention, not the server's IPv6."""
        if not addresses:
            return [], []
        prefixes = [rfc6052.WELL_KNOWN_PREFIX, *await self.nat64_prefixes()]
        synthesised = [a for a in addresses if any(a in p for p in prefixes)]
        return [a for a in addresses if a not in synthesised], synthesised

    async def via_nat64(self, address: IPAddress) -> IPv6Address | None:
        """Where this IPv6-only host reaches an IPv4 ``address``: its synthesised address
        under the first NAT64 prefix, when IPv4 has no route here and that address has."""
        if not isinstance(address, IPv4Address) or 4 not in self.settings.families:
            return None
        if self.routable(address):
            return None
        prefixes = await self.nat64_prefixes()
        if not prefixes:
            return None
        try:
            target = rfc6052.synthesize(address, prefixes[0])
        except ValueError:
            return None
        return target if self.routable(target) else None

    async def nat64_prefixes(self) -> list[IPv6Network]:
        """NAT64 prefixes the resolver's DNS64 reveals (RFC 7050), asked once per run."""
        if self._nat64 is None:
            self._nat64 = asyncio.ensure_future(nat64.rfc7050(self.resolver))
        found = await self._nat64
        return list(found.prefixes)

    def family_usable(self, family: int) -> bool:
        return self.routable(_PROBE_V6 if family == 6 else _PROBE_V4)

    def family_skip(
        self,
        family: int,
        check_id: str,
        aspect: Aspect | None,
        *,
        destination: IPAddress | None = None,
        group: str = "",
        what: str = "",
    ) -> Check | None:
        """A skipped check when ``family`` is excluded or has no route here, else None."""
        if family not in self.settings.families:
            return Check(
                check_id,
                Status.SKIPPED,
                "local.family-excluded",
                f"{what or check_id} over IPv{family}: not tested (--family)",
                family=family,
                aspect=aspect,
                group=group,
            )
        usable = self.routable(destination) if destination else self.family_usable(family)
        if not usable:
            return Check(
                check_id,
                Status.SKIPPED,
                f"local.no-ipv{family}",
                f"{what or check_id} over IPv{family}: this host has no IPv{family} route",
                family=family,
                aspect=aspect,
                group=group,
            )
        return None


class _Limit:
    def __init__(self, run: asyncio.Semaphore, host: asyncio.Semaphore) -> None:
        self._run, self._host = run, host

    async def __aenter__(self) -> None:
        await self._host.acquire()
        try:
            await self._run.acquire()
        except BaseException:
            self._host.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._run.release()
        self._host.release()
