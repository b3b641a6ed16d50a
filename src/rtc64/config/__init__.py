"""Validated configuration: embedded defaults, an optional TOML file, command-line overrides.

Every key has a default, so no file is needed. A key is written ``section.name`` (TOML
table ``[section]``, key ``name``). Precedence: defaults < file < command line. Any bad
value raises ``ConfigError`` naming the key, the value and the expected form; unknown
keys are errors too (a typo must not silently fall back to a default).

The schema is one table, ``KEYS``, made of each part's rows (``keys``: the general, SIP,
registrar, auth, store, media, ng, DNS, NAT64 and HEP tables; ``keepalive``, ``turn``,
``web``, ``tunnel``: their own modules, with their sections and checks; ``convert``: the
value converters): adding a setting means adding one row there and one field to its
section's dataclass (a unit test checks they match). Services never
see this module: the composition root hands each its section (``cfg.sip``, ``cfg.media``...)
or a settings object built from it.
"""

from __future__ import annotations

import os
import platform
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from rtc64.config.convert import (
    DetailError,
    IPNetwork,
    Key,
)
from rtc64.config.keepalive import KEEPALIVE_KEYS, KeepaliveSection
from rtc64.config.keys import (
    BASE_KEYS,
    DEFAULT_LISTEN,
    HEP_KEYS,
    LOG_FORMATS,
    LOG_LEVELS,
    MEDIA_POLICIES,
)
from rtc64.config.tunnel import (
    TUNNEL_BACKENDS,
    TUNNEL_KEYS,
    TunnelSection,
    check_tunnel,
    tunnel_runs,
)
from rtc64.config.turn import DEFAULT_TURN_LISTEN, TURN_KEYS, TurnSection, check_turn, turn_runs
from rtc64.config.web import WEB_KEYS, WebSection
from rtc64.errors import ConfigError
from rtc64.net.address import Family, IPAddress, format_hostport, parse_hostport
from rtc64.net.endpoint import ListenSpec

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_TURN_LISTEN",
    "KEYS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MEDIA_POLICIES",
    "SECTIONS",
    "TUNNEL_BACKENDS",
    "AuthSection",
    "Config",
    "ConfigError",
    "DnsSection",
    "GeneralSection",
    "HepSection",
    "IPNetwork",
    "KeepaliveSection",
    "Key",
    "MediaSection",
    "Nat64Section",
    "NgSection",
    "RegistrarSection",
    "SipSection",
    "StoreSection",
    "TunnelSection",
    "TurnSection",
    "WebSection",
    "data_dir_error",
    "load",
    "realm_of",
    "tunnel_runs",
    "turn_runs",
]

KEYS: tuple[Key, ...] = (
    *BASE_KEYS,
    *KEEPALIVE_KEYS,
    *TURN_KEYS,
    *HEP_KEYS,
    *WEB_KEYS,
    *TUNNEL_KEYS,
)

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
    spread: str
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
class HepSection:
    collector: ListenSpec | None
    capture_id: int


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
    except DetailError as exc:
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
    check_turn(cfg)
    check_tunnel(cfg)


def _check_advertise(addresses: Sequence[IPAddress]) -> None:
    seen: set[Family] = set()
    for address in addresses:
        family = Family.INET6 if address.version == 6 else Family.INET
        if family in seen:
            raise ConfigError("media.advertise", str(address), "at most one address per family")
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            raise ConfigError("media.advertise", str(address), "a unicast address peers reach")
        seen.add(family)
