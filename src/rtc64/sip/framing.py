"""Message framing: one message per datagram, or a sans-I/O framer for streams.

Rules (RFC 3261 §7.5, §18.3, §20.14; RFC 4475 §3.1.1.8, §3.1.2.2-3, §3.3.9; RFC 5626 §3.5.1):

- Datagram: the whole datagram is one message. Content-Length decides where the body
  ends and octets after it are discarded (dblreq); without Content-Length the rest of the
  datagram is the body (inv2543). Content-Length larger than what is there, negative,
  non-numeric or repeated answers 400. The header section must end with an empty line.
- Stream: Content-Length is mandatory. CRLF CRLF between messages is a keep-alive ping
  and a lone CRLF a pong (RFC 5626 §3.5.1); both are reported, never parsed. A message
  larger than ``max_size`` answers 513.
- A framing violation raises ``RemoteProtocolError`` and the ``StreamFramer`` is broken
  from then on (every later call raises; close the connection). A message that is framed
  correctly but malformed inside raises once and framing carries on with the next one.
"""

from __future__ import annotations

import enum

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.sip.grammar import bad
from rtc64.sip.message import Request, Response
from rtc64.sip.parser import Head, build_message, scan_head

DEFAULT_MAX_SIZE = 65535


def parse_datagram(data: bytes) -> Request | Response:
    """Parse one datagram as one message. Raises ``RemoteProtocolError``."""
    if data[:2] == b"\r\n":
        data = data.lstrip(b"\r\n")
    if not data:
        raise bad("empty message")
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        if data[-2:] == b"\r\n":
            # Report what else is wrong first; the missing empty line comes last.
            build_message(data, scan_head(data, len(data) - 2), b"")
        raise bad("header section not ended by an empty line")
    head = scan_head(data, head_end)
    start = head.body_start
    cl = head.content_length
    if cl is None:
        return build_message(data, head, data[start:])
    end = start + cl
    if end > len(data):
        raise bad("Content-Length larger than body")
    if end < len(data):
        data = data[:end]
    return build_message(data, head, data[start:])


def is_keepalive(data: bytes) -> bool:
    """True for a datagram of only CRLFs (a CRLF keep-alive, never a message)."""
    return bool(data) and not data.replace(b"\r\n", b"")


class NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


class KeepAlive(enum.Enum):
    """RFC 5626 §3.5.1: a client pings with CRLF CRLF and the server answers a CRLF pong."""

    PING = b"\r\n\r\n"
    PONG = b"\r\n"


class Closed(enum.Enum):
    CLOSED = "CLOSED"


NEED_DATA = NeedData.NEED_DATA
CLOSED = Closed.CLOSED
Event = Request | Response | KeepAlive | NeedData | Closed


class StreamFramer:
    """h11-shaped framer: ``receive_data(bytes)`` then ``next_event()`` until NEED_DATA.

    ``receive_data(b"")`` means the peer closed; ``next_event`` then returns ``CLOSED``
    (or raises if the connection ended inside a message).
    """

    __slots__ = ("_buf", "_eof", "_error", "_head", "_max", "_scan_from")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 64:
            raise LocalProtocolError(f"max_size {max_size} too small")
        self._buf = bytearray()
        self._max = max_size
        self._head: Head | None = None
        self._error: RemoteProtocolError | None = None
        self._eof = False
        self._scan_from = 0

    @property
    def broken(self) -> bool:
        return self._error is not None

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` marks the end of the stream."""
        if self._eof and data:
            raise LocalProtocolError("data received after end of stream")
        if not data:
            self._eof = True
        else:
            self._buf += data

    def next_event(self) -> Event:
        """The next message, keep-alive, NEED_DATA or CLOSED."""
        if self._error is not None:
            raise RemoteProtocolError(self._error.reason, self._error.status)
        if self._head is None:
            try:
                event = self._next_head()
            except RemoteProtocolError as exc:
                self._error = exc
                raise
            if event is not None:
                return event
        head = self._head
        assert head is not None
        total = head.body_start + (head.content_length or 0)
        buf = self._buf
        if len(buf) < total:
            if self._eof:
                self._error = bad("connection closed inside a message body")
                raise self._error
            return NEED_DATA
        data = bytes(buf[:total])
        del buf[:total]
        self._head = None
        return build_message(data, head, data[head.body_start :])

    def _next_head(self) -> KeepAlive | NeedData | Closed | None:
        buf = self._buf
        if buf[:2] == b"\r\n":
            if buf[:4] == b"\r\n\r\n":
                del buf[:4]
                return KeepAlive.PING
            if len(buf) == 2 or buf[2] != 0x0D or len(buf) >= 4:
                del buf[:2]
                return KeepAlive.PONG
            return NEED_DATA
        end = buf.find(b"\r\n\r\n", max(0, self._scan_from - 3))
        if end < 0:
            if len(buf) > self._max:
                raise _too_large(self._max)
            self._scan_from = len(buf)
            if self._eof:
                if buf:
                    raise bad("connection closed inside a message header")
                return CLOSED
            return NEED_DATA
        self._scan_from = 0
        if end + 4 > self._max:
            raise _too_large(self._max)
        head = scan_head(bytes(buf[:end]), end)
        if head.content_length is None:
            raise bad("missing Content-Length on a stream transport")
        if head.body_start + head.content_length > self._max:
            raise _too_large(self._max)
        self._head = head
        return None


def _too_large(limit: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"Message Too Large: more than {limit} octets", 513)
