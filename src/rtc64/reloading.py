# What a reload (SIGHUP, ``lifecycle``) changes beyond the proxy: the media relay's and the
# TURN server's settings, worked out and checked before anything changes.
#
# Rules:
# - Media (``MEDIA_KEYS``): new relay addresses (``media.addresses``, ``media.advertise``,
#   or the SIP listeners' when none are configured, checked against this host's addresses
#   as at start), port range, timeouts, strict source and trusted networks apply to calls
#   set up from then on; calls in progress keep their addresses and ports
#   (``MediaRelay.reconfigure``). ``media.workers`` needs a restart. A SIP worker takes its
#   slice of the new ``media.ports`` (``ports``: the same cut as at start, so no two
#   processes' slices meet); a range too small for every process is a ``ConfigError``.
# - TURN (``TURN_KEYS``): listeners opened and closed (connections and allocations on
#   unchanged listeners stay), allocation limits, ``keep_client_family`` and the peer
#   policy apply to requests from then on; so does ``media.ports`` for the relay addresses
#   no media relay shares (TURN's own pool; the supervisor's TURN gets its slice). Idle
#   relay sockets outside the new range are closed. Relay and external addresses, realm
#   and authentication need a restart (their old values are kept here).
# - An address TURN relays from that the media relay's shared port pool holds stays in
#   ``media.addresses`` until a restart (else TURN could not allocate on it): ``ConfigError``.
"""Plans for the media relay and the TURN server from a reloaded configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv6Network
from typing import TYPE_CHECKING

from rtc64.config import Config
from rtc64.errors import ConfigError, LocalProtocolError
from rtc64.io import interfaces
from rtc64.net.address import IPAddress, family_of
from rtc64.net.endpoint import BoundListener, ListenSpec
from rtc64.relay.options import RelaySettings
from rtc64.relay.ports import PortPool
from rtc64.settings import (
    one_per_family,
    relay_addresses,
    relay_settings,
    turn_peer_policy,
    turn_service_settings,
)
from rtc64.turn.settings import TurnSettings
from rtc64.turnserver.peers import PeerPolicy

if TYPE_CHECKING:
    from rtc64.gateway.identity import Identity
    from rtc64.relay.engine import MediaRelay
    from rtc64.turnserver.service import TurnService

MEDIA_KEYS = frozenset(
    {
        "media.addresses",
        "media.advertise",
        "media.ports",
        "media.strict_source",
        "media.timeout",
        "media.hold_timeout",
        "sip.trusted_networks",
    }
)
TURN_KEYS = frozenset(
    {
        "turn.listen",
        "turn.keep_client_family",
        "turn.max_allocations",
        "turn.user_quota",
        "turn.max_permissions",
        "turn.max_channels",
        "turn.max_lifetime",
        "turn.allow_peers",
        "turn.deny_peers",
    }
)


TURN_RANGE = "media.ports"  # TURN's own pool follows it


@dataclass(frozen=True, slots=True)
class TurnPlan:
    listen: tuple[ListenSpec, ...]
    core: TurnSettings
    policy: PeerPolicy
    ports: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a reload will change in the relay and TURN (None: nothing)."""

    relay: RelaySettings | None = None
    turn: TurnPlan | None = None


async def plan(
    new: Config,
    old: Config,
    changed: Collection[str],
    *,
    relay: MediaRelay | None,
    identity: Identity | None,
    turn: TurnService | None,
    nat64: IPv6Network | None,
    workers: bool,
    ports: tuple[int, int] | None = None,
) -> Plan:
    """The relay's and TURN's new settings from ``new`` (``ConfigError`` when they cannot
    apply); ``identity``: the SIP side's listeners (None: the relay runs alone);
    ``ports``: the relay's new range when it is not ``media.ports`` (a SIP worker's slice)."""
    keys = set(changed)
    wants_relay = relay is not None and bool(keys & MEDIA_KEYS)
    wants_turn = turn is not None and not workers and bool(keys & {*TURN_KEYS, TURN_RANGE})
    if not (wants_relay or wants_turn):
        return Plan()
    host = await interfaces.local_addresses_async()
    relay_plan = None
    if relay is not None and wants_relay:
        relay_plan = _relay(new, relay, identity, turn, host, workers=workers, ports=ports)
    turn_plan = None
    if turn is not None and wants_turn:
        turn_plan = _turn(new, old, turn, host, nat64)
    return Plan(relay_plan, turn_plan)


def _relay(
    new: Config,
    relay: MediaRelay,
    identity: Identity | None,
    turn: TurnService | None,
    host: frozenset[IPAddress],
    *,
    workers: bool,
    ports: tuple[int, int] | None,
) -> RelaySettings:
    if identity is None:
        fallback = list(one_per_family(host))
    else:  # as at start: the SIP listeners' addresses (the new ones when they change)
        specs = [lst.spec for lst in identity.listeners] if workers else list(new.sip.listen)
        fallback = relay_addresses([BoundListener(s, s.port) for s in specs], host)
    settings = relay_settings(
        new.media, trusted_networks=new.sip.trusted_networks, fallback=fallback, host=host
    )
    old = relay.settings
    settings = dataclasses.replace(settings, workers=old.workers)
    if ports is not None:  # a SIP worker's slice of the range
        settings = dataclasses.replace(settings, ports=ports)
    if not settings.addresses:
        raise ConfigError("media.addresses", [], "at least one relay address")
    try:
        PortPool(settings.addresses, *settings.ports, workers=settings.workers)
    except LocalProtocolError as exc:
        shown = f"{settings.ports[0]}-{settings.ports[1]}"
        raise ConfigError("media.ports", shown, f"a range the relay can use ({exc})") from None
    if turn is not None:
        for address in turn.settings.relay_addresses:
            shared = address in relay.pool.addresses(family_of(address))
            if shared and address not in settings.addresses:
                raise ConfigError(
                    "media.addresses",
                    ", ".join(str(a) for a in settings.addresses),
                    f"a list keeping {address} until a restart: TURN relays from it "
                    "through the media relay's port pool",
                )
    return settings


def _turn(
    new: Config,
    old: Config,
    turn: TurnService,
    host: frozenset[IPAddress],
    nat64: IPv6Network | None,
) -> TurnPlan:
    before = old.turn
    keys = dataclasses.replace(
        new.turn,
        open=before.open,
        long_term=before.long_term,
        secrets=before.secrets,
        relay_addresses=before.relay_addresses,
        external_addresses=before.external_addresses,
    )
    current = turn.settings
    core = turn_service_settings(
        keys, realm=current.core.realm, relays=current.relay_addresses, ports=current.ports
    ).core
    core = dataclasses.replace(
        core,
        realm=current.core.realm,
        relay_families=current.core.relay_families,
        external_addresses=current.core.external_addresses,
    )
    own: set[IPAddress] = {*current.relay_addresses, *before.external_addresses}
    own.update(spec.address for spec in keys.listen if not spec.address.is_unspecified)
    if any(spec.address.is_unspecified for spec in keys.listen):
        own.update(host)
    policy = turn_peer_policy(keys, own=own, nat64=nat64)
    ports = new.media.ports
    try:
        turn.check_ports(ports)
    except LocalProtocolError as exc:
        shown = f"{ports[0]}-{ports[1]}"
        raise ConfigError("media.ports", shown, f"a range TURN can use ({exc})") from None
    return TurnPlan(tuple(keys.listen), core, policy, ports)
