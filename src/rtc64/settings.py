"""Each service's settings object, built from the typed configuration.

Services never import ``rtc64.config``: the command line and the composition root call
these builders with the sections they need (``cfg.media``, ``cfg.ng``...) and hand the
result over. Nothing below the top layer imports this module.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from rtc64.config import IPNetwork, MediaSection, NgSection
from rtc64.errors import ConfigError
from rtc64.net.address import Family, IPAddress, family_of
from rtc64.relay.ngserver import NgSettings
from rtc64.relay.options import RelaySettings, bind_addresses


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


def ng_settings(ng: NgSection) -> NgSettings | None:
    """The ng control socket's settings, or None when ``ng.listen`` is empty (off)."""
    if ng.listen is None:
        return None
    return NgSettings(listen=ng.listen, interfaces=ng.interfaces)


def one_per_family(host: Collection[IPAddress]) -> tuple[IPAddress, ...]:
    """Per family, the first of ``host``'s addresses that is neither loopback nor
    link-local (loopback only when nothing else exists): what a relay binds in place of
    an advertised public address when no SIP listener names a local one."""
    chosen: list[IPAddress] = []
    for family in (Family.INET6, Family.INET):
        same = sorted((a for a in host if family_of(a) is family), key=str)
        usable = [a for a in same if not (a.is_loopback or a.is_link_local)] or same
        chosen.extend(usable[:1])
    return tuple(chosen)


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
