"""``rtc64 clat run``: one CLAT state machine per uplink, driven by rtnetlink events.

Rules (RFC 6877, RFC 8781, RFC 7050 §3/§5, draft-ietf-v6ops-claton; see ``linkstate``):

- Wake-ups come from rtnetlink (links, addresses, routes, ND user options) and from the
  state machines' deadlines; each wake-up re-reads a snapshot and reconciles: an instance
  is started for a link that wants one, restarted when its prefix, router or source
  changed, stopped when its link no longer wants one. A ``LIVENESS`` wake-up also checks
  that each translator still runs (restart if not): that is not state polling.
- PREF64 from the kernel's ND user options is applied to the link it came in on; a
  malformed or forged option (bad length) is dropped and counted. RFC 7050 is asked
  through the host's resolver; its result applies to every link (DNS is host-wide).
- Our own links (``r64clat*``) and their 192.0.0.0/29 addresses are never taken for the
  uplink's own IPv4. A 192.0.0.0/29 address on an uplink, or a ``clat`` device of clatd,
  means another CLAT (NetworkManager, systemd-networkd, clatd): deferred to, reported.
- At start, Router Solicitations (RFC 4861 §6.3.7: 3, 4 s apart) on every up link, while
  an up link has no PREF64, so routers answer now rather than at their next periodic RA.
- A DAD failure moves the CLAT address to the next candidate (RFC 4862 §5.4.5).
- The CLAT's IPv4 MTU is ``--mtu`` (1260: fits the IPv6 minimum 1280 after translation),
  never more than the uplink's MTU minus 20; bigger IPv4 datagrams are fragmented by the
  host, and tayga translates each fragment (RFC 7915 §4.1). TCP SYNs crossing the CLAT
  get their MSS clamped to that MTU minus 40 (the engine).
- DHCPv4 option 108 (RFC 8925): unless ``dhcpv4`` is off, each up uplink (a default
  router of either family) is probed
  (``dhcpwatch``; never a lease taken); an OFFER with option 108 tells that link's state
  machine IPv6-only is preferred for V6ONLY_WAIT plus ``DHCP_GRACE`` (the re-probe at the
  end of the wait renews it before it lapses); an OFFER without it is reported.
- Status is written to ``status.json`` in the state directory after each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from rtc64.io import clat_engine, netlink
from rtc64.io.clat_engine import ClatConfig, Engine
from rtc64.io.nat64 import rfc7050, solicit_routers
from rtc64.io.resolver import Resolver
from rtc64.net.pref64 import pref64_options
from rtc64.net.rfc6052 import Rfc6052Error

from .addressing import CLAT_RANGE, Slot, clat_address, free_slot, internal_address
from .dhcp4 import Event as DhcpEvent
from .dhcp4 import V6Only
from .dhcpwatch import Dhcp4Watch
from .linkstate import LinkState, LinkView, Off, Want

LIVENESS = 10.0
RETRY_AFTER = 30.0
COALESCE = 0.05
IPV6_OVER_IPV4 = 20  # a translated packet grows by 20 octets (RFC 7915 §4)
MAX_RTR_SOLICITATIONS = 3
RTR_SOLICITATION_INTERVAL = 4.0
STATE_DIR = Path("/run/rtc64/clat")
MAX_DAD_ATTEMPTS = 3
DHCP_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class ClatSettings:
    interfaces: tuple[str, ...] = ()
    """Uplinks to consider; empty: every non-loopback link that is not ours."""
    prefix: IPv6Network | None = None
    mtu: int = 1260
    state_dir: Path = STATE_DIR
    dns_servers: tuple[str, ...] = ()
    dhcpv4: bool = True
    """Probe each uplink for DHCPv4 option 108 (RFC 8925)."""
    ns_prefix: str = clat_engine.NS_PREFIX
    """Namespaces are ``<ns_prefix><slot>`` (tests and side-by-side daemons change it)."""


@dataclass(slots=True)
class Solicitations:
    """Router Solicitations at start: MAX_RTR_SOLICITATIONS (3), RTR_SOLICITATION_INTERVAL
    (4 s) apart (RFC 4861 §6.3.7, §10), while an up link has no PREF64 yet."""

    next: float | None
    left: int = MAX_RTR_SOLICITATIONS

    def due(self, now: float, wanted: bool) -> bool:
        if self.next is None or now < self.next:
            return False
        if not wanted:
            self.next = None
            return False
        self.left -= 1
        self.next = now + RTR_SOLICITATION_INTERVAL if self.left > 0 else None
        return True


@dataclass(slots=True)
class Instance:
    slot: Slot
    config: ClatConfig
    want: Want
    attempt: int = 0


@dataclass(slots=True)
class ClatService:
    settings: ClatSettings
    engine: Engine
    log: logging.Logger
    resolver: Resolver | None = None
    links: dict[int, LinkState] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    instances: dict[int, Instance] = field(default_factory=dict)
    decisions: dict[int, Want | Off] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    dropped_options: int = 0
    failed_until: dict[int, tuple[Want, float]] = field(default_factory=dict)
    """A link whose CLAT failed to start: not retried for the same ``Want`` before then."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _dns_task: asyncio.Task[None] | None = None
    dhcp: Dhcp4Watch | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, stop: asyncio.Event) -> None:
        events = netlink.Events()
        loop = asyncio.get_running_loop()
        if self.settings.dhcpv4:
            self.dhcp = Dhcp4Watch(self.log, self.dhcp_event)
        try:
            await self.refresh(loop.time())  # link states first: the RAs answering
            solicit = Solicitations(loop.time())  # the RS find them (queued meanwhile)
            while not stop.is_set():
                if solicit.due(loop.time(), self._lacking_pref64()):
                    await asyncio.to_thread(solicit_routers)
                deadlines = [t for s in self.links.values() if (t := s.get_timer()) is not None]
                if solicit.next is not None:
                    deadlines.append(solicit.next)
                if self.dhcp is not None:
                    self.dhcp.handle_timer(loop.time())
                    if (t := self.dhcp.get_timer()) is not None:
                        deadlines.append(t)
                timeout = LIVENESS
                if deadlines:
                    timeout = max(0.0, min(min(deadlines) - loop.time(), LIVENESS))
                waiter = asyncio.ensure_future(events.next(timeout))
                stopper = asyncio.ensure_future(stop.wait())
                woken = asyncio.ensure_future(self.wake.wait())
                done, _ = await asyncio.wait(
                    {waiter, stopper, woken}, return_when="FIRST_COMPLETED"
                )
                stopper.cancel()
                woken.cancel()
                self.wake.clear()
                if waiter not in done:  # stopping, or a DHCP answer woke us
                    waiter.cancel()
                    if stopper in done:
                        break
                messages = waiter.result() if waiter in done else None
                await asyncio.sleep(COALESCE)  # one snapshot for a burst of events
                now = loop.time()
                for msg in messages or ():
                    self.pref64_message(msg.ifindex, pref64_options(msg), now)
                for state in self.links.values():
                    state.handle_timer(now)
                await self.refresh(now)
        finally:
            events.close()
            if self.dhcp is not None:
                self.dhcp.close()
            if self._dns_task is not None:
                self._dns_task.cancel()
            for index in list(self.instances):
                await self.stop_instance(index, "daemon stopping")
            with contextlib.suppress(OSError):
                (self.settings.state_dir / "status.json").unlink()

    def dhcp_event(self, index: int, event: DhcpEvent) -> None:
        """What a link's option 108 probe learnt (called from the socket's reader)."""
        state = self.links.get(index)
        if state is None:
            return
        if isinstance(event, V6Only):
            state.option108(event.wait + DHCP_GRACE, asyncio.get_running_loop().time())
        if self.dhcp is not None:
            self.log.info("%s: DHCPv4: %s", self.names.get(index), self.dhcp.describe(index))
        self.wake.set()

    def _lacking_pref64(self) -> bool:
        now = asyncio.get_running_loop().time()
        return any(
            s.view is not None and s.view.up and not any(e > now for e in s.pref64.values())
            for s in self.links.values()
        )

    def pref64_message(self, ifindex: int, options: Sequence[Any], now: float) -> None:
        state = self.links.get(ifindex)
        if state is None:
            return
        for opt in options:
            try:
                state.pref64_seen(opt.prefix, opt.lifetime, now)
            except Rfc6052Error:
                self.dropped_options += 1
                continue
            self.log.info(
                "%s: PREF64 %s lifetime %ss", self.names.get(ifindex), opt.prefix, opt.lifetime
            )

    def _eligible(self, link: netlink.LinkInfo) -> bool:
        if link.loopback or link.name.startswith(clat_engine.LINK_PREFIX):
            return False
        return not self.settings.interfaces or link.name in self.settings.interfaces

    async def refresh(self, now: float) -> None:
        try:
            snapshot = await asyncio.to_thread(netlink.snapshot)
        except OSError as exc:  # netlink dump failed (ENOBUFS, EINTR): next wake-up retries
            self.log.warning("netlink snapshot failed: %s", exc)
            return
        clatd = any(link.name == "clat" for link in snapshot)
        seen: set[int] = set()
        for link in snapshot:
            if not self._eligible(link):
                continue
            seen.add(link.index)
            state = self.links.get(link.index)
            if state is None:
                state = self.links[link.index] = LinkState(link.index, self.settings.prefix)
            self.names[link.index] = link.name
            ours = self.instances.get(link.index)
            own_v4 = {ours.config.host_v4} if ours else set()
            foreign = [a for a in link.ipv4 if a.ip in CLAT_RANGE and a.ip not in own_v4]
            owner = None
            if foreign:
                owner = f"CLAT address {foreign[0]} on {link.name} (NetworkManager/networkd?)"
            elif clatd:
                owner = "clatd (device clat)"
            state.foreign_clat(owner)
            state.observe(
                LinkView(
                    index=link.index,
                    name=link.name,
                    up=link.up,
                    mtu=link.mtu,
                    ipv4=tuple(a for a in link.ipv4 if a.ip not in CLAT_RANGE),
                    ipv4_default=link.ipv4_default,
                    ipv6=link.ipv6,
                    router=link.router,
                )
            )
        if self.dhcp is not None:
            self.dhcp.follow(
                ((i, self.names[i], _uplink(s.view)) for i, s in self.links.items() if i in seen),
                now,
            )
        for index in set(self.links) - seen:
            await self.stop_instance(index, "link gone")
            del self.links[index]
            self.decisions.pop(index, None)
            self.failed_until.pop(index, None)
        self._maybe_ask_dns64(now)
        await self.reconcile(now)

    def _maybe_ask_dns64(self, now: float) -> None:
        if self.resolver is None or (self._dns_task and not self._dns_task.done()):
            return
        if any(s.wants_dns64(now) for s in self.links.values()):
            self._dns_task = asyncio.ensure_future(self._ask_dns64(self.resolver))

    async def _ask_dns64(self, resolver: Resolver) -> None:
        try:
            result = await rfc7050(resolver)
        except Exception as exc:
            self.log.warning("RFC 7050 query failed: %s", exc)
            return
        now = asyncio.get_running_loop().time()
        if result.status.failed:  # a DNS failure says nothing: keep what we knew, ask later
            self.log.info("RFC 7050: %s", result.describe())
            for state in self.links.values():
                state.dns64_result(state.dns64, 0, now)
        else:
            for state in self.links.values():
                state.dns64_result(result.prefixes, result.ttl, now)
        await self.reconcile(now)

    async def reconcile(self, now: float) -> None:
        async with self.lock:  # DNS64 answers and netlink wake-ups never apply at once
            await self._reconcile(now)

    async def _reconcile(self, now: float) -> None:
        for index, state in list(self.links.items()):
            decision = state.decide(now)
            old = self.decisions.get(index)
            self.decisions[index] = decision
            running = self.instances.get(index)
            if isinstance(decision, Off):
                if running is not None:
                    await self.stop_instance(index, decision.reason.value)
                if old != decision:
                    self.log.info(
                        "%s: no CLAT: %s %s", self.names[index], decision.reason.value,
                        decision.detail,
                    )  # fmt: skip
                continue
            if running is not None and self._same(running.want, decision):
                if self.engine.alive(running.config):
                    continue
                self.log.warning("%s: translator died, restarting", self.names[index])
            failed = self.failed_until.get(index)
            if failed is not None and self._same(failed[0], decision) and now < failed[1]:
                continue
            if not await self.start_instance(index, decision):
                self.failed_until[index] = (decision, now + RETRY_AFTER)
        self.write_status()

    @staticmethod
    def _same(a: Want, b: Want) -> bool:
        return (a.prefix.prefix, a.source, a.link.router, a.link.name) == (
            b.prefix.prefix,
            b.source,
            b.link.router,
            b.link.name,
        )

    async def start_instance(self, index: int, want: Want) -> bool:
        running = self.instances.pop(index, None)
        if running is not None:
            await asyncio.to_thread(self.engine.stop, running.config)
        slot = running.slot if running else free_slot(i.slot.index for i in self.instances.values())
        if slot is None:
            self.log.warning("%s: no CLAT: 192.0.0.0/29 is full (4 instances)", want.link.name)
            return False
        for attempt in range(self.attempts.get(index, 0), MAX_DAD_ATTEMPTS):
            cfg = self._config(slot, want, attempt)
            try:
                await asyncio.to_thread(self.engine.start, cfg)
            except clat_engine.DadError as exc:
                self.log.warning("%s: %s; trying another address", want.link.name, exc)
                continue
            except clat_engine.EngineError as exc:
                self.log.error("%s: CLAT failed: %s", want.link.name, exc)
                return False
            self.attempts[index] = attempt
            self.instances[index] = Instance(slot, cfg, want, attempt)
            self.log.info(
                "%s: CLAT up in %s: IPv4 %s -> %s via %s (prefix %s from %s); address: %s",
                want.link.name, cfg.namespace, cfg.host_v4, cfg.clat_v6, cfg.router,
                want.prefix.prefix, want.prefix.source, want.why,
            )  # fmt: skip
            self.failed_until.pop(index, None)
            return True
        self.log.error("%s: CLAT failed: DAD failed %d times", want.link.name, MAX_DAD_ATTEMPTS)
        return False

    def _config(self, slot: Slot, want: Want, attempt: int) -> ClatConfig:
        router = want.link.router
        assert router is not None  # a Want always has a router (linkstate.decide)
        return ClatConfig(
            slot=slot.index,
            uplink=want.link.name,
            namespace=f"{self.settings.ns_prefix}{slot.index}",
            host_veth=slot.host_veth,
            ns_veth=slot.ns_veth,
            macvlan=slot.uplink,
            tun=slot.tun,
            host_v4=slot.host_v4,
            clat_v4=slot.clat_v4,
            clat_v6=(
                clat_address(want.source, want.link.name, slot, attempt)
                if want.shared is None
                else internal_address(slot)
            ),
            plat=want.prefix.prefix,
            router=router,
            mtu=min(self.settings.mtu, want.link.mtu - IPV6_OVER_IPV4),
            workdir=self.settings.state_dir,
            shared=want.shared,
        )

    async def stop_instance(self, index: int, why: str) -> None:
        running = self.instances.pop(index, None)
        if running is None:
            return
        await asyncio.to_thread(self.engine.stop, running.config)
        self.log.info("%s: CLAT down (%s)", self.names.get(index), why)

    def status(self) -> dict[str, Any]:
        links = []
        for index, decision in sorted(self.decisions.items()):
            entry: dict[str, Any] = {"interface": self.names.get(index), "index": index}
            if self.dhcp is not None and (dhcp := self.dhcp.describe(index)) is not None:
                entry["dhcpv4"] = dhcp
            inst = self.instances.get(index)
            if isinstance(decision, Off):
                entry |= {"state": "off", "reason": decision.reason.value}
                entry["detail"] = decision.detail
            elif inst is None:
                entry |= {"state": "failed", "reason": "the translator could not start"}
            else:
                cfg = inst.config
                counters = self.engine.counters(cfg)
                entry |= {
                    "state": "running",
                    "prefix": str(decision.prefix.prefix),
                    "prefix_source": decision.prefix.source,
                    "ipv4": str(cfg.host_v4),
                    "clat_ipv4": str(cfg.clat_v4),
                    "clat_ipv6": str(cfg.shared or cfg.clat_v6),
                    "policy": "dedicated" if cfg.shared is None else "shared",
                    "address_policy": (
                        f"dedicated, proxy-ND after DAD; {decision.why}"
                        if cfg.shared is None
                        else f"shared (internal {cfg.clat_v6}, SNAT in nftables table "
                        f"ip6 {cfg.table}); {decision.why}"
                    ),
                    "namespace": cfg.namespace,
                    "host_link": cfg.host_veth,
                    "engine": self.engine.name,
                    "mtu": cfg.mtu,
                    "counters": None if counters is None else dataclasses.asdict(counters),
                }
            links.append(entry)
        return {"pid": os.getpid(), "links": links, "dropped_options": self.dropped_options}

    def write_status(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.settings.state_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2) + "\n")
        tmp.replace(path)


def _uplink(view: LinkView | None) -> bool:
    """Up, with a default router of either family: where a DHCPv4 server's option 108
    matters (bridges and container links are not probed)."""
    return view is not None and view.up and (view.router is not None or view.ipv4_default)


def read_status(state_dir: Path = STATE_DIR) -> dict[str, Any] | None:
    """The running daemon's last status, or None when no daemon runs (a status left by a
    killed daemon is ignored: its pid is gone)."""
    try:
        data = json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    try:
        os.kill(data["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return data


def idle_links(state_dir: Path = STATE_DIR) -> list[dict[str, str]]:
    """The links a live ``rtc64 clat run`` watches without a CLAT: interface, state (off,
    failed), reason and detail (why not: IPv4 present, no NAT64 found...)."""
    status = read_status(state_dir) or {}
    keys = ("interface", "state", "reason", "detail")
    return [
        {k: str(link.get(k) or "") for k in keys}
        for link in status.get("links", [])
        if isinstance(link, dict) and link.get("state") != "running"
    ]


def running_clats(state_dir: Path = STATE_DIR) -> list[dict[str, str]]:
    """The CLATs a live ``rtc64 clat run`` keeps up: interface, IPv4 address, CLAT IPv6
    address, its policy (dedicated or shared), prefix and its source, engine (for ``rtc64
    probe`` and the gateway)."""
    status = read_status(state_dir) or {}
    keys = ("interface", "ipv4", "clat_ipv6", "policy", "prefix", "prefix_source", "engine")
    return [
        {k: str(link.get(k, "")) for k in keys}
        for link in status.get("links", [])
        if isinstance(link, dict) and link.get("state") == "running"
    ]


def clat_addresses(clats: Sequence[dict[str, str]]) -> frozenset[IPv4Address | IPv6Address]:
    """The addresses of ``running_clats`` no SDP may carry: each CLAT's IPv4 address and
    its dedicated IPv6 address (a shared one is the host's own, usable as ever)."""
    out: set[IPv4Address | IPv6Address] = set()
    for clat in clats:
        with contextlib.suppress(ValueError):
            out.add(IPv4Address(clat["ipv4"]))
        if clat.get("policy") == "dedicated":
            with contextlib.suppress(ValueError):
                out.add(IPv6Address(clat["clat_ipv6"]))
    return frozenset(out)
