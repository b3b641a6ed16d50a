"""The SIP message model: ``Request`` and ``Response``, and builders for new messages.

Rules (RFC 3261 §7, §8.1.1, §8.2.6, §20):

- Messages are frozen, slotted dataclasses. ``headers`` keeps every line as received
  (``Header(name, value)``, folding collapsed); unknown headers pass through untouched.
- The essentials every element needs are parsed and checked when a message is made:
  every Via value (at least one), Call-ID, CSeq (0..2^31-1, §8.1.1.5; a request's CSeq
  method must equal its method), From and To (one each), Max-Forwards (0..255). Other
  headers are parsed on demand by ``rtc64.sip.headers`` (``contacts(msg)``...).
- A CSeq method that does not match an unknown request method answers 501 (RFC 4475
  §3.1.2.18), a known one 400.
- ``wire`` keeps the received bytes of the message (not compared) so that
  ``rtc64.sip.edit`` can splice them instead of re-serialising.
- Builders (``build_request``, ``make_request``, ``make_response``) raise
  ``LocalProtocolError`` for what our own code got wrong, and always write a
  Content-Length that matches the body.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.sip.grammar import (
    WORD_CHARS,
    WS,
    bad,
    is_token,
    parse_uint,
    show,
)
from rtc64.sip.headers import Header, HeaderAccess, build_index, header_key, split_list, wire_name
from rtc64.sip.nameaddr import NameAddr, format_name_addr, parse_name_addr
from rtc64.sip.uri import Uri, parse_uri
from rtc64.sip.via import MAGIC_COOKIE, Via, format_via, parse_via

MAX_CSEQ = 2**31 - 1
MAX_FORWARDS = 255
KNOWN_METHODS = frozenset(
    b"ACK BYE CANCEL INFO INVITE MESSAGE NOTIFY OPTIONS PRACK PUBLISH REFER REGISTER "
    b"SUBSCRIBE UPDATE".split()
)
REASONS: dict[int, bytes] = {
    100: b"Trying",
    180: b"Ringing",
    181: b"Call Is Being Forwarded",
    182: b"Queued",
    183: b"Session Progress",
    200: b"OK",
    202: b"Accepted",
    300: b"Multiple Choices",
    301: b"Moved Permanently",
    302: b"Moved Temporarily",
    305: b"Use Proxy",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    406: b"Not Acceptable",
    407: b"Proxy Authentication Required",
    408: b"Request Timeout",
    410: b"Gone",
    413: b"Request Entity Too Large",
    415: b"Unsupported Media Type",
    416: b"Unsupported URI Scheme",
    420: b"Bad Extension",
    421: b"Extension Required",
    423: b"Interval Too Brief",
    480: b"Temporarily Unavailable",
    481: b"Call/Transaction Does Not Exist",
    482: b"Loop Detected",
    483: b"Too Many Hops",
    484: b"Address Incomplete",
    486: b"Busy Here",
    487: b"Request Terminated",
    488: b"Not Acceptable Here",
    491: b"Request Pending",
    500: b"Server Internal Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Server Time-out",
    505: b"Version Not Supported",
    513: b"Message Too Large",
    600: b"Busy Everywhere",
    603: b"Decline",
    604: b"Does Not Exist Anywhere",
    606: b"Not Acceptable",
}


@dataclass(frozen=True, slots=True, init=False)
class CSeq:
    """``CSeq``: sequence number and method."""

    seq: int
    method: bytes

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, seq: int, method: bytes) -> None:
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "method", method)

    def __bytes__(self) -> bytes:
        return b"%d %s" % (self.seq, self.method)


@dataclass(frozen=True, slots=True, init=False)
class Request(HeaderAccess):
    """A SIP request. Construct through the parser or the builders."""

    method: bytes
    uri: Uri
    headers: tuple[Header, ...]
    body: bytes
    vias: tuple[Via, ...]
    call_id: bytes
    cseq: CSeq
    from_: NameAddr
    to: NameAddr
    max_forwards: int | None
    index: dict[bytes, list[int]] = field(default_factory=dict, compare=False, repr=False)
    wire: bytes | None = field(default=None, compare=False, repr=False)

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        method: bytes,
        uri: Uri,
        headers: tuple[Header, ...],
        body: bytes,
        vias: tuple[Via, ...],
        call_id: bytes,
        cseq: CSeq,
        from_: NameAddr,
        to: NameAddr,
        max_forwards: int | None,
        index: dict[bytes, list[int]] | None = None,
        wire: bytes | None = None,
    ) -> None:
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "vias", vias)
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "cseq", cseq)
        object.__setattr__(self, "from_", from_)
        object.__setattr__(self, "to", to)
        object.__setattr__(self, "max_forwards", max_forwards)
        object.__setattr__(self, "index", {} if index is None else index)
        object.__setattr__(self, "wire", wire)

    @property
    def via(self) -> Via:
        """The top Via."""
        return self.vias[0]


@dataclass(frozen=True, slots=True, init=False)
class Response(HeaderAccess):
    """A SIP response. Construct through the parser or the builders."""

    status: int
    reason: bytes
    headers: tuple[Header, ...]
    body: bytes
    vias: tuple[Via, ...]
    call_id: bytes
    cseq: CSeq
    from_: NameAddr
    to: NameAddr
    max_forwards: int | None
    index: dict[bytes, list[int]] = field(default_factory=dict, compare=False, repr=False)
    wire: bytes | None = field(default=None, compare=False, repr=False)

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        status: int,
        reason: bytes,
        headers: tuple[Header, ...],
        body: bytes,
        vias: tuple[Via, ...],
        call_id: bytes,
        cseq: CSeq,
        from_: NameAddr,
        to: NameAddr,
        max_forwards: int | None,
        index: dict[bytes, list[int]] | None = None,
        wire: bytes | None = None,
    ) -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "vias", vias)
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "cseq", cseq)
        object.__setattr__(self, "from_", from_)
        object.__setattr__(self, "to", to)
        object.__setattr__(self, "max_forwards", max_forwards)
        object.__setattr__(self, "index", {} if index is None else index)
        object.__setattr__(self, "wire", wire)

    @property
    def via(self) -> Via:
        return self.vias[0]


Message = Request | Response


def parse_cseq(value: bytes) -> CSeq:
    """``1*DIGIT LWS Method`` with the number in 0..2^31-1."""
    end = len(value)
    for stop in (b" ", b"\t"):
        k = value.find(stop)
        if 0 <= k < end:
            end = k
    method = value[end:].lstrip(WS)
    if end == len(value) or not is_token(method):
        raise bad(f"invalid CSeq {show(value)}")
    return CSeq(parse_uint(value[:end], "CSeq number", MAX_CSEQ), method)


def check_call_id(value: bytes) -> bytes:
    """``word [ "@" word ]``."""
    local, at, host = value.partition(b"@")
    if (
        not local
        or local.translate(None, WORD_CHARS)
        or (at and (not host or host.translate(None, WORD_CHARS)))
    ):
        raise bad(f"invalid Call-ID {show(value)}")
    return value


def _one(headers: Sequence[Header], index: dict[bytes, list[int]], key: bytes, what: str) -> bytes:
    slots = index.get(key)
    if not slots:
        raise bad(f"missing {what} header")
    if len(slots) > 1:
        raise bad(f"multiple {what} headers")
    return headers[slots[0]].value


Essentials = tuple[tuple[Via, ...], bytes, CSeq, NameAddr, NameAddr, int | None]


def parse_essentials(
    headers: Sequence[Header], index: dict[bytes, list[int]], method: bytes | None
) -> Essentials:
    """Parse and check the headers every element needs; ``method`` is None for responses."""
    via_slots = index.get(b"via")
    if not via_slots:
        raise bad("missing Via header")
    from_v = _one(headers, index, b"from", "From")
    to_v = _one(headers, index, b"to", "To")
    call_id = _one(headers, index, b"call-id", "Call-ID")
    cseq_v = _one(headers, index, b"cseq", "CSeq")
    mf_slots = index.get(b"max-forwards")
    if mf_slots and len(mf_slots) > 1:
        raise bad("multiple Max-Forwards headers")
    vias: list[Via] = []
    for i in via_slots:
        v = headers[i].value
        if v.find(b",") >= 0:
            vias += [parse_via(part) for part in split_list(v, "Via")]
        else:
            vias.append(parse_via(v))
    cseq = parse_cseq(cseq_v)
    from_ = parse_name_addr(from_v, "From")
    to = parse_name_addr(to_v, "To")
    check_call_id(call_id)
    mf = None
    if mf_slots:
        mf = parse_uint(headers[mf_slots[0]].value, "Max-Forwards", MAX_FORWARDS)
    if method is not None and cseq.method != method:
        if method in KNOWN_METHODS:
            raise bad(f"CSeq method {show(cseq.method)} does not match {show(method)}")
        raise RemoteProtocolError(
            f"Not Implemented: method {show(method)} with CSeq method {show(cseq.method)}", 501
        )
    return tuple(vias), call_id, cseq, from_, to, mf


# -- builders ------------------------------------------------------------------------------

HeaderLike = Header | tuple[bytes, bytes]


def _headers(items: Iterable[HeaderLike], body: bytes) -> list[Header]:
    out: list[Header] = []
    for item in items:
        h = item if isinstance(item, Header) else Header(*item)
        if not is_token(h.name):
            raise LocalProtocolError(f"invalid header name {h.name!r}")
        if h.value.find(b"\r") >= 0 or h.value.find(b"\n") >= 0 or h.value != h.value.strip(WS):
            raise LocalProtocolError(f"invalid value for header {h.name!r}: {h.value!r}")
        if header_key(h.name) != b"content-length":
            out.append(h)
    out.append(Header(b"Content-Length", b"%d" % len(body)))
    return out


def build_request(
    method: bytes, uri: Uri | bytes, headers: Iterable[HeaderLike], body: bytes = b""
) -> Request:
    """A request from its parts; Content-Length is (re)written to match ``body``."""
    if not is_token(method):
        raise LocalProtocolError(f"invalid method {method!r}")
    try:
        if isinstance(uri, bytes):
            uri = parse_uri(uri, "Request-URI")
        hs = _headers(headers, body)
        index = build_index(hs)
        ess = parse_essentials(hs, index, method)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"cannot build request: {exc.reason}") from None
    return Request(method, uri, tuple(hs), body, *ess, index=index)


def _status_reason(status: int, reason: bytes | None) -> bytes:
    """``reason`` (the standard phrase when None), checked with ``status`` for a status line."""
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} out of range 100..699")
    if reason is None:
        reason = REASONS.get(status, b"Unknown")
    if reason.find(b"\r") >= 0 or reason.find(b"\n") >= 0:
        raise LocalProtocolError(f"invalid reason phrase {reason!r}")
    return reason


def build_response(
    status: int, reason: bytes | None, headers: Iterable[HeaderLike], body: bytes = b""
) -> Response:
    """A response from its parts; Content-Length is (re)written to match ``body``."""
    reason = _status_reason(status, reason)
    try:
        hs = _headers(headers, body)
        index = build_index(hs)
        ess = parse_essentials(hs, index, None)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"cannot build response: {exc.reason}") from None
    return Response(status, reason, tuple(hs), body, *ess, index=index)


def make_request(
    method: bytes,
    uri: Uri | bytes,
    *,
    via: Via | Sequence[Via],
    from_: NameAddr,
    to: NameAddr,
    call_id: bytes,
    cseq: int,
    max_forwards: int = 70,
    contact: NameAddr | None = None,
    headers: Iterable[HeaderLike] = (),
    body: bytes = b"",
    content_type: bytes | None = None,
) -> Request:
    """A new request (RFC 3261 §8.1.1) from typed parts, plus any extra header lines."""
    vias = [via] if isinstance(via, Via) else list(via)
    hs: list[HeaderLike] = [(b"Via", format_via(v)) for v in vias]
    hs += [
        (b"Max-Forwards", b"%d" % max_forwards),
        (b"From", format_name_addr(from_)),
        (b"To", format_name_addr(to)),
        (b"Call-ID", call_id),
        (b"CSeq", b"%d %s" % (cseq, method)),
    ]
    if contact is not None:
        hs.append((b"Contact", format_name_addr(contact)))
    hs += list(headers)
    if content_type is not None:
        hs.append((b"Content-Type", content_type))
    return build_request(method, uri, hs, body)


def make_response(
    request: Request,
    status: int,
    reason: bytes | None = None,
    *,
    to_tag: bytes | None = None,
    headers: Iterable[HeaderLike] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied
    (Via lines in order, byte-exact), a To tag added unless the request had one or this is
    a 100; ``to_tag`` defaults to a fresh random tag. The copied lines are not parsed
    again: the response's Via, From, Call-ID and CSeq values are the request's."""
    hs: list[Header] = []
    to_value = request.headers[request.index[b"to"][0]].value
    tagged = request.to.tag is None and status > 100
    if tagged:
        to_value += b";tag=" + (to_tag if to_tag is not None else new_tag())
    for h in request.headers:
        key = h.key
        if key == b"via" or key in (b"from", b"call-id", b"cseq"):
            hs.append(h)
        elif key == b"to":
            hs.append(Header(h.name, to_value))
    extra = list(headers)
    if any(_copied(item[0]) for item in extra):
        return build_response(status, reason, [*hs, *extra], body)  # checked as a whole
    reason = _status_reason(status, reason)
    try:
        to = parse_name_addr(to_value, "To") if tagged else request.to
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"cannot build response: {exc.reason}") from None
    lines = hs + _headers(extra, body)  # the copied lines were checked when parsed
    return Response(
        status, reason, tuple(lines), body, request.vias, request.call_id, request.cseq,
        request.from_, to, None, index=build_index(lines),
    )  # fmt: skip


_COPIED = frozenset((b"via", b"from", b"to", b"call-id", b"cseq", b"max-forwards"))
"""Lines ``make_response`` takes from the request (Max-Forwards: a response has none)."""


def _copied(name: bytes) -> bool:
    """Whether a line of that name is one ``make_response`` copies (a bad name is not:
    ``_headers`` refuses it)."""
    try:
        return header_key(name) in _COPIED
    except RemoteProtocolError:
        return False


def new_tag() -> bytes:
    """A random From/To tag (RFC 3261 §19.3: at least 32 bits of randomness)."""
    return secrets.token_hex(8).encode("ascii")


def new_branch() -> bytes:
    """A random RFC 3261 branch (magic cookie + 64 random bits)."""
    return MAGIC_COOKIE + secrets.token_hex(8).encode("ascii")


def new_call_id() -> bytes:
    return secrets.token_hex(16).encode("ascii")


__all__ = [
    "KNOWN_METHODS",
    "MAX_CSEQ",
    "REASONS",
    "CSeq",
    "Header",
    "Message",
    "Request",
    "Response",
    "build_request",
    "build_response",
    "make_request",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_essentials",
    "wire_name",
]
