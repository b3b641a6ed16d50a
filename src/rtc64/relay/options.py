# Settings of the media relay and per-request options (the flags the SIP proxy and the
# rtpengine ng protocol pass with an offer or answer).
#
# Rules:
# - Frozen dataclasses. The relay never reads the configuration: ``rtc64.settings``
#   builds ``RelaySettings`` from the typed ``media`` section (``relay_settings``).
# - ``RelayOptions`` defaults are what the SIP proxy wants: latch on the source, remove ICE,
#   replace the origin and session connection, strict source as configured.
# - ``trusted_networks``: networks whose addresses count as usable in SDP even though
#   ``net.ranges`` calls them private (an operator's own LAN, a lab): learning from
#   such an SDP address is limited to that address (RTP-bleed protection) instead of
#   latching the first packet from anywhere.
# - ``advertise`` (``media.advertise``, one address per family) is what SDP carries for a
#   relay behind a 1:1 NAT (rtpengine's ``internal!public``): the relay binds its local
#   address of that family and writes the public one. ``bind_addresses`` refuses a
#   ``media.addresses`` entry that is not on this host unless it is advertised, in which
#   case the local address of its family is bound instead.
"""Media relay settings and per-offer options."""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from rtc64.errors import ConfigError
from rtc64.net.address import Family, IPAddress, family_of

IPNetwork = IPv4Network | IPv6Network


class IceMode(enum.Enum):
    """What to do with ICE in SDP passing through the relay."""

    REMOVE = "remove"
    """Strip candidates and every ICE attribute: peers send to the relay address only."""
    FORCE = "force"
    """Offer the relay as the only candidate: needs STUN on the relay ports (not yet)."""


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """Per offer/answer flags."""

    trust_address: bool = False
    """Send to the SDP address as written and never learn from packets."""
    strict_source: bool | None = None
    """Drop packets from every source but the learned one (``None``: ``media.strict_source``)."""
    ice: IceMode = IceMode.REMOVE
    replace_origin: bool = True
    """Write the relay address into ``o=``."""
    replace_session_connection: bool = True
    """Write the relay address into the session ``c=`` (else media-level ``c=`` lines carry
    it; a session ``c=`` of the other family is replaced anyway: SDP never mixes families)."""
    from_family: Family | None = None
    """Family of the relay leg facing the sender of this SDP (default: the SDP's own)."""
    learning_window: float | None = None
    """Seconds of (re-)learning after this SDP (``None``: the relay's setting)."""


DEFAULT_OPTIONS = RelayOptions()


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Engine-wide settings."""

    addresses: tuple[IPAddress, ...]
    ports: tuple[int, int] = (30000, 40000)
    workers: int = 1
    strict_source: bool = False
    timeout: float = 60.0
    """No media for this long ends an answered call."""
    hold_timeout: float = 3600.0
    """The same for a call whose streams are all on hold or inactive."""
    offer_timeout: float = 60.0
    """An offer without answer is forgotten after this long."""
    learning_window: float = 3.0
    trusted_networks: tuple[IPNetwork, ...] = ()
    rtp_stats: bool = True
    """Sequence/jitter statistics per packet (else packet and byte counters only)."""
    stats_interval: float = 1.0
    """How often worker processes report their counters."""
    advertise: tuple[IPAddress, ...] = ()
    """Per family, the public address SDP carries instead of the local one (1:1 NAT)."""

    def sdp_address(self, local: IPAddress) -> IPAddress:
        """The address written into SDP for the relay's local address ``local``."""
        family = family_of(local)
        return next((a for a in self.advertise if family_of(a) is family), local)


def refuse_foreign(
    configured: Sequence[IPAddress], advertise: Sequence[IPAddress], host: Collection[IPAddress]
) -> None:
    """``ConfigError`` for a ``media.addresses`` entry that is neither an address of this
    host nor listed in ``media.advertise`` (checked before any socket is bound)."""
    for address in configured:
        if address not in host and address not in advertise:
            mine = ", ".join(sorted(str(a) for a in host)) or "none found"
            raise ConfigError(
                "media.addresses",
                str(address),
                f"an address of this host ({mine}); a public address in front of a 1:1 NAT "
                "goes in media.advertise, the relay then binds a local one",
            )


def bind_addresses(
    configured: Sequence[IPAddress],
    advertise: Sequence[IPAddress],
    host: Collection[IPAddress],
    fallback: Sequence[IPAddress],
) -> tuple[IPAddress, ...]:
    """The relay addresses to bind from ``media.addresses``: each must be an address of
    this host (``host``), else ``ConfigError``, unless it is listed in ``media.advertise``
    (a public address in front of a 1:1 NAT): then ``fallback``'s address of its family
    is bound in its place. Every advertised family needs an address to bind."""
    refuse_foreign(configured, advertise, host)
    bound: list[IPAddress] = []
    for address in configured:
        if address in host:
            bound.append(address)
            continue
        family = family_of(address)
        local = next((a for a in fallback if family_of(a) is family), None)
        if local is None:
            raise ConfigError(
                "media.addresses",
                str(address),
                f"a local {family.label} address to bind for this advertised one",
            )
        if local not in bound:
            bound.append(local)
    result = tuple(bound) or tuple(fallback)
    for public in advertise:
        if not any(family_of(a) is family_of(public) for a in result):
            raise ConfigError(
                "media.advertise",
                str(public),
                f"an address of a family the relay binds ({', '.join(map(str, result))})",
            )
    return tuple(bound)
