"""Strict message checking for ``rtc64 sip check``.

Rules (RFC 3261, RFC 4475, RFC 5118):

- ``check`` frames the bytes as one datagram, parses them and runs every typed header
  parser (``headers.validate``). Where RFC 4475 lets a liberal element repair a message
  (quotbal, ltgtruri, lwsruri, lwsstart, trws, escruri, baddate, regbadct, badaspec,
  baddn) the verdict is "invalid"; the parser itself only enforces what every element
  must (framing, start line, the essential headers).
- The verdict line is ``valid`` or ``invalid: <status> <reason>``.
- ``check_file`` is ``check`` for a message saved in a file: a file with no CR at all
  (written by hand or saved by an editor with LF line endings) is read with every LF as
  CRLF, and the result says so (``normalised``); a file with some CRs is taken as it is,
  so mixed line endings stay a framing error, with the first bare LF line named.
- ``describe`` summarises a message: method or status, Request-URI, each Via hop
  (transport, host written by ``format_host``, port) and each Contact host.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import format_host
from rtc64.sip.framing import parse_datagram
from rtc64.sip.headers import STAR, contacts, validate
from rtc64.sip.message import Request, Response
from rtc64.sip.uri import SipUri, Uri, format_uri


@dataclass(frozen=True, slots=True)
class LintResult:
    """Outcome of ``check``: the verdict and, when valid, the parsed message."""

    valid: bool
    status: int | None = None
    reason: str | None = None
    message: Request | Response | None = None
    normalised: bool = False
    """The bytes had LF line endings only and were checked with CRLF."""
    bare_lf_line: int | None = None
    """When invalid: the first line ended by a bare LF in a file that also has CRLFs."""

    @property
    def verdict(self) -> str:
        return "valid" if self.valid else f"invalid: {self.status} {self.reason}"


def check(data: bytes) -> LintResult:
    """Check one message given as a whole datagram."""
    try:
        msg = parse_datagram(data)
        validate(msg)
    except RemoteProtocolError as exc:
        return LintResult(False, exc.status, exc.reason)
    return LintResult(True, message=msg)


def normalise_line_endings(data: bytes) -> tuple[bytes, bool]:
    """``data`` with LF turned into CRLF when it contains LF and no CR at all."""
    if b"\n" in data and b"\r" not in data:
        return data.replace(b"\n", b"\r\n"), True
    return data, False


def check_file(data: bytes) -> LintResult:
    """``check`` on a file's contents, LF-only line endings read as CRLF."""
    wire, normalised = normalise_line_endings(data)
    result = check(wire)
    if normalised:
        return replace(result, normalised=True)
    bare = _first_bare_lf(data)
    return replace(result, bare_lf_line=bare) if bare and not result.valid else result


def _first_bare_lf(data: bytes) -> int | None:
    start = 0
    while (at := data.find(b"\n", start)) >= 0:
        if at == 0 or data[at - 1] != 0x0D:
            return data.count(b"\n", 0, at) + 1
        start = at + 1
    return None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def _port(port: int | None) -> str:
    return "default" if port is None else str(port)


def _uri_summary(uri: Uri) -> str:
    text = _text(format_uri(uri))
    if isinstance(uri, SipUri):
        return f"{text} (host {format_host(uri.host)}, port {_port(uri.port)})"
    return text


def describe(msg: Request | Response) -> list[str]:
    """Summary lines: method/status, Request-URI, Via hops, Contact hosts."""
    lines: list[str] = []
    if isinstance(msg, Request):
        lines.append(f"request: {_text(msg.method)}")
        lines.append(f"request-uri: {_uri_summary(msg.uri)}")
    else:
        lines.append(f"response: {msg.status} {_text(msg.reason)}")
    for n, via in enumerate(msg.vias, 1):
        lines.append(
            f"via {n}: {_text(via.transport)} host {format_host(via.host)} port {_port(via.port)}"
        )
    try:
        found = contacts(msg)
    except RemoteProtocolError as exc:
        lines.append(f"contact: unreadable ({exc.reason})")
        return lines
    if found is STAR:
        lines.append("contact: *")
        return lines
    assert not isinstance(found, type(STAR))
    for n, c in enumerate(found, 1):
        uri = c.uri
        if isinstance(uri, SipUri):
            lines.append(f"contact {n}: host {format_host(uri.host)} port {_port(uri.port)}")
        else:
            lines.append(f"contact {n}: {_text(format_uri(uri))} (no host)")
    return lines
