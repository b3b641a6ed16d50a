"""The composition root of ``rtc64 serve``: builds each service from its settings, runs
them until stopped, then stops them in reverse order.

Order (each step needs what the ones before made): this host's addresses (media
addresses checked against them) → data directory, store, secret → TLS identity →
transports, bound and delivering to ``Reception`` (503 until the proxy exists: the proxy
needs the bound listeners; answers to keepalive OPTIONS are tapped off first, STUN on the
UDP ports answered) → identity → relay and ng control → resolver and NAT64 → media
bridge → keepalives (their own ``Driver``; they watch the proxy's store) → proxy, driven
by one ``io.driver.Driver`` → load watch → periodic jobs → TURN (its relay ports from the
media relay's pool) → web console, API and /metrics (``web.enabled``).
``general.services`` picks what runs: without ``sip`` no SIP listener, proxy, keepalives
or media bridge starts (``--only turn``); ``media`` alone runs the relay with its ng
control.
With ``sip.workers`` > 1 ``serve`` hands over to ``workers.py`` (the supervisor); each
worker runs a ``Gateway`` with a ``WorkerRole``: the supervisor's sockets, a shared store,
its slice of the media ports, no TURN (the supervisor runs it), ng control, the web
console and the keepalives' start-up load in worker 0.
Every component registers its own stop on one ``AsyncExitStack``, so a failure half-way
through start-up stops what was started. Only ``cli.py`` (and ``workers.py``) import this
package. Its parts: ``files`` (data directory: store, authenticator, TLS identities),
``parts`` (transports, relay, NAT64 discovery, periodic jobs, the ready log), ``role``
(``WorkerRole``).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import random
import secrets
import socket
import time
from collections.abc import Callable, Collection, Sequence
from ipaddress import IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING

from rtc64 import __version__
from rtc64.clat.learning import ClatWatch
from rtc64.config import Config, realm_of, tunnel_runs
from rtc64.errors import ConfigError, Rtc64Error
from rtc64.gateway.admission import Admission
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.identity import Identity
from rtc64.gateway.keepalive.schedule import KeepaliveSchedule
from rtc64.gateway.keepalive.service import Keepalives, ReplyTap, WatchedStore, worker_token
from rtc64.gateway.loadwatch import watch_load
from rtc64.gateway.location.store import LocationStore, Store
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.proxy.branches import Sender
from rtc64.gateway.proxy.service import Proxy
from rtc64.gateway.ratelimit import TokenBucket
from rtc64.gateway.startup import Reception
from rtc64.io import interfaces
from rtc64.io.driver import Driver, clock
from rtc64.io.resolver import Resolver
from rtc64.io.scheduler import Spawner
from rtc64.io.secret import load_secret
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.io.sip_workers import receive_changes
from rtc64.io.worker_link import WorkerLink
from rtc64.lifecycle import Lifecycle, Observers
from rtc64.net.address import Family, IPAddress, family_of
from rtc64.net.endpoint import BoundListener, ListenSpec, SockAddr
from rtc64.probe import report as probe_report
from rtc64.probe import runner as probe_runner
from rtc64.probe.context import Probe, ProbeSettings
from rtc64.probe.verdict import exit_code
from rtc64.relay import ngserver
from rtc64.relay.options import RelaySettings, refuse_foreign
from rtc64.relay.service import RunningRelay, start_relay
from rtc64.settings import (
    keepalive_settings,
    nat64_network,
    ng_settings,
    one_per_family,
    proxy_settings,
    relay_settings,
    tunnel_settings,
    turn_credential_settings,
    turn_peer_policy,
    turn_relay_addresses,
    turn_service_settings,
)
from rtc64.sip.transaction import TransactionLayer
from rtc64.tunnel.service import TunnelService
from rtc64.turnserver.credentials import Credentials
from rtc64.turnserver.quotas import ChallengeLimiter
from rtc64.turnserver.service import TurnService, tune_memory
from rtc64.web.app import RunningWeb
from rtc64.web.peers import endpoint_path
from rtc64.web.probes import ProbeResult
from rtc64.web.views import SipIoCounters
from rtc64.web.wiring import preflight as web_preflight
from rtc64.web.wiring import refresh_gateway_web, start_gateway_web, start_peer_web

if TYPE_CHECKING:
    import asyncio

from rtc64.serve.files import (
    authenticator,
    data_files,
    open_checked_store,
    server_tls,
    turn_tls,
)
from rtc64.serve.parts import (
    bind_transports,
    discover_nat64,
    log_ready,
    media_relay,
    periodic_jobs,
)
from rtc64.serve.role import WorkerRole

PROBE_DEADLINE = 60.0  # seconds a probe run started from the console may take


__all__ = [
    "Gateway",
    "WorkerRole",
    "data_files",
    "open_checked_store",
    "serve",
    "server_tls",
]


async def serve(
    config: Config,
    stop: asyncio.Event,
    log: logging.Logger,
    reload_config: Callable[[], Config] | None = None,
) -> int:
    """Start the gateway on ``config``, wait for ``stop`` (SIGINT, or SIGTERM after the
    drain; SIGHUP reloads from ``reload_config``: ``lifecycle``), then shut down."""
    log.info("rtc64 %s starting", __version__)
    log.info("configuration from %s", config.source or "embedded defaults")
    for key, value in config.describe():
        log.debug("config %s = %s", key, value)
    from rtc64.workers import supervise, worker_count  # noqa: PLC0415 - imports this module

    count = worker_count(config)
    if count > 1:
        return await supervise(config, count, stop, log, reload_config)
    gateway = Gateway(config, log)
    try:
        await gateway.start()
        signals = Lifecycle(gateway, stop, reload_config=reload_config, log=log)
        signals.install()
        try:
            await stop.wait()
        finally:
            signals.uninstall()
    finally:
        log.info("rtc64 stopping")
        await gateway.stop()
    return 0


class Gateway:
    """The running components of ``rtc64 serve`` (``transports`` once bound, ``proxy``
    once wired); ``role``: one SIP worker of several."""

    def __init__(self, cfg: Config, log: logging.Logger, role: WorkerRole | None = None) -> None:
        self.cfg = cfg
        self.log = log
        self.role = role
        self.transports: SipTransportLayer | None = None
        self.proxy: Proxy | None = None
        self.keepalives: Keepalives | None = None
        self.relay: RunningRelay | None = None
        self.turn: TurnService | None = None
        self.tunnel: TunnelService | None = None
        self.media: MediaBridge | None = None
        self.identity: Identity | None = None
        self.observers: Observers | None = None
        self.auth: Authenticator | None = None
        self.web: RunningWeb | None = None
        self.nat64: IPv6Network | None = None
        self._stack = contextlib.AsyncExitStack()
        self._book: dict[ListenSpec, socket.socket] = {}  # a worker's sockets by spec
        self._link: WorkerLink | None = None
        self._keepalive_names: dict[str, BoundListener] = {}
        if role is not None:
            self._book.update((*role.sockets.own, *role.sockets.public))
            self._own = [spec for spec, _ in role.sockets.own]
            self._public = [spec for spec, _ in role.sockets.public]

    async def start(self) -> None:
        """Build and start everything; on failure, stop what was started and re-raise."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def stop(self) -> None:
        await self._stack.aclose()

    def media_ports(self, cfg: Config) -> tuple[int, int]:
        """The relay's port range from ``cfg``: ``media.ports``, or a SIP worker's slice of
        it (``ConfigError`` when too small for every process)."""
        ports = cfg.media.ports
        return ports if self.role is None else self.role.media_slice(ports)

    async def relisten(
        self, specs: Sequence[ListenSpec]
    ) -> tuple[list[ListenSpec], list[ListenSpec]]:
        """A reload's new ``sip.listen``: listeners opened and closed (calls and
        connections stay); a SIP worker takes the sockets the supervisor handed it
        (``io.sip_workers``). Returns (opened, closed); ``ConfigError`` changes nothing."""
        transports, identity = self.transports, self.identity
        assert transports is not None and identity is not None
        role = self.role
        if role is None:
            opened, closed = await transports.relisten(specs)
            identity.replace_listeners(transports.listeners)
            return opened, closed
        changes = receive_changes(role.control)
        if not changes:
            shown = ", ".join(str(s) for s in specs)
            raise ConfigError("sip.listen", shown, "sockets the supervisor could bind (its log)")
        own, public = list(self._own), list(self._public)
        peers: tuple[BoundListener, ...] = role.peers
        for change, socks in changes:
            self._book.update(socks)
            own = [s for s in own if s not in change.removed] + list(change.own)
            public = [s for s in public if s not in change.removed] + list(change.public)
            peers = change.peers
            if self._link is not None:
                self._link.private_ports(change.private)
        opened, closed = await transports.relisten([*own, *public], receive_only=own)
        self._own, self._public = own, public
        listeners = list(transports.listeners)
        identity.replace_listeners(
            listeners + [p for p in peers if p not in listeners], shared=public
        )
        for spec in closed:
            sock = self._book.pop(spec, None)
            if sock is not None:
                sock.close()
        shared = {(b.spec.transport, b.family): b for b in listeners if b.spec in public}
        for peer in peers:  # keepalives: any private port stands for the shared one
            found = shared.get((peer.spec.transport, peer.family))
            if found is not None:
                self._keepalive_names[peer.name()] = found
        return opened, closed

    async def _start(self) -> None:
        cfg, stack = self.cfg, self._stack
        services = cfg.general.services
        host = await interfaces.local_addresses_async()
        if "sip" in services or "media" in services:
            refuse_foreign(cfg.media.addresses, cfg.media.advertise, host)
        data_dir = cfg.prepare_data_dir()
        web_preflight(cfg, data_dir)
        store = await open_checked_store(cfg, shared=self.role is not None)
        stack.push_async_callback(store.close)
        with data_files(data_dir):
            secret = load_secret(data_dir)
        nat64 = nat64_network(cfg.nat64)
        if "sip" in services:
            nat64 = await self._sip(host, data_dir, store, secret)
        elif "media" in services:
            await self._relay_alone(host)
        self.nat64 = nat64
        if "turn" in services and cfg.turn.enabled and self.role is None:
            await self._turn(host, data_dir, store, nat64)
        if tunnel_runs(cfg) and self.role is None:  # SIP workers: the supervisor runs it
            self.tunnel = await self._tunnel()
        role = self.role
        if cfg.web.enabled and (role is None or role.index == 0):
            await self._web(data_dir, store, nat64)  # SIP workers: worker 0 serves it
        elif cfg.web.enabled and role is not None:  # ... with this worker's figures
            peer = await start_peer_web(
                cfg, endpoint_path(role.directory, f"w{role.index}"),
                proxy=self.proxy, relay=self.relay, turn=None, keepalive=self.keepalives,
                sip_io=self._sip_io_counters,
            )  # fmt: skip
            self._stack.push_async_callback(peer.stop)

    def reloaded(self) -> None:
        """A reload was applied (``lifecycle``): the console's status page follows."""
        if self.web is None:
            return
        relay = self.relay
        refresh_gateway_web(
            self.web,
            self.cfg,
            listeners=[] if self.transports is None else list(self.transports.listeners),
            turn_listeners=[] if self.turn is None else self.turn.bound,
            relay_addresses=[] if relay is None else [str(a) for a in relay.settings.addresses],
            nat64=self.nat64,
        )

    async def _web(self, data_dir: Path, store: Store, nat64: IPv6Network | None) -> None:
        """The console, REST API and /metrics (``web/``), reading the services' views."""
        relay = self.relay
        self.web = await start_gateway_web(
            self.cfg,
            data_dir,
            self.log.getChild("web"),
            registrations=store if self.proxy is not None else None,
            proxy=self.proxy,
            relay=relay,
            turn=self.turn,
            tunnel=self.tunnel,
            blocks=None if self.auth is None else self.auth.tracker,
            listeners=[] if self.transports is None else list(self.transports.listeners),
            turn_listeners=[] if self.turn is None else self.turn.bound,
            relay_addresses=[] if relay is None else [str(a) for a in relay.settings.addresses],
            nat64=nat64,
            keepalive=self.keepalives,
            probe=self._run_probe,
            peers=None if self.role is None else self.role.peer_stats(),
            sip_io=None if self.transports is None else self._sip_io_counters,
        )
        self._stack.push_async_callback(self.web.stop)

    def _sip_io_counters(self) -> SipIoCounters:
        """The SIP transports' and the worker channel's counters (``/metrics``)."""
        transports, link = self.transports, self._link
        return SipIoCounters(
            transport={} if transports is None else transports.stats.snapshot(),
            link={} if link is None else link.counters(),
        )

    async def _tunnel(self) -> TunnelService:
        """The Public TSP server (``[tunnel]``) as one more service of this process."""
        core, options = tunnel_settings(self.cfg.tunnel)
        service = TunnelService(core, options)
        try:
            await service.start()
        except OSError as exc:
            raise Rtc64Error(f"tunnel: cannot start: {exc}") from None
        self._stack.push_async_callback(service.close)
        return service

    async def _run_probe(self, targets: Sequence[str], families: frozenset[int]) -> ProbeResult:
        """``rtc64 probe`` started from the console: no DHCP, no browser, bounded."""
        settings = ProbeSettings(families=families, dhcp=False, deadline=PROBE_DEADLINE)
        resolver = Resolver(self.cfg.dns.servers, timeout=settings.timeout)
        found = await probe_runner.run(targets, settings, probe=Probe(settings, resolver))
        return ProbeResult(
            probe_report.to_json(found), probe_report.to_html(found), exit_code(found)
        )

    async def _sip(
        self, host: frozenset[IPAddress], data_dir: Path, store: Store, secret: bytes
    ) -> IPv6Network | None:
        """The SIP gateway: transports, relay, media bridge, proxy, load watch; returns
        the NAT64 prefix it uses (configured or discovered)."""
        cfg, log, stack = self.cfg, self.log, self._stack
        reception = Reception(log.getChild("startup"))
        role = self.role
        link = None if role is None else role.link(log.getChild("link"))
        tap = ReplyTap(reception.on_message, reception.on_raw_response)
        self._link = link
        self.transports = transports = await bind_transports(
            cfg, data_dir, reception, tap, log, role=role, link=link, book=self._book
        )
        stack.push_async_callback(transports.stop)
        sender: Sender = transports
        if link is not None:
            stack.callback(link.close)
            reception.sender = sender = link
        listeners = list(transports.listeners)
        if role is not None:  # the other workers' ports are ours too (Route, loop guard)
            listeners += [p for p in role.peers if p not in listeners]
        identity = Identity(
            listeners,
            domains=cfg.sip.domains,
            host_addresses=host,
            hostnames=(platform.node(),),
            source_for=interfaces.source_address,
            tls_alias=cfg.sip.tls_alias,
            shared=() if role is None else [spec for spec, _ in role.sockets.public],
        )
        resolver = Resolver(cfg.dns.servers)
        media, relay_cfg = await self._media(identity, host, resolver, reception)
        self.auth = auth = authenticator(
            cfg, store, secret, log, None if role is None else role.index
        )
        if link is not None:  # lock-outs count every worker's failures
            link.share_failures(auth.tracker)
        spawner = Spawner(log)
        stack.push_async_callback(spawner.close)
        watched: LocationStore = store
        if cfg.keepalive.enabled:
            self.keepalives = tap.keepalives = keepalives = self._keepalives(
                identity, transports, store, spawner, link
            )
            watched = WatchedStore(store, keepalives.on_replaced)
            keepalives.store = watched  # its own removals and moves reach the schedule too
        self.proxy = proxy = self._proxy(
            identity,
            transports=transports,
            sender=sender,
            store=watched,
            auth=auth,
            resolver=resolver,
            media=media,
            spawner=spawner,
            secret=secret,
        )
        reception.proxy = proxy
        if link is not None:  # a trunk's or a core's calls use every worker, not one
            link.owners.spread = proxy.is_trusted_peer
            if cfg.sip.spread == "busy":  # keep new calls here unless busier than another
                link.owners.spill = link.spill_wanted
            link.share_health(proxy.racing.health, proxy.clock)  # one fallback in all
        self.media, self.identity = media, identity
        self.observers = Observers.attach(cfg, transports, proxy, media, log)
        stack.callback(self.observers.close)
        pinged = list(transports.listeners)
        if role is not None:  # a ping to a shared port lands on whichever worker the kernel
            own = {spec for spec, _ in role.sockets.own}  # picks: only our own ports
            pinged = [lst for lst in pinged if lst.spec in own]
        load = await watch_load(pinged, proxy.admission, proxy.layer, spawner, log)
        stack.callback(load.close)
        if link is not None:  # the others learn how busy this worker is (sip.spread)
            load.lag.on_share = link.publish_load
        first = role is None or role.index == 0
        if self.keepalives is not None:  # SIP workers: each its share of the AORs
            await self.keepalives.load()
        periodic_jobs(spawner, store, auth, log, proxy.routing.registrations, expire=first)
        ready = "gateway ready" if role is None else f"SIP worker {role.index} ready"
        log_ready(cfg, log, relay_cfg, media=media, auth=auth, identity=identity, what=ready)
        return media.nat64

    async def _relay_alone(self, host: frozenset[IPAddress]) -> None:
        """``media`` without ``sip``: the relay and its ng control socket (as ``rtc64
        relay``), its addresses from ``media.addresses`` or one per family of this host."""
        cfg, log = self.cfg, self.log
        settings = relay_settings(
            cfg.media,
            trusted_networks=cfg.sip.trusted_networks,
            fallback=one_per_family(host),
            host=host,
        )
        self.relay = relay = start_relay(settings, log=log.getChild("relay"))
        self._stack.callback(relay.close)
        ng = ng_settings(cfg.ng)
        if ng is not None:
            server = await ngserver.start(ng, relay, log.getChild("ng"))
            self._stack.push_async_callback(server.stop)
        log.info("media relay on %s (no SIP)", ", ".join(str(a) for a in settings.addresses))

    async def _turn(
        self,
        host: frozenset[IPAddress],
        data_dir: Path,
        store: Store,
        nat64: IPv6Network | None,
        ports: tuple[int, int] | None = None,
    ) -> None:
        """The TURN server: relay addresses from ``turn.relay_addresses`` or this host,
        ports from the media relay's pool when it runs, long-term credentials from the
        user store (realm ``auth.realm``), REST secrets, the peer policy."""
        cfg, log = self.cfg, self.log.getChild("turn")
        turn = cfg.turn
        realm = realm_of(cfg)
        relays = turn_relay_addresses(turn, host)
        if not relays:
            raise ConfigError("turn.relay_addresses", [], "at least one address of this host")
        ports = ports or cfg.media.ports
        settings = turn_service_settings(turn, realm=realm, relays=relays, ports=ports)
        credentials = Credentials(turn_credential_settings(turn, realm), store)
        wildcard = any(spec.address.is_unspecified for spec in turn.listen)
        own = {*relays, *turn.external_addresses}
        own.update(spec.address for spec in turn.listen if not spec.address.is_unspecified)
        if wildcard:
            own.update(host)
        policy = turn_peer_policy(turn, own=own, nat64=nat64)
        service = TurnService(
            settings,
            credentials=credentials,
            policy=policy,
            pools=[] if self.relay is None else [self.relay.pool],
            fetch=credentials.fetch,
            server_tls=turn_tls(cfg, data_dir, log),
            challenges=ChallengeLimiter(),
            log=log,
        )
        self._stack.push_async_callback(service.close)
        bound = await service.start()
        self.turn = service
        if self.proxy is None:  # no load watch tunes the collector: do it here
            self._stack.callback(tune_memory(service, log))
        auth = (
            "open (no authentication)"
            if turn.open
            else " + ".join(
                (["long-term (user store)"] if turn.long_term else [])
                + ([f"REST ({len(turn.secrets)} secret(s))"] if turn.secrets else [])
            )
        )
        log.info(
            "TURN on %s, relays %s, realm %s, auth %s",
            ", ".join(b.name() for b in bound),
            ", ".join(str(a) for a in relays),
            realm,
            auth,
        )

    async def _media(
        self,
        identity: Identity,
        host: Collection[IPAddress],
        resolver: Resolver,
        reception: Reception,
    ) -> tuple[MediaBridge, RelaySettings]:
        """The relay (+ ng control) and the media bridge, with the NAT64 prefix
        (configured, or discovered on a gateway without IPv4)."""
        cfg, log, stack = self.cfg, self.log, self._stack
        listeners = list(identity.listeners)
        ports = self.media_ports(cfg)
        relay, relay_cfg = media_relay(cfg, listeners, host, reception, log, ports=ports)
        self.relay = relay
        stack.callback(relay.close)
        ng = ng_settings(cfg.ng)
        if ng is not None and (self.role is None or self.role.index == 0):
            stack.push_async_callback((await ngserver.start(ng, relay, log.getChild("ng"))).stop)
        nat64 = nat64_network(cfg.nat64)
        if nat64 is None and not any(lst.family is Family.INET for lst in listeners):
            nat64 = await discover_nat64(resolver, log)
        clats = ClatWatch(Path(cfg.nat64.clat_state_dir), log.getChild("clat"))
        media = MediaBridge(
            relay, cfg.media.policy, log.getChild("media"), nat64=nat64, unusable=clats.addresses
        )
        clats.addresses()  # learnt (and logged) now, then kept current
        if media.policy == "nat64" and nat64 is None:
            log.warning("media.policy nat64 without a NAT64 prefix: media is handled as auto")
        return media, relay_cfg

    def _keepalives(
        self,
        identity: Identity,
        transports: SipTransportLayer,
        store: Store,
        spawner: Spawner,
        link: WorkerLink | None,
    ) -> Keepalives:
        """The keepalive schedule with its driver (the bindings stored are loaded later;
        SIP workers: this worker's share of the AORs, ``keepalive.service``)."""
        log = self.log.getChild("keepalive")
        driver = Driver(log=log)
        self._stack.callback(driver.close)
        by_name = self._keepalive_names  # grows with a worker's reloads (relisten)
        by_name.update((lst.name(), lst) for lst in transports.listeners)
        if self.role is not None:  # any worker's private port: the shared one (UDP source)
            public = {(s.transport, s.family): s for s, _ in self.role.sockets.public}
            mine = {lst.spec: lst for lst in transports.listeners}
            for peer in self.role.peers:
                shared = public.get((peer.spec.transport, peer.family))
                if shared in mine:
                    by_name[peer.name()] = mine[shared]
        vias: dict[tuple[str, bytes], tuple[SockAddr, str]] = {}

        def sent_by(name: str, remote: SockAddr) -> tuple[SockAddr, str] | None:
            """Our Via toward ``remote``, kept per listener and remote /64 (IPv6) or /24:
            a wildcard listener asks the kernel for its source address on a miss."""
            ip = remote[0]
            key = (name, ip.packed[: 8 if ip.version == 6 else 3])
            found = vias.get(key)
            if found is not None:
                return found
            lst = by_name.get(name)
            if lst is None or lst.family is not family_of(ip):
                return None
            if len(vias) >= 4096:
                vias.clear()
            vias[key] = found = (lst.local, identity.hostport_of(lst, ip))
            return found

        settings = keepalive_settings(self.cfg.keepalive)
        index = None if self.role is None else self.role.index

        def new_token() -> bytes:
            token = secrets.token_hex(10).encode()
            return token if index is None else worker_token(index, token)

        keepalives = Keepalives(
            KeepaliveSchedule(settings, rng=random.random, new_token=new_token),
            sender=transports if link is None else link,
            store=store,
            sent_by=sent_by,
            clock=clock,
            wall=time.time,
            spawn=spawner,
            log=log,
            wake=driver.update,
            share=link,
        )
        if link is not None:
            link.on_keepalive_changed = lambda aor: spawner(keepalives.refresh(aor))
        driver.drive(keepalives)
        log.info(
            "keepalives every %gs, OPTIONS every %s, unreachable after %d failures",
            settings.interval,
            f"{settings.options_interval:g}s" if settings.options_interval else "(never)",
            settings.max_failures,
        )
        return keepalives

    def _proxy(
        self,
        identity: Identity,
        *,
        transports: SipTransportLayer,
        sender: Sender,
        store: LocationStore,
        auth: Authenticator,
        resolver: Resolver,
        media: MediaBridge,
        spawner: Spawner,
        secret: bytes,
    ) -> Proxy:
        """The proxy with its admission control and its driver."""
        cfg, log = self.cfg, self.log.getChild("proxy")
        driver = Driver(log=log)
        self._stack.callback(driver.close)
        rate = cfg.sip.request_rate
        proxy = Proxy(
            proxy_settings(cfg, secret=secret, nat64=media.nat64),
            identity=identity,
            layer=TransactionLayer(),
            sender=sender,
            store=store,
            auth=auth,
            resolver=resolver,
            limiter=TokenBucket(rate, burst=max(rate, 1) * 2),
            clock=clock,
            wall=time.time,
            spawn=spawner.eager,  # a request routed without waiting costs no task
            log=log,
            media=media,
            admission=Admission(cfg.sip.overload_lag, cfg.sip.max_transactions),
            wake=driver.soon,  # several wakes per datagram: one look per loop iteration
        )
        driver.drive(proxy)
        return proxy
