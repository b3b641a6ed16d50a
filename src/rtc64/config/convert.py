"""The converters of configuration values (raw TOML or command-line value in, typed value
out, ``ValueError``/``TypeError`` or ``DetailError`` on a bad one) and ``Key``, one row of
the schema; the loader (``rtc64.config.load``) turns a failure into a ``ConfigError``
naming the key, the value and its expected form."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import TypeVar

from rtc64.errors import RemoteProtocolError
from rtc64.net import rfc6052
from rtc64.net.address import Family, IPAddress, parse_hostport, parse_ip
from rtc64.net.endpoint import EndpointError, ListenSpec, Transport, parse_listen

IPNetwork = IPv4Network | IPv6Network
T = TypeVar("T")


# --- converters: each takes the raw TOML/CLI value and returns the typed value, or raises
# ValueError/TypeError; the loader turns that into a ConfigError with the key's form. ---


def as_str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no"):
        return value.lower() in ("true", "yes", "on", "1")
    raise TypeError


def int_range(low: int, high: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool):
            raise TypeError
        number = int(value) if isinstance(value, str) else value
        if not isinstance(number, int) or not low <= number <= high:
            raise ValueError
        return number

    return convert


def worker_ports(value: object) -> int:
    port = int_range(0, 65535)(value)
    if 0 < port < 1024:
        raise ValueError("below 1024")
    return port


def float_range(low: float, high: float) -> Callable[[object], float]:
    def convert(value: object) -> float:
        if isinstance(value, bool):
            raise TypeError
        number = float(value) if isinstance(value, str | int) else value
        if not isinstance(number, float) or not low <= number <= high:
            raise ValueError
        return number

    return convert


def choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError
        return value.lower()

    return convert


def list_of(item: Callable[[object], T]) -> Callable[[object], tuple[T, ...]]:
    def convert(value: object) -> tuple[T, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise TypeError
        return tuple(item(v) for v in value)

    return convert


class DetailError(ValueError):
    """A converter's own explanation, appended to the key's expected form."""


def as_listen(value: object) -> ListenSpec:
    try:
        return parse_listen(as_str(value))
    except EndpointError as exc:
        raise DetailError(str(exc)) from None


def as_network(value: object) -> IPNetwork:
    return ip_network(as_str(value), strict=False)


def as_address(value: object) -> IPAddress:
    try:
        return parse_ip(as_str(value))
    except RemoteProtocolError:
        raise ValueError from None


def port_range(value: object) -> tuple[int, int]:
    low_s, sep, high_s = as_str(value).partition("-")
    low, high = int(low_s), int(high_s) if sep else int(low_s)
    if not 1024 <= low < high <= 65535 or (high - low) < 3:
        raise ValueError
    # RTP takes even ports, RTCP the odd one above: start on an even port.
    return (low + (low % 2), high)


def trace_entry(value: object) -> IPNetwork | str:
    """A network (CIDR) or a SIP AOR (``sip:alice@example.net``) whose messages are traced."""
    text = as_str(value).strip()
    if text.lower().startswith(("sip:", "sips:")):
        scheme, _, rest = text.partition(":")
        user, at, host = rest.rpartition("@")
        if not at or not user or not host:
            raise DetailError(f"{text!r}: an AOR needs user@host")
        return f"{scheme.lower()}:{user}@{host.lower()}"
    return ip_network(text, strict=False)


def hep_collector(value: object) -> ListenSpec | None:
    text = as_str(value).strip()
    if not text:
        return None
    spec = as_listen(text)
    if spec.transport is not Transport.UDP or spec.address.is_unspecified or not spec.port:
        raise DetailError("the collector is udp:ADDRESS:PORT with a real address and port")
    return spec


def optional_str(value: object) -> str | None:
    text = as_str(value).strip()
    return text or None


def as_domain(value: object) -> str:
    text = as_str(value).strip().lower().rstrip(".")
    if not text or any(c.isspace() or c in "/:@[]" for c in text):
        raise ValueError
    return text


def tls_name(value: object) -> str:
    text = as_str(value).strip()
    try:
        return parse_ip(text.strip("[]")).compressed
    except RemoteProtocolError:
        return as_domain(text)


def as_users(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise TypeError
    users = []
    for entry in value:
        if not isinstance(entry, Mapping) or set(entry) != {"name", "password"}:
            raise ValueError
        users.append((as_str(entry["name"]), as_str(entry["password"])))
    return tuple(users)


def ng_listen(value: object) -> ListenSpec | None:
    text = as_str(value).strip()
    if not text:
        return None
    spec = as_listen(text)
    if spec.transport is not Transport.UDP or spec.advertise is not None:
        raise DetailError("the ng socket is udp:HOST:PORT")
    return spec


def nat64_prefix(value: object) -> str | None:
    """Empty (discover) or an RFC 6052 prefix, returned in its canonical form."""
    text = as_str(value).strip()
    if not text:
        return None
    try:
        return str(rfc6052.parse_prefix(text))
    except ValueError as exc:
        detail = str(exc).removeprefix(f"bad NAT64 prefix {text!r}: ")
        raise DetailError(detail.replace("expected an IPv6", "an IPv6")) from None


def dns_server(value: object) -> str:
    """``HOST[:PORT]`` or ``[v6]:PORT`` where HOST is an IP address (no name to resolve)."""
    text = as_str(value).strip()
    try:
        hostport = parse_hostport(text)
    except RemoteProtocolError:
        raise ValueError from None
    if isinstance(hostport.host, str):
        raise DetailError(f"{text!r} is a name, not an IP address")
    return text


SERVICES = ("sip", "media", "turn", "tunnel")


def as_services(value: object) -> tuple[str, ...]:
    """``["sip", "turn"]`` or ``"sip,turn"``: the services ``rtc64 serve`` runs, in order."""
    items = value if isinstance(value, list | tuple) else [value]
    names: list[str] = []
    for item in items:
        for part in as_str(item).split(","):
            name = part.strip().lower()
            if name not in SERVICES:
                raise DetailError(f"unknown service {part.strip()!r}")
            names.append(name)
    if not names:
        raise ValueError
    return tuple(dict.fromkeys(names))


def strict_network(value: object) -> IPNetwork:
    """A network in CIDR form (a bare address is a /32 or /128); host bits refused."""
    text = as_str(value).strip()
    try:
        return ip_network(text)
    except ValueError:
        try:
            loose = ip_network(text, strict=False)
        except ValueError:
            raise ValueError from None
        raise DetailError(f"{text} has bits set after the prefix (did you mean {loose}?)") from None


def as_secret(value: object) -> str:
    text = as_str(value)
    if not text or text != text.strip():
        raise DetailError("a secret is non-empty, without leading or trailing spaces")
    return text


FAMILY_NAMES = {"ipv4": Family.INET, "ip4": Family.INET, "ipv6": Family.INET6, "ip6": Family.INET6}


def interface_map(value: object) -> tuple[tuple[str, Family], ...]:
    """``{name = "ipv4"|"ipv6"}`` or ``["name=ipv4", ...]``: ng ``direction`` names."""
    if isinstance(value, Mapping):
        pairs = [(as_str(k), as_str(v)) for k, v in value.items()]
    else:
        pairs = [(n, f) for n, _, f in (v.partition("=") for v in list_of(as_str)(value))]
    table: dict[str, Family] = {}
    for raw_name, raw_family in pairs:
        name, family = raw_name.strip().lower(), raw_family.strip().lower()
        if not name or any(c.isspace() for c in name):
            raise DetailError(f"bad interface name {raw_name!r}")
        if family not in FAMILY_NAMES:
            raise DetailError(f"interface {name!r}: family must be ipv4 or ipv6")
        table[name] = FAMILY_NAMES[family]
    return tuple(sorted(table.items()))


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: where it lives, its default and how it is checked."""

    path: str
    default: object
    convert: Callable[[object], object]
    expected: str
    help: str
