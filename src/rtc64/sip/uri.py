"""SIP, SIPS, tel and other absolute URIs.

Rules (RFC 3261 §19.1 and §25.1, RFC 3966 for tel, RFC 5118 for IPv6 hosts):

- ``sip:``/``sips:`` URIs are parsed into user, password, host, port, uri-parameters and
  headers. Parts stay as written (``%HH`` escapes kept) so they re-serialise unchanged;
  ``unescaped_user``/``param()`` and ``uri_equal`` compare them unescaped (§19.1.4).
- The user part ends at the first ``@`` (no later part may contain one), so a user part
  may carry ``;`` ``?`` ``/`` (``sip:user;par=u%40example.net@example.com``).
- Hosts go through ``rtc64.net.address`` (the one host parser/formatter): ``[v6]`` with or
  without port, IPv4, domain names; a bare IPv6 host is refused (RFC 5118 §4.2).
- ``tel:`` keeps the number and its parameters; any other scheme is an ``AbsoluteUri``
  kept opaque (characters checked against RFC 3261 ``uric``).
- Scheme names are case-insensitive and stored lower-case.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import (
    Host,
    HostPort,
    IPAddress,
    format_hostport,
    parse_hostport,
    parse_ip,
)
from rtc64.net.address import clear_caches as clear_address_caches
from rtc64.sip.grammar import (
    HEADER_CHARS,
    PARAM_CHARS,
    PASSWORD_CHARS,
    SCHEME_CHARS,
    URIC_CHARS,
    USER_CHARS,
    Params,
    bad,
    check_escapes,
    format_params,
    show,
    unescape,
)

_TEL_CHARS = b"0123456789abcdefABCDEF*#+-.()"
_ALPHA = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Parameters whose presence in only one URI makes two SIP URIs differ (RFC 3261 §19.1.4).
_MUST_MATCH = (b"user", b"ttl", b"method", b"maddr", b"transport")


@dataclass(frozen=True, slots=True, init=False)
class SipUri:
    """A ``sip:`` or ``sips:`` URI; byte parts are as written (escapes kept)."""

    host: Host
    port: int | None = None
    user: bytes | None = None
    password: bytes | None = None
    params: Params = ()
    headers: tuple[tuple[bytes, bytes], ...] = ()
    scheme: bytes = b"sip"

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        host: Host,
        port: int | None = None,
        user: bytes | None = None,
        password: bytes | None = None,
        params: Params = (),
        headers: tuple[tuple[bytes, bytes], ...] = (),
        scheme: bytes = b"sip",
    ) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "password", password)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "scheme", scheme)

    @property
    def secure(self) -> bool:
        return self.scheme == b"sips"

    @property
    def unescaped_user(self) -> bytes | None:
        """The user part with ``%HH`` escapes decoded (``%00`` becomes a NUL octet)."""
        return None if self.user is None else unescape(self.user)

    def param(self, name: bytes) -> bytes | None:
        """Unescaped value of uri-parameter ``name`` (lower-case); ``b""`` if valueless."""
        for n, v in self.params:
            if unescape(n).lower() == name:
                return b"" if v is None else unescape(v)
        return None

    def has_param(self, name: bytes) -> bool:
        return self.param(name) is not None

    def __bytes__(self) -> bytes:
        return format_uri(self)


@dataclass(frozen=True, slots=True, init=False)
class TelUri:
    """A ``tel:`` URI (RFC 3966): the number as written and its parameters."""

    number: bytes
    params: Params = ()

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, number: bytes, params: Params = ()) -> None:
        object.__setattr__(self, "number", number)
        object.__setattr__(self, "params", params)

    def __bytes__(self) -> bytes:
        return format_uri(self)


@dataclass(frozen=True, slots=True, init=False)
class AbsoluteUri:
    """A URI of any other scheme, kept opaque (``opaque`` is everything after ``:``)."""

    scheme: bytes
    opaque: bytes

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, scheme: bytes, opaque: bytes) -> None:
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "opaque", opaque)

    def __bytes__(self) -> bytes:
        return format_uri(self)


Uri = SipUri | TelUri | AbsoluteUri


_SIP_SCHEMES = frozenset((b"sip", b"sips"))
_URIS: dict[bytes, Uri] = {}
_CACHE_MAX = 4096


def clear_caches() -> None:
    """Empty the parse caches (they refill on demand). After a load peak their entries,
    spread over the heap, would keep freed memory from going back to the system."""
    _URIS.clear()
    _HOSTPORTS.clear()
    _IPS.clear()
    clear_address_caches()


def parse_uri(value: bytes, what: str = "URI") -> Uri:
    """Parse an absolute URI; ``what`` names where it came from, for error reasons.

    Results are immutable and kept in a bounded cache (Request-URIs, From/To and Contact
    URIs repeat across a dialog and across calls); errors are never cached.
    """
    uri = _URIS.get(value)
    if uri is None:
        uri = _parse_uri(value, what)
        if len(_URIS) >= _CACHE_MAX:
            _URIS.clear()
        _URIS[value] = uri
    return uri


def _parse_uri(value: bytes, what: str) -> Uri:
    colon = value.find(b":")
    if colon <= 0:
        raise bad(f"invalid {what} {show(value)} (no scheme)")
    scheme = value[:colon]
    if scheme in _SIP_SCHEMES:
        return _parse_sip(scheme, value[colon + 1 :], what)
    if scheme.translate(None, SCHEME_CHARS) or scheme[0] not in _ALPHA:
        raise bad(f"invalid scheme {show(scheme)} in {what}")
    scheme = scheme.lower()
    rest = value[colon + 1 :]
    if scheme in _SIP_SCHEMES:
        return _parse_sip(scheme, rest, what)
    if scheme == b"tel":
        return _parse_tel(rest, what)
    if not rest or rest.translate(None, URIC_CHARS):
        raise bad(f"invalid {what} {show(value)}")
    check_escapes(rest, what)
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: bytes, rest: bytes, what: str) -> SipUri:
    user: bytes | None = None
    password: bytes | None = None
    at = rest.find(b"@")
    if at >= 0:
        user = rest[:at]
        rest = rest[at + 1 :]
        if user.find(b":") >= 0:
            user, _, password = user.partition(b":")
            if password.translate(None, PASSWORD_CHARS):
                raise bad(f"invalid password in {what}")
            check_escapes(password, what)
        if not user or user.translate(None, USER_CHARS):
            raise bad(f"invalid user part {show(user)} in {what}")
        if user.find(b"%") >= 0:
            check_escapes(user, what)
    # hostport ends at the first ';' or '?' (neither can occur inside an IPv6 reference).
    semi = rest.find(b";")
    q = rest.find(b"?")
    if semi < 0 and q < 0:
        if not rest:
            raise bad(f"missing host in {what}")
        hp = cached_hostport(rest, what)
        return SipUri(hp.host, hp.port, user, password, (), (), scheme)
    end = semi if q < 0 or 0 <= semi < q else q
    if end == 0:
        raise bad(f"missing host in {what}")
    hp = cached_hostport(rest[:end], what)
    params: Params = ()
    headers: tuple[tuple[bytes, bytes], ...] = ()
    ptext, q_, htext = rest[end:].partition(b"?")
    if ptext:
        params = _uri_params(ptext[1:], what)
    if q_:
        headers = _uri_headers(htext, what)
    return SipUri(hp.host, hp.port, user, password, params, headers, scheme)


_HOSTPORTS: dict[bytes, HostPort] = {}


def cached_hostport(text: bytes, what: str) -> HostPort:
    """``parse_hostport`` behind a bounded cache (a proxy sees the same hosts again and
    again; results are immutable). Errors name ``what`` and are never cached."""
    hp = _HOSTPORTS.get(text)
    if hp is None:
        try:
            hp = parse_hostport(text)
        except RemoteProtocolError as exc:
            raise bad(f"{exc.reason.removeprefix('Bad Request: ')} in {what}") from None
        if len(_HOSTPORTS) >= _CACHE_MAX:
            _HOSTPORTS.clear()
        _HOSTPORTS[text] = hp
    return hp


_IPS: dict[bytes, IPAddress] = {}


def cached_ip(text: bytes) -> IPAddress:
    """``parse_ip`` (bare or bracketed, RFC 5118 §4.5) behind a bounded cache."""
    ip = _IPS.get(text)
    if ip is None:
        ip = parse_ip(text)
        if len(_IPS) >= _CACHE_MAX:
            _IPS.clear()
        _IPS[text] = ip
    return ip


def _uri_params(text: bytes, what: str) -> Params:
    out: list[tuple[bytes, bytes | None]] = []
    for piece in text.split(b";"):
        name, eq, val = piece.partition(b"=")
        if not name or name.translate(None, PARAM_CHARS):
            raise bad(f"invalid uri-parameter {show(piece)} in {what}")
        check_escapes(piece, what)
        if eq:
            if not val or val.translate(None, PARAM_CHARS):
                raise bad(f"invalid uri-parameter {show(piece)} in {what}")
            out.append((name, val))
        else:
            out.append((name, None))
    return tuple(out)


def _uri_headers(text: bytes, what: str) -> tuple[tuple[bytes, bytes], ...]:
    out: list[tuple[bytes, bytes]] = []
    for piece in text.split(b"&"):
        name, eq, val = piece.partition(b"=")
        if not name or not eq or (name + val).translate(None, HEADER_CHARS):
            raise bad(f"invalid URI header {show(piece)} in {what}")
        check_escapes(piece, what)
        out.append((name, val))
    return tuple(out)


def _parse_tel(rest: bytes, what: str) -> TelUri:
    number, semi, ptext = rest.partition(b";")
    if not number or number.translate(None, _TEL_CHARS):
        raise bad(f"invalid telephone number {show(number)} in {what}")
    return TelUri(number, _uri_params(ptext, what) if semi else ())


def format_uri(uri: Uri) -> bytes:
    """Write a URI; hosts through ``format_hostport`` (IPv6 bracketed)."""
    if isinstance(uri, SipUri):
        parts = [uri.scheme, b":"]
        if uri.user is not None:
            parts.append(uri.user)
            if uri.password is not None:
                parts += (b":", uri.password)
            parts.append(b"@")
        parts.append(format_hostport(uri.host, uri.port).encode("ascii"))
        parts.append(format_params(uri.params))
        if uri.headers:
            parts.append(b"?" + b"&".join(n + b"=" + v for n, v in uri.headers))
        return b"".join(parts)
    if isinstance(uri, TelUri):
        return b"tel:" + uri.number + format_params(uri.params)
    return uri.scheme + b":" + uri.opaque


def _host_key(host: Host) -> object:
    return host.lower() if isinstance(host, str) else host


def uri_equal(a: Uri, b: Uri) -> bool:
    """URI equivalence (RFC 3261 §19.1.4 for SIP; tel/other: case-insensitive, unescaped)."""
    if isinstance(a, SipUri) and isinstance(b, SipUri):
        if a.scheme != b.scheme or a.port != b.port:
            return False
        if _host_key(a.host) != _host_key(b.host):
            return False
        if a.unescaped_user != b.unescaped_user:
            return False
        pa = None if a.password is None else unescape(a.password)
        pb = None if b.password is None else unescape(b.password)
        if pa != pb:
            return False
        ap = {unescape(n).lower(): v for n, v in a.params}
        bp = {unescape(n).lower(): v for n, v in b.params}
        for name in ap.keys() | bp.keys():
            va, vb = ap.get(name, ...), bp.get(name, ...)
            if va is ... or vb is ...:
                if name in _MUST_MATCH:
                    return False
                continue
            if not _same(va, vb):
                return False
        ah = {unescape(n).lower(): unescape(v) for n, v in a.headers}
        bh = {unescape(n).lower(): unescape(v) for n, v in b.headers}
        return ah == bh
    if isinstance(a, TelUri) and isinstance(b, TelUri):
        return a.number.lower() == b.number.lower() and _params_key(a.params) == _params_key(
            b.params
        )
    if isinstance(a, AbsoluteUri) and isinstance(b, AbsoluteUri):
        return a.scheme == b.scheme and unescape(a.opaque) == unescape(b.opaque)
    return False


def _same(a: object, b: object) -> bool:
    if isinstance(a, bytes) and isinstance(b, bytes):
        return unescape(a).lower() == unescape(b).lower()
    return a == b


def _params_key(params: Params) -> dict[bytes, bytes | None]:
    return {unescape(n).lower(): None if v is None else unescape(v).lower() for n, v in params}
