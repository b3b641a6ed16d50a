# The running gateway's signals (systemd and operators): reload, drain, stop, status.
#
# Rules:
# - SIGHUP reloads the configuration file (and the command line it was started with):
#   users, trusted networks, the upstream core, registrar limits, media policy, TLS
#   certificates (new handshakes; established connections keep theirs), message tracing,
#   HEP capture, log level, drain time, SIP listeners (new ones opened, removed ones
#   closed; connections they accepted stay until they end), ``sip.domains``, the media
#   relay's addresses, ports, timeouts and strictness (for new calls: calls in progress
#   keep theirs) and TURN's listeners, limits and peer policy (``reloading``).
#   Registrations, transactions, calls and allocations stay. A new configuration that does
#   not load (or a listener that cannot be bound) is rejected with the same one-line error
#   as at start (logged) and the old one stays in force; keys that need a restart (the
#   store, relay workers, TURN relay addresses and authentication, ng control...) are
#   named in a warning and keep their old value. SIP workers take new listeners from the
#   supervisor (``io.sip_workers``) and each its slice of a new ``media.ports`` (cut as at
#   start, ``Gateway.media_ports``); the supervisor's TURN server reloads on its own
#   (listeners, limits, policy and its slice of ``media.ports``).
# - SIGTERM drains: new calls (initial INVITEs) get 503 + Retry-After, everything else
#   (calls in progress, in-dialog requests, registrations) goes on until no call is left or
#   ``general.drain_seconds`` passed, then the gateway stops. A second SIGTERM, or SIGINT at
#   any time, stops at once.
# - SIGUSR1 logs a status summary (calls, transactions, connections, relay, capture).
# - A failure while reloading is logged; it never stops the gateway.
"""Signal handling for ``rtc64 serve``: SIGHUP reload, SIGTERM drain, SIGINT, SIGUSR1."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rtc64 import reloading
from rtc64.config import Config
from rtc64.errors import ConfigError, Rtc64Error
from rtc64.gateway.calllog import CallLog
from rtc64.gateway.trace import Tracer
from rtc64.io.hep import HepCapture
from rtc64.settings import proxy_settings

if TYPE_CHECKING:
    from ipaddress import IPv6Network

    from rtc64.gateway.identity import Identity
    from rtc64.gateway.media import MediaBridge
    from rtc64.gateway.proxy.service import Proxy
    from rtc64.io.sip_transport import SipTransportLayer
    from rtc64.net.endpoint import ListenSpec
    from rtc64.relay.engine import MediaRelay
    from rtc64.turnserver.service import TurnService

DRAIN_POLL = 0.25  # seconds between checks for the last call while draining

# Keys SIGHUP applies; a change to any other key waits for a restart.
RELOADABLE = frozenset(
    {
        "general.log_level",
        "general.drain_seconds",
        "sip.listen",
        "sip.trusted_networks",
        "sip.upstream",
        "sip.tls_cert",
        "sip.tls_key",
        "turn.tls_cert",
        "turn.tls_key",
        "sip.trace",
        "registrar.min_expires",
        "registrar.max_expires",
        "registrar.default_expires",
        "registrar.max_contacts",
        "registrar.flow_timer",
        "auth.users",
        "media.policy",
        "hep.collector",
        "hep.capture_id",
        "sip.domains",
        *reloading.MEDIA_KEYS,
        *reloading.TURN_KEYS,
    }
)
# with SIP workers TURN runs in the supervisor, which applies these itself (``workers``)
SUPERVISOR_KEYS = reloading.TURN_KEYS


@dataclass(slots=True)
class Observers:
    """What watches the SIP traffic: the call log, tracing and HEP capture."""

    tracer: Tracer
    journal: CallLog
    hep: HepCapture | None = None
    transports: SipTransportLayer | None = field(default=None, repr=False)

    @classmethod
    def attach(
        cls,
        cfg: Config,
        transports: SipTransportLayer,
        proxy: Proxy,
        media: MediaBridge,
        log: logging.Logger,
    ) -> Observers:
        """Hook the call log into the proxy and the taps into the transports."""
        journal = CallLog(log.getChild("proxy.calls"), time.monotonic, media.relayed)
        proxy.calls.journal = journal
        found = cls(Tracer((), log.getChild("trace")), journal, transports=transports)
        found.trace(cfg.sip.trace)
        found.capture(cfg, log)
        return found

    def trace(self, rules: Sequence[IPv4Network | IPv6Network | str]) -> None:
        """Set the tracing rules; the tracer is a tap only while it has rules (a tap
        costs every received message a serialisation)."""
        self.tracer.rules = rules
        taps = self.transports.taps if self.transports is not None else []
        if rules and self.tracer not in taps:
            taps.append(self.tracer)
        elif not rules and self.tracer in taps:
            taps.remove(self.tracer)

    def capture(self, cfg: Config, log: logging.Logger) -> None:
        """(Re)start HEP capture as ``hep.*`` says."""
        wanted = cfg.hep.collector
        old = self.hep
        if old is not None and (old.collector, old.capture_id) == (wanted, cfg.hep.capture_id):
            return
        taps = self.transports.taps if self.transports is not None else []
        if old is not None:
            taps.remove(old)
            old.close()
            self.hep = None
        if wanted is None:
            return
        try:
            self.hep = HepCapture(wanted, cfg.hep.capture_id, log=log.getChild("hep"))
        except OSError as exc:
            raise ConfigError(
                "hep.collector", str(wanted), f"a reachable collector ({exc})"
            ) from None
        taps.append(self.hep)
        log.info("HEP capture to %s (capture id %d)", wanted, cfg.hep.capture_id)

    def close(self) -> None:
        if self.hep is not None:
            self.hep.close()


class GatewayView(Protocol):
    """What the lifecycle needs of the running gateway (``serve.Gateway``)."""

    cfg: Config
    transports: SipTransportLayer | None
    proxy: Proxy | None
    media: MediaBridge | None
    identity: Identity | None
    observers: Observers | None
    turn: TurnService | None
    nat64: IPv6Network | None

    @property
    def relay(self) -> MediaRelay | None:
        """The media relay (with the SIP gateway, or alone)."""

    @property
    def role(self) -> object | None:
        """The SIP worker role when this gateway is one worker of several, else None."""

    async def relisten(
        self, specs: Sequence[ListenSpec]
    ) -> tuple[list[ListenSpec], list[ListenSpec]]:
        """Open and close SIP listeners for a new ``sip.listen``: (opened, closed)."""
        ...

    def media_ports(self, cfg: Config) -> tuple[int, int]:
        """The relay's port range from ``cfg`` (a SIP worker's slice of ``media.ports``)."""
        ...

    def reloaded(self) -> None:
        """A reload was applied (``cfg`` is the new configuration): refresh views."""


class Lifecycle:
    """Installs the signal handlers for the running gateway and acts on them."""

    def __init__(
        self,
        gateway: GatewayView,
        stop: asyncio.Event,
        *,
        reload_config: Callable[[], Config] | None,
        log: logging.Logger,
    ) -> None:
        self.gateway = gateway
        self.stop = stop
        self.reload_config = reload_config
        self.log = log
        self.draining = False
        self.reloads = 0
        self._reloading = False
        self.rejected = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        handlers = {
            signal.SIGHUP: self.reload,
            signal.SIGTERM: self.terminate,
            signal.SIGINT: self.stop.set,
            signal.SIGUSR1: self.status,
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
            self._installed.append(sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()
        for task in self._tasks:
            task.cancel()

    # -- SIGTERM ---------------------------------------------------------------------------

    def calls_in_progress(self) -> int:
        proxy = self.gateway.proxy
        return 0 if proxy is None else len(proxy.dialogs) + proxy.in_flight

    def terminate(self) -> None:
        """Drain (first SIGTERM) or stop now (second, or nothing to wait for)."""
        proxy = self.gateway.proxy
        grace = self.gateway.cfg.general.drain_seconds
        if self.draining or proxy is None or grace <= 0:
            self.log.info("stopping now")
            self.stop.set()
            return
        self.draining = proxy.draining = True
        self.log.info(
            "draining: new calls get 503; %d call(s)/transaction(s) in progress may go on "
            "for up to %g s (SIGTERM again or SIGINT: stop now)",
            self.calls_in_progress(),
            grace,
            extra={"event": "drain", "calls": len(proxy.dialogs), "grace": grace},
        )
        self._spawn(self._drain(grace))

    async def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while self.calls_in_progress() and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        left = self.calls_in_progress()
        if left:
            self.log.warning("drain time over: stopping with %d call(s) in progress", left)
        else:
            self.log.info("drained: no call left, stopping")
        self.stop.set()

    # -- SIGHUP ----------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: reload in a task (listeners open asynchronously); one at a time."""
        if self._reloading:
            self.log.warning("SIGHUP: a reload is already running; ignored")
            return
        self._reloading = True
        self._spawn(self._reload())

    async def _reload(self) -> None:
        try:
            if self.reload_config is None:
                self.log.warning("SIGHUP: no configuration to reload from")
                return
            try:
                new = self.reload_config()
                await self.apply(new)
            except (ConfigError, Rtc64Error, OSError, ssl.SSLError) as exc:
                self.rejected += 1
                self.log.error("reload rejected, configuration unchanged: %s", exc)
        finally:
            self._reloading = False

    async def apply(self, new: Config) -> None:
        """Apply the reloadable part of ``new``; everything checked before anything
        changes, so a failure leaves the running configuration as it was."""
        gw, old = self.gateway, self.gateway.cfg
        changed = sorted(k for k in new.values if new.values[k] != old.values.get(k))
        sip_tls = {"sip.tls_cert", "sip.tls_key"} & set(changed)
        tls_cert = _checked_tls(new.sip.tls_cert, new.sip.tls_key, "sip") if sip_tls else None
        turn_tls = {"turn.tls_cert", "turn.tls_key"} & set(changed)
        turn_cert = _checked_tls(new.turn.tls_cert, new.turn.tls_key, "turn") if turn_tls else None
        # SIP workers take their new listen sockets from the supervisor (Gateway.relisten)
        workers = gw.role is not None
        applies = RELOADABLE - SUPERVISOR_KEYS if workers else RELOADABLE
        plan = await reloading.plan(
            new, old, [k for k in changed if k in applies], relay=gw.relay,
            identity=gw.identity, turn=gw.turn, nat64=gw.nat64, workers=workers,
            ports=gw.media_ports(new) if gw.relay is not None else None,
        )  # fmt: skip
        undo_turn = await self._relisten_turn(plan.turn)
        try:
            if "sip.listen" in changed and gw.transports is not None:
                opened, closed = await gw.relisten(new.sip.listen)  # workers: new sockets
                self.log.info(
                    "listeners opened: %s; closed: %s (their connections stay until they end)",
                    ", ".join(str(s) for s in opened) or "none",
                    ", ".join(str(s) for s in closed) or "none",
                )
        except BaseException:
            if undo_turn is not None:
                await undo_turn()
            raise
        if gw.identity is not None and ({"sip.listen", "sip.domains"} & set(changed)):
            listeners = gw.identity.listeners
            if gw.transports is not None and not workers:
                listeners = tuple(gw.transports.listeners)  # (workers: Gateway.relisten)
            gw.identity.replace_listeners(listeners, new.sip.domains)
        if plan.relay is not None and gw.relay is not None:
            gw.relay.reconfigure(plan.relay)
            self.log.info(
                "media relay for new calls: %s ports %d-%d (calls in progress keep theirs)",
                ", ".join(str(a) for a in plan.relay.addresses),
                *plan.relay.ports,
            )
            if gw.turn is not None:  # TURN's idle sockets on the shared pool's old range
                gw.turn.retire()
        observers = gw.observers
        if observers is not None:
            observers.capture(new, self.log)
            observers.trace(new.sip.trace)
        if gw.proxy is not None:
            gw.proxy.auth.reconfigure(new.auth.users, new.sip.trusted_networks)
            gw.proxy.reconfigure(
                proxy_settings(new, secret=gw.proxy.secret, nat64=gw.proxy.settings.nat64)
            )
        if gw.media is not None:
            gw.media.policy = new.media.policy if gw.media.relay is not None else "never"
        if tls_cert is not None and gw.transports is not None:
            live = gw.transports.server_tls
            if live is not None:
                live.load_cert_chain(*tls_cert)
        if turn_cert is not None and gw.turn is not None:
            turn_live = gw.turn.listeners.server_tls
            if turn_live is not None:
                turn_live.load_cert_chain(*turn_cert)
        logging.getLogger("rtc64").setLevel(new.general.log_level.upper())
        elsewhere = SUPERVISOR_KEYS if workers else frozenset()
        held = [k for k in changed if k not in applies and k not in elsewhere]
        applied = [k for k in changed if k in applies]
        kept = {k: old.values[k] for k in held}
        gw.cfg = _with_values(new, kept) if kept else new
        self.reloads += 1
        gw.reloaded()
        self.log.info(
            "configuration reloaded from %s: %s",
            new.source or "embedded defaults",
            ", ".join(applied) or "no change",
            extra={"event": "reload", "changed": ",".join(applied)},
        )
        if held:
            self.log.warning("changed keys that need a restart, not applied: %s", ", ".join(held))

    async def _relisten_turn(
        self, plan: reloading.TurnPlan | None
    ) -> Callable[[], Awaitable[object]] | None:
        """TURN's listeners, limits and policy as ``plan`` says; returns the undo (None:
        nothing changed). ``ConfigError`` (a listener that cannot be bound) changes nothing."""
        turn = self.gateway.turn
        if plan is None or turn is None:
            return None
        before = (turn.settings.listen, turn.settings.core, turn.policy, turn.settings.ports)
        opened, closed = await turn.reconfigure(plan.listen, plan.core, plan.policy, plan.ports)
        if opened or closed:
            self.log.info(
                "TURN listeners opened: %s; closed: %s (allocations on the others stay)",
                ", ".join(str(s) for s in opened) or "none",
                ", ".join(str(s) for s in closed) or "none",
            )
        if plan.ports != before[3] and turn.own_pool is not None:
            self.log.info(
                "TURN relay ports for new allocations: %d-%d (allocations in progress keep theirs)",
                *plan.ports,
            )
        return lambda: turn.reconfigure(*before)

    # -- SIGUSR1 ---------------------------------------------------------------------------

    def status(self) -> None:
        gw = self.gateway
        proxy, transports, observers = gw.proxy, gw.transports, gw.observers
        fields: dict[str, object] = {
            "event": "status",
            "draining": self.draining,
            "reloads": self.reloads,
            "calls": 0 if proxy is None else len(proxy.dialogs),
            "transactions": 0 if proxy is None else proxy.in_flight,
            "connections": 0 if transports is None else transports.connection_count,
            "relayed_calls": 0 if gw.media is None else gw.media.active_calls(),
        }
        if observers is not None:
            for family, count in observers.journal.families().items():
                fields[f"calls_{family.lower()}"] = count
            if observers.hep is not None:
                fields["hep_sent"] = observers.hep.stats.sent
                fields["hep_dropped"] = observers.hep.stats.dropped
        self.log.info(
            "status: %s", " ".join(f"{k}={v}" for k, v in fields.items() if k != "event"),
            extra=fields,
        )  # fmt: skip

    def _spawn(self, job: object) -> None:
        assert asyncio.iscoroutine(job)
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _checked_tls(cert: str, key: str, section: str) -> tuple[str, str] | None:
    """The new ``<section>.tls_cert``/``tls_key`` pair, loaded once into a scratch context
    to prove it works before the live one is touched (None: no configured pair)."""
    if not cert:
        return None
    cert_path = str(Path(cert).expanduser())
    key_path = str(Path(key or cert).expanduser())
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        expected = f"a PEM certificate and key that load ({exc})"
        raise ConfigError(f"{section}.tls_cert", cert, expected) from None
    return cert_path, key_path


def _with_values(cfg: Config, kept: dict[str, object]) -> Config:
    return Config(values={**cfg.values, **kept}, source=cfg.source, overridden=cfg.overridden)
