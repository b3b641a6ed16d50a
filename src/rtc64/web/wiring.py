# From the configuration and the running services to the web app's settings and sources.
# Called by the composition root only; reads services through their read-only views.
"""Build and start the web app of ``rtc64 serve``."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv6Network
from pathlib import Path

from rtc64 import __version__
from rtc64.config import Config
from rtc64.gateway.stats import BlockView, KeepaliveView, ProxyView, RegistrationView
from rtc64.io import interfaces, tls
from rtc64.io.driver import clock
from rtc64.net.address import format_hostport
from rtc64.net.endpoint import BoundListener
from rtc64.relay.stats import RelayView
from rtc64.tunnel.stats import TunnelView
from rtc64.turnserver.credentials import turn_uris
from rtc64.turnserver.stats import TurnView
from rtc64.web.app import STATE, RunningWeb, WebSettings, start_web
from rtc64.web.auth import Guard, check_listen, load_admin
from rtc64.web.peers import RunningPeer, start_peer_endpoint
from rtc64.web.probes import ProbeRunner
from rtc64.web.tunnel import tunnel_status
from rtc64.web.views import PeerView, SipIoCounters, Sources, Status, TurnRest


def reload_by_signal() -> bool:
    """Send this process SIGHUP when a handler for it is installed (the lifecycle's
    reload); False when SIGHUP would kill the process."""
    if signal.getsignal(signal.SIGHUP) in (signal.SIG_DFL, signal.SIG_IGN, None):
        return False
    os.kill(os.getpid(), signal.SIGHUP)
    return True


def reload_supervisor() -> bool:
    """SIP workers: SIGHUP to the supervisor (this worker's parent), which hands out new
    listen sockets and passes the signal on to every worker."""
    try:
        os.kill(os.getppid(), signal.SIGHUP)
    except OSError:
        return False
    return True


def preflight(cfg: Config, data_dir: Path) -> None:
    """Before anything starts: the admin file readable, and a non-loopback console only
    with a credential (``ConfigError`` naming ``web.listen`` otherwise)."""
    if not cfg.web.enabled:
        return
    admin = load_admin(data_dir)
    check_listen(cfg.web.listen[0], credentials=admin is not None or bool(cfg.web.token))


def _turn_rest(cfg: Config) -> TurnRest | None:
    if not cfg.turn.secrets:
        return None
    listeners = [(s.transport.value, s.address, s.port) for s in cfg.turn.listen]
    wildcard = any(s.address.is_unspecified for s in cfg.turn.listen)
    host = interfaces.local_addresses() if wildcard else frozenset()
    uris = turn_uris(listeners, cfg.turn.external_addresses, host)
    return TurnRest(cfg.turn.secrets[0], tuple(uris))


def web_settings(cfg: Config, data_dir: Path, log: logging.Logger) -> WebSettings:
    address, port = cfg.web.listen
    context = None
    if cfg.web.tls:
        cert, key = cfg.sip.tls_cert, cfg.sip.tls_key
        identity = tls.server_identity(
            data_dir,
            Path(cert).expanduser() if cert else None,
            Path(key).expanduser() if key else None,
            addresses=[address],
            log=log,
        )
        context = identity.context
    return WebSettings(str(address), port, context, float(cfg.web.session_lifetime))


def gateway_status(
    cfg: Config,
    listeners: Sequence[BoundListener],
    *,
    turn_listeners: Sequence[BoundListener],
    relay_addresses: Sequence[str],
    nat64: IPv6Network | None,
    started: float,
    tunnel: tuple[str, ...] = (),
) -> Status:
    """The status page's facts (configuration with secrets masked)."""
    return Status(
        version=__version__,
        services=tuple(cfg.general.services),
        listeners=tuple(b.name() for b in listeners),
        relay_addresses=tuple(relay_addresses),
        turn_listeners=tuple(b.name() for b in turn_listeners),
        nat64=() if nat64 is None else (str(nat64),),
        config=tuple(cfg.describe()),
        started=started,
        tunnel=tunnel,
    )


def refresh_gateway_web(
    web: RunningWeb,
    cfg: Config,
    *,
    listeners: Sequence[BoundListener],
    turn_listeners: Sequence[BoundListener],
    relay_addresses: Sequence[str],
    nat64: IPv6Network | None,
) -> None:
    """After a reload: the status page and TURN's REST URIs from the new configuration."""
    old = web.app[STATE].sources.status  # the tunnel does not reload: its line stays
    status = gateway_status(
        cfg, listeners, turn_listeners=turn_listeners, relay_addresses=relay_addresses,
        nat64=nat64, started=old.started, tunnel=old.tunnel,
    )  # fmt: skip
    web.refresh(status, _turn_rest(cfg))


async def start_gateway_web(
    cfg: Config,
    data_dir: Path,
    log: logging.Logger,
    *,
    registrations: RegistrationView | None,
    proxy: ProxyView | None,
    relay: RelayView | None,
    turn: TurnView | None,
    blocks: BlockView | None,
    tunnel: TunnelView | None = None,
    listeners: Sequence[BoundListener],
    turn_listeners: Sequence[BoundListener],
    relay_addresses: Sequence[str],
    nat64: IPv6Network | None,
    keepalive: KeepaliveView | None = None,
    probe: ProbeRunner | None = None,
    peers: PeerView | None = None,
    sip_io: Callable[[], SipIoCounters] | None = None,
) -> RunningWeb:
    """Start the console/API/metrics on ``web.listen`` (``peers``: the gateway's other
    processes, whose figures it adds to its own)."""
    guard = Guard(
        admin=load_admin(data_dir),
        token=cfg.web.token,
        turn_token=cfg.web.turn_token,
        lifetime=float(cfg.web.session_lifetime),
    )
    status = gateway_status(
        cfg, listeners, turn_listeners=turn_listeners, relay_addresses=relay_addresses,
        nat64=nat64, started=time.time(), tunnel=tunnel_status(tunnel),
    )  # fmt: skip
    sources = dataclasses.replace(
        _own_sources(
            status, proxy=proxy, relay=relay, turn=turn, keepalive=keepalive, sip_io=sip_io
        ),
        registrations=registrations,
        tunnel=tunnel,
        blocks=blocks,
        turn_rest=_turn_rest(cfg),
        reload=reload_by_signal if peers is None else reload_supervisor,
        probe=probe,
        peers=peers,
    )
    settings = web_settings(cfg, data_dir, log)
    web = await start_web(settings, sources, guard)
    scheme = "https" if settings.tls is not None else "http"
    access = "open (loopback, no credentials)" if guard.open else "admin/token required"
    log.info(
        "web console, API and /metrics on %s://%s/, %s",
        scheme,
        format_hostport(cfg.web.listen[0], web.port),
        access,
    )
    return web


async def start_peer_web(
    cfg: Config,
    path: str,
    *,
    proxy: ProxyView | None,
    relay: RelayView | None,
    turn: TurnView | None,
    keepalive: KeepaliveView | None = None,
    sip_io: Callable[[], SipIoCounters] | None = None,
) -> RunningPeer:
    """One of several processes of the gateway (a SIP worker other than 0, the
    supervisor's TURN): its own figures on the Unix socket ``path`` for worker 0's
    console (``web.peers``). Store-wide views are worker 0's alone; keepalives are not
    store-wide (each worker keeps its share of the contacts alive), so each reports its own."""
    status = Status(
        version=__version__,
        services=tuple(cfg.general.services),
        listeners=(),
        relay_addresses=(),
        turn_listeners=(),
        nat64=(),
        config=(),
        started=time.time(),
    )
    sources = _own_sources(
        status, proxy=proxy, relay=relay, turn=turn, keepalive=keepalive, sip_io=sip_io
    )
    return await start_peer_endpoint(path, sources)


def _own_sources(
    status: Status,
    *,
    proxy: ProxyView | None,
    relay: RelayView | None,
    turn: TurnView | None,
    keepalive: KeepaliveView | None,
    sip_io: Callable[[], SipIoCounters] | None = None,
) -> Sources:
    """What every process of the gateway reports of itself (its proxy, relay, TURN and
    keepalives) on its own clocks; worker 0 adds the store-wide views and its peers."""
    return Sources(
        status=status,
        wall=time.time,
        clock=clock,
        proxy=proxy,
        relay=relay,
        turn=turn,
        keepalive=keepalive,
        sip_io=sip_io,
    )
