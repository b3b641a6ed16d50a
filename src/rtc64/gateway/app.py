"""The gateway service started by ``rtc64 serve``: wires store, transports, transaction
layer and proxy, runs until stopped, then stops them in reverse order."""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING

from rtc64 import __version__
from rtc64.config import Config, data_dir_error, realm_of
from rtc64.errors import ConfigError, RemoteProtocolError, Rtc64Error
from rtc64.gateway.admission import Admission
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.loadwatch import LoadWatch, watch_load
from rtc64.gateway.location.backends import open_store, parse_store_url
from rtc64.gateway.location.registrar import RegistrarPolicy
from rtc64.gateway.location.store import Store
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.proxy.service import Proxy, ProxySettings
from rtc64.gateway.ratelimit import TokenBucket
from rtc64.gateway.startup import Reception
from rtc64.io import interfaces, tls
from rtc64.io import nat64 as nat64_io
from rtc64.io.ng_listener import NgListener
from rtc64.io.resolver import Resolver
from rtc64.io.scheduler import Deadline, Spawner, clock
from rtc64.io.secret import load_secret
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.net import rfc6052
from rtc64.net.address import Family, IPAddress, family_of
from rtc64.relay import ngserver
from rtc64.relay.options import RelaySettings, refuse_foreign
from rtc64.relay.service import RunningRelay, start_relay
from rtc64.settings import ng_settings, relay_settings
from rtc64.sip.digest import Algorithm
from rtc64.sip.transaction import TransactionLayer
from rtc64.sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    import asyncio


def _upstream(cfg: Config) -> SipUri | None:
    text = cfg["sip.upstream"]
    if text is None:
        return None
    try:
        uri = parse_uri(text.encode("utf-8"), "sip.upstream")
    except RemoteProtocolError:
        raise ConfigError("sip.upstream", text, "a SIP URI like sip:core.example.net") from None
    if not isinstance(uri, SipUri):
        raise ConfigError("sip.upstream", text, "a sip: or sips: URI")
    return uri


def nat64_prefix(cfg: Config) -> IPv6Network | None:
    """``nat64.prefix`` as a network (discovery at start-up comes with the NAT64 work)."""
    text = cfg["nat64.prefix"]
    if text is None:
        return None
    try:
        return rfc6052.parse_prefix(text)
    except ValueError as exc:
        raise ConfigError("nat64.prefix", text, f"an RFC 6052 prefix ({exc})") from None


@contextlib.contextmanager
def data_files(data_dir: Path, elsewhere: str = "general.data_dir") -> Iterator[None]:
    """Turn a failure to read or write a file of the data directory (the secret, the
    generated certificate) into the one-line ``ConfigError`` naming that file; a file
    outside ``data_dir`` is reported under the key ``elsewhere``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise
        problem = exc.strerror or type(exc).__name__
        expected = f"a readable, writable file ({problem})"
        if Path(exc.filename).resolve().is_relative_to(data_dir.resolve()):
            raise data_dir_error(exc.filename, expected) from None
        raise ConfigError(elsewhere, str(exc.filename), expected) from None


async def open_checked_store(cfg: Config) -> Store:
    """``open_store`` after ``prepare_data_dir``; a directory where the SQLite file should
    be is a one-line ``ConfigError`` rather than SQLite's "unable to open database file"."""
    data_dir = cfg.prepare_data_dir()
    location = parse_store_url(cfg["store.url"], data_dir)
    path = location.path
    if path is not None and path.exists() and not path.is_file():
        key = "store.url" if cfg["store.url"] != "sqlite" else "general.data_dir"
        raise ConfigError(key, str(path), "an SQLite database file (something else is in the way)")
    with data_files(data_dir, elsewhere="store.url"):
        return await open_store(cfg["store.url"], data_dir)


def relay_addresses(
    listeners: list[Listener], host: frozenset[IPAddress] | set[IPAddress]
) -> list[IPAddress]:
    """Relay addresses when ``media.addresses`` is empty: each family's SIP listen
    address; for a wildcard listener the host's first routable address of that family
    (loopback only when nothing else exists)."""
    chosen: dict[Family, IPAddress] = {}
    for lst in listeners:
        if lst.family in chosen:
            continue
        if not lst.wildcard:
            chosen[lst.family] = lst.spec.address
            continue
        same = sorted((a for a in host if family_of(a) is lst.family), key=str)
        usable = [a for a in same if not (a.is_loopback or a.is_link_local)] or same
        if usable:
            chosen[lst.family] = usable[0]
    return list(chosen.values())


def _relay_address(settings: RelaySettings, local: IPAddress) -> str:
    public = settings.sdp_address(local)
    return str(local) if public == local else f"{local} (advertised as {public})"


def _media_timeout(reception: Reception, session: bytes) -> None:
    if reception.proxy is not None:
        reception.proxy.media_timeout(MediaBridge.call_of(session))


def client_tls_policy(cfg: Config, log: logging.Logger) -> tls.TlsClientPolicy:
    """Outbound TLS checks from ``sip.tls_verify``, ``sip.tls_ca_file`` and
    ``sip.tls_no_verify_domains`` (RFC 5922); the exemptions are logged."""
    ca_file = cfg["sip.tls_ca_file"]
    policy = tls.TlsClientPolicy(
        verify=cfg["sip.tls_verify"],
        cafile=Path(ca_file).expanduser() if ca_file else None,
        no_verify=cfg["sip.tls_no_verify_domains"],
    )
    if not policy.verify:
        log.warning("sip.tls_verify is false: outbound TLS accepts any server certificate")
    elif policy.no_verify:
        shown = ", ".join(sorted(policy.no_verify))
        log.warning("outbound TLS accepts any certificate from %s", shown)
    return policy


class Gateway:
    """The running components of ``rtc64 serve``."""

    def __init__(self, cfg: Config, log: logging.Logger) -> None:
        self.cfg = cfg
        self.log = log
        self.store: Store | None = None
        self.transports: SipTransportLayer | None = None
        self.proxy: Proxy | None = None
        self.relay: RunningRelay | None = None
        self.ng: NgListener | None = None
        self.load: LoadWatch | None = None
        self.spawner = Spawner(log)

    async def start(self) -> None:
        cfg, log = self.cfg, self.log
        upstream = _upstream(cfg)
        host_addresses = await interfaces.local_addresses_async()
        refuse_foreign(cfg["media.addresses"], cfg["media.advertise"], host_addresses)
        data_dir = cfg.prepare_data_dir()
        self.store = store = await open_checked_store(cfg)
        with data_files(data_dir):
            secret = load_secret(data_dir)
        specs = cfg["sip.listen"]
        server_tls = None
        if any(s.transport.secure for s in specs):
            with data_files(data_dir, elsewhere="sip.tls_cert"):
                identity_tls = tls.server_identity(
                    data_dir,
                    Path(cfg["sip.tls_cert"]).expanduser() if cfg["sip.tls_cert"] else None,
                    Path(cfg["sip.tls_key"]).expanduser() if cfg["sip.tls_key"] else None,
                    addresses=[s.address for s in specs if not s.address.is_unspecified],
                    log=log,
                )
            server_tls = identity_tls.context
        # The proxy needs the bound listeners, so it is made after the transports; until
        # it is wired, ``reception`` answers early requests 503 (gateway/startup.py).
        reception = Reception(log.getChild("startup"))
        self.transports = transports = SipTransportLayer(
            specs,
            reception.on_message,
            reception.on_bad_datagram,
            server_tls=server_tls,
            client_tls=client_tls_policy(cfg, log),
            on_send_error=reception.on_send_error,
            log=log.getChild("transport"),
        )
        reception.sender = transports
        await transports.start()
        listeners = list(transports.listeners)
        identity = Identity(
            listeners,
            domains=cfg["sip.domains"],
            host_addresses=host_addresses,
            hostnames=(platform.node(),),
            source_for=interfaces.source_address,
        )
        layer = TransactionLayer()
        deadline = Deadline(reception.on_timer)
        admission = Admission(float(cfg["sip.overload_lag"]), cfg["sip.max_transactions"])
        auth = Authenticator(
            realm=realm_of(cfg),
            users=cfg["auth.users"],
            store=store,
            trusted=cfg["sip.trusted_networks"],
            nonce_lifetime=cfg["auth.nonce_lifetime"],
            max_failures=cfg["auth.max_failures"],
            block_seconds=cfg["auth.block_seconds"],
            log=log.getChild("auth"),
            algorithms=[Algorithm.parse(a) for a in cfg["auth.algorithms"]],
            secret=secret,
        )
        media_addresses = relay_addresses(listeners, host_addresses)
        settings = relay_settings(
            cfg.media,
            trusted_networks=cfg.sip.trusted_networks,
            fallback=media_addresses,
            host=host_addresses,
        )
        if not settings.addresses:
            raise ConfigError("media.addresses", [], "at least one relay address")
        self.relay = relay = start_relay(
            settings,
            on_timeout=lambda session: _media_timeout(reception, session),
            log=log.getChild("relay"),
        )
        ng = ng_settings(cfg.ng)
        self.ng = None if ng is None else await ngserver.start(ng, relay, log.getChild("ng"))
        resolver = Resolver(cfg["dns.servers"])
        nat64 = nat64_prefix(cfg)
        if nat64 is None and not any(lst.family is Family.INET for lst in listeners):
            nat64 = await self._discover_nat64(resolver)
        media = MediaBridge(relay, cfg["media.policy"], log.getChild("media"), nat64=nat64)
        if media.policy == "nat64" and nat64 is None:
            log.warning("media.policy nat64 without a NAT64 prefix: media is handled as auto")
        rate = cfg["sip.request_rate"]
        proxy_settings = ProxySettings(
            upstream=upstream,
            max_transactions=cfg["sip.max_transactions"],
            registrar=RegistrarPolicy(
                cfg["registrar.min_expires"],
                cfg["registrar.max_expires"],
                cfg["registrar.default_expires"],
            ),
            secret=secret,
            attempt_delay=cfg["dns.attempt_delay"] if cfg["dns.happy_eyeballs"] else None,
            family_penalty=cfg["dns.family_penalty"],
            nat64=nat64,
        )
        self.proxy = Proxy(
            proxy_settings,
            identity=identity,
            layer=layer,
            sender=transports,
            store=store,
            auth=auth,
            resolver=resolver,
            limiter=TokenBucket(rate, burst=max(rate, 1) * 2),
            clock=clock,
            wall=time.time,
            spawn=self.spawner,
            log=log.getChild("proxy"),
            media=media,
            admission=admission,
            schedule=deadline.schedule,
        )
        reception.proxy = self.proxy
        self.load = await watch_load(transports.listeners, admission, layer, self.spawner, log)

        async def expire() -> None:
            removed = await store.expire(time.time())
            if removed:
                log.info("registrar: %d expired bindings removed", removed)

        async def sweep() -> None:
            auth.sweep(time.time())  # same clock as auth.check (the proxy's wall clock)

        self.spawner.every(30.0, expire)
        self.spawner.every(1.0, sweep)
        families = {
            "IPv4" if isinstance(a, IPv4Address) else "IPv6"
            for a in identity.addresses
            if isinstance(a, IPv4Address | IPv6Address)
        }
        log.info(
            "media relay on %s ports %d-%d, policy %s, %d worker(s)%s",
            ", ".join(_relay_address(settings, a) for a in settings.addresses),
            settings.ports[0],
            settings.ports[1],
            media.policy,
            settings.workers,
            f", ng control on {cfg['ng.listen']}" if self.ng is not None else "",
        )
        log.info(
            "gateway ready: realm %s, domains %s, families %s, upstream %s",
            auth.realm,
            ", ".join(identity.domains) or "(own addresses only)",
            "+".join(sorted(families)),
            cfg["sip.upstream"] or "(none)",
        )

    async def _discover_nat64(self, resolver: Resolver) -> IPv6Network | None:
        """An IPv6-only gateway looks for the network's NAT64 (RFC 7050, PREF64 RFC 8781)."""
        try:
            found = [p for p in await nat64_io.discover(resolver, listen_ra=1.0) if not p.withdrawn]
        except (OSError, Rtc64Error) as exc:
            self.log.warning("NAT64 discovery failed: %s", exc)
            return None
        if not found:
            self.log.info("no IPv4 listener and no NAT64 prefix: IPv4-only targets unreachable")
            return None
        chosen = found[0]
        self.log.info(
            "NAT64 prefix %s from %s: IPv4-only targets are reached through it",
            chosen.prefix,
            chosen.source,
        )
        return chosen.prefix

    async def stop(self) -> None:
        await self.spawner.close()
        if self.load is not None:
            self.load.close()
        if self.ng is not None:
            await self.ng.stop()
        if self.relay is not None:
            self.relay.close()
        if self.transports is not None:
            await self.transports.stop()
        if self.store is not None:
            await self.store.close()


async def serve(config: Config, stop: asyncio.Event, log: logging.Logger) -> int:
    """Start the gateway on ``config``, wait for ``stop``, then shut down. Returns 0."""
    log.info("rtc64 %s starting", __version__)
    source = str(config.source) if config.source else "embedded defaults"
    log.info("configuration from %s", source)
    for key, value in config.describe():
        log.debug("config %s = %s", key, value)
    gateway = Gateway(config, log)
    try:
        await gateway.start()
        await stop.wait()
    finally:
        log.info("rtc64 stopping")
        await gateway.stop()
    return 0
