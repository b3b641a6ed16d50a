"""Validated configuration: embedded defaults, an optional TOML file, command-line overrides.

Every key has a default, so no file is needed. A key is written ``section.name`` (TOML
table ``[section]``, key ``name``). Precedence: defaults < file < command line. Any bad
value raises ``ConfigError`` naming the key, the value and the expected form; unknown
keys are errors too (a typo must not silently fall back to a default).

The schema is one table, ``KEYS``: adding a setting means adding one row and one field.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, TypeVar

from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.net.address import Family, IPAddress, parse_ip
from rtc64.net.endpoint import EXPECTED_FORM as LISTEN_FORM
from rtc64.net.endpoint import EndpointError, ListenSpec, Transport, parse_listen

IPNetwork = IPv4Network | IPv6Network
T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
MEDIA_POLICIES = ("auto", "always", "never", "nat64")


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


def _optional_str(value: object) -> str | None:
    text = _str(value).strip()
    return text or None


def _domain(value: object) -> str:
    text = _str(value).strip().lower().rstrip(".")
    if not text or any(c.isspace() or c in "/:@[]" for c in text):
        raise ValueError
    return text


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


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: where it lives, its default and how it is checked."""

    path: str
    default: object
    convert: Callable[[object], object]
    expected: str
    help: str


DEFAULT_LISTEN = ["udp:0.0.0.0:5060", "udp:[::]:5060", "tcp:0.0.0.0:5060", "tcp:[::]:5060"]

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
        "sources that may relay and call without authentication",
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
        "per-source request rate limit",
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
        "auth.realm",
        "",
        _str,
        "a realm string (empty: the first domain or the host name)",
        "digest realm",
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
        "failed authentications per source or user before blocking",
    ),
    Key(
        "auth.block_seconds",
        300,
        _int_range(1, 86400),
        "seconds, 1..86400",
        "how long a source or user stays blocked after too many failures",
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
        "a list of IP addresses (one per family)",
        "relay addresses (default: the SIP listen addresses)",
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
        _list_of(_str),
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
        _optional_str,
        "empty (discover) or an IPv6 prefix like 64:ff9b::/96",
        "NAT64 prefix",
    ),
)

_BY_PATH = {k.path: k for k in KEYS}


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration; ``values`` maps ``section.name`` to typed values."""

    values: Mapping[str, Any]
    source: Path | None = None
    overridden: frozenset[str] = field(default_factory=frozenset)

    def __getitem__(self, path: str) -> Any:
        return self.values[path]

    @property
    def data_dir(self) -> Path:
        configured = self.values["general.data_dir"]
        if configured:
            return Path(configured).expanduser()
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(state) / "rtc64"

    def describe(self) -> list[tuple[str, str]]:
        """``(key, value)`` pairs for logging, secrets masked."""
        rows = []
        for key in KEYS:
            value = self.values[key.path]
            if key.path == "ng.interfaces":
                shown = ", ".join(f"{n}={f.label}" for n, f in value) or "(built-in only)"
            elif key.path == "auth.users":
                shown = ", ".join(f"{name}:***" for name, _ in value) or "(none)"
            elif isinstance(value, tuple) and key.path != "media.ports":
                shown = ", ".join(str(v) for v in value) or "(none)"
            elif key.path == "media.ports":
                shown = f"{value[0]}-{value[1]}"
            else:
                shown = "(none)" if value in (None, "") else str(value)
            rows.append((key.path, shown))
        return rows


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
    _check_consistency(values)
    return Config(values=values, source=path, overridden=overridden)


def _sections() -> Sequence[str]:
    return sorted({k.path.split(".", 1)[0] for k in KEYS})


def _check_consistency(values: Mapping[str, Any]) -> None:
    low, high = values["registrar.min_expires"], values["registrar.max_expires"]
    if low > high:
        raise ConfigError("registrar.min_expires", low, f"at most registrar.max_expires ({high})")
    default = values["registrar.default_expires"]
    if not low <= default <= high:
        raise ConfigError(
            "registrar.default_expires",
            default,
            f"between registrar.min_expires ({low}) and max_expires ({high})",
        )
    seen: set[tuple[str, str, int]] = set()
    for spec in values["sip.listen"]:
        ident = (spec.transport.value, spec.address.compressed, spec.port)
        if ident in seen:
            raise ConfigError("sip.listen", str(spec), "each endpoint listed once")
        seen.add(ident)
    if not values["auth.algorithms"]:
        raise ConfigError("auth.algorithms", [], _BY_PATH["auth.algorithms"].expected)
    store = values["store.url"]
    if not (store == "sqlite" or store.startswith(("sqlite:///", "redis://"))):
        raise ConfigError("store.url", store, _BY_PATH["store.url"].expected)
