"""Forwarding edits spliced into a received message's bytes (no re-serialising).

Rules (RFC 3261 §16.6 request forwarding, §16.7 response processing, §16.12 loose
routing):

- An ``Edit`` plans splices against the message's received bytes (``msg.wire``) and
  ``to_bytes`` applies them in one pass; every line not touched stays byte-exact (folding,
  spacing, compact names, unknown headers included).
- ``prepend_via`` inserts a new Via line before the first Via line (§16.6 step 8);
  ``remove_top_via`` removes the first Via value (the whole line if it holds one value,
  else the value and its comma) (§16.7 step 3). ``remove_top_route`` does the same for
  Route (§16.4/§16.12).
- ``decrement_max_forwards`` writes N-1, adds ``Max-Forwards: 70`` when absent (§16.6
  step 3), and refuses 0 with 483 Too Many Hops (§16.3 step 3).
- ``add_record_route`` inserts before the first Record-Route line, or at the top of the
  header section (§16.6 step 4). ``set_request_uri`` replaces the Request-URI (§16.6 step 6).
- Octets after the body are dropped; a message without Content-Length gains one (needed
  on streams). Overlapping edits are a ``LocalProtocolError``.
"""

from __future__ import annotations

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.sip.framing import parse_datagram
from rtc64.sip.grammar import first_top
from rtc64.sip.headers import header_key
from rtc64.sip.message import Message, Request
from rtc64.sip.nameaddr import NameAddr, format_name_addr
from rtc64.sip.serializer import serialize
from rtc64.sip.uri import Uri, format_uri
from rtc64.sip.via import Via, format_via

DEFAULT_MAX_FORWARDS = 70


def line_starts(data: bytes) -> list[int]:
    """Offset of each header line in a message (continuations included in their line),
    then the offset of the empty line that ends the header section."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        raise LocalProtocolError("message bytes without an empty line after the headers")
    stop = head_end + 2
    pos = data.find(b"\r\n") + 2
    starts: list[int] = []
    while pos < stop:
        if data[pos] not in (0x20, 0x09):
            starts.append(pos)
        pos = data.find(b"\r\n", pos) + 2
    starts.append(stop)
    return starts


class Edit:
    """Splices planned on one message; chain the methods, then call ``to_bytes``."""

    __slots__ = ("_body", "_data", "_done", "_msg", "_splices", "_starts")

    def __init__(self, msg: Message) -> None:
        if msg.wire is None:
            msg = parse_datagram(serialize(msg))
        assert msg.wire is not None
        self._msg = msg
        self._data = msg.wire
        self._starts = line_starts(self._data)
        if len(self._starts) != len(msg.headers) + 1:
            raise LocalProtocolError("message bytes do not match its header lines")
        self._splices: list[tuple[int, int, int, bytes]] = []
        self._done: set[str] = set()
        self._body: bytes | None = None

    def _splice(self, start: int, end: int, data: bytes) -> None:
        self._splices.append((start, end, len(self._splices), data))

    def _once(self, what: str) -> None:
        if what in self._done:
            raise LocalProtocolError(f"{what} already planned on this message")
        self._done.add(what)

    def _request(self, what: str) -> Request:
        if not isinstance(self._msg, Request):
            raise LocalProtocolError(f"{what} applies to requests only")
        return self._msg

    def _first(self, key: bytes) -> int | None:
        slots = self._msg.key_index().get(key)
        return slots[0] if slots else None

    def set_request_uri(self, uri: Uri | bytes) -> Edit:
        req = self._request("set_request_uri")
        self._once("set_request_uri")
        start = len(req.method) + 1
        end = self._data.find(b" ", start)
        self._splice(start, end, uri if isinstance(uri, bytes) else format_uri(uri))
        return self

    def prepend_via(self, via: Via | bytes) -> Edit:
        """Insert a Via line above the existing ones (one Via per line, §7.3.1 form)."""
        value = via if isinstance(via, bytes) else format_via(via)
        first = self._first(b"via")
        pos = self._starts[0 if first is None else first]
        self._splice(pos, pos, b"Via: " + value + b"\r\n")
        return self

    def _remove_first_value(self, key: bytes, what: str) -> None:
        self._once(f"remove_top_{what}")
        i = self._first(key)
        if i is None:
            raise LocalProtocolError(f"no {what} header to remove")
        start, end = self._starts[i], self._starts[i + 1]
        line = self._data[start:end]
        colon = line.find(b":")
        comma = first_top(line, b",", colon + 1)
        if comma < 0:
            self._splice(start, end, b"")
            return
        j = comma + 1
        while j < len(line) and line[j] in b" \t\r\n":
            j += 1
        self._splice(start + colon + 1, start + j, b" ")

    def remove_top_via(self) -> Edit:
        self._remove_first_value(b"via", "Via")
        return self

    def remove_top_route(self) -> Edit:
        self._request("remove_top_route")
        self._remove_first_value(b"route", "Route")
        return self

    def decrement_max_forwards(self) -> Edit:
        req = self._request("decrement_max_forwards")
        self._once("decrement_max_forwards")
        mf = req.max_forwards
        i = self._first(b"max-forwards")
        if i is None or mf is None:
            pos = self._starts[0]
            self._splice(pos, pos, b"Max-Forwards: %d\r\n" % DEFAULT_MAX_FORWARDS)
            return self
        if mf == 0:
            raise RemoteProtocolError("Too Many Hops", 483)
        name = req.headers[i].name
        self._splice(self._starts[i], self._starts[i + 1], b"%s: %d\r\n" % (name, mf - 1))
        return self

    def add_record_route(self, value: NameAddr | bytes) -> Edit:
        self._request("add_record_route")
        v = value if isinstance(value, bytes) else format_name_addr(value)
        first = self._first(b"record-route")
        pos = self._starts[0 if first is None else first]
        self._splice(pos, pos, b"Record-Route: " + v + b"\r\n")
        return self

    def add_header(self, name: bytes, value: bytes) -> Edit:
        """Append a header line after the last one."""
        if b"\r" in value or b"\n" in value or b"\r" in name or b":" in name:
            raise LocalProtocolError(f"invalid header line {name!r}: {value!r}")
        pos = self._starts[-1]
        self._splice(pos, pos, name + b": " + value + b"\r\n")
        return self

    def remove_line(self, index: int) -> Edit:
        """Remove header line ``index`` (as in ``msg.headers``)."""
        self._splice(self._starts[index], self._starts[index + 1], b"")
        return self

    def remove_headers(self, key: bytes) -> Edit:
        """Remove every line of header ``key`` (any spelling)."""
        for i in self._msg.key_index().get(header_key(key), []):
            self._splice(self._starts[i], self._starts[i + 1], b"")
        return self

    def set_body(self, body: bytes) -> Edit:
        """Replace the body; every Content-Length line is rewritten to match (§20.14)."""
        self._once("set_body")
        for i in self._msg.key_index().get(b"content-length", []):
            name = self._msg.headers[i].name
            self._splice(self._starts[i], self._starts[i + 1], b"%s: %d\r\n" % (name, len(body)))
        self._body = body
        return self

    def to_bytes(self) -> bytes:
        """Apply the splices; the result is the edited message, body included."""
        data = self._data
        msg = self._msg
        body = msg.body if self._body is None else self._body
        body_start = self._starts[-1] + 2
        splices = sorted(self._splices)
        if b"content-length" not in msg.key_index():
            pos = self._starts[-1]
            splices.append((pos, pos, len(splices), b"Content-Length: %d\r\n" % len(body)))
            splices.sort()
        out: list[bytes] = []
        cursor = 0
        for start, end, _, repl in splices:
            if start < cursor:
                raise LocalProtocolError("overlapping edits on one message")
            out.append(data[cursor:start])
            out.append(repl)
            cursor = end
        if self._body is None:
            out.append(data[cursor : body_start + len(msg.body)])
        else:
            out.append(data[cursor:body_start])
            out.append(body)
        return b"".join(out)


def forward_request(
    request: Request,
    *,
    via: Via | bytes,
    record_route: NameAddr | bytes | None = None,
    request_uri: Uri | bytes | None = None,
    pop_route: bool = False,
) -> bytes:
    """The usual proxy edits (RFC 3261 §16.6) applied to a received request."""
    edit = Edit(request)
    if request_uri is not None:
        edit.set_request_uri(request_uri)
    if pop_route:
        edit.remove_top_route()
    edit.decrement_max_forwards()
    if record_route is not None:
        edit.add_record_route(record_route)
    return edit.prepend_via(via).to_bytes()


def forward_response(response: Message) -> bytes:
    """A received response with its top Via removed (RFC 3261 §16.7 step 3)."""
    return Edit(response).remove_top_via().to_bytes()
