"""``[turn]``: the TURN server (RFC 8656, 6156, 6062) of ``rtc64 serve``: keys, section and
the checks that span keys (addresses per family, listeners against ``sip.listen``, an
authentication method)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rtc64.config.convert import (
    DetailError,
    IPNetwork,
    Key,
    as_address,
    as_bool,
    as_listen,
    as_secret,
    as_str,
    int_range,
    list_of,
    strict_network,
)
from rtc64.errors import ConfigError
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import ListenSpec, Transport

if TYPE_CHECKING:
    from rtc64.config import Config

DEFAULT_TURN_LISTEN = ["udp:0.0.0.0:3478", "udp:[::]:3478", "tcp:0.0.0.0:3478", "tcp:[::]:3478"]
TURN_TRANSPORTS = (Transport.UDP, Transport.TCP, Transport.TLS)


def _turn_listen(value: object) -> ListenSpec:
    spec = as_listen(value)
    if spec.transport not in TURN_TRANSPORTS:
        raise DetailError(f"TURN listens on udp, tcp or tls, not {spec.transport.value}")
    if spec.advertise is not None:
        raise DetailError("no ;advertise= here (use turn.external_addresses)")
    return spec


def _keep_family(value: object) -> bool | tuple[ListenSpec, ...]:
    """true/false (every TURN listener or none) or a list of turn.listen endpoints."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("true", "yes", "on")
    return list_of(_turn_listen)(value)


TURN_KEYS: tuple[Key, ...] = (
    Key(
        "turn.listen",
        DEFAULT_TURN_LISTEN,
        list_of(_turn_listen),
        "a list of udp:, tcp: or tls:HOST:PORT ([v6] for IPv6), e.g. udp:[::]:3478",
        "TURN/STUN listening sockets, one family each (tls:[::]:5349 or :443 for TURNS)",
    ),
    Key(
        "turn.relay_addresses",
        [],
        list_of(as_address),
        "a list of IP addresses of this host, at most one per family",
        "relay addresses (default: the host's first routable address of each family, "
        "never the client's socket)",
    ),
    Key(
        "turn.external_addresses",
        [],
        list_of(as_address),
        "a list of IP addresses, at most one per family (e.g. 203.0.113.5)",
        "relay behind a 1:1 NAT: the public address XOR-RELAYED-ADDRESS names per family",
    ),
    Key(
        "turn.secrets",
        [],
        list_of(as_secret),
        "a list of shared secret strings (the first signs new credentials)",
        "TURN REST shared secrets (coturn's static-auth-secret); several at once while "
        "rotating; usernames EXPIRY:USER, password base64(HMAC-SHA1(secret, username))",
    ),
    Key(
        "turn.long_term",
        True,
        as_bool,
        "true or false",
        "long-term credentials from the user store (rtc64 user add), realm = auth.realm",
    ),
    Key(
        "turn.open",
        False,
        as_bool,
        "true or false",
        "no authentication at all: anyone may allocate (a lab only)",
    ),
    Key(
        "turn.allow_peers",
        [],
        list_of(strict_network),
        "a list of networks in CIDR form (e.g. 127.0.0.0/8, ::1/128)",
        "peers allowed despite the built-in denies (loopback for a lab...); the longest "
        "matching prefix of allow_peers and deny_peers decides",
    ),
    Key(
        "turn.deny_peers",
        [],
        list_of(strict_network),
        "a list of networks in CIDR form, any prefix length (e.g. 203.0.113.0/25)",
        "peers refused on top of the built-in denies (private, loopback, embedded IPv4...)",
    ),
    Key(
        "turn.max_allocations",
        10000,
        int_range(1, 10_000_000),
        "an integer 1..10000000",
        "allocations in total (486 beyond)",
    ),
    Key(
        "turn.user_quota",
        10,
        int_range(1, 1_000_000),
        "an integer 1..1000000",
        "allocations per user (486 beyond)",
    ),
    Key(
        "turn.max_permissions",
        32,
        int_range(1, 10000),
        "an integer 1..10000",
        "permissions per allocation",
    ),
    Key(
        "turn.max_channels",
        64,
        int_range(1, 4096),
        "an integer 1..4096",
        "channel bindings per allocation",
    ),
    Key(
        "turn.max_lifetime",
        3600,
        int_range(600, 86400),
        "seconds, 600..86400",
        "longest allocation lifetime granted (RFC 8656 default lifetime is 600)",
    ),
    Key(
        "turn.bandwidth",
        1_250_000,
        int_range(0, 10**10),
        "bytes per second, 0..10000000000 (0: no limit)",
        "relayed bytes per second per allocation and direction (excess dropped)",
    ),
    Key(
        "turn.tls_cert",
        "",
        as_str,
        "a PEM certificate file path (empty: sip.tls_cert, else self-signed)",
        "certificate chain of tls: TURN listeners",
    ),
    Key(
        "turn.tls_key",
        "",
        as_str,
        "a PEM private key file path (empty: with turn.tls_cert / sip.tls_key)",
        "private key of tls: TURN listeners",
    ),
    Key(
        "turn.keep_client_family",
        False,
        _keep_family,
        "true, false or a list of turn.listen endpoints",
        "relay in the client's family when it asks for none (instead of IPv4, RFC 8656 "
        "§7.2), on every listener (true) or on the ones listed",
    ),
)


@dataclass(frozen=True, slots=True)
class TurnSection:
    enabled: bool
    listen: tuple[ListenSpec, ...]
    relay_addresses: tuple[IPAddress, ...]
    external_addresses: tuple[IPAddress, ...]
    secrets: tuple[str, ...] = field(repr=False)
    long_term: bool
    open: bool
    allow_peers: tuple[IPNetwork, ...]
    deny_peers: tuple[IPNetwork, ...]
    max_allocations: int
    user_quota: int
    max_permissions: int
    max_channels: int
    max_lifetime: int
    bandwidth: int
    tls_cert: str
    tls_key: str
    keep_client_family: bool | tuple[ListenSpec, ...]


def turn_runs(cfg: Config) -> bool:
    """True when ``rtc64 serve`` starts the TURN server."""
    return cfg.turn.enabled and "turn" in cfg.general.services


def check_turn(cfg: Config) -> None:
    turn = cfg.turn
    if cfg.general.services == ("turn",) and not turn.enabled:
        raise ConfigError("turn.enabled", False, "true when general.services is only turn")
    one_per_family("turn.relay_addresses", turn.relay_addresses)
    one_per_family("turn.external_addresses", turn.external_addresses)
    for address in turn.relay_addresses:
        if address.is_unspecified or address.is_multicast:
            raise ConfigError(
                "turn.relay_addresses", str(address), "a unicast address of this host"
            )
    for address in turn.external_addresses:
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            raise ConfigError(
                "turn.external_addresses", str(address), "a unicast address peers reach"
            )
    idents = [(s.transport, s.address, s.port) for s in turn.listen]
    for spec, ident in zip(turn.listen, idents, strict=True):
        if idents.count(ident) > 1:
            raise ConfigError("turn.listen", str(spec), "each endpoint listed once")
    if not turn.listen and turn_runs(cfg):
        raise ConfigError("turn.listen", [], "at least one endpoint when TURN runs")
    if "sip" in cfg.general.services and turn_runs(cfg):
        sip = {(s.transport, s.address, s.port) for s in cfg.sip.listen}
        for spec, ident in zip(turn.listen, idents, strict=True):
            if ident in sip:
                raise ConfigError("turn.listen", str(spec), "an endpoint sip.listen does not use")
    if isinstance(turn.keep_client_family, tuple):
        for spec in turn.keep_client_family:
            if (spec.transport, spec.address, spec.port) not in idents:
                raise ConfigError(
                    "turn.keep_client_family", str(spec), "true, false or endpoints of turn.listen"
                )
    if turn_runs(cfg) and not (turn.open or turn.long_term or turn.secrets):
        raise ConfigError(
            "turn.long_term",
            False,
            "true, or turn.secrets set (--turn-secret): TURN needs an authentication method "
            "unless turn.open = true (--turn-open, a lab only)",
        )


def one_per_family(key: str, addresses: Sequence[IPAddress]) -> None:
    seen: set[int] = set()
    for address in addresses:
        if address.version in seen:
            raise ConfigError(key, str(address), "at most one address per family")
        seen.add(address.version)
