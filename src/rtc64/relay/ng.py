# Rules (rtpengine's "ng" control protocol, as Kamailio's and OpenSIPS' rtpengine modules
# speak it; docs: rtpengine "ng_control_protocol"):
# - A datagram is ``COOKIE SP BENCODED-DICT``; the reply is ``COOKIE SP BENCODED-DICT``
#   with the same cookie. A datagram without a cookie cannot be answered: dropped, counted.
#   A cookie followed by something that is not a dictionary gets an error reply.
# - ``command`` selects ping/offer/answer/delete/query/list. Replies carry ``result``:
#   ``pong`` (ping), ``ok``, or ``error`` with ``error-reason``; ``warning`` is added when
#   something was ignored.
# - Keys are compared with spaces, dashes and underscores folded together and case ignored
#   ("address family", "address-family", "ICE" all match), like rtpengine does since 10.x.
#   Unknown keys and unknown flags are ignored. Entries of the ``flags`` list may also be
#   written ``key=value`` and ``replace-origin``/``SDES-off`` style (newer modules do).
# - A retransmission (same cookie, same bytes) within ``cache_ttl`` gets the cached reply
#   without running the command again (rtpengine's cookie cache); the cache is bounded.
# - Family choice, for the SDP sent on (``to_family``):
#   1. an ``address family`` key (IP4/IP6) wins;
#   2. else the second ``direction`` entry, looked up in the interface map (names are
#      case-insensitive; built in: ipv4/ip4/inet and ipv6/ip6/inet6; more are configured,
#      e.g. internal=ipv4, external=ipv6). An unknown name is ignored with a ``warning``,
#      as rtpengine falls back to its default interface;
#   3. else, for an offer, the family of the offer's own SDP (no bridging); for an answer,
#      the family the offer came from (remembered per call; see ``_offer_families``),
#      else the answer's own family.
# - ``trust address`` is rtpengine's default (SDP addresses are used); the flag
#   ``SIP source address`` turns it off. ``received from`` is passed on as the source.
"""rtpengine "ng" control protocol: parse, dispatch to a media engine, build replies."""

from __future__ import annotations

import enum
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from rtc64.errors import Rtc64Error
from rtc64.net.address import Family, IPAddress, parse_ip
from rtc64.relay.bencode import BencodeError, Encodable, Value, decode, encode
from rtc64.relay.ngreport import CallReport, report_dict

MAX_COOKIE = 256
MAX_DATAGRAM = 65535
CACHE_SIZE = 4096
CACHE_TTL = 30.0
LIST_LIMIT = 32
"""Calls a ``list`` reply holds unless the request says ``limit``."""

BUILTIN_INTERFACES: Mapping[str, Family] = {
    "ipv4": Family.INET,
    "ip4": Family.INET,
    "inet": Family.INET,
    "ipv6": Family.INET6,
    "ip6": Family.INET6,
    "inet6": Family.INET6,
}

_SDP_FAMILY_RE = re.compile(rb"^c=IN[ \t]+(IP[46])[ \t]", re.MULTILINE)


class IceMode(enum.Enum):
    """What to do with ICE attributes in the SDP sent on (``ICE`` key)."""

    DEFAULT = "default"
    """Keep ICE if the offer has it, replacing candidates with the relay's."""
    REMOVE = "remove"
    FORCE = "force"


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """Per-request relay options from the ng flags."""

    trust_address: bool = True
    """Use the SDP's addresses; False (``SIP source address``) uses ``received from``."""
    strict_source: bool = False
    """Drop media from any source but the latched one."""
    symmetric: bool = True
    """Latch onto where media comes from (``asymmetric`` turns this off)."""
    ice: IceMode = IceMode.DEFAULT
    replace_origin: bool = False
    replace_session_connection: bool = False
    family: Family | None = None
    """The ``address family`` override as given (None: not given)."""


class Command(enum.Enum):
    PING = "ping"
    OFFER = "offer"
    ANSWER = "answer"
    DELETE = "delete"
    QUERY = "query"
    LIST = "list"


class NgError(Rtc64Error):
    """A request the engine cannot run; ``reason`` goes into ``error-reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MediaEngine(Protocol):
    """What the ng protocol drives (rtpengine's operations)."""

    def offer(
        self,
        call_id: bytes,
        from_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
        options: MediaOptions,
    ) -> bytes: ...

    def answer(
        self,
        call_id: bytes,
        from_tag: bytes,
        to_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
        options: MediaOptions,
    ) -> bytes: ...

    def delete(
        self, call_id: bytes, from_tag: bytes | None = None, to_tag: bytes | None = None
    ) -> CallReport | None: ...

    def query(self, call_id: bytes) -> CallReport | None: ...

    def calls(self) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class NgRequest:
    """One decoded request, its ng keys mapped to engine arguments."""

    command: Command
    call_id: bytes = b""
    from_tag: bytes = b""
    to_tag: bytes | None = None
    sdp: bytes = b""
    family: Family | None = None
    """Explicit family for the recipient (``address family`` or ``direction``)."""
    from_family: Family | None = None
    """Family of the sender's side, from the first ``direction`` entry."""
    source: IPAddress | None = None
    """``received from``: where the SIP message carrying the SDP came from."""
    options: MediaOptions = MediaOptions()
    fatal: bool = False
    limit: int = LIST_LIMIT
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class NgStats:
    """Counters of the ng control protocol."""

    received: int = 0
    replies: int = 0
    errors: int = 0
    """Error replies sent (bad requests and failed commands)."""
    dropped: int = 0
    """Datagrams that could not be answered (no cookie)."""
    retransmissions: int = 0
    """Requests answered from the reply cache."""
    commands: dict[str, int] = field(default_factory=dict)


def interface_map(entries: Mapping[str, Family] | None = None) -> dict[str, Family]:
    """The built-in interface names plus ``entries`` (names folded to lower case)."""
    table = dict(BUILTIN_INTERFACES)
    for name, family in (entries or {}).items():
        table[name.lower()] = family
    return table


def _fold(key: bytes) -> bytes:
    return key.lower().replace(b"-", b" ").replace(b"_", b" ")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def split_datagram(data: bytes) -> tuple[bytes, bytes]:
    """``(cookie, body)``; ``NgError`` (no reply possible) when there is no cookie."""
    cookie, sep, body = data.partition(b" ")
    if not sep or not cookie or len(cookie) > MAX_COOKIE or not cookie.isascii():
        raise NgError("no cookie")
    if any(c <= 0x20 or c == 0x7F for c in cookie):
        raise NgError("no cookie")
    return cookie, body


class _Params:
    """The request dictionary with folded keys, plus what the ``flags`` list carries."""

    def __init__(self, raw: Mapping[bytes, Value]) -> None:
        self.values: dict[bytes, Value] = {}
        self.flags: set[bytes] = set()
        for key, value in raw.items():
            folded = _fold(key)
            if folded == b"flags":
                if not isinstance(value, list):
                    raise NgError("'flags' must be a list")
                for flag in value:
                    if isinstance(flag, bytes):
                        self._flag(flag)
            else:
                self.values.setdefault(folded, value)

    def _flag(self, flag: bytes) -> None:
        name, sep, value = flag.partition(b"=")
        folded = _fold(name)
        if sep:
            self.values.setdefault(folded, value)
            return
        for prefix in (b"replace ", b"sdes "):
            if folded.startswith(prefix) and len(folded) > len(prefix):
                listed = self.values.setdefault(prefix.strip(), [])
                if isinstance(listed, list):
                    listed.append(name[len(prefix) :])
                return
        self.flags.add(folded)

    def string(self, key: bytes, *, required: str | None = None) -> bytes:
        value = self.values.get(key)
        if value is None or value == b"":
            if required:
                raise NgError(required)
            return b""
        if isinstance(value, int):
            return b"%d" % value
        if not isinstance(value, bytes):
            raise NgError(f"'{_text(key)}' must be a string")
        return value

    def strings(self, key: bytes) -> list[bytes]:
        value = self.values.get(key)
        if value is None:
            return []
        if isinstance(value, bytes):
            return [value]
        if not isinstance(value, list):
            raise NgError(f"'{_text(key)}' must be a list")
        return [item for item in value if isinstance(item, bytes)]

    def has(self, *flags: bytes) -> bool:
        return any(f in self.flags for f in flags)


def _family_token(value: bytes) -> Family:
    token = value.strip().lower()
    if token in (b"ip4", b"ipv4", b"inet", b"4"):
        return Family.INET
    if token in (b"ip6", b"ipv6", b"inet6", b"6"):
        return Family.INET6
    raise NgError(f"unknown address family {_text(value[:16])!r} (IP4 or IP6)")


def parse_request(
    body: bytes, interfaces: Mapping[str, Family], *, strict_source: bool = False
) -> NgRequest:
    """Map a request's bencoded dictionary to an ``NgRequest``; raises ``NgError``."""
    try:
        raw = decode(body, max_size=MAX_DATAGRAM)
    except BencodeError as exc:
        raise NgError(f"could not decode request: {exc.what} at offset {exc.offset}") from None
    if not isinstance(raw, dict):
        raise NgError("request is not a dictionary")
    params = _Params(raw)
    name = params.string(b"command", required="no command in request")
    try:
        command = Command(_text(name).lower())
    except ValueError:
        raise NgError(f"unknown command {_text(name[:32])!r}") from None
    if command is Command.PING:
        return NgRequest(Command.PING)
    if command is Command.LIST:
        limit = params.values.get(b"limit", LIST_LIMIT)
        if not isinstance(limit, int) or limit < 0:
            raise NgError("'limit' must be a non-negative integer")
        return NgRequest(Command.LIST, limit=limit)
    call_id = params.string(b"call id", required="no call-id in request")
    from_tag = params.string(b"from tag")
    to_tag = params.string(b"to tag") or None
    fatal = params.has(b"fatal")
    if command in (Command.DELETE, Command.QUERY):
        return NgRequest(command, call_id, from_tag, to_tag, fatal=fatal)
    if not from_tag:
        raise NgError("no from-tag in request")
    if command is Command.ANSWER and to_tag is None:
        raise NgError("no to-tag in request")
    sdp = params.string(b"sdp", required="no SDP body in request")
    warnings: list[str] = []
    family, from_family = _families(params, interfaces, warnings)
    source = _received_from(params)
    return NgRequest(
        command,
        call_id,
        from_tag,
        to_tag,
        sdp,
        family=family,
        from_family=from_family,
        source=source,
        options=_options(params, strict_source),
        fatal=fatal,
        warnings=tuple(warnings),
    )


def _families(
    params: _Params, interfaces: Mapping[str, Family], warnings: list[str]
) -> tuple[Family | None, Family | None]:
    explicit = params.string(b"address family")
    family = _family_token(explicit) if explicit else None
    looked_up: list[Family | None] = []
    for name in params.strings(b"direction")[:2]:
        found = interfaces.get(_text(name).lower())
        if found is None:
            warnings.append(f"unknown interface {_text(name[:32])!r} in direction, ignored")
        looked_up.append(found)
    from_family = looked_up[0] if looked_up else None
    if family is None and len(looked_up) == 2:
        family = looked_up[1]
    return family, from_family


def _received_from(params: _Params) -> IPAddress | None:
    entries = params.strings(b"received from")
    if len(entries) != 2:
        return None
    try:
        address = parse_ip(entries[1])
    except Rtc64Error:
        raise NgError(f"bad 'received from' address {_text(entries[1][:64])!r}") from None
    return address


def _options(params: _Params, strict_source: bool) -> MediaOptions:
    ice = params.string(b"ice").lower()
    ice_mode = {b"remove": IceMode.REMOVE, b"force": IceMode.FORCE}.get(ice, IceMode.DEFAULT)
    replace = {_fold(item) for item in params.strings(b"replace")}
    trust = params.has(b"trust address") or not params.has(b"sip source address")
    explicit = params.string(b"address family")
    return MediaOptions(
        trust_address=trust,
        strict_source=strict_source or params.has(b"strict source"),
        symmetric=not params.has(b"asymmetric"),
        ice=ice_mode,
        replace_origin=b"origin" in replace,
        replace_session_connection=bool(replace & {b"session connection", b"session c"}),
        family=_family_token(explicit) if explicit else None,
    )


def sdp_family(sdp: bytes) -> Family | None:
    """The family of an SDP's first ``c=`` line, if any."""
    match = _SDP_FAMILY_RE.search(sdp)
    if match is None:
        return None
    return Family.INET if match.group(1) == b"IP4" else Family.INET6


def reply(cookie: bytes, result: Mapping[str, Encodable]) -> bytes:
    """A reply datagram: the cookie, a space, the bencoded dictionary."""
    return cookie + b" " + encode(result)


def error_reply(cookie: bytes, reason: str) -> bytes:
    return reply(cookie, {"result": "error", "error-reason": reason})


class NgProtocol:
    """The ng control protocol over one media engine: ``handle`` a datagram, get a reply.

    ``interfaces`` maps ``direction`` names to families (see ``interface_map``).
    """

    def __init__(
        self,
        engine: MediaEngine,
        *,
        interfaces: Mapping[str, Family] | None = None,
        strict_source: bool = False,
        cache_size: int = CACHE_SIZE,
        cache_ttl: float = CACHE_TTL,
    ) -> None:
        self.engine = engine
        self.interfaces = interface_map(interfaces)
        self.strict_source = strict_source
        self.stats = NgStats()
        self._cache: OrderedDict[bytes, tuple[bytes, bytes, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl
        # call-id -> family of the offerer's side, to answer in the offer's family.
        self._offer_families: OrderedDict[bytes, Family] = OrderedDict()

    def handle(self, data: bytes, now: float) -> bytes | None:
        """The reply to one datagram, or None when it cannot be answered (no cookie)."""
        self.stats.received += 1
        try:
            cookie, body = split_datagram(data)
        except NgError:
            self.stats.dropped += 1
            return None
        digest = hashlib.blake2b(body, digest_size=16).digest()
        cached = self._cached(cookie, digest, now)
        if cached is not None:
            self.stats.retransmissions += 1
            return cached
        try:
            request = parse_request(body, self.interfaces, strict_source=self.strict_source)
            counts = self.stats.commands
            counts[request.command.value] = counts.get(request.command.value, 0) + 1
            out = reply(cookie, self.execute(request))
        except NgError as exc:
            out = error_reply(cookie, exc.reason)
            self.stats.errors += 1
        except Rtc64Error as exc:
            out = error_reply(cookie, getattr(exc, "reason", None) or str(exc))
            self.stats.errors += 1
        self.stats.replies += 1
        self._store(cookie, digest, out, now)
        return out

    def error_for(self, data: bytes, reason: str) -> bytes | None:
        """An error reply to ``data`` (for failures outside the protocol), if it has a cookie."""
        try:
            cookie, _ = split_datagram(data)
        except NgError:
            return None
        self.stats.errors += 1
        self.stats.replies += 1
        return error_reply(cookie, reason)

    # --- the reply cache ---

    def _cached(self, cookie: bytes, digest: bytes, now: float) -> bytes | None:
        while self._cache:
            oldest = next(iter(self._cache.values()))
            if oldest[2] > now:
                break
            self._cache.popitem(last=False)
        entry = self._cache.get(cookie)
        if entry is None or entry[0] != digest:
            return None
        return entry[1]

    def _store(self, cookie: bytes, digest: bytes, out: bytes, now: float) -> None:
        self._cache.pop(cookie, None)
        self._cache[cookie] = (digest, out, now + self._cache_ttl)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # --- commands ---

    def execute(self, request: NgRequest) -> dict[str, Encodable]:
        """Run one request against the engine; raises ``NgError`` or the engine's error."""
        command = request.command
        if command is Command.PING:
            return {"result": "pong"}
        if command is Command.LIST:
            return {"result": "ok", "calls": self.engine.calls()[: request.limit]}
        if command is Command.OFFER:
            result = self._offer(request)
        elif command is Command.ANSWER:
            result = self._answer(request)
        elif command is Command.DELETE:
            result = self._delete(request)
        else:
            report = self.engine.query(request.call_id)
            if report is None:
                raise NgError("Unknown call-id")
            result = {"result": "ok", **report_dict(report)}
        if request.warnings:
            result["warning"] = "; ".join(request.warnings)
        return result

    def _offer(self, request: NgRequest) -> dict[str, Encodable]:
        own = sdp_family(request.sdp)
        offerer = request.from_family or own
        if offerer is None and request.source is not None:
            offerer = Family.INET if request.source.version == 4 else Family.INET6
        to_family = request.family or own or offerer or Family.INET
        sdp = self.engine.offer(
            request.call_id,
            request.from_tag,
            request.sdp,
            to_family=to_family,
            from_source=request.source,
            options=request.options,
        )
        if offerer is not None:
            self._remember(request.call_id, offerer)
        return {"result": "ok", "sdp": sdp}

    def _answer(self, request: NgRequest) -> dict[str, Encodable]:
        assert request.to_tag is not None
        to_family = (
            request.family
            or self._offer_families.get(request.call_id)
            or sdp_family(request.sdp)
            or Family.INET
        )
        sdp = self.engine.answer(
            request.call_id,
            request.from_tag,
            request.to_tag,
            request.sdp,
            to_family=to_family,
            from_source=request.source,
            options=request.options,
        )
        return {"result": "ok", "sdp": sdp}

    def _delete(self, request: NgRequest) -> dict[str, Encodable]:
        report = self.engine.delete(request.call_id, request.from_tag or None, request.to_tag)
        if report is None:
            if request.fatal:
                raise NgError("Call-ID not found or tags didn't match")
            return {"result": "ok", "warning": "Call-ID not found or tags didn't match"}
        if (not request.to_tag and not request.from_tag) or self.engine.query(
            request.call_id
        ) is None:
            self._offer_families.pop(request.call_id, None)
        return {"result": "ok", **report_dict(report)}

    def _remember(self, call_id: bytes, family: Family) -> None:
        self._offer_families.pop(call_id, None)
        self._offer_families[call_id] = family
        while len(self._offer_families) > self._cache_size * 4:
            self._offer_families.popitem(last=False)

    def forget(self, keep: Iterable[bytes]) -> None:
        """Drop remembered offer families of calls not in ``keep`` (calls the engine ended)."""
        alive = set(keep)
        for call_id in [c for c in self._offer_families if c not in alive]:
            del self._offer_families[call_id]
