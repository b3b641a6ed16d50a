"""Via header values (one ``via-parm`` each).

Rules (RFC 3261 §18.2.2, §20.42 and §25.1, RFC 3581 rport, RFC 5118 §4.5):

- ``sent-protocol LWS sent-by *( SEMI via-params )``; LWS is allowed around ``/``, around
  the ``:`` of sent-by and around ``;`` / ``=`` (RFC 4475 wsinv).
- The protocol must be ``SIP/2.0``; another version answers 505. Any transport token is
  accepted (UDP, TCP, TLS, SCTP, WS, WSS, or unknown ones) and stored upper-case.
- sent-by is a host and optional port via ``rtc64.net.address``.
- Parameters are kept as written, in order. Known ones are checked when parsed:
  ``branch`` token, ``received`` an IP address (IPv6 with or without brackets, RFC 5118
  §4.5), ``rport`` empty or a port, ``maddr`` a host, ``ttl`` 0..255. Empty parameters
  (``;;``) are refused (RFC 4475 badinv01).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import (
    Host,
    IPAddress,
    format_host,
    format_hostport,
    parse_host,
    parse_port,
)
from rtc64.sip.grammar import (
    TOKEN_CHARS,
    WS,
    Params,
    bad,
    format_params,
    has_param,
    param_value,
    parse_params,
    parse_uint,
    show,
)
from rtc64.sip.uri import cached_hostport, cached_ip

MAGIC_COOKIE = b"z9hG4bK"
"""RFC 3261 §8.1.1.7: branches that start with this follow RFC 3261 transaction rules."""


@dataclass(frozen=True, slots=True, init=False)
class Via:
    """One Via hop: transport, sent-by and parameters (as written)."""

    transport: bytes
    host: Host
    port: int | None = None
    params: Params = ()

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self, transport: bytes, host: Host, port: int | None = None, params: Params = ()
    ) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "params", params)

    @property
    def branch(self) -> bytes | None:
        return param_value(self.params, b"branch")

    @property
    def received(self) -> IPAddress | None:
        v = param_value(self.params, b"received")
        return None if v is None else cached_ip(v)

    @property
    def has_rport(self) -> bool:
        """True when ``rport`` is present, with or without a value (RFC 3581)."""
        return has_param(self.params, b"rport")

    @property
    def rport(self) -> int | None:
        """The ``rport`` value; ``None`` when absent or written without a value."""
        v = param_value(self.params, b"rport")
        return None if v is None else parse_port(v)

    @property
    def maddr(self) -> Host | None:
        v = param_value(self.params, b"maddr")
        return None if v is None else parse_host(v)

    @property
    def ttl(self) -> int | None:
        v = param_value(self.params, b"ttl")
        return None if v is None else int(v)

    @property
    def rfc3261_branch(self) -> bool:
        """True if the branch is the magic cookie plus something (RFC 3261 §17.2.3
        matching); a bare cookie (RFC 4475 badbranch) falls back to RFC 2543 rules."""
        b = self.branch
        return b is not None and b.startswith(MAGIC_COOKIE) and len(b) > len(MAGIC_COOKIE)

    def __bytes__(self) -> bytes:
        return format_via(self)


_TRANSPORTS = {t: t.upper() for t in (b"UDP", b"TCP", b"TLS", b"SCTP", b"WS", b"WSS")}
_TRANSPORTS.update({t.lower(): t for t in list(_TRANSPORTS.values())})


def _split_protocol(value: bytes) -> tuple[bytes, bytes]:
    """Return ``(transport, rest)`` after ``SIP / 2.0 / transport LWS``."""
    if value[:8] == b"SIP/2.0/" or value[:8].upper() == b"SIP/2.0/":
        rest = value[8:]
    else:
        s1 = value.find(b"/")
        s2 = value.find(b"/", s1 + 1) if s1 >= 0 else -1
        if s2 < 0:
            raise bad(f"invalid Via sent-protocol in {show(value)}")
        name = value[:s1].strip(WS)
        version = value[s1 + 1 : s2].strip(WS)
        if name.upper() != b"SIP" or not version:
            raise bad(f"invalid Via sent-protocol in {show(value)}")
        if version != b"2.0":
            raise RemoteProtocolError(
                f"Version Not Supported: Via protocol SIP/{show(version)}", 505
            )
        rest = value[s2 + 1 :].lstrip(WS)
    end = rest.find(b" ")
    tab = rest.find(b"\t")
    if end < 0 or 0 <= tab < end:
        end = tab
    if end < 0:
        raise bad("missing Via sent-by")
    transport = rest[:end]
    known = _TRANSPORTS.get(transport)
    if known is None:
        if not transport or transport.translate(None, TOKEN_CHARS):
            raise bad(f"invalid Via transport {show(transport)}")
        known = transport.upper()
    return known, rest[end + 1 :].lstrip(WS)


def _sent_by(text: bytes) -> tuple[Host, int | None]:
    if text.find(b" ") >= 0 or text.find(b"\t") >= 0:
        text = text.strip(WS)
        # Only LWS around the ':' of "host : port" is legal (COLON = SWS ":" SWS).
        words = text.split()
        for left, right in pairwise(words):
            if not (left.endswith(b":") or right.startswith(b":")):
                raise bad(f"invalid Via sent-by {show(text)}")
        text = b"".join(words)
    if not text:
        raise bad("missing Via sent-by")
    hp = cached_hostport(text, "Via sent-by")
    return hp.host, hp.port


def parse_via(value: bytes) -> Via:
    """Parse one via-parm (a Via line already split at top-level commas, stripped)."""
    if not value:
        raise bad("empty Via value")
    transport, rest = _split_protocol(value)
    semi = rest.find(b";")
    if semi < 0:
        host, port = _sent_by(rest)
        return Via(transport, host, port)
    host, port = _sent_by(rest[:semi])
    params = parse_params(rest[semi:], "Via")
    for name, val in params:
        _check_param(name.lower(), val)
    return Via(transport, host, port, params)


def _check_param(name: bytes, val: bytes | None) -> None:
    if name == b"branch":
        if val is None or val.translate(None, TOKEN_CHARS):
            raise bad("invalid Via branch")
        return
    if name not in _CHECKED:
        return
    label = name.decode("ascii")
    if val is None:
        if name == b"rport":
            return
        raise bad(f"Via {label} without value")
    try:
        if name == b"received":
            cached_ip(val)
        elif name == b"maddr":
            parse_host(val)
        elif name == b"rport":
            parse_port(val)
        else:
            parse_uint(val, "ttl", 255)
    except RemoteProtocolError as exc:
        raise bad(f"{exc.reason.removeprefix('Bad Request: ')} in Via {label}") from None


_CHECKED = frozenset((b"received", b"maddr", b"rport", b"ttl"))


def format_via(via: Via) -> bytes:
    """Write ``SIP/2.0/TRANSPORT host[:port];params``."""
    hp = format_hostport(via.host, via.port).encode("ascii")
    return b"SIP/2.0/" + via.transport + b" " + hp + format_params(via.params)


def via_host_text(via: Via) -> str:
    """The sent-by host written for SIP (IPv6 bracketed)."""
    return format_host(via.host)
