"""Parse a SIP message head: start line and header section (no framing here).

Rules (RFC 3261 §7.1, §7.2, §7.3.1, §7.5, §25.1; RFC 4475 §3.1.2):

- Lines end in CRLF; a bare CR or LF in the header section is refused.
- Request-Line is exactly ``Method SP Request-URI SP SIP-Version``: extra, leading or
  trailing whitespace is refused (lwsstart, trws), so is whitespace inside the URI
  (lwsruri), a URI in ``<>`` (ltgtruri) and a SIP Request-URI with ``?headers``
  (escruri, §19.1.1 table). Status-Line is ``SIP-Version SP 3DIGIT SP Reason-Phrase``
  with the code in 100..699. A version other than SIP/2.0 answers 505.
- Header lines are ``name *(SP/HT) ":" value``; a line starting with SP/HT continues the
  previous one and the fold becomes one SP. Names must be tokens.
- Work is split in two: ``scan_head`` finds lines, names and Content-Length (what framing
  needs; errors there are framing errors) and ``build_message`` parses the start line and
  the essentials. Nothing decodes the message to ``str``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from rtc64.errors import RemoteProtocolError
from rtc64.sip.grammar import WS, bad, is_token, show
from rtc64.sip.headers import KEY_CACHE, Header, header_key
from rtc64.sip.message import Request, Response, parse_essentials
from rtc64.sip.uri import SipUri, Uri, parse_uri

MAX_CONTENT_LENGTH_DIGITS = 10
_new = tuple.__new__


@dataclass(slots=True, init=False)
class Head:
    """What ``scan_head`` found: enough to frame the message and then build it."""

    start_line: bytes
    headers: list[Header]
    index: dict[bytes, list[int]]
    body_start: int
    content_length: int | None

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self,
        start_line: bytes,
        headers: list[Header],
        index: dict[bytes, list[int]],
        body_start: int,
        content_length: int | None,
    ) -> None:
        self.start_line = start_line
        self.headers = headers
        self.index = index
        self.body_start = body_start
        self.content_length = content_length


def _unfold(lines: list[bytes]) -> list[bytes]:
    """Join continuation lines (leading SP/HT) to the line before, the fold as one SP."""
    merged: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not merged:
                raise bad("continuation line before the first header")
            merged[-1] = merged[-1].rstrip(WS) + b" " + line.strip(WS)
        else:
            merged.append(line)
    return merged


def scan_head(data: bytes, head_end: int) -> Head:
    """Split ``data[:head_end]`` (start line and header lines, no final CRLF) into lines.

    The body starts at ``head_end + 4`` (after CRLF CRLF). Raises ``RemoteProtocolError``.
    """
    block = data[:head_end]
    lines = block.split(b"\r\n")
    n = len(lines) - 1
    if block.count(b"\n") != n or block.count(b"\r") != n:
        raise bad("bare CR or LF in the header section")
    start_line = lines[0]
    del lines[0]
    if block.find(b"\r\n ") >= 0 or block.find(b"\r\n\t") >= 0:
        lines = _unfold(lines)
    parts = [line.partition(b":") for line in lines]
    get = KEY_CACHE.get
    found = [get(name) for name, _, _ in parts]
    if None in found or not all(colon for _, colon, _ in parts):
        for i, (name, colon, _) in enumerate(parts):
            if not colon:
                raise bad(f"header line without ':' {show(lines[i])}")
            if found[i] is None:
                name = name.rstrip(WS)  # noqa: PLW2901 - LWS before ':' is not in the name
                found[i] = header_key(name)
                parts[i] = (name, b":", parts[i][2])
    keys = cast("list[bytes]", found)
    # tuple.__new__ skips the Python-level NamedTuple constructor (one call per line).
    headers: list[Header] = [_new(Header, (name, value.strip(WS))) for name, _, value in parts]
    index: dict[bytes, list[int]] = {}
    for i, key in enumerate(keys):
        slot = index.get(key)
        if slot is None:
            index[key] = [i]
        else:
            slot.append(i)
    content_length = None
    cl = index.get(b"content-length")
    if cl is not None:
        if len(cl) > 1:
            raise bad("multiple Content-Length headers")
        v = headers[cl[0]].value
        if not v.isdigit() or len(v.lstrip(b"0")) > MAX_CONTENT_LENGTH_DIGITS:
            raise bad(f"invalid Content-Length {show(v)}")
        content_length = int(v)
    return Head(start_line, headers, index, head_end + 4, content_length)


def check_version(version: bytes) -> None:
    """``SIP/2.0`` (case-insensitive); another well-formed version answers 505."""
    if version == b"SIP/2.0" or version.upper() == b"SIP/2.0":
        return
    major, dot, minor = version[4:].partition(b".")
    if version[:4].upper() == b"SIP/" and dot and major.isdigit() and minor.isdigit():
        raise RemoteProtocolError(f"Version Not Supported: {show(version)}", 505)
    raise bad(f"invalid SIP-Version {show(version)}")


def parse_request_line(line: bytes) -> tuple[bytes, Uri]:
    """``Method SP Request-URI SP SIP-Version`` -> ``(method, uri)``."""
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        if line[-1:] in (b" ", b"\t"):
            raise bad("whitespace after SIP-Version in Request-Line")
        if line[:1] in (b" ", b"\t"):
            raise bad("whitespace before Method in Request-Line")
        if b"  " in line:
            raise bad("extra whitespace between Request-Line elements")
        if len(parts) > 3:
            raise bad("whitespace inside Request-URI")
        raise bad(f"malformed Request-Line {show(line)}")
    method, target, version = parts
    check_version(version)
    if not is_token(method):
        raise bad(f"invalid Method {show(method)}")
    if target[:1] == b"<":
        raise bad("Request-URI enclosed in <>")
    uri = parse_uri(target, "Request-URI")
    if isinstance(uri, SipUri) and uri.headers:
        raise bad("headers not allowed in Request-URI")
    return method, uri


def parse_status_line(line: bytes) -> tuple[int, bytes]:
    """``SIP-Version SP Status-Code SP Reason-Phrase`` -> ``(status, reason)``."""
    version, sp1, rest = line.partition(b" ")
    check_version(version)
    code, sp2, reason = rest.partition(b" ")
    if not sp1 or not sp2:
        raise bad(f"malformed Status-Line {show(line)}")
    if len(code) != 3 or not code.isdigit() or not b"1" <= code[:1] <= b"6":
        raise bad(f"invalid Status-Code {show(code)}")
    return int(code), reason


def is_response_line(line: bytes) -> bool:
    return line[:4].upper() == b"SIP/"


def build_message(data: bytes, head: Head, body: bytes) -> Request | Response:
    """Parse the start line and essentials of a scanned head; ``data`` is the whole message."""
    line = head.start_line
    wire = data
    if is_response_line(line):
        status, reason = parse_status_line(line)
        ess = parse_essentials(head.headers, head.index, None)
        return Response(status, reason, tuple(head.headers), body, *ess, head.index, wire)
    method, uri = parse_request_line(line)
    ess = parse_essentials(head.headers, head.index, method)
    return Request(method, uri, tuple(head.headers), body, *ess, head.index, wire)
