# Rules (RFC 3261 §7.3.1, §8.1.1.7, §17.2.3, §21.5.4): under overload the cheapest answer
# to new work is a 503 built from the raw request, before it is parsed (parsing and
# routing a request the proxy is about to refuse costs a good share of what serving it
# would). So a look at the raw bytes tells only what it can tell for certain:
# - the start line is a request (``METHOD SP Request-URI SP SIP/2.0``), its method neither
#   ACK nor CANCEL (never shed: they finish work in progress);
# - the first To line (long or compact form, unfolded) has no ``tag`` parameter outside
#   its URI: not an in-dialog request;
# - the first Via line (unfolded) names, in its first value, an RFC 3261 branch (magic
#   cookie): the transaction key a retransmission shares (§17.2.3), so the caller can
#   check it against the live server transactions and never refuse a retransmission of
#   a request it is serving.
# Anything else (folded lines, no such headers, RFC 2543 branches) is not "new work" to
# this look: the caller parses the request as usual and decides on the parsed message.
# ``register_aor`` guesses the location-service key (``sip:user@host``, RFC 3261 §10.3
# step 5) of a REGISTER's To value from its text alone, so SIP workers can hand a
# REGISTER to the worker that keeps that AOR's contacts alive; a guess that differs from
# the registrar's key (escapes, an alias of the gateway) only costs a hand-over.
"""A look at raw SIP messages before parsing: new work and its branch; plain responses."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rtc64.errors import RemoteProtocolError
from rtc64.sip.headers import header_key
from rtc64.sip.via import MAGIC_COOKIE

_START = re.compile(rb"([A-Za-z!%*_+`'~.-]+) [^ \r\n]+ SIP/2\.0\r?\n")
_NAMES = re.compile(rb"\n(via|v|to|t)[ \t]*:", re.I)
_BRANCH = re.compile(rb";[ \t]*branch[ \t]*=[ \t]*([^;,\s]+)", re.I)
_TAG = re.compile(rb";[ \t]*tag[ \t]*=", re.I)
_FINISHING = (b"ACK", b"CANCEL")


def _line(head: bytes, start: int) -> bytes | None:
    """The value from ``start`` to the end of its line, or None if the line is folded."""
    end = head.find(b"\n", start)
    if end < 0:
        return None
    if head[end + 1 : end + 2] in (b" ", b"\t"):
        return None
    return head[start:end].rstrip(b"\r")


def new_work_branch(data: bytes) -> bytes | None:
    """The top Via branch of ``data`` if it is a new request (no To tag, not ACK or
    CANCEL) with an RFC 3261 branch, told apart on the raw bytes; else None."""
    start = _START.match(data)
    if start is None or start.group(1) in _FINISHING:
        return None
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 2]
    via: bytes | None = None
    to: bytes | None = None
    for found in _NAMES.finditer(head, start.end() - 1):
        name = found.group(1).lower()
        if name in (b"via", b"v"):
            if via is None:
                via = _line(head, found.end())
                if via is None:
                    return None
        elif to is None:
            to = _line(head, found.end())
            if to is None:
                return None
        if via is not None and to is not None:
            break
    if via is None or to is None:
        return None
    params = to[to.rfind(b">") + 1 :] if to.find(b"<") >= 0 else to
    if _TAG.search(params) is not None:
        return None
    branch = _BRANCH.search(via.split(b",", 1)[0])
    if branch is None or not branch.group(1).startswith(MAGIC_COOKIE):
        return None
    return branch.group(1)


def register_aor(to: bytes) -> bytes | None:
    """``sip:user@host`` from a To header value (display name, ``<>``, scheme case,
    password, port, parameters and headers dropped; host lower-case), or None."""
    value = to.strip()
    if value.find(b"<") >= 0:
        start = value.find(b"<") + 1
        end = value.find(b">", start)
        uri = value[start:end] if end >= 0 else b""
    else:
        uri = value.split(b";", 1)[0]
    scheme, colon, rest = uri.strip().partition(b":")
    if not colon or scheme.lower() not in (b"sip", b"sips"):
        return None
    rest = rest.split(b";", 1)[0].split(b"?", 1)[0]
    user, at, host = rest.rpartition(b"@")
    if host.startswith(b"["):
        host = host[: host.find(b"]") + 1]
    else:
        host = host.split(b":", 1)[0].rstrip(b".")
    if not host:
        return None
    host = host.lower()
    return b"sip:" + user.split(b":", 1)[0] + b"@" + host if at else b"sip:" + host


# A response the proxy may forward from its raw bytes (``peek_response``): the caller
# matches it to a client transaction by ``branch`` and ``method`` (§17.1.3) and removes
# the top Via line (§16.7 step 3) without building the message model. Only the plain
# shape is taken: CRLF line ends, no folded line, header names that are tokens, at least
# two Vias (the top line may carry ours and the next, comma-separated, as SIPp writes
# them: then "ours, " is cut from "Via: ours, theirs"; no quoted string in ours), one
# CSeq, Call-ID, From and To,
# a Content-Length that matches the bytes after the header section. Anything else is
# ``None``: the caller parses the message as usual.
@dataclass(frozen=True, slots=True, init=False)
class RawResponse:
    """What the proxy reads from a raw response before forwarding it."""

    status: int
    branch: bytes
    method: bytes  # of the CSeq
    seq: int
    call_id: bytes
    via_start: int  # our Via: data[via_start:via_end] is the top line with its CRLF, or
    # the first value and its comma when the line carries more
    via_end: int
    to: bytes  # the To value as received
    contacts: tuple[bytes, ...]  # Contact values, one per line
    record_routes: tuple[bytes, ...]  # Record-Route values, one per line
    body: bool  # a non-empty body follows the header section

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        status: int,
        branch: bytes,
        method: bytes,
        seq: int,
        call_id: bytes,
        via_start: int,
        via_end: int,
        to: bytes,
        contacts: tuple[bytes, ...],
        record_routes: tuple[bytes, ...],
        body: bool,
    ) -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "branch", branch)
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "via_start", via_start)
        object.__setattr__(self, "via_end", via_end)
        object.__setattr__(self, "to", to)
        object.__setattr__(self, "contacts", contacts)
        object.__setattr__(self, "record_routes", record_routes)
        object.__setattr__(self, "body", body)

    def without_top_via(self, data: bytes) -> bytes:
        """``data`` with the top Via line cut out."""
        return data[: self.via_start] + data[self.via_end :]


_FOLD = (32, 9)


def peek_response(data: bytes) -> RawResponse | None:
    """The fields of a plain response (see above), or None."""
    if data[:8] != b"SIP/2.0 " or data[11:12] != b" ":
        return None
    code = data[8:11]
    if not code.isdigit():
        return None
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0 or data.count(b"\n", 0, head_end) != data.count(b"\r\n", 0, head_end):
        return None
    pos = data.find(b"\r\n") + 2
    stop = head_end + 2
    via_start = via_end = vias = 0
    top = cseq = call_id = to = length = b""
    has_from = False
    contacts: list[bytes] = []
    rrs: list[bytes] = []
    while pos < stop:
        end = data.find(b"\r\n", pos)
        if data[pos] in _FOLD:
            return None
        colon = data.find(b":", pos, end)
        if colon < 0:
            return None
        name = data[pos:colon].rstrip(b" \t")
        try:
            key = header_key(name)
        except RemoteProtocolError:
            return None
        value = data[colon + 1 : end].strip(b" \t")
        if key == b"via":
            vias += 1
            if vias == 1:
                comma = data.find(b",", colon + 1, end)
                if comma < 0:
                    top, via_start, via_end = value, pos, end + 2
                else:  # "Via: ours, theirs" (SIPp writes the Vias so): cut "ours, "
                    if data[colon + 1] != 32 or data.find(b'"', colon + 1, comma) >= 0:
                        return None  # the full path would rewrite the line
                    via_start = colon + 1
                    while via_start < comma and data[via_start] in _FOLD:
                        via_start += 1
                    via_end = comma + 1
                    while via_end < end and data[via_end] in _FOLD:
                        via_end += 1
                    top = data[via_start:comma].rstrip(b" \t")
                    if not top or via_end >= end:
                        return None
                    vias += 1
        elif key == b"cseq":
            if cseq:
                return None
            cseq = value
        elif key == b"call-id":
            if call_id:
                return None
            call_id = value
        elif key == b"to":
            if to:
                return None
            to = value
        elif key == b"from":
            if has_from:
                return None
            has_from = True
        elif key == b"contact":
            contacts.append(value)
        elif key == b"record-route":
            rrs.append(value)
        elif key == b"content-length":
            if length:
                return None
            length = value
        pos = end + 2
    if vias < 2 or top.find(b",") >= 0 or not (cseq and call_id and to and has_from and length):
        return None
    branch = _BRANCH.search(top)
    if branch is None or not branch.group(1).startswith(MAGIC_COOKIE):
        return None
    seq, _, method = cseq.partition(b" ")
    method = method.strip(b" \t")
    if not seq.isdigit() or len(seq) > 10 or not method or method.find(b" ") >= 0:
        return None
    if not length.isdigit() or int(length) != len(data) - head_end - 4:
        return None
    return RawResponse(
        status=int(code), branch=branch.group(1), method=method, seq=int(seq),
        call_id=call_id, via_start=via_start, via_end=via_end, to=to,
        contacts=tuple(contacts), record_routes=tuple(rrs), body=int(length) > 0,
    )  # fmt: skip


# A request the proxy may forward from its raw bytes (``peek_request``; the in-dialog ACK
# path, ``gateway.proxy.indialog``). Only the plain shape is taken: CRLF line ends, no
# folded line, header names that are tokens, the top Via line holding one value with an
# RFC 3261 branch, one CSeq (its method the start line's), Call-ID, From, To (each tag,
# outside the URI, read once: a second ``tag`` or an escaped display name is not plain),
# Max-Forwards (digits) and Content-Length (matching the bytes after the header
# section). Anything else is ``None``: the caller parses the message as usual.
@dataclass(frozen=True, slots=True, init=False)
class RawRequest:
    """What the proxy reads from a raw request before forwarding it."""

    method: bytes
    uri: bytes  # the Request-URI as received
    via_start: int  # data[via_start:via_end] is the top Via line with its CRLF
    via_end: int
    top_via: bytes  # its value
    branch: bytes
    call_id: bytes
    from_tag: bytes | None
    to_tag: bytes | None
    seq: int
    max_forwards: int
    mf_start: int  # data[mf_start:mf_end] is the Max-Forwards line with its CRLF
    mf_end: int
    mf_name: bytes  # the Max-Forwards header name as received
    routes: tuple[bytes, ...]  # Route values, one per line
    route_spans: tuple[tuple[int, int], ...]  # each Route line with its CRLF
    head_end: int  # where the empty line that ends the header section starts
    body: bool  # a non-empty body follows the header section
    guarded: bool  # credentials or Proxy-Require: the full path judges them

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        method: bytes,
        uri: bytes,
        via_start: int,
        via_end: int,
        top_via: bytes,
        branch: bytes,
        call_id: bytes,
        from_tag: bytes | None,
        to_tag: bytes | None,
        seq: int,
        max_forwards: int,
        mf_start: int,
        mf_end: int,
        mf_name: bytes,
        routes: tuple[bytes, ...],
        route_spans: tuple[tuple[int, int], ...],
        head_end: int,
        body: bool,
        guarded: bool,
    ) -> None:
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "via_start", via_start)
        object.__setattr__(self, "via_end", via_end)
        object.__setattr__(self, "top_via", top_via)
        object.__setattr__(self, "branch", branch)
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "from_tag", from_tag)
        object.__setattr__(self, "to_tag", to_tag)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "max_forwards", max_forwards)
        object.__setattr__(self, "mf_start", mf_start)
        object.__setattr__(self, "mf_end", mf_end)
        object.__setattr__(self, "mf_name", mf_name)
        object.__setattr__(self, "routes", routes)
        object.__setattr__(self, "route_spans", route_spans)
        object.__setattr__(self, "head_end", head_end)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "guarded", guarded)


_GUARDS = frozenset((b"proxy-authorization", b"authorization", b"proxy-require"))
_PLAIN_TAG = re.compile(rb"[A-Za-z0-9.!%*_+`'~-]+")
_TAG_VALUE = re.compile(rb";[ \t]*tag[ \t]*=[ \t]*([^;\s]*)", re.I)
_NO_TAG = b""  # a From/To value whose tag cannot be read plainly


def header_tag(value: bytes) -> bytes | None:
    """The ``tag`` parameter of a From/To value (outside its URI), None without one, or
    ``b""`` when it cannot be read plainly (escapes, two tags, an empty tag)."""
    gt = value.rfind(b">")
    tail = value[gt + 1 :]
    if tail[:5] == b";tag=" and _PLAIN_TAG.fullmatch(tail, 5) is not None:
        lt = value.find(b"<")
        if 0 <= lt < gt and value.count(b">") == 1:  # that ">" ends the URI
            return tail[5:]  # the usual ``name <URI>;tag=token``, nothing after the tag
    if value.find(b"\\") >= 0:
        return _NO_TAG
    rest = value
    if rest[:1] == b'"':
        end = rest.find(b'"', 1)
        if end < 0:
            return _NO_TAG
        rest = rest[end + 1 :]
    if rest.find(b"<") >= 0:
        gt = rest.find(b">")
        if gt < 0:
            return _NO_TAG
        params = rest[gt + 1 :]
    else:
        semi = rest.find(b";")
        params = rest[semi:] if semi >= 0 else b""
    found = _TAG_VALUE.findall(params)
    if not found:
        return None
    if len(found) > 1 or not found[0]:
        return _NO_TAG
    return bytes(found[0])


def peek_request(data: bytes) -> RawRequest | None:
    """The fields of a plain request (see above), or None."""
    start = _START.match(data)
    if start is None or data[start.end() - 2 : start.end()] != b"\r\n":
        return None
    method = start.group(1)
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0 or data.count(b"\n", 0, head_end) != data.count(b"\r\n", 0, head_end):
        return None
    stop = head_end + 2
    via_start = via_end = mf_start = mf_end = 0
    top = cseq = call_id = from_ = to = length = mf = mf_name = b""
    routes: list[bytes] = []
    spans: list[tuple[int, int]] = []
    guarded = False
    pos = start.end()
    for line in data[pos:head_end].split(b"\r\n"):
        end = pos + len(line) + 2  # past its CRLF
        if not line or line[0] in _FOLD:
            return None
        name, colon, rest = line.partition(b":")
        if not colon:
            return None
        name = name.rstrip(b" \t")
        try:
            key = header_key(name)
        except RemoteProtocolError:
            return None
        value = rest.strip(b" \t")
        if key == b"via":
            if not top:
                if value.find(b",") >= 0 or not value:
                    return None
                top, via_start, via_end = value, pos, end
        elif key == b"route":
            routes.append(value)
            spans.append((pos, end))
        elif key == b"cseq":
            if cseq:
                return None
            cseq = value
        elif key == b"call-id":
            if call_id:
                return None
            call_id = value
        elif key == b"from":
            if from_:
                return None
            from_ = value
        elif key == b"to":
            if to:
                return None
            to = value
        elif key == b"max-forwards":
            if mf:
                return None
            mf, mf_name, mf_start, mf_end = value, name, pos, end
        elif key == b"content-length":
            if length:
                return None
            length = value
        elif key in _GUARDS:
            guarded = True
        pos = end
    if not (top and cseq and call_id and from_ and to and length and mf):
        return None
    branch = _BRANCH.search(top)
    if branch is None or not branch.group(1).startswith(MAGIC_COOKIE):
        return None
    seq, _, cseq_method = cseq.partition(b" ")
    if cseq_method.strip(b" \t") != method or not seq.isdigit() or len(seq) > 10:
        return None
    if not mf.isdigit() or len(mf) > 3 or not length.isdigit():
        return None
    if int(length) != len(data) - head_end - 4:
        return None
    from_tag, to_tag = header_tag(from_), header_tag(to)
    if _NO_TAG in (from_tag, to_tag):
        return None
    return RawRequest(
        method=method, uri=data[len(method) + 1 : data.find(b" ", len(method) + 1)],
        via_start=via_start, via_end=via_end, top_via=top, branch=branch.group(1),
        call_id=call_id, from_tag=from_tag, to_tag=to_tag, seq=int(seq),
        max_forwards=int(mf), mf_start=mf_start, mf_end=mf_end, mf_name=mf_name,
        routes=tuple(routes), route_spans=tuple(spans), head_end=stop, body=int(length) > 0,
        guarded=guarded,
    )  # fmt: skip
