"""Write a message model as bytes.

Rules (RFC 3261 §7, §7.5, §20.14):

- Start line ``Method SP Request-URI SP SIP/2.0`` or ``SIP/2.0 SP code SP reason``.
- Every header line written ``name: value`` in model order (names as received, folded
  values already collapsed to one line), CRLF line ends, one empty line, then the body.
- Content-Length always matches the body: the existing line's value is replaced, or
  ``Content-Length`` is appended when the message had none (mandatory on streams).
- ``parse_datagram(serialize(m))`` gives a model equal to ``m`` when ``m`` has a
  Content-Length line (otherwise equal apart from the added line).
- Forwarding should splice the received bytes instead (``rtc64.sip.edit``).
"""

from __future__ import annotations

from rtc64.sip.message import Request, Response
from rtc64.sip.uri import format_uri


def start_line(msg: Request | Response) -> bytes:
    if isinstance(msg, Request):
        return msg.method + b" " + format_uri(msg.uri) + b" SIP/2.0"
    return b"SIP/2.0 %d %s" % (msg.status, msg.reason)


def serialize(msg: Request | Response) -> bytes:
    """The message as bytes, with a Content-Length that matches the body."""
    cl = b"%d" % len(msg.body)
    lines = [start_line(msg)]
    slots = msg.key_index().get(b"content-length")
    for h in msg.headers:
        lines.append(h.name + b": " + h.value)
    if slots:
        for i in slots:
            lines[i + 1] = msg.headers[i].name + b": " + cl
    else:
        lines.append(b"Content-Length: " + cl)
    lines.append(b"")
    lines.append(msg.body)
    return b"\r\n".join(lines)
