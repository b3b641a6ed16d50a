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
#   3. else the family of the request's own SDP (no bridging), else of ``received from``.
#   For an answer the engine keeps the family of the pairs it chose for the offerer, so
#   the family only matters for an answer to an offer it does not know.
# - Flags to ``RelayOptions``: ``asymmetric`` -> ``trust_address`` (send where the SDP
#   says, never learn from packets); ``symmetric`` (rtpengine's and our default: latch) and
#   ``trust address`` (rtpengine's default: use the SDP address, not ``received from``)
#   change nothing; ``strict source`` -> ``strict_source`` (else None: ``media.strict_source``);
#   ``ICE`` remove/force -> ``ice`` (absent: remove, the relay does not pass ICE through);
#   ``replace`` origin/session-connection -> ``replace_origin``/``replace_session_connection``
#   (absent: False, as rtpengine); the first ``direction`` entry -> ``from_family``.
#   ``received from`` goes to the engine as ``from_source``. ``SDES``, ``supports``,
#   ``via-branch``, ``delete-delay``, codec and transport flags are accepted and ignored.
# - Times in query/delete replies are Unix seconds: relay times are monotonic; ``handle``
#   gets both clocks' ``now`` to convert.
"""rtpengine "ng" control protocol: parse, dispatch to a media engine, build replies."""

from __future__ import annotations

import enum
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from rtc64.errors import Rtc64Error
from rtc64.net.address import Family, IPAddress, parse_ip
from rtc64.relay.bencode import BencodeError, Encodable, Value, decode, encode
from rtc64.relay.engine import UnknownCallError
from rtc64.relay.ngreport import report_dict, summary
from rtc64.relay.options import DEFAULT_OPTIONS, IceMode, RelayOptions
from rtc64.relay.stats import CallStats

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
        options: RelayOptions,
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
        options: RelayOptions,
    ) -> bytes: ...

    def delete(
        self, call_id: bytes, from_tag: bytes | None = None, to_tag: bytes | None = None
    ) -> CallStats | None: ...

    def query(self, call_id: bytes) -> CallStats | None: ...

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
    options: RelayOptions = DEFAULT_OPTIONS
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
        listed: list[Value] = []
        for key, value in raw.items():
            folded = _fold(key)
            if folded == b"flags":
                if not isinstance(value, list):
                    raise NgError("'flags' must be a list")
                listed.extend(value)
            else:
                self.values.setdefault(folded, value)
        # Dictionary keys first: a flag-list entry never overrides them, only adds to lists.
        for flag in listed:
            if isinstance(flag, bytes):
                self._flag(flag)

    def _flag(self, flag: bytes) -> None:
        name, sep, value = flag.partition(b"=")
        folded = _fold(name)
        if sep:
            self.values.setdefault(folded, value)
            return
        for prefix in (b"replace ", b"sdes "):
            if folded.startswith(prefix) and len(folded) > len(prefix):
                entries = self.values.setdefault(prefix.strip(), [])
                if isinstance(entries, list):
                    self.values[prefix.strip()] = [*entries, name[len(prefix) :]]
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


def parse_request(body: bytes, interfaces: Mapping[str, Family]) -> NgRequest:
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
        options=_options(params, from_family),
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


def _options(params: _Params, from_family: Family | None) -> RelayOptions:
    ice = params.string(b"ice").lower()
    replace = {_fold(item) for item in params.strings(b"replace")}
    return RelayOptions(
        trust_address=params.has(b"asymmetric"),
        strict_source=True if params.has(b"strict source") else None,
        ice=IceMode.FORCE if ice == b"force" else IceMode.REMOVE,
        replace_origin=b"origin" in replace,
        replace_session_connection=bool(replace & {b"session connection", b"session c"}),
        from_family=from_family,
    )


def _source_family(request: NgRequest) -> Family:
    if request.source is not None and request.source.version == 6:
        return Family.INET6
    return Family.INET


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


def _describe(cookie: bytes, request: NgRequest | None) -> str:
    """``ng COOKIE COMMAND call-id=... from-tag=...`` for log lines."""
    words = [f"ng {_text(cookie)}", "request" if request is None else request.command.value]
    if request is not None:
        for name, value in (
            ("call-id", request.call_id),
            ("from-tag", request.from_tag),
            ("to-tag", request.to_tag),
        ):
            if value:
                words.append(f"{name}={_text(value)}")
    return " ".join(words)


class NgProtocol:
    """The ng control protocol over one media engine: ``handle`` a datagram, get a reply.

    ``interfaces`` maps ``direction`` names to families (see ``interface_map``).
    """

    def __init__(
        self,
        engine: MediaEngine,
        *,
        interfaces: Mapping[str, Family] | None = None,
        cache_size: int = CACHE_SIZE,
        cache_ttl: float = CACHE_TTL,
        log: logging.Logger | None = None,
    ) -> None:
        self.engine = engine
        self.log = log or logging.getLogger("rtc64.ng")
        self.interfaces = interface_map(interfaces)
        self.stats = NgStats()
        self._cache: OrderedDict[bytes, tuple[bytes, bytes, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl

    def handle(self, data: bytes, now: float, wall: float | None = None) -> bytes | None:
        """The reply to one datagram, or None when it cannot be answered (no cookie).

        ``now`` is the relay's (monotonic) clock; ``wall`` the Unix time at that moment,
        for the times in query and delete replies (None: report relay times as they are).
        """
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
        request: NgRequest | None = None
        reason: str | None = None
        try:
            request = parse_request(body, self.interfaces)
            counts = self.stats.commands
            counts[request.command.value] = counts.get(request.command.value, 0) + 1
            result = self.execute(request, now, now if wall is None else wall)
        except NgError as exc:
            reason = exc.reason
        except UnknownCallError:
            reason = "Unknown call-id"
        except Rtc64Error as exc:
            reason = getattr(exc, "reason", None) or str(exc)
        if reason is not None:
            self.stats.errors += 1
            result = {"result": "error", "error-reason": reason}
        out = reply(cookie, result)
        self.stats.replies += 1
        self._store(cookie, digest, out, now)
        if reason is not None:
            self.log.info("%s -> error: %s", _describe(cookie, request), reason)
        elif self.log.isEnabledFor(logging.DEBUG):
            warnings = "; ".join(request.warnings) if request is not None else ""
            self.log.debug("%s -> ok%s", _describe(cookie, request), warnings and f" ({warnings})")
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

    def execute(self, request: NgRequest, now: float, wall: float) -> dict[str, Encodable]:
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
            result = self._delete(request, wall - now)
        else:
            report = self.engine.query(request.call_id)
            if report is None:
                raise NgError("Unknown call-id")
            result = {"result": "ok", **report_dict(report, wall - now)}
        if request.warnings:
            result["warning"] = "; ".join(request.warnings)
        return result

    def _offer(self, request: NgRequest) -> dict[str, Encodable]:
        to_family = request.family or sdp_family(request.sdp) or _source_family(request)
        sdp = self.engine.offer(
            request.call_id,
            request.from_tag,
            request.sdp,
            to_family=to_family,
            from_source=request.source,
            options=request.options,
        )
        return {"result": "ok", "sdp": sdp}

    def _answer(self, request: NgRequest) -> dict[str, Encodable]:
        assert request.to_tag is not None
        # The engine answers on the family of the pairs it chose for the offerer; this
        # only matters for an answer whose offer it does not know.
        to_family = request.family or sdp_family(request.sdp) or _source_family(request)
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

    def _delete(self, request: NgRequest, to_wall: float) -> dict[str, Encodable]:
        report = self.engine.delete(request.call_id, request.from_tag or None, request.to_tag)
        if report is None:
            if request.fatal:
                raise NgError("Call-ID not found or tags didn't match")
            return {"result": "ok", "warning": "Call-ID not found or tags didn't match"}
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("ng deleted call-id=%s: %s", _text(request.call_id), summary(report))
        return {"result": "ok", **report_dict(report, to_wall)}
