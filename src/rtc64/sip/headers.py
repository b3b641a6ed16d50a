"""Header lines: name table, lookups, and typed parsers for headers read on demand.

Rules (RFC 3261 §7.3, §20 and §25.1; compact forms from §7.3.3 and the IANA SIP
parameters registry):

- A ``Header`` is one line as received: ``name`` as on the wire (without the LWS before
  ``:``), ``value`` with folding collapsed and surrounding LWS removed. Unknown headers pass
  through byte-exact.
- ``header_key`` maps any spelling to the canonical key: lower-case long form
  (``v``/``VIA``/``Via`` -> ``via``). Names must be tokens (RFC 3261 ``header-name``).
- Comma-list headers (``LIST_KEYS``) split at top-level commas; others never split
  (``Date``, ``Authorization``... have commas of their own).
- Headers the essentials do not need are parsed here when asked (``contacts``,
  ``routes``, ``expires``, ``date``, ...). ``validate`` runs every typed parser on a message
  (strict checking: what ``rtc64 sip check`` and UAS/registrar code use).
- delta-seconds (Expires, Contact ``expires``) are 0..2^32-1 (RFC 4475 §3.1.2.4).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

from rtc64.sip.grammar import (
    TOKEN_CHARS,
    WS,
    bad,
    is_token,
    parse_params,
    parse_uint,
    show,
    split_top,
)
from rtc64.sip.nameaddr import NameAddr, parse_name_addr

MAX_DELTA = 2**32 - 1

COMPACT: dict[bytes, bytes] = {
    b"a": b"accept-contact",
    b"b": b"referred-by",
    b"c": b"content-type",
    b"d": b"request-disposition",
    b"e": b"content-encoding",
    b"f": b"from",
    b"i": b"call-id",
    b"j": b"reject-contact",
    b"k": b"supported",
    b"l": b"content-length",
    b"m": b"contact",
    b"n": b"identity-info",
    b"o": b"event",
    b"r": b"refer-to",
    b"s": b"subject",
    b"t": b"to",
    b"u": b"allow-events",
    b"v": b"via",
    b"x": b"session-expires",
    b"y": b"identity",
}
"""Compact form -> canonical key (RFC 3261 §7.3.3, IANA registry)."""

_SPELLING: dict[bytes, bytes] = {
    name.lower(): name
    for name in (
        b"Accept",
        b"Accept-Contact",
        b"Accept-Encoding",
        b"Accept-Language",
        b"Alert-Info",
        b"Allow",
        b"Allow-Events",
        b"Authentication-Info",
        b"Authorization",
        b"Call-ID",
        b"Call-Info",
        b"Contact",
        b"Content-Disposition",
        b"Content-Encoding",
        b"Content-Language",
        b"Content-Length",
        b"Content-Type",
        b"CSeq",
        b"Date",
        b"Error-Info",
        b"Event",
        b"Expires",
        b"From",
        b"Identity",
        b"Identity-Info",
        b"In-Reply-To",
        b"Max-Forwards",
        b"Min-Expires",
        b"MIME-Version",
        b"Organization",
        b"Path",
        b"Priority",
        b"Proxy-Authenticate",
        b"Proxy-Authorization",
        b"Proxy-Require",
        b"Reason",
        b"Record-Route",
        b"Refer-To",
        b"Referred-By",
        b"Reject-Contact",
        b"Reply-To",
        b"Request-Disposition",
        b"Require",
        b"Retry-After",
        b"Route",
        b"RSeq",
        b"RAck",
        b"Server",
        b"Service-Route",
        b"Session-Expires",
        b"Subject",
        b"Supported",
        b"Timestamp",
        b"To",
        b"Unsupported",
        b"User-Agent",
        b"Via",
        b"Warning",
        b"WWW-Authenticate",
    )
}

LIST_KEYS = frozenset(
    (
        b"accept",
        b"accept-contact",
        b"accept-encoding",
        b"accept-language",
        b"alert-info",
        b"allow",
        b"allow-events",
        b"call-info",
        b"contact",
        b"content-encoding",
        b"content-language",
        b"error-info",
        b"in-reply-to",
        b"path",
        b"proxy-require",
        b"reason",
        b"record-route",
        b"reject-contact",
        b"request-disposition",
        b"require",
        b"route",
        b"service-route",
        b"supported",
        b"unsupported",
        b"via",
        b"warning",
    )
)
"""Headers whose value is a comma-separated list (RFC 3261 §7.3.1)."""

KEY_CACHE: dict[bytes, bytes] = {}
KEY_CACHE_MAX = 4096


def header_key(name: bytes) -> bytes:
    """Canonical key of a header name: lower-case long form. Raises on a non-token name."""
    key = KEY_CACHE.get(name)
    if key is not None:
        return key
    if not is_token(name):
        raise bad(f"invalid header name {show(name)}")
    low = name.lower()
    key = COMPACT.get(low, low)
    if len(KEY_CACHE) < KEY_CACHE_MAX:
        KEY_CACHE[name] = key
    return key


def wire_name(key: bytes) -> bytes:
    """The usual spelling of a header for messages we write (``call-id`` -> ``Call-ID``)."""
    key = header_key(key)
    name = _SPELLING.get(key)
    if name is not None:
        return name
    return b"-".join(part[:1].upper() + part[1:] for part in key.split(b"-"))


for _name in [*_SPELLING.values(), *(n.lower() for n in _SPELLING.values())]:
    header_key(_name)
for _c in COMPACT:
    header_key(_c)
    header_key(_c.upper())


class Header(NamedTuple):
    """One header line: ``name`` as on the wire, ``value`` with folding collapsed.

    A named tuple rather than a dataclass: the parser makes one per line of every
    message, and a tuple is several times cheaper to build than a frozen dataclass.
    """

    name: bytes
    value: bytes

    @property
    def key(self) -> bytes:
        """Canonical lower-case long-form name."""
        return header_key(self.name)


def build_index(headers: Iterable[Header]) -> dict[bytes, list[int]]:
    """Map each canonical key to the positions of its lines."""
    index: dict[bytes, list[int]] = {}
    for i, h in enumerate(headers):
        key = header_key(h.name)
        slot = index.get(key)
        if slot is None:
            index[key] = [i]
        else:
            slot.append(i)
    return index


def split_list(value: bytes, what: str) -> list[bytes]:
    """Split a list value at top-level commas; empty elements are refused."""
    out = []
    for part in split_top(value, b","):
        part = part.strip(WS)  # noqa: PLW2901 - the stripped element replaces the raw one
        if not part:
            raise bad(f"empty element in {what} list")
        out.append(part)
    return out


class HasHeaders(Protocol):
    """What ``HeaderAccess`` reads: the lines and their (lazily built) index."""

    @property
    def headers(self) -> tuple[Header, ...]: ...

    @property
    def index(self) -> dict[bytes, list[int]]: ...


class HeaderLookup(HasHeaders, Protocol):
    """A message seen through ``HeaderAccess`` (what the typed parsers below take)."""

    def key_index(self) -> dict[bytes, list[int]]: ...
    def has(self, name: bytes) -> bool: ...
    def get(self, name: bytes) -> bytes | None: ...
    def get_all(self, name: bytes) -> tuple[bytes, ...]: ...
    def lines(self, name: bytes) -> tuple[Header, ...]: ...
    def values(self, name: bytes) -> tuple[bytes, ...]: ...


def key_index(msg: HasHeaders) -> dict[bytes, list[int]]:
    """Canonical key -> line positions (built on first use for hand-made messages)."""
    index = msg.index
    if not index and msg.headers:
        index.update(build_index(msg.headers))
    return index


def _slots(msg: HasHeaders, name: bytes) -> list[int]:
    return key_index(msg).get(header_key(name), [])


def _get_all(msg: HasHeaders, name: bytes) -> tuple[bytes, ...]:
    h = msg.headers
    return tuple(h[i].value for i in _slots(msg, name))


class HeaderAccess:
    """Header lookups shared by ``Request`` and ``Response`` (any spelling of a name).

    The mixin declares no attributes (``self`` is typed ``HasHeaders``): mypyc orders a
    native base class's attributes before the dataclass's own fields, which would break
    the dataclass field order of ``Request``/``Response`` in the compiled build.
    """

    __slots__ = ()

    def key_index(self: HasHeaders) -> dict[bytes, list[int]]:
        """Canonical key -> line positions (built on first use for hand-made messages)."""
        return key_index(self)

    def has(self: HasHeaders, name: bytes) -> bool:
        return header_key(name) in key_index(self)

    def get(self: HasHeaders, name: bytes) -> bytes | None:
        """Value of the first line with this name, or ``None``."""
        slots = _slots(self, name)
        return self.headers[slots[0]].value if slots else None

    def get_all(self: HasHeaders, name: bytes) -> tuple[bytes, ...]:
        """Values of every line with this name, in order."""
        return _get_all(self, name)

    def lines(self: HasHeaders, name: bytes) -> tuple[Header, ...]:
        h = self.headers
        return tuple(h[i] for i in _slots(self, name))

    def values(self: HasHeaders, name: bytes) -> tuple[bytes, ...]:
        """List elements across every line, split at top-level commas."""
        key = header_key(name)
        what = key.decode("ascii")
        out: list[bytes] = []
        for v in _get_all(self, key):
            out += split_list(v, what)
        return tuple(out)


class Star(enum.Enum):
    """``Contact: *`` (REGISTER removing every binding, RFC 3261 §10.2.2)."""

    STAR = "*"


STAR = Star.STAR


def contacts(msg: HeaderLookup) -> tuple[NameAddr, ...] | Star:
    """Every Contact value in order, or ``STAR``; checks ``expires`` and ``q``."""
    values = msg.values(b"contact")
    if b"*" in values:
        if len(values) != 1:
            raise bad("Contact '*' mixed with other contacts")
        return STAR
    out = tuple(parse_name_addr(v, "Contact") for v in values)
    for c in out:
        contact_expires(c)
        contact_q(c)
    return out


def contact_expires(contact: NameAddr) -> int | None:
    v = contact.param(b"expires")
    return None if v is None else parse_uint(v, "Contact expires", MAX_DELTA)


def contact_q(contact: NameAddr) -> float | None:
    """The ``q`` preference 0..1 (at most three decimals), or ``None``."""
    v = contact.param(b"q")
    if v is None:
        return None
    whole, _, frac = v.partition(b".")
    if (
        whole not in (b"0", b"1")
        or len(frac) > 3
        or (frac and not frac.isdigit())
        or (whole == b"1" and frac.strip(b"0"))
    ):
        raise bad(f"invalid Contact q {show(v)}")
    return float(v)


def _name_addrs(msg: HeaderLookup, key: bytes, what: str) -> tuple[NameAddr, ...]:
    return tuple(parse_name_addr(v, what, angle=True) for v in msg.values(key))


def routes(msg: HeaderLookup) -> tuple[NameAddr, ...]:
    return _name_addrs(msg, b"route", "Route")


def record_routes(msg: HeaderLookup) -> tuple[NameAddr, ...]:
    return _name_addrs(msg, b"record-route", "Record-Route")


def paths(msg: HeaderLookup) -> tuple[NameAddr, ...]:
    return _name_addrs(msg, b"path", "Path")


def service_routes(msg: HeaderLookup) -> tuple[NameAddr, ...]:
    return _name_addrs(msg, b"service-route", "Service-Route")


def _single(msg: HeaderLookup, key: bytes, what: str) -> bytes | None:
    values = msg.get_all(key)
    if not values:
        return None
    if len(values) > 1:
        raise bad(f"multiple {what} headers")
    return values[0]


def _delta(msg: HeaderLookup, key: bytes, what: str) -> int | None:
    v = _single(msg, key, what)
    return None if v is None else parse_uint(v, what, MAX_DELTA)


def expires(msg: HeaderLookup) -> int | None:
    """``Expires`` in seconds (0..2^32-1), or ``None``."""
    return _delta(msg, b"expires", "Expires")


def min_expires(msg: HeaderLookup) -> int | None:
    return _delta(msg, b"min-expires", "Min-Expires")


_WKDAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = tuple(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())


def date(msg: HeaderLookup) -> datetime | None:
    """``Date`` as an aware UTC datetime (RFC 3261 §20.17: rfc1123-date, GMT only)."""
    v = _single(msg, b"date", "Date")
    if v is None:
        return None
    wkday, comma, rest = v.partition(b",")
    parts = rest[1:].split(b" ")
    if not comma or rest[:1] != b" " or wkday not in _WKDAYS or len(parts) != 5:
        raise bad(f"invalid Date {show(v)}")
    day, month, year, clock, zone = parts
    if zone != b"GMT":
        raise bad(f"Date time zone {show(zone)} is not GMT")
    hms = clock.split(b":")
    fields = [day, year, *hms]
    if month not in _MONTHS or len(hms) != 3 or not all(f.isdigit() for f in fields):
        raise bad(f"invalid Date {show(v)}")
    if len(day) != 2 or len(year) != 4 or any(len(f) != 2 for f in hms):
        raise bad(f"invalid Date {show(v)}")
    try:
        hh, mm, ss = (int(f) for f in hms)
        when = datetime(int(year), _MONTHS.index(month) + 1, int(day), hh, mm, ss, tzinfo=UTC)
    except ValueError:
        raise bad(f"invalid Date {show(v)}") from None
    if _WKDAYS[when.weekday()] != wkday:
        raise bad(f"Date weekday {show(wkday)} does not match the date")
    return when


def content_type(msg: HeaderLookup) -> bytes | None:
    """The media type ``type/subtype`` in lower case (parameters checked, then dropped)."""
    v = _single(msg, b"content-type", "Content-Type")
    if v is None:
        return None
    semi = v.find(b";")
    media = (v if semi < 0 else v[:semi]).strip(WS)
    kind, slash, sub = media.partition(b"/")
    kind, sub = kind.strip(WS), sub.strip(WS)
    if not slash or not is_token(kind) or not is_token(sub):
        raise bad(f"invalid Content-Type {show(v)}")
    if semi >= 0:
        parse_params(v[semi:], "Content-Type")
    return kind.lower() + b"/" + sub.lower()


def tokens(msg: HeaderLookup, name: bytes) -> tuple[bytes, ...]:
    """Token list headers: Require, Proxy-Require, Supported, Unsupported, Allow..."""
    key = header_key(name)
    out = msg.values(key)
    for t in out:
        if t.translate(None, TOKEN_CHARS):
            raise bad(f"invalid token {show(t)} in {key.decode('ascii')}")
    return out


def _tokens_of(key: bytes) -> Callable[[HeaderLookup], object]:
    return lambda msg: tokens(msg, key)


VALIDATORS: dict[bytes, Callable[[HeaderLookup], object]] = {
    b"contact": contacts,
    b"route": routes,
    b"record-route": record_routes,
    b"path": paths,
    b"service-route": service_routes,
    b"expires": expires,
    b"min-expires": min_expires,
    b"date": date,
    b"content-type": content_type,
    b"require": _tokens_of(b"require"),
    b"proxy-require": _tokens_of(b"proxy-require"),
    b"supported": _tokens_of(b"supported"),
    b"unsupported": _tokens_of(b"unsupported"),
    b"allow": _tokens_of(b"allow"),
}
"""Typed parser per header key; ``validate`` runs those present in a message."""


def validate(msg: HeaderLookup) -> None:
    """Parse every header that has a typed parser; raise ``RemoteProtocolError`` if bad."""
    for key, check in VALIDATORS.items():
        if key in msg.key_index():
            check(msg)
