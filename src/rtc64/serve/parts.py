"""Building blocks of ``serve.Gateway``: the SIP transports (a worker's sockets included), the
media relay, NAT64 discovery on an IPv6-only gateway, periodic jobs and the ready log."""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections.abc import Collection
from ipaddress import IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING

from rtc64.config import Config
from rtc64.errors import ConfigError, Rtc64Error
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.calllog import RegistrationLog
from rtc64.gateway.identity import Identity
from rtc64.gateway.keepalive import stunkeep
from rtc64.gateway.keepalive.service import ReplyTap
from rtc64.gateway.location.store import Store
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.startup import Reception
from rtc64.io import nat64 as nat64_io
from rtc64.io.resolver import Resolver
from rtc64.io.scheduler import Spawner
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.io.sip_workers import CONNECTION_ID_SPAN
from rtc64.io.worker_link import WorkerLink
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import BoundListener, ListenSpec
from rtc64.relay.options import RelaySettings
from rtc64.relay.service import RunningRelay, start_relay
from rtc64.settings import (
    relay_addresses,
    relay_settings,
    tls_client_policy,
    transport_limits,
)

if TYPE_CHECKING:
    pass

from rtc64.serve.files import client_certificate, server_tls
from rtc64.serve.role import WorkerRole

STORE_EXPIRY_INTERVAL = 30.0  # seconds between sweeps of expired bindings
AUTH_SWEEP_INTERVAL = 1.0  # seconds between sweeps of unanswered challenges


async def bind_transports(
    cfg: Config,
    data_dir: Path,
    reception: Reception,
    tap: ReplyTap,
    log: logging.Logger,
    *,
    role: WorkerRole | None = None,
    link: WorkerLink | None = None,
    book: dict[ListenSpec, socket.socket] | None = None,
) -> SipTransportLayer:
    """The SIP listeners, bound and delivering to ``reception`` through ``tap`` (a
    worker's: its private ports first, so Via and Record-Route name them, then the shared
    ones; stream messages for another worker handed over by ``link`` first)."""
    transports = SipTransportLayer(
        cfg.sip.listen if role is None else role.sockets.specs,
        tap.on_message if link is None else link.on_message,
        reception.on_bad_datagram,
        server_tls=server_tls(cfg, data_dir, log),
        client_tls=tls_client_policy(cfg.sip, log, client_certificate(cfg, data_dir)),
        limits=transport_limits(cfg.sip),
        on_send_error=reception.on_send_error if link is None else link.send_error,
        on_stun=stunkeep.answer,
        on_raw_response=tap.on_raw_response,
        on_raw_request=reception.on_raw_request if link is None else link.on_raw_request,
        log=log.getChild("transport"),
        opener=None if role is None or book is None else book.__getitem__,
        first_connection_id=1 if role is None else role.index * CONNECTION_ID_SPAN + 1,
        on_connection=None if link is None else link.connection_changed,
        receive_only=() if role is None else [spec for spec, _ in role.sockets.own],
    )
    reception.sender = transports
    reception.taken = transports.tap_received
    if link is not None:
        link.on_send_error = reception.on_send_error
        link.on_raw_admit = reception.on_raw_request
        link.attach(transports, tap.on_message, serve=False)
    await transports.start()
    if link is not None:
        link.serve()
    return transports


def media_relay(
    cfg: Config,
    listeners: list[BoundListener],
    host: Collection[IPAddress],
    reception: Reception,
    log: logging.Logger,
    *,
    ports: tuple[int, int] | None = None,
) -> tuple[RunningRelay, RelaySettings]:
    """The media relay on the loop; its media timeouts end calls through the proxy.
    ``ports``: a SIP worker's slice of ``media.ports``."""
    settings = relay_settings(
        cfg.media,
        trusted_networks=cfg.sip.trusted_networks,
        fallback=relay_addresses(listeners, host),
        host=host,
    )
    if ports is not None:
        settings = dataclasses.replace(settings, ports=ports)
    if not settings.addresses:
        raise ConfigError("media.addresses", [], "at least one relay address")
    relay = start_relay(settings, on_timeout=reception.on_media_timeout, log=log.getChild("relay"))
    return relay, settings


async def discover_nat64(resolver: Resolver, log: logging.Logger) -> IPv6Network | None:
    """An IPv6-only gateway looks for the network's NAT64 (RFC 7050, PREF64 RFC 8781)."""
    try:
        found = [p for p in await nat64_io.discover(resolver, listen_ra=1.0) if not p.withdrawn]
    except (OSError, Rtc64Error) as exc:
        log.warning("NAT64 discovery failed: %s", exc)
        return None
    if not found:
        log.info("no IPv4 listener and no NAT64 prefix: IPv4-only targets unreachable")
        return None
    chosen = found[0]
    log.info(
        "NAT64 prefix %s from %s: IPv4-only targets are reached through it",
        chosen.prefix,
        chosen.source,
    )
    return chosen.prefix


def periodic_jobs(
    spawner: Spawner,
    store: Store,
    auth: Authenticator,
    log: logging.Logger,
    registrations: RegistrationLog,
    *,
    expire: bool = True,
) -> None:
    """Expired bindings removed, each logged (``expire``: one SIP worker does it for all);
    unanswered challenges swept (wall clock, as auth uses)."""

    async def expire_bindings() -> None:
        now = time.time()
        removed = await store.expire(now)
        await registrations.sweep(store, now)
        if removed:
            log.info("registrar: %d expired bindings removed", removed)

    async def sweep() -> None:
        auth.sweep(time.time())

    if expire:
        spawner.every(STORE_EXPIRY_INTERVAL, expire_bindings)
    spawner.every(AUTH_SWEEP_INTERVAL, sweep)


def log_ready(
    cfg: Config,
    log: logging.Logger,
    relay: RelaySettings,
    *,
    media: MediaBridge,
    auth: Authenticator,
    identity: Identity,
    what: str = "gateway ready",
) -> None:
    def shown(local: IPAddress) -> str:
        public = relay.sdp_address(local)
        return str(local) if public == local else f"{local} (advertised as {public})"

    log.info(
        "media relay on %s ports %d-%d, policy %s, %d worker(s)%s",
        ", ".join(shown(a) for a in relay.addresses),
        relay.ports[0],
        relay.ports[1],
        media.policy,
        relay.workers,
        f", ng control on {cfg.ng.listen}" if cfg.ng.listen is not None else "",
    )
    families = {f"IPv{a.version}" for a in identity.addresses}
    log.info(
        "%s: realm %s, domains %s, families %s, upstream %s",
        what,
        auth.realm,
        ", ".join(identity.domains) or "(own addresses only)",
        "+".join(sorted(families)),
        cfg.sip.upstream or "(none)",
    )
