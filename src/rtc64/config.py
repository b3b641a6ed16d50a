"""Validated configuration: embedded defaults, an optional TOML file, command-line overrides.

Every key has a default, so no file is needed. A key is written ``section.name`` (TOML
table ``[section]``, key ``name``). Precedence: defaults < file < command line. Any bad
value raises ``ConfigError`` naming the key, the value and the expected form; unknown
keys are errors too (a typo must not silently fall back to a default).

The schema is one table, ``KEYS``: adding a setting means adding one row there and one
field to its section's dataclass below (a unit test checks they match). Services never
see this module: the composition root hands each its section (``cfg.sip``, ``cfg.media``...)
or a settings object built from it.
"""

from __future__ import annotations

import os
import platform
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import TypeVar

from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.net import rfc6052
from rtc64.net.address import Family, IPAddress, format_hostport, parse_hostport, parse_ip
from rtc64.net.endpoint import EXPECTED_FORM as LISTEN_FORM
from rtc64.net.endpoint import EndpointError, ListenSpec, Transport, parse_listen

IPNetwork = IPv4Network | IPv6Network
T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
MEDIA_POLICIES = ("auto", "always", "never", "nat64")
TUNNEL_BACKENDS = ("tun", "routed")


# --- converters: each takes the raw TOML/CLI value and returns the typed value, or raises
# ValueError/TypeError; the loader turns that into a ConfigError with the key's form. ---


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no"):
        return value.lower() in ("true", "yes", "on", "1")
    raise TypeError


def _int_range(low: int, high: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool):
            raise TypeError
        number = int(value) if isinstance(value, str) else value
        if not isinstance(number, int) or not low <= number <= high:
            raise ValueError
        return number

    return convert


def _worker_ports(value: object) -> int:
    port = _int_range(0, 65535)(value)
    if 0 < port < 1024:
        raise ValueError("below 1024")
    return port


def _float_range(low: float, high: float) -> Callable[[object], float]:
    def convert(value: object) -> float:
        if isinstance(value, bool):
            raise TypeError
        number = float(value) if isinstance(value, str | int) else value
        if not isinstance(number, float) or not low <= number <= high:
            raise ValueError
        return number

    return convert


def _choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError
        return value.lower()

    return convert


def _list_of(item: Callable[[object], T]) -> Callable[[object], tuple[T, ...]]:
    def convert(value: object) -> tuple[T, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise TypeError
        return tuple(item(v) for v in value)

    return convert


class _DetailError(ValueError):
    """A converter's own explanation, appended to the key's expected form."""


def _listen(value: object) -> ListenSpec:
    try:
        return parse_listen(_str(value))
    except EndpointError as exc:
        raise _DetailError(str(exc)) from None


def _network(value: object) -> IPNetwork:
    return ip_network(_str(value), strict=False)


def _address(value: object) -> IPAddress:
    try:
        return parse_ip(_str(value))
    except RemoteProtocolError:
        raise ValueError from None


def _port_range(value: object) -> tuple[int, int]:
    low_s, sep, high_s = _str(value).partition("-")
    low, high = int(low_s), int(high_s) if sep else int(low_s)
    if not 1024 <= low < high <= 65535 or (high - low) < 3:
        raise ValueError
    # RTP takes even ports, RTCP the odd one above: start on an even port.
    return (low + (low % 2), high)


def _trace_entry(value: object) -> IPNetwork | str:
    """A network (CIDR) or a SIP AOR (``sip:alice@example.net``) whose messages are traced."""
    text = _str(value).strip()
    if text.lower().startswith(("sip:", "sips:")):
        scheme, _, rest = text.partition(":")
        user, at, host = rest.rpartition("@")
        if not at or not user or not host:
            raise _DetailError(f"{text!r}: an AOR needs user@host")
        return f"{scheme.lower()}:{user}@{host.lower()}"
    return ip_network(text, strict=False)


def _hep_collector(value: object) -> ListenSpec | None:
    text = _str(value).strip()
    if not text:
        return None
    spec = _listen(text)
    if spec.transport is not Transport.UDP or spec.address.is_unspecified or not spec.port:
        raise _DetailError("the collector is udp:ADDRESS:PORT with a real address and port")
    return spec


def _optional_str(value: object) -> str | None:
    text = _str(value).strip()
    return text or None


def _domain(value: object) -> str:
    text = _str(value).strip().lower().rstrip(".")
    if not text or any(c.isspace() or c in "/:@[]" for c in text):
        raise ValueError
    return text


def _tls_name(value: object) -> str:
    text = _str(value).strip()
    try:
        return parse_ip(text.strip("[]")).compressed
    except RemoteProtocolError:
        return _domain(text)


def _users(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise TypeError
    users = []
    for entry in value:
        if not isinstance(entry, Mapping) or set(entry) != {"name", "password"}:
            raise ValueError
        users.append((_str(entry["name"]), _str(entry["password"])))
    return tuple(users)


def _ng_listen(value: object) -> ListenSpec | None:
    text = _str(value).strip()
    if not text:
        return None
    spec = _listen(text)
    if spec.transport is not Transport.UDP or spec.advertise is not None:
        raise _DetailError("the ng socket is udp:HOST:PORT")
    return spec


def _nat64_prefix(value: object) -> str | None:
    """Empty (discover) or an RFC 6052 prefix, returned in its canonical form."""
    text = _str(value).strip()
    if not text:
        return None
    try:
        return str(rfc6052.parse_prefix(text))
    except ValueError as exc:
        detail = str(exc).removeprefix(f"bad NAT64 prefix {text!r}: ")
        raise _DetailError(detail.replace("expected an IPv6", "an IPv6")) from None


def _dns_server(value: object) -> str:
    """``HOST[:PORT]`` or ``[v6]:PORT`` where HOST is an IP address (no name to resolve)."""
    text = _str(value).strip()
    try:
        hostport = parse_hostport(text)
    except RemoteProtocolError:
        raise ValueError from None
    if isinstance(hostport.host, str):
        raise _DetailError(f"{text!r} is a name, not an IP address")
    return text


SERVICES = ("sip", "media", "turn", "tunnel")
TURN_TRANSPORTS = (Transport.UDP, Transport.TCP, Transport.TLS)


def _services(value: object) -> tuple[str, ...]:
    """``["sip", "turn"]`` or ``"sip,turn"``: the services ``rtc64 serve`` runs, in order."""
    items = value if isinstance(value, list | tuple) else [value]
    names: list[str] = []
    for item in items:
        for part in _str(item).split(","):
            name = part.strip().lower()
            if name not in SERVICES:
                raise _DetailError(f"unknown service {part.strip()!r}")
            names.append(name)
    if not names:
        raise ValueError
    return tuple(dict.fromkeys(names))


def _turn_listen(value: object) -> ListenSpec:
    spec = _listen(value)
    if spec.transport not in TURN_TRANSPORTS:
        raise _DetailError(f"TURN listens on udp, tcp or tls, not {spec.transport.value}")
    if spec.advertise is not None:
        raise _DetailError("no ;advertise= here (use turn.external_addresses)")
    return spec


def _strict_network(value: object) -> IPNetwork:
    """A network in CIDR form (a bare address is a /32 or /128); host bits refused."""
    text = _str(value).strip()
    try:
        return ip_network(text)
    except ValueError:
        try:
            loose = ip_network(text, strict=False)
        except ValueError:
            raise ValueError from None
        raise _DetailError(
            f"{text} has bits set after the prefix (did you mean {loose}?)"
        ) from None


def _secret(value: object) -> str:
    text = _str(value)
    if not text or text != text.strip():
        raise _DetailError("a secret is non-empty, without leading or trailing spaces")
    return text


def _keep_family(value: object) -> bool | tuple[ListenSpec, ...]:
    """true/false (every TURN listener or none) or a list of turn.listen endpoints."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("true", "yes", "on")
    return _list_of(_turn_listen)(value)


def _web_listen(value: object) -> tuple[IPAddress, int]:
    """``[::1]:8064`` or ``127.0.0.1:8064``: an address literal and a port."""
    hp = parse_hostport(_str(value))
    if isinstance(hp.host, str) or hp.port is None:
        raise ValueError("not ADDRESS:PORT")
    return hp.host, hp.port


def _token(value: object) -> str:
    text = _str(value)
    if text and (len(text) < 16 or text != text.strip()):
        raise _DetailError("a token is at least 16 characters, without surrounding spaces")
    return text


_FAMILY_NAMES = {"ipv4": Family.INET, "ip4": Family.INET, "ipv6": Family.INET6, "ip6": Family.INET6}


def _interface_map(value: object) -> tuple[tuple[str, Family], ...]:
    """``{name = "ipv4"|"ipv6"}`` or ``["name=ipv4", ...]``: ng ``direction`` names."""
    if isinstance(value, Mapping):
        pairs = [(_str(k), _str(v)) for k, v in value.items()]
    else:
        pairs = [(n, f) for n, _, f in (v.partition("=") for v in _list_of(_str)(value))]
    table: dict[str, Family] = {}
    for raw_name, raw_family in pairs:
        name, family = raw_name.strip().lower(), raw_family.strip().lower()
        if not name or any(c.isspace() for c in name):
            raise _DetailError(f"bad interface name {raw_name!r}")
        if family not in _FAMILY_NAMES:
            raise _DetailError(f"interface {name!r}: family must be ipv4 or ipv6")
        table[name] = _FAMILY_NAMES[family]
    return tuple(sorted(table.items()))


def _payload(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError
    if value.lower() == "crlf":
        return b"\r\n\r\n"
    if not value.lower().startswith("hex:"):
        raise ValueError
    data = bytes.fromhex(value[4:])
    if not 1 <= len(data) <= 512:
        raise ValueError
    return data


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: where it lives, its default and how it is checked."""

    path: str
    default: object
    convert: Callable[[object], object]
    expected: str
    help: str


DEFAULT_LISTEN = ["udp:0.0.0.0:5060", "udp:[::]:5060", "tcp:0.0.0.0:5060", "tcp:[::]:5060"]
DEFAULT_TURN_LISTEN = ["udp:0.0.0.0:3478", "udp:[::]:3478", "tcp:0.0.0.0:3478", "tcp:[::]:3478"]

KEYS: tuple[Key, ...] = (
    Key(
        "general.log_level",
        "info",
        _choice(*LOG_LEVELS),
        "one of " + ", ".join(LOG_LEVELS),
        "log verbosity",
    ),
    Key(
        "general.log_format",
        "text",
        _choice(*LOG_FORMATS),
        "text or json",
        "human-readable text or one JSON object per line",
    ),
    Key(
        "general.data_dir",
        "",
        _str,
        "a directory path (empty: ~/.local/state/rtc64)",
        "where the SQLite store, generated certificates and state live",
    ),
    Key(
        "general.drain_seconds",
        30.0,
        _float_range(0.0, 86_400.0),
        "seconds from 0 to 86400",
        "on SIGTERM, how long calls in progress may continue (new calls get 503) before "
        "the gateway stops",
    ),
    Key(
        "general.services",
        list(SERVICES),
        _services,
        "a non-empty list of " + ", ".join(SERVICES) + ' (or one string "sip,turn")',
        "what rtc64 serve runs (--only turn: the TURN server alone, no SIP listeners)",
    ),
    Key(
        "sip.listen",
        DEFAULT_LISTEN,
        _list_of(_listen),
        f"a list of {LISTEN_FORM}",
        "SIP listening sockets, one family each",
    ),
    Key(
        "sip.domains",
        [],
        _list_of(_domain),
        "a list of domain names (e.g. example.net)",
        "domains served by the registrar (own addresses and host name are always local)",
    ),
    Key(
        "sip.trusted_networks",
        [],
        _list_of(_network),
        "a list of networks in CIDR form (e.g. 2001:db8::/64, 10.0.0.0/8)",
        "sources that may relay, call and register any AOR of a served domain without "
        "authentication, and are not rate-limited (list SBCs, PBXs and the upstream core, "
        "not phone networks)",
    ),
    Key(
        "sip.upstream",
        "",
        _optional_str,
        "a SIP URI (e.g. sip:core.example.net;transport=udp)",
        "send everything not for a local registration to this core",
    ),
    Key(
        "sip.tls_cert",
        "",
        _str,
        "a PEM certificate file path (empty: self-signed, generated on first start)",
        "TLS/WSS certificate chain",
    ),
    Key(
        "sip.tls_key",
        "",
        _str,
        "a PEM private key file path (empty: with the generated certificate)",
        "TLS/WSS private key",
    ),
    Key(
        "sip.tls_verify",
        True,
        _bool,
        "true or false",
        "check outbound TLS servers' certificates (RFC 5922); false only in labs",
    ),
    Key(
        "sip.tls_ca_file",
        "",
        _optional_str,
        "a PEM file of CA certificates (empty: the system's CAs)",
        "CAs trusted for outbound TLS (replaces the system's when set)",
    ),
    Key(
        "sip.tls_no_verify_domains",
        [],
        _list_of(_tls_name),
        "a list of domain names or IP addresses (e.g. lab.example.net, 192.0.2.7)",
        "outbound TLS to these exact names accepts any certificate (labs)",
    ),
    Key(
        "sip.tls_verify_clients",
        False,
        _bool,
        "true or false",
        "TLS listeners ask each client for a certificate (not required) verified against "
        "sip.tls_client_ca; a server that proves its Via host may have its connection "
        "reused for requests to it (RFC 5923 ;alias)",
    ),
    Key(
        "sip.tls_client_ca",
        "",
        _optional_str,
        "a PEM file of CA certificates (required when sip.tls_verify_clients is true)",
        "CAs client certificates must chain to",
    ),
    Key(
        "sip.tls_alias",
        False,
        _bool,
        "true or false",
        "outbound TLS presents the gateway's certificate and our Via carries ;alias, so "
        "servers may reuse our connections for requests to us (RFC 5923)",
    ),
    Key(
        "sip.max_transactions",
        20000,
        _int_range(1, 10_000_000),
        "an integer 1..10000000",
        "proxied requests awaiting their final response before new ones get 503",
    ),
    Key(
        "sip.overload_lag",
        0.1,
        _float_range(0.0, 10.0),
        "seconds, 0..10 (0 turns it off)",
        "queueing delay (receive backlog or event-loop lag) above which a growing share of "
        "new calls and registrations get 503 Retry-After while calls in progress go on",
    ),
    Key(
        "sip.request_rate",
        200,
        _int_range(0, 1_000_000),
        "requests/s per source, 0 for off",
        "new dialogs and registrations per second per source (/64 for IPv6); in-dialog "
        "requests, trusted networks and the upstream core are not limited",
    ),
    Key(
        "sip.workers",
        0,
        _int_range(0, 256),
        "an integer 0..256 (0: one per CPU core)",
        "SIP worker processes sharing the listeners (SO_REUSEPORT); 0 (the default) one "
        "per CPU core this process may run on, 1 everything in one process",
    ),
    Key(
        "sip.worker_ports",
        0,
        _worker_ports,
        "0 (ephemeral) or a port 1024..65535 (worker k uses PORT+k)",
        "first of the per-worker SIP ports written in Via and Record-Route so responses and "
        "in-dialog requests reach the worker that sent them",
    ),
    Key(
        "sip.udp_ipv6_min_mtu",
        True,
        _bool,
        "true or false",
        "IPv6 UDP sockets fragment large messages at 1280 bytes themselves instead of "
        "relying on path-MTU discovery (anycast front ends never see the ICMPv6 Packet Too "
        "Big)",
    ),
    Key(
        "sip.udp_ipv4_no_df",
        False,
        _bool,
        "true or false",
        "IPv4 UDP sockets send without the DF bit, so routers fragment large messages",
    ),
    Key(
        "sip.udp_receive_buffer",
        512 * 1024,
        _int_range(64 * 1024, 64 * 1024 * 1024),
        "bytes, 65536..67108864",
        "SO_RCVBUF of each SIP UDP socket (the kernel doubles it, up to net.core.rmem_max); "
        "it bounds how long a request can wait unread: a queue longer than T1 (0.5 s) "
        "makes every client retransmit what waits in it, the start of an overload collapse",
    ),
    Key(
        "sip.trace",
        [],
        _list_of(_trace_entry),
        "a list of networks in CIDR form or SIP AORs (e.g. 2001:db8::/64, sip:alice@example.net)",
        "log every SIP message (whole) from or to these sources, or naming these AORs in "
        "From or To (logger rtc64.trace)",
    ),
    Key(
        "registrar.min_expires",
        60,
        _int_range(0, 2**31 - 1),
        "seconds, 0..2147483647",
        "shortest registration accepted (shorter gets 423)",
    ),
    Key(
        "registrar.max_expires",
        7200,
        _int_range(1, 2**31 - 1),
        "seconds, 1..2147483647",
        "longest registration granted",
    ),
    Key(
        "registrar.default_expires",
        3600,
        _int_range(1, 2**31 - 1),
        "seconds, 1..2147483647",
        "expiry when the REGISTER names none",
    ),
    Key(
        "registrar.max_contacts",
        10,
        _int_range(1, 10_000),
        "an integer 1..10000",
        "contacts one AOR may have registered; a REGISTER adding more gets 503 with "
        "Retry-After (until its oldest contact expires), so one account cannot fill the store",
    ),
    Key(
        "registrar.flow_timer",
        120,
        _int_range(0, 86_400),
        "seconds, 0..86400 (0: not sent)",
        "RFC 5626 Flow-Timer given to outbound clients on a connection (UDP flows get at "
        "most 29 s): how often they must send keep-alives",
    ),
    Key(
        "auth.realm",
        "",
        _str,
        "a realm string (empty: the first domain or the host name)",
        "digest realm; users are stored per realm, so 'rtc64 user add' must see the same "
        "auth.realm/sip.domains as 'rtc64 serve' (same --config, or --domain/--realm)",
    ),
    Key(
        "auth.users",
        [],
        _users,
        'an array of tables {name = "...", password = "..."}',
        "users defined in the file (more live in the store: rtc64 user add)",
    ),
    Key(
        "auth.algorithms",
        ["SHA-256", "MD5"],
        _list_of(_choice("sha-256", "md5")),
        "a non-empty list of SHA-256 and MD5, most preferred first",
        "digest algorithms offered in challenges, in order; MD5 first helps phones that "
        "read only the first challenge (SIPp), MD5 alone those that reject a request on any "
        "challenge they cannot answer (baresip 1.0 / libre 1.1)",
    ),
    Key(
        "auth.nonce_lifetime",
        300,
        _int_range(10, 86400),
        "seconds, 10..86400",
        "how long a nonce is valid before stale=true",
    ),
    Key(
        "auth.max_failures",
        5,
        _int_range(1, 1000),
        "an integer 1..1000",
        "failed authentications per source, or per user from one source, before blocking",
    ),
    Key(
        "auth.block_seconds",
        300,
        _int_range(1, 86400),
        "seconds, 1..86400",
        "how long a source (/64 for IPv6, /32 for IPv4), or one user from one source, "
        "stays blocked after too many failures; a user is never blocked from every source",
    ),
    Key(
        "store.url",
        "sqlite",
        _str,
        "sqlite, sqlite:///PATH or redis://HOST:PORT/DB",
        "location store backend",
    ),
    Key(
        "media.addresses",
        [],
        _list_of(_address),
        "a list of IP addresses of this host (one per family)",
        "relay addresses (default: the SIP listen addresses)",
    ),
    Key(
        "media.advertise",
        [],
        _list_of(_address),
        "a list of IP addresses, at most one per family (e.g. 203.0.113.5, 2001:db8::5)",
        "relay behind a 1:1 NAT: the public address SDP carries for each family, while "
        "the relay binds its local address of that family (rtpengine's internal!public)",
    ),
    Key(
        "media.ports",
        "30000-40000",
        _port_range,
        "LOW-HIGH with 1024 <= LOW < HIGH <= 65535",
        "relay port range",
    ),
    Key(
        "media.policy",
        "auto",
        _choice(*MEDIA_POLICIES),
        "one of " + ", ".join(MEDIA_POLICIES),
        "when to relay media: auto (families differ or SDP addresses unreachable as "
        "written), always, never, or nat64 (peers behind the NAT64 get their IPv4 SDP "
        "addresses synthesised into the NAT64 prefix, no relay; other calls as auto)",
    ),
    Key("media.workers", 1, _int_range(1, 64), "an integer 1..64", "relay worker processes"),
    Key(
        "media.strict_source",
        False,
        _bool,
        "true or false",
        "drop media from any source but the latched one",
    ),
    Key(
        "media.timeout",
        60,
        _int_range(1, 86400),
        "seconds, 1..86400",
        "no media for this long ends the call",
    ),
    Key(
        "media.hold_timeout",
        3600,
        _int_range(1, 604800),
        "seconds, 1..604800",
        "timeout for held/inactive streams",
    ),
    Key(
        "ng.listen",
        "",
        _ng_listen,
        "empty (off) or udp:HOST:PORT ([v6] for IPv6)",
        "rtpengine-compatible ng control socket",
    ),
    Key(
        "ng.interfaces",
        {},
        _interface_map,
        'a table {NAME = "ipv4"|"ipv6"} or a list of "NAME=ipv4|ipv6"',
        "ng 'direction' interface names and their families (ipv4/ipv6 are built in)",
    ),
    Key(
        "dns.servers",
        [],
        _list_of(_dns_server),
        "a list of HOST[:PORT] ([v6]:port for IPv6)",
        "DNS servers (default: the system resolver)",
    ),
    Key(
        "dns.attempt_delay",
        0.25,
        _float_range(0.01, 10.0),
        "seconds, 0.01..10",
        "happy-eyeballs delay before trying the next address",
    ),
    Key(
        "dns.family_penalty",
        600.0,
        _float_range(0.0, 86400.0),
        "seconds, 0..86400",
        "how long an address family that just failed is tried second for a destination",
    ),
    Key(
        "dns.happy_eyeballs",
        True,
        _bool,
        "true or false",
        "race IPv6 and IPv4 destinations (RFC 8305); false tries them one after the other",
    ),
    Key(
        "nat64.prefix",
        "",
        _nat64_prefix,
        "empty (discover) or an RFC 6052 NAT64 prefix",
        "NAT64 prefix",
    ),
    Key(
        "nat64.clat_state_dir",
        "/run/rtc64/clat",
        _str,
        "a directory path",
        "where `rtc64 clat run` keeps its status: the gateway learns the CLAT addresses there",
    ),
    Key(
        "keepalive.enabled",
        True,
        _bool,
        "true or false",
        "keep every registered contact's path open (pinhole keepalives, OPTIONS)",
    ),
    Key(
        "keepalive.interval",
        25.0,
        _float_range(0.05, 3600.0),
        "seconds, 0.05..3600",
        "at most this long between pinhole keepalives to each registered contact",
    ),
    Key(
        "keepalive.options_interval",
        120.0,
        _float_range(0.0, 86400.0),
        "seconds, 0..86400 (0: no OPTIONS)",
        "how often each registered contact gets an OPTIONS liveness check",
    ),
    Key(
        "keepalive.max_failures",
        3,
        _int_range(1, 1000),
        "an integer 1..1000",
        "OPTIONS left unanswered in a row before a contact is unreachable and removed",
    ),
    Key(
        "keepalive.payload",
        "crlf",
        _payload,
        "crlf (CRLF CRLF) or hex:HEX (1..512 bytes, e.g. hex:0d0a0d0a)",
        "the UDP pinhole keepalive datagram",
    ),
    Key("turn.enabled", True, _bool, "true or false", "run the TURN server in rtc64 serve"),
    Key(
        "turn.listen",
        DEFAULT_TURN_LISTEN,
        _list_of(_turn_listen),
        "a list of udp:, tcp: or tls:HOST:PORT ([v6] for IPv6), e.g. udp:[::]:3478",
        "TURN/STUN listening sockets, one family each (tls:[::]:5349 or :443 for TURNS)",
    ),
    Key(
        "turn.relay_addresses",
        [],
        _list_of(_address),
        "a list of IP addresses of this host, at most one per family",
        "relay addresses (default: the host's first routable address of each family, "
        "never the client's socket)",
    ),
    Key(
        "turn.external_addresses",
        [],
        _list_of(_address),
        "a list of IP addresses, at most one per family (e.g. 203.0.113.5)",
        "relay behind a 1:1 NAT: the public address XOR-RELAYED-ADDRESS names per family",
    ),
    Key(
        "turn.secrets",
        [],
        _list_of(_secret),
        "a list of shared secret strings (the first signs new credentials)",
        "TURN REST shared secrets (coturn's static-auth-secret); several at once while "
        "rotating; usernames EXPIRY:USER, password base64(HMAC-SHA1(secret, username))",
    ),
    Key(
        "turn.long_term",
        True,
        _bool,
        "true or false",
        "long-term credentials from the user store (rtc64 user add), realm = auth.realm",
    ),
    Key(
        "turn.open",
        False,
        _bool,
        "true or false",
        "no authentication at all: anyone may allocate (a lab only)",
    ),
    Key(
        "turn.allow_peers",
        [],
        _list_of(_strict_network),
        "a list of networks in CIDR form (e.g. 127.0.0.0/8, ::1/128)",
        "peers allowed despite the built-in denies (loopback for a lab...); the longest "
        "matching prefix of allow_peers and deny_peers decides",
    ),
    Key(
        "turn.deny_peers",
        [],
        _list_of(_strict_network),
        "a list of networks in CIDR form, any prefix length (e.g. 203.0.113.0/25)",
        "peers refused on top of the built-in denies (private, loopback, embedded IPv4...)",
    ),
    Key(
        "turn.max_allocations",
        10000,
        _int_range(1, 10_000_000),
        "an integer 1..10000000",
        "allocations in total (486 beyond)",
    ),
    Key(
        "turn.user_quota",
        10,
        _int_range(1, 1_000_000),
        "an integer 1..1000000",
        "allocations per user (486 beyond)",
    ),
    Key(
        "turn.max_permissions",
        32,
        _int_range(1, 10000),
        "an integer 1..10000",
        "permissions per allocation",
    ),
    Key(
        "turn.max_channels",
        64,
        _int_range(1, 4096),
        "an integer 1..4096",
        "channel bindings per allocation",
    ),
    Key(
        "turn.max_lifetime",
        3600,
        _int_range(600, 86400),
        "seconds, 600..86400",
        "longest allocation lifetime granted (RFC 8656 default lifetime is 600)",
    ),
    Key(
        "turn.bandwidth",
        1_250_000,
        _int_range(0, 10**10),
        "bytes per second, 0..10000000000 (0: no limit)",
        "relayed bytes per second per allocation and direction (excess dropped)",
    ),
    Key(
        "turn.tls_cert",
        "",
        _str,
        "a PEM certificate file path (empty: sip.tls_cert, else self-signed)",
        "certificate chain of tls: TURN listeners",
    ),
    Key(
        "turn.tls_key",
        "",
        _str,
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
    Key(
        "hep.collector",
        "",
        _hep_collector,
        "udp:ADDRESS:PORT, e.g. udp:[2001:db8::9]:9060 (empty: no capture)",
        "HEPv3 (Homer) collector every SIP message received and sent is copied to",
    ),
    Key(
        "hep.capture_id",
        2001,
        _int_range(0, 2**32 - 1),
        "an integer from 0 to 4294967295",
        "capture agent id carried in each HEP packet",
    ),
)

WEB_KEYS: tuple[Key, ...] = (
    Key("web.enabled", True, _bool, "true or false", "run the web console, REST API and /metrics"),
    Key(
        "web.listen",
        "[::1]:8064",
        _web_listen,
        "ADDRESS:PORT, e.g. [::1]:8064 or 127.0.0.1:8064",
        "where the console, REST API and /metrics listen (loopback unless credentials exist)",
    ),
    Key(
        "web.token",
        "",
        _token,
        "a secret of at least 16 characters (empty: none)",
        "API token (Authorization: Bearer) with full access, for rtc64 ctl and scripts",
    ),
    Key(
        "web.turn_token",
        "",
        _token,
        "a secret of at least 16 characters (empty: none)",
        "token that may only call /api/turn-credentials (for an application server)",
    ),
    Key(
        "web.tls",
        False,
        _bool,
        "true or false",
        "serve HTTPS (sip.tls_cert/sip.tls_key, else the self-signed certificate)",
    ),
    Key(
        "web.session_lifetime",
        28800,
        _int_range(60, 604800),
        "seconds, 60..604800",
        "how long a console login lasts",
    ),
)


# --- [tunnel]: the Public TSP server (rtc64 tunnel serve, and rtc64 serve when enabled) --


def _tunnel_listen(value: object) -> ListenSpec:
    spec = _listen(value)
    if spec.transport is not Transport.UDP or spec.advertise is not None:
        raise _DetailError("the tunnel listens on udp, without ;advertise=")
    if spec.port == 0:
        raise _DetailError("a fixed port (clients are configured with it)")
    return spec


def _tunnel_prefix(value: object) -> IPv6Network | None:
    text = _str(value).strip()
    if not text:
        return None
    network = _strict_network(text)
    if not isinstance(network, IPv6Network) or network.prefixlen != 64:
        raise ValueError
    return network


def _ipv4_or_empty(value: object) -> IPv4Address | None:
    text = _str(value).strip()
    return IPv4Address(text) if text else None


def _interface_name(value: object) -> str:
    name = _str(value)
    if not 0 < len(name) < 16 or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError
    return name


TUNNEL_KEYS: tuple[Key, ...] = (
    Key(
        "tunnel.enabled",
        False,
        _bool,
        "true or false",
        "run the tunnel server in rtc64 serve (rtc64 tunnel serve runs it regardless)",
    ),
    Key(
        "tunnel.listen",
        "udp:0.0.0.0:3653",
        _tunnel_listen,
        "udp:HOST:PORT, e.g. udp:0.0.0.0:3653",
        "the Public TSP port (UDP 3653 on IPv4)",
    ),
    Key(
        "tunnel.prefix",
        "",
        _tunnel_prefix,
        "an IPv6 /64 like 2001:db8:64::/64 (no host bits)",
        "the tunnel prefix: a client's address is PREFIX | IPv4 | port | 1",
    ),
    Key(
        "tunnel.backend",
        "tun",
        _choice(*TUNNEL_BACKENDS),
        "tun or routed",
        "the IPv6 side: a TUN device, or the prefix routed to a sink link (packet tap + raw "
        "socket, no TUN)",
    ),
    Key(
        "tunnel.device",
        "tsp0",
        _interface_name,
        "an interface name of 1-15 letters, digits, - or _",
        "the TUN device (backend tun) or sink link (backend routed) rtc64 creates",
    ),
    Key(
        "tunnel.server_ipv4",
        "",
        _ipv4_or_empty,
        "an IPv4 address (empty: the listen address unless it is a wildcard)",
        "the server IPv4 address announced to clients",
    ),
    Key(
        "tunnel.lifetime",
        604800,
        _int_range(1, 2**31 - 1),
        "seconds, 1..2147483647",
        "tunnel lifetime announced to clients",
    ),
    Key(
        "tunnel.keepalive",
        30,
        _int_range(1, 3600),
        "seconds, 1..3600",
        "keepalive interval announced to clients (holds their NAT mapping)",
    ),
    Key(
        "tunnel.rate",
        500.0,
        _float_range(0.001, 1e9),
        "packets per second, > 0",
        "rate limit per IPv4 source and per IPv4 destination",
    ),
    Key(
        "tunnel.burst",
        1000.0,
        _float_range(1.0, 1e9),
        "packets, >= 1",
        "burst allowed above tunnel.rate",
    ),
    Key(
        "tunnel.icmp_rate",
        100.0,
        _float_range(0.001, 1e9),
        "ICMPv6 errors per second, > 0",
        "rate limit of the ICMPv6 errors the server generates (all destinations together)",
    ),
)
KEYS = (*KEYS, *WEB_KEYS, *TUNNEL_KEYS)

_BY_PATH = {k.path: k for k in KEYS}


# --- typed sections: one frozen dataclass per TOML table, one field per key -------------


@dataclass(frozen=True, slots=True)
class GeneralSection:
    log_level: str
    log_format: str
    data_dir: str
    drain_seconds: float
    services: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SipSection:
    listen: tuple[ListenSpec, ...]
    domains: tuple[str, ...]
    trusted_networks: tuple[IPNetwork, ...]
    upstream: str | None
    tls_cert: str
    tls_key: str
    tls_verify: bool
    tls_ca_file: str | None
    tls_no_verify_domains: tuple[str, ...]
    tls_verify_clients: bool
    tls_client_ca: str | None
    tls_alias: bool
    max_transactions: int
    overload_lag: float
    request_rate: int
    udp_ipv6_min_mtu: bool
    udp_ipv4_no_df: bool
    udp_receive_buffer: int
    workers: int
    worker_ports: int
    trace: tuple[IPNetwork | str, ...]


@dataclass(frozen=True, slots=True)
class RegistrarSection:
    min_expires: int
    max_expires: int
    default_expires: int
    max_contacts: int
    flow_timer: int


@dataclass(frozen=True, slots=True)
class AuthSection:
    realm: str
    users: tuple[tuple[str, str], ...]
    algorithms: tuple[str, ...]
    nonce_lifetime: int
    max_failures: int
    block_seconds: int


@dataclass(frozen=True, slots=True)
class StoreSection:
    url: str


@dataclass(frozen=True, slots=True)
class MediaSection:
    addresses: tuple[IPAddress, ...]
    advertise: tuple[IPAddress, ...]
    ports: tuple[int, int]
    policy: str
    workers: int
    strict_source: bool
    timeout: int
    hold_timeout: int


@dataclass(frozen=True, slots=True)
class NgSection:
    listen: ListenSpec | None
    interfaces: tuple[tuple[str, Family], ...]


@dataclass(frozen=True, slots=True)
class DnsSection:
    servers: tuple[str, ...]
    attempt_delay: float
    family_penalty: float
    happy_eyeballs: bool


@dataclass(frozen=True, slots=True)
class Nat64Section:
    prefix: str | None
    clat_state_dir: str


@dataclass(frozen=True, slots=True)
class KeepaliveSection:
    enabled: bool
    interval: float
    options_interval: float
    max_failures: int
    payload: bytes


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


@dataclass(frozen=True, slots=True)
class HepSection:
    collector: ListenSpec | None
    capture_id: int


@dataclass(frozen=True, slots=True)
class WebSection:
    enabled: bool
    listen: tuple[IPAddress, int]
    token: str = field(repr=False)
    turn_token: str = field(repr=False)
    tls: bool
    session_lifetime: int


@dataclass(frozen=True, slots=True)
class TunnelSection:
    enabled: bool
    listen: ListenSpec
    prefix: IPv6Network | None
    backend: str
    device: str
    server_ipv4: IPv4Address | None
    lifetime: int
    keepalive: int
    rate: float
    burst: float
    icmp_rate: float


SECTIONS: dict[str, type] = {
    "general": GeneralSection,
    "sip": SipSection,
    "registrar": RegistrarSection,
    "auth": AuthSection,
    "store": StoreSection,
    "media": MediaSection,
    "ng": NgSection,
    "dns": DnsSection,
    "nat64": Nat64Section,
    "keepalive": KeepaliveSection,
    "turn": TurnSection,
    "hep": HepSection,
    "web": WebSection,
    "tunnel": TunnelSection,
}

S = TypeVar("S")


def _section(cls: type[S], name: str, values: Mapping[str, object]) -> S:
    """The section ``name`` from validated values (the converters made the types right)."""
    return cls(**{f.name: values[f"{name}.{f.name}"] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration: one typed section per table, plus where it came from.

    ``values`` keeps the flat ``section.name`` view for logging (``describe``).
    """

    values: Mapping[str, object]
    source: Path | None = None
    overridden: frozenset[str] = field(default_factory=frozenset)
    general: GeneralSection = field(init=False)
    sip: SipSection = field(init=False)
    registrar: RegistrarSection = field(init=False)
    auth: AuthSection = field(init=False)
    store: StoreSection = field(init=False)
    media: MediaSection = field(init=False)
    ng: NgSection = field(init=False)
    dns: DnsSection = field(init=False)
    nat64: Nat64Section = field(init=False)
    keepalive: KeepaliveSection = field(init=False)
    turn: TurnSection = field(init=False)
    hep: HepSection = field(init=False)
    web: WebSection = field(init=False)
    tunnel: TunnelSection = field(init=False)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            object.__setattr__(self, name, _section(cls, name, self.values))

    @property
    def data_dir(self) -> Path:
        configured = self.general.data_dir
        if configured:
            return Path(configured).expanduser()
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(state) / "rtc64"

    def prepare_data_dir(self) -> Path:
        """``data_dir``, created if missing; ``ConfigError`` naming it and the problem if
        it cannot be created or is not a writable directory."""
        path = self.data_dir
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise data_dir_error(path, "a directory (a file is in the way)") from None
        except OSError as exc:
            raise data_dir_error(path, f"a directory it can create ({_why(exc, path)})") from None
        if not path.is_dir():
            raise data_dir_error(path, "a directory (a file is in the way)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise data_dir_error(path, "a directory it can write (permission denied)")
        return path

    def describe(self) -> list[tuple[str, str]]:
        """``(key, value)`` pairs for logging, secrets masked."""
        rows = []
        for key in KEYS:
            value = self.values[key.path]
            if key.path == "ng.interfaces":
                assert isinstance(value, tuple)
                shown = ", ".join(f"{n}={f.label}" for n, f in value) or "(built-in only)"
            elif key.path == "auth.users":
                assert isinstance(value, tuple)
                shown = ", ".join(f"{name}:***" for name, _ in value) or "(none)"
            elif key.path == "keepalive.payload":
                assert isinstance(value, bytes)
                shown = "crlf" if value == b"\r\n\r\n" else "hex:" + value.hex()
            elif key.path in ("web.token", "web.turn_token"):
                shown = "set, hidden" if value else "(none)"
            elif key.path == "web.listen":
                assert isinstance(value, tuple)
                shown = format_hostport(value[0], value[1])
            elif key.path == "turn.secrets":
                assert isinstance(value, tuple)
                shown = f"{len(value)} secret(s), hidden" if value else "(none)"
            elif key.path == "media.ports":
                assert isinstance(value, tuple)
                shown = f"{value[0]}-{value[1]}"
            elif isinstance(value, tuple):
                shown = ", ".join(str(v) for v in value) or "(none)"
            else:
                shown = "(none)" if value in (None, "") else str(value)
            rows.append((key.path, shown))
        return rows


def realm_of(cfg: Config) -> str:
    """The digest realm, resolved the same way by ``rtc64 serve`` and ``rtc64 user add``:
    ``auth.realm``, else the first of ``sip.domains``, else the host name."""
    if cfg.auth.realm:
        return cfg.auth.realm
    domains = cfg.sip.domains
    return domains[0] if domains else platform.node()


def _why(exc: OSError, path: Path | str) -> str:
    """``strerror`` of ``exc``, with the path it concerns when that is not ``path``."""
    reason = exc.strerror or type(exc).__name__
    other = exc.filename is not None and str(exc.filename) != str(path)
    return f"{exc.filename}: {reason}" if other else reason


def data_dir_error(path: Path | str, expected: str) -> ConfigError:
    """The one-line error for a problem with the data directory or a file in it."""
    return ConfigError("general.data_dir", str(path), expected)


def _flatten(table: Mapping[str, object], where: Path) -> dict[str, object]:
    flat: dict[str, object] = {}
    for section, body in table.items():
        if not isinstance(body, Mapping):
            raise ConfigError(section, body, f"a [{section}] table, not a top-level value")
        for name, value in body.items():
            flat[f"{section}.{name}"] = value
    return flat


def _convert(key: Key, raw: object) -> object:
    try:
        return key.convert(raw)
    except _DetailError as exc:
        raise ConfigError(key.path, raw, f"{key.expected}; {exc}") from None
    except (ValueError, TypeError):
        raise ConfigError(key.path, raw, key.expected) from None


def load(path: Path | None = None, overrides: Mapping[str, object] | None = None) -> Config:
    """Build a ``Config`` from defaults, the TOML file at ``path`` and ``overrides``."""
    raw: dict[str, object] = {k.path: k.default for k in KEYS}
    if path is not None:
        try:
            with path.open("rb") as fh:
                document = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("--config", str(path), "an existing TOML file") from None
        except OSError as exc:
            expected = f"a readable TOML file ({_why(exc, path)})"
            raise ConfigError("--config", str(path), expected) from None
        except UnicodeDecodeError as exc:
            raise ConfigError("--config", str(path), f"UTF-8 TOML text ({exc.reason})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", str(path), f"valid TOML ({exc})") from None
        for key_path, value in _flatten(document, path).items():
            if key_path not in _BY_PATH:
                section = key_path.split(".", 1)[0]
                known = sorted(k for k in _BY_PATH if k.startswith(section + "."))
                raise ConfigError(
                    key_path,
                    value,
                    "a known key: "
                    + (", ".join(known) or "sections are " + ", ".join(_sections())),
                )
            raw[key_path] = value
    overridden = frozenset(overrides or {})
    for key_path, value in (overrides or {}).items():
        if key_path not in _BY_PATH:
            raise ConfigError(key_path, value, "a known key")
        raw[key_path] = value
    values = {k.path: _convert(k, raw[k.path]) for k in KEYS}
    cfg = Config(values=values, source=path, overridden=overridden)
    _check_consistency(cfg)
    return cfg


def _sections() -> Sequence[str]:
    return sorted({k.path.split(".", 1)[0] for k in KEYS})


def _check_consistency(cfg: Config) -> None:
    reg = cfg.registrar
    low, high = reg.min_expires, reg.max_expires
    if low > high:
        raise ConfigError("registrar.min_expires", low, f"at most registrar.max_expires ({high})")
    if not low <= reg.default_expires <= high:
        raise ConfigError(
            "registrar.default_expires",
            reg.default_expires,
            f"between registrar.min_expires ({low}) and max_expires ({high})",
        )
    seen: set[tuple[str, str, int]] = set()
    for spec in cfg.sip.listen:
        ident = (spec.transport.value, spec.address.compressed, spec.port)
        if ident in seen:
            raise ConfigError("sip.listen", str(spec), "each endpoint listed once")
        seen.add(ident)
    if not cfg.auth.algorithms:
        raise ConfigError("auth.algorithms", [], _BY_PATH["auth.algorithms"].expected)
    if cfg.sip.tls_verify_clients and not cfg.sip.tls_client_ca:
        raise ConfigError("sip.tls_client_ca", "", _BY_PATH["sip.tls_client_ca"].expected)
    _check_advertise(cfg.media.advertise)
    ports = {parse_hostport(s).port or 53 for s in cfg.dns.servers}
    if len(ports) > 1:
        raise ConfigError("dns.servers", list(cfg.dns.servers), "the same port for every server")
    store = cfg.store.url
    if not (store == "sqlite" or store.startswith(("sqlite:///", "redis://"))):
        raise ConfigError("store.url", store, _BY_PATH["store.url"].expected)
    _check_turn(cfg)
    _check_tunnel(cfg)


def tunnel_runs(cfg: Config) -> bool:
    """True when ``rtc64 serve`` starts the tunnel server."""
    return cfg.tunnel.enabled and "tunnel" in cfg.general.services


def _check_tunnel(cfg: Config) -> None:
    tunnel = cfg.tunnel
    if cfg.general.services == ("tunnel",) and not tunnel.enabled:
        raise ConfigError("tunnel.enabled", False, "true when general.services is only tunnel")
    if tunnel_runs(cfg) and tunnel.prefix is None:
        raise ConfigError("tunnel.prefix", "", _BY_PATH["tunnel.prefix"].expected)
    address = tunnel.server_ipv4
    if address is not None and (address.is_unspecified or address.is_multicast):
        raise ConfigError("tunnel.server_ipv4", str(address), "a unicast IPv4 address")
    if not tunnel_runs(cfg):
        return
    mine = (Transport.UDP, tunnel.listen.address, tunnel.listen.port)
    for key, specs, runs in (
        ("sip.listen", cfg.sip.listen, "sip" in cfg.general.services),
        ("turn.listen", cfg.turn.listen, turn_runs(cfg)),
    ):
        for spec in specs:
            if runs and (spec.transport, spec.address, spec.port) == mine:
                expected = f"an endpoint {key} does not use"
                raise ConfigError("tunnel.listen", str(tunnel.listen), expected)


def turn_runs(cfg: Config) -> bool:
    """True when ``rtc64 serve`` starts the TURN server."""
    return cfg.turn.enabled and "turn" in cfg.general.services


def _check_turn(cfg: Config) -> None:
    turn = cfg.turn
    if cfg.general.services == ("turn",) and not turn.enabled:
        raise ConfigError("turn.enabled", False, "true when general.services is only turn")
    _one_per_family("turn.relay_addresses", turn.relay_addresses)
    _one_per_family("turn.external_addresses", turn.external_addresses)
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


def _one_per_family(key: str, addresses: Sequence[IPAddress]) -> None:
    seen: set[int] = set()
    for address in addresses:
        if address.version in seen:
            raise ConfigError(key, str(address), "at most one address per family")
        seen.add(address.version)


def _check_advertise(addresses: Sequence[IPAddress]) -> None:
    seen: set[Family] = set()
    for address in addresses:
        family = Family.INET6 if address.version == 6 else Family.INET
        if family in seen:
            raise ConfigError("media.advertise", str(address), "at most one address per family")
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            raise ConfigError("media.advertise", str(address), "a unicast address peers reach")
        seen.add(family)
