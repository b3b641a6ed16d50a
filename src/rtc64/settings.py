"""Each service's settings object, built from the typed configuration.

Services never import ``rtc64.config``: the command line and the composition root call
these builders with the sections they need (``cfg.media``, ``cfg.ng``...) and hand the
result over. Nothing below the top layer imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from ipaddress import IPv6Network
from pathlib import Path
from typing import Protocol

from rtc64.config import (
    AuthSection,
    Config,
    IPNetwork,
    KeepaliveSection,
    MediaSection,
    Nat64Section,
    NgSection,
    SipSection,
    TunnelSection,
)
from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.gateway.keepalive.schedule import KeepaliveSettings
from rtc64.gateway.location.registrar import RegistrarPolicy
from rtc64.gateway.proxy.service import ProxySettings
from rtc64.io.connection import Limits
from rtc64.io.tls import TlsClientPolicy
from rtc64.net import rfc6052
from rtc64.net.address import Family, IPAddress, family_of
from rtc64.net.endpoint import BoundListener, ListenSpec
from rtc64.net.ranges import AddressClass, classify
from rtc64.relay.ngserver import NgSettings
from rtc64.relay.options import RelaySettings, bind_addresses
from rtc64.sip.digest import Algorithm
from rtc64.sip.uri import SipUri, parse_uri
from rtc64.tunnel.server import ServerSettings as TunnelServerSettings
from rtc64.tunnel.service import ServeOptions as TunnelServeOptions
from rtc64.tunnel.service import server_ipv4_for
from rtc64.turn.settings import DEFAULT_LIFETIME, TurnSettings
from rtc64.turnserver.credentials import CredentialSettings, secrets_from
from rtc64.turnserver.peers import PeerPolicy
from rtc64.turnserver.service import TurnServiceSettings


def relay_settings(
    media: MediaSection,
    *,
    trusted_networks: Sequence[IPNetwork] = (),
    fallback: Sequence[IPAddress] = (),
    host: Collection[IPAddress] | None = None,
) -> RelaySettings:
    """The relay's settings from ``media.*``.

    ``fallback`` stands in for an empty ``media.addresses`` (``rtc64 serve`` passes its
    SIP listen addresses) and gives the local address bound for an advertised one. With
    ``host`` (this host's addresses) the configured addresses are checked against it:
    ``ConfigError`` for one that is neither on this host nor in ``media.advertise``.
    ``trusted_networks``: networks whose private SDP addresses are usable as written.
    """
    configured = media.addresses
    if host is not None:
        configured = bind_addresses(configured, media.advertise, host, fallback)
    return RelaySettings(
        addresses=configured or tuple(fallback),
        advertise=media.advertise,
        ports=media.ports,
        workers=media.workers,
        strict_source=media.strict_source,
        timeout=float(media.timeout),
        hold_timeout=float(media.hold_timeout),
        trusted_networks=tuple(trusted_networks),
    )


def media_slices(ports: tuple[int, int], count: int) -> list[tuple[int, int]]:
    """``count`` disjoint slices of the relay port range ``media.ports`` (SIP workers, then
    the supervisor's TURN), each starting on an even port (RTP/RTCP pairs); ``ConfigError``
    when the range is too small for them."""
    low, high = ports
    first = low + (low & 1)
    size = ((high - first + 1) // count) & ~1
    if size < 4:
        shown = f"{low}-{high}"
        expected = f"at least {4 * count} ports: {count} processes share it (SIP workers, TURN)"
        raise ConfigError("media.ports", shown, expected)
    return [(first + k * size, first + (k + 1) * size - 1) for k in range(count)]


def ng_settings(ng: NgSection) -> NgSettings | None:
    """The ng control socket's settings, or None when ``ng.listen`` is empty (off)."""
    if ng.listen is None:
        return None
    return NgSettings(listen=ng.listen, interfaces=ng.interfaces)


def relay_addresses(
    listeners: Sequence[BoundListener], host: Collection[IPAddress]
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
        found = first_usable(host, lst.family)
        if found is not None:
            chosen[lst.family] = found
    return list(chosen.values())


def first_usable(host: Collection[IPAddress], family: Family) -> IPAddress | None:
    """The first of ``host``'s addresses of ``family`` that is neither loopback nor
    link-local (loopback only when nothing else exists), never a CLAT address
    (192.0.0.0/29, RFC 7335: a translated address nobody can reach from outside)."""
    same = sorted(
        (a for a in host if family_of(a) is family and AddressClass.CLAT not in classify(a)),
        key=str,
    )
    usable = [a for a in same if not (a.is_loopback or a.is_link_local)] or same
    return usable[0] if usable else None


def one_per_family(host: Collection[IPAddress]) -> tuple[IPAddress, ...]:
    """Per family, ``first_usable``: what a relay binds in place of an advertised public
    address when no SIP listener names a local one."""
    found = (first_usable(host, family) for family in (Family.INET6, Family.INET))
    return tuple(a for a in found if a is not None)


def standalone_relay_settings(
    media: MediaSection, trusted_networks: Sequence[IPNetwork], host: Collection[IPAddress]
) -> RelaySettings:
    """Settings of ``rtc64 relay``: ``media.addresses`` is required (there is no SIP
    listener to default to) and checked against ``host`` like ``rtc64 serve`` does."""
    if not media.addresses:
        raise ConfigError(
            "media.addresses",
            [],
            "at least one relay address of this host (--media-address, one per family)",
        )
    return relay_settings(
        media, trusted_networks=trusted_networks, fallback=one_per_family(host), host=host
    )


def standalone_ng_settings(ng: NgSection) -> NgSettings:
    """Settings of ``rtc64 relay``'s ng socket, which it cannot run without."""
    settings = ng_settings(ng)
    if settings is None:
        raise ConfigError(
            "ng.listen", "", "udp:HOST:PORT (--ng-listen): rtc64 relay is driven over its ng socket"
        )
    return settings


def upstream_uri(sip: SipSection) -> SipUri | None:
    """``sip.upstream`` as a sip:/sips: URI, or None (no upstream core)."""
    text = sip.upstream
    if text is None:
        return None
    try:
        uri = parse_uri(text.encode("utf-8"), "sip.upstream")
    except RemoteProtocolError:
        raise ConfigError("sip.upstream", text, "a SIP URI like sip:core.example.net") from None
    if not isinstance(uri, SipUri):
        raise ConfigError("sip.upstream", text, "a sip: or sips: URI")
    return uri


def nat64_network(nat64: Nat64Section) -> IPv6Network | None:
    """``nat64.prefix`` as a network, or None (discover it, or no NAT64)."""
    if nat64.prefix is None:
        return None
    try:
        return rfc6052.parse_prefix(nat64.prefix)
    except ValueError as exc:
        raise ConfigError("nat64.prefix", nat64.prefix, f"an RFC 6052 prefix ({exc})") from None


def tls_client_policy(
    sip: SipSection, log: logging.Logger, certificate: tuple[Path, Path] | None = None
) -> TlsClientPolicy:
    """Outbound TLS checks from ``sip.tls_verify``, ``sip.tls_ca_file`` and
    ``sip.tls_no_verify_domains`` (RFC 5922); the exemptions are logged. ``certificate``
    (chain, key) is presented to servers that ask (``sip.tls_alias``)."""
    policy = TlsClientPolicy(
        verify=sip.tls_verify,
        cafile=Path(sip.tls_ca_file).expanduser() if sip.tls_ca_file else None,
        no_verify=sip.tls_no_verify_domains,
        certificate=certificate,
    )
    if not policy.verify:
        log.warning("sip.tls_verify is false: outbound TLS accepts any server certificate")
    elif policy.no_verify:
        shown = ", ".join(sorted(policy.no_verify))
        log.warning("outbound TLS accepts any certificate from %s", shown)
    return policy


def transport_limits(sip: SipSection) -> Limits:
    """The SIP transport limits from ``sip.*`` (UDP receive buffer and fragmentation)."""
    return Limits(
        udp_rcvbuf=sip.udp_receive_buffer,
        udp_ipv6_min_mtu=sip.udp_ipv6_min_mtu,
        udp_ipv4_no_df=sip.udp_ipv4_no_df,
    )


def digest_algorithms(auth: AuthSection) -> list[Algorithm]:
    """``auth.algorithms`` in the order they are offered."""
    return [Algorithm.parse(a) for a in auth.algorithms]


def proxy_settings(cfg: Config, *, secret: bytes, nat64: IPv6Network | None) -> ProxySettings:
    """The proxy's settings from ``sip.*``, ``registrar.*`` and ``dns.*``."""
    reg, dns = cfg.registrar, cfg.dns
    return ProxySettings(
        upstream=upstream_uri(cfg.sip),
        max_transactions=cfg.sip.max_transactions,
        registrar=RegistrarPolicy(
            reg.min_expires,
            reg.max_expires,
            reg.default_expires,
            max_contacts=reg.max_contacts,
            flow_timer=reg.flow_timer,
        ),
        secret=secret,
        attempt_delay=dns.attempt_delay if dns.happy_eyeballs else None,
        family_penalty=dns.family_penalty,
        nat64=nat64,
    )


def keepalive_settings(section: KeepaliveSection) -> KeepaliveSettings:
    """The keepalive schedule's settings from ``keepalive.*``."""
    return KeepaliveSettings(
        enabled=section.enabled,
        interval=section.interval,
        options_interval=section.options_interval,
        max_failures=section.max_failures,
        payload=section.payload,
    )


# --- TURN ---------------------------------------------------------------------------------


class TurnKeys(Protocol):
    """The ``turn.*`` keys the TURN builders read (``config.TurnSection``)."""

    @property
    def listen(self) -> tuple[ListenSpec, ...]: ...
    @property
    def relay_addresses(self) -> tuple[IPAddress, ...]: ...
    @property
    def external_addresses(self) -> tuple[IPAddress, ...]: ...
    @property
    def secrets(self) -> tuple[str, ...]: ...
    @property
    def long_term(self) -> bool: ...
    @property
    def open(self) -> bool: ...
    @property
    def allow_peers(self) -> tuple[IPNetwork, ...]: ...
    @property
    def deny_peers(self) -> tuple[IPNetwork, ...]: ...
    @property
    def max_allocations(self) -> int: ...
    @property
    def user_quota(self) -> int: ...
    @property
    def max_permissions(self) -> int: ...
    @property
    def max_channels(self) -> int: ...
    @property
    def max_lifetime(self) -> int: ...
    @property
    def bandwidth(self) -> int: ...
    @property
    def keep_client_family(self) -> bool | tuple[ListenSpec, ...]: ...


def turn_relay_addresses(turn: TurnKeys, host: Collection[IPAddress]) -> tuple[IPAddress, ...]:
    """``turn.relay_addresses`` checked against this host, or, when empty, per family the
    first specific ``turn.listen`` address of that family, else this host's first
    routable address of it (``one_per_family``; loopback only when nothing else exists),
    as ``relay_addresses`` does for media: never the client's socket."""
    configured = turn.relay_addresses
    if not configured:
        chosen: dict[Family, IPAddress] = {}
        for spec in turn.listen:
            if not spec.address.is_unspecified:
                chosen.setdefault(spec.family, spec.address)
        for address in one_per_family(host):
            chosen.setdefault(family_of(address), address)
        return tuple(chosen[f] for f in (Family.INET, Family.INET6) if f in chosen)
    for address in configured:
        if address.is_unspecified or address.is_multicast:
            raise ConfigError(
                "turn.relay_addresses", str(address), "a unicast address of this host"
            )
        if address not in host:
            shown = ", ".join(sorted(str(a) for a in host))
            raise ConfigError(
                "turn.relay_addresses", str(address), f"an address of this host ({shown})"
            )
    return configured


def turn_external(
    turn: TurnKeys, relays: Sequence[IPAddress]
) -> tuple[tuple[IPAddress, IPAddress], ...]:
    """``(relay, advertised)`` pairs from ``turn.external_addresses`` (one per family; every
    relay address of that family is advertised as it, a 1:1 NAT)."""
    pairs: list[tuple[IPAddress, IPAddress]] = []
    seen: set[Family] = set()
    for external in turn.external_addresses:
        family = family_of(external)
        if family in seen:
            raise ConfigError(
                "turn.external_addresses", str(external), "at most one address per family"
            )
        seen.add(family)
        local = [a for a in relays if family_of(a) is family]
        if not local:
            raise ConfigError(
                "turn.external_addresses",
                str(external),
                f"an address of a family the relay has ({family.label}: none)",
            )
        pairs.extend((a, external) for a in local)
    return tuple(pairs)


def turn_service_settings(
    turn: TurnKeys,
    *,
    realm: str,
    relays: Sequence[IPAddress],
    ports: tuple[int, int],
) -> TurnServiceSettings:
    """The TURN service's settings; ``ConfigError`` when no authentication method is on
    and ``turn.open`` is not set."""
    if not turn.open and not (turn.long_term or turn.secrets):
        raise ConfigError(
            "turn.long_term",
            False,
            "true, or a turn.secrets entry (--turn-secret); turn.open (--turn-open) runs "
            "without authentication, for a lab only",
        )
    keep = turn.keep_client_family
    core = TurnSettings(
        realm=realm,
        open=turn.open,
        relay_families=frozenset(family_of(a) for a in relays),
        keep_client_family=keep is True,
        keep_client_family_on=frozenset(
            (spec.transport, (spec.address, spec.port))
            for spec in (keep if isinstance(keep, tuple) else ())
        ),
        default_lifetime=min(DEFAULT_LIFETIME, turn.max_lifetime),
        max_lifetime=turn.max_lifetime,
        max_allocations=turn.max_allocations,
        user_quota=turn.user_quota,
        max_permissions=turn.max_permissions,
        max_channels=turn.max_channels,
        external_addresses=turn_external(turn, relays),
    )
    return TurnServiceSettings(
        core=core,
        listen=tuple(turn.listen),
        relay_addresses=tuple(relays),
        ports=ports,
        bandwidth=turn.bandwidth,
    )


def turn_credential_settings(turn: TurnKeys, realm: str) -> CredentialSettings:
    """Long-term credentials (the gateway's user store and digest realm) and REST secrets."""
    return CredentialSettings(
        realm=realm, long_term=turn.long_term, secrets=secrets_from(turn.secrets)
    )


def turn_peer_policy(
    turn: TurnKeys, *, own: Collection[IPAddress], nat64: IPv6Network | None
) -> PeerPolicy:
    """The peer policy: deny by default, ``turn.allow_peers``/``turn.deny_peers``, this
    server's own addresses, the NAT64 prefix (configured or discovered)."""
    return PeerPolicy(
        allow=turn.allow_peers,
        deny=turn.deny_peers,
        own=own,
        nat64_prefixes=() if nat64 is None else (nat64,),
    )


def tunnel_settings(
    tunnel: TunnelSection, stats: Path | None = None
) -> tuple[TunnelServerSettings, TunnelServeOptions]:
    """The tunnel server's core settings and process options from ``[tunnel]``
    (``ConfigError`` naming ``tunnel.prefix`` when it is not set)."""
    if tunnel.prefix is None:
        raise ConfigError("tunnel.prefix", "", "an IPv6 /64 like 2001:db8:64::/64")
    host = str(tunnel.listen.address)
    server_ipv4 = tunnel.server_ipv4 or server_ipv4_for(host)
    core = TunnelServerSettings(
        tunnel.prefix,
        server_ipv4,
        lifetime=tunnel.lifetime,
        keepalive=tunnel.keepalive,
        rate=tunnel.rate,
        burst=tunnel.burst,
        icmp_rate=tunnel.icmp_rate,
    )
    options = TunnelServeOptions(
        host, tunnel.listen.port, tunnel.device, stats=stats, backend=tunnel.backend
    )
    return core, options
