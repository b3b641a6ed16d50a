# Rules: RFC 5572 (TSP) in the Public TSP profile, over UDP only (port 3653).
# Wire facts checked against the TSP reference client (gogoCLIENT 1.2 by the RFC authors'
# company: net_rudp.c, tsp_net.c, tsp_cap.c, tsp_auth.c, xml_req.c) and the Public TSP
# reference router (pubTSP/router.c): RFC 5572's body text was not reachable here, so the
# section numbers below are the RFC's layout as remembered, not re-read; check them.
# - Framing over UDP (RFC 5572 §4.4.1): an 8-byte header, 0xF in the first nibble (an
#   IPv6 packet starts with 6), a 28-bit sequence number, a 32-bit timestamp; the server
#   answers with the request's header unchanged; then one text message.
# - Version (§4.4.2): ``VERSION=2.0.0`` CRLF; the answer is the ``CAPABILITY`` line, or
#   ``302 Unsupported client version``. No Content-length on these lines.
# - Authentication (§4.4.2): ``AUTHENTICATE ANONYMOUS`` CRLF (SASL ANONYMOUS, RFC 4505;
#   gogoCLIENT sends the C string's NUL too); the answer is ``200 Success``.
# - Command phase (§4.4.3): every message in both directions, status answers included, is
#   ``Content-length: N`` CRLF then N bytes; a create is ``<tunnel action="create"
#   type=...>``; its answer is ``200 Success`` CRLF ``<tunnel action="info" ...>`` CRLF; the
#   client confirms with ``<tunnel action="accept"></tunnel>`` (no answer). Tunnel types
#   v6v4, v6udpv4, v6anyv4 (the broker picks; behind NAT: v6udpv4), v4v6; actions create,
#   delete, info, accept, reject (Appendix A, the DTD).
# - Status codes (Appendix B): 200, 300, 301, 302, 303, 310, 500, 501, 502 (table below).
# - The document is parsed by a tiny strict reader (no entities, no DTD, no comments, no
#   processing instructions, bounded size): an attacker's XML never reaches an XML library.
#   It reads the DTD's elements (tunnel, server, client, broker, address, keepalive,
#   router, prefix, dns_server, as), empty-element tags, unknown attributes (proxy, mtu).
# - Anti-amplification (this profile; the RFC is silent): every request carries NUL
#   padding after its text (like QUIC's Initial padding) so that the answer is never
#   larger than the request; ``pad`` adds it, ``parse_request`` strips it. Anything
#   malformed raises only ``RemoteProtocolError`` carrying the TSP status to answer.
"""Public TSP signalling codec: UDP header, request/response lines, tunnel documents."""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv6Address

from rtc64.errors import LocalProtocolError, RemoteProtocolError

TSP_PORT = 3653
VERSION = b"2.0.0"
HEADER_SIZE = 8
MAX_MESSAGE = 2048
TUNNEL_TYPE = "v6udpv4"
#: the DTD's tunnel types; v6anyv4 lets the broker choose (this profile: v6udpv4).
TUNNEL_TYPES = frozenset({"v6v4", "v6udpv4", "v6anyv4", "v4v6"})
ACTIONS = frozenset({"create", "delete", "info", "accept", "reject"})
CAPABILITY = b"CAPABILITY TUNNEL=V6UDPV4 AUTH=ANONYMOUS"
#: every request is padded to this size: larger than any answer of this profile.
REQUEST_SIZE = 640
_SEQ_MASK = 0x0FFFFFFF


class Status(enum.IntEnum):
    """TSP status codes (RFC 5572 Appendix B) with their reason phrases."""

    SUCCESS = 200
    AUTHENTICATION_FAILED = 300
    NO_MORE_TUNNELS = 301
    UNSUPPORTED_CLIENT_VERSION = 302
    UNSUPPORTED_TUNNEL_TYPE = 303
    SERVER_SIDE_ERROR = 310
    INVALID_REQUEST_FORMAT = 500
    INVALID_IPV4_ADDRESS = 501
    INVALID_IPV6_ADDRESS = 502

    @property
    def reason(self) -> str:
        return _REASONS[self]


_REASONS = {
    Status.SUCCESS: "Success",
    Status.AUTHENTICATION_FAILED: "Authentication failed",
    Status.NO_MORE_TUNNELS: "No more tunnels available",
    Status.UNSUPPORTED_CLIENT_VERSION: "Unsupported client version",
    Status.UNSUPPORTED_TUNNEL_TYPE: "Unsupported tunnel type",
    Status.SERVER_SIDE_ERROR: "Server side error",
    Status.INVALID_REQUEST_FORMAT: "Invalid request format",
    Status.INVALID_IPV4_ADDRESS: "Invalid IPv4 address",
    Status.INVALID_IPV6_ADDRESS: "Invalid IPv6 address",
}


def _bad(reason: str, status: Status = Status.INVALID_REQUEST_FORMAT) -> RemoteProtocolError:
    return RemoteProtocolError(reason, int(status))


@dataclass(frozen=True, slots=True)
class Header:
    """The 8-byte TSP-over-UDP header (RFC 5572 §4.4.1)."""

    sequence: int
    timestamp: int

    def encode(self) -> bytes:
        if not 0 <= self.sequence <= _SEQ_MASK or not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise LocalProtocolError("TSP sequence or timestamp out of range")
        return struct.pack("!II", 0xF0000000 | self.sequence, self.timestamp)


def is_signalling(datagram: bytes) -> bool:
    """True when the datagram starts like TSP (0xF nibble); IPv6 packets start with 6."""
    return len(datagram) >= 1 and datagram[0] >> 4 == 0xF


def split_header(datagram: bytes) -> tuple[Header, bytes]:
    """The header and the message bytes of one TSP datagram."""
    if len(datagram) < HEADER_SIZE:
        raise _bad("TSP datagram shorter than its header")
    first, stamp = struct.unpack_from("!II", datagram)
    if first >> 28 != 0xF:
        raise _bad("TSP header marker is not 0xF")
    return Header(first & _SEQ_MASK, stamp), datagram[HEADER_SIZE:]


# ---------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class TunnelDoc:
    """A ``<tunnel>`` document: create/delete/accept (client) or info (server).

    ``type`` None leaves the attribute out (the reference client's accept carries none).
    """

    action: str
    type: str | None = TUNNEL_TYPE
    lifetime: int | None = None
    server_ipv4: IPv4Address | None = None
    server_ipv6: IPv6Address | None = None
    client_ipv4: IPv4Address | None = None
    client_ipv6: IPv6Address | None = None
    keepalive_interval: int | None = None
    keepalive_ipv6: IPv6Address | None = None

    def encode(self) -> bytes:
        attrs = f' action="{self.action}"'
        if self.type is not None:
            attrs += f' type="{self.type}"'
        if self.lifetime is not None:
            attrs += f' lifetime="{self.lifetime}"'
        out = [f"<tunnel{attrs}>"]
        if self.server_ipv4 is not None or self.server_ipv6 is not None:
            out.append("<server>")
            out += _addresses(self.server_ipv4, self.server_ipv6)
            out.append("</server>")
        client = _addresses(self.client_ipv4, self.client_ipv6)
        if self.keepalive_interval is not None:
            client.append(f'<keepalive interval="{self.keepalive_interval}">')
            client += _addresses(None, self.keepalive_ipv6)
            client.append("</keepalive>")
        if client:
            out += ["<client>", *client, "</client>"]
        out.append("</tunnel>")
        return "".join(out).encode("ascii")


def _addresses(v4: IPv4Address | None, v6: IPv6Address | None) -> list[str]:
    out = []
    if v4 is not None:
        out.append(f'<address type="ipv4">{v4}</address>')
    if v6 is not None:
        out.append(f'<address type="ipv6">{v6}</address>')
    return out


_TOKEN = re.compile(
    rb'<(/?)([a-z_]+)((?:\s+[a-z_]+="[^"<>&\x00-\x1f\x7f-\xff]*")*)\s*(/?)>|([^<]+)'
)
_ATTR = re.compile(rb'([a-z_]+)="([^"<>&\x00-\x1f\x7f-\xff]*)"')
_ELEMENTS = {
    b"tunnel",
    b"server",
    b"client",
    b"broker",
    b"address",
    b"keepalive",
    b"router",
    b"prefix",
    b"dns_server",
    b"as",
}
#: elements whose text this profile skips (a router's delegated prefix).
_TEXT_IGNORED = {b"prefix"}


def parse_document(text: bytes) -> TunnelDoc:
    """Parse one ``<tunnel>`` document with the strict reader."""
    if len(text) > MAX_MESSAGE:
        raise _bad("tunnel document too large")
    pos = 0
    stack: list[bytes] = []
    tunnel: dict[bytes, bytes] | None = None
    fields: dict[str, object] = {}
    address_type: bytes | None = None
    closed = False
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _bad(f"unexpected markup at offset {pos}")
        pos = match.end()
        closing, name, rawattrs, empty, chars = match.groups()
        if chars is not None:
            if stack and stack[-1] in _TEXT_IGNORED:
                continue
            if not stack or stack[-1] != b"address":
                if chars.strip():
                    raise _bad("text outside an address element")
                continue
            _address(fields, stack, address_type, chars.strip())
            continue
        if closed:
            raise _bad("markup after </tunnel>")
        if name not in _ELEMENTS:
            raise _bad(f"unknown element {name.decode('ascii')!r}")
        if closing:
            if empty or rawattrs or not stack or stack.pop() != name:
                raise _bad("mismatched closing tag")
            closed = not stack
            continue
        attrs = dict(_ATTR.findall(rawattrs))
        if (name == b"tunnel") == bool(stack):
            raise _bad("the document must be one <tunnel> element")
        if len(stack) > 4:
            raise _bad("tunnel document nested too deep")
        stack.append(name)
        if name == b"tunnel":
            tunnel = attrs
        elif name == b"address":
            address_type = attrs.get(b"type")
        elif name == b"keepalive":
            fields["keepalive_interval"] = _int(attrs.get(b"interval"), "keepalive interval")
        if empty:
            stack.pop()
            closed = not stack
    if tunnel is None or not closed:
        raise _bad("unterminated tunnel document")
    action = tunnel.get(b"action", b"").decode("ascii")
    if action not in ACTIONS:
        raise _bad(f"unknown tunnel action {action!r}")
    raw_type = tunnel.get(b"type")
    kind = None if raw_type is None else raw_type.decode("ascii")
    lifetime = tunnel.get(b"lifetime")
    return TunnelDoc(
        action=action,
        type=kind,
        lifetime=None if lifetime is None else _int(lifetime, "lifetime"),
        **fields,  # type: ignore[arg-type]
    )


def _int(raw: bytes | None, what: str) -> int:
    if raw is None or not raw.isdigit() or len(raw) > 9:
        raise _bad(f"{what} is not a number")
    return int(raw)


def _address(fields: dict[str, object], stack: list[bytes], kind: bytes | None, raw: bytes) -> None:
    owner = stack[-2] if len(stack) >= 2 else b""
    prefix = {b"server": "server", b"client": "client", b"keepalive": "keepalive"}.get(owner)
    if prefix is None:
        return  # addresses of elements this profile ignores (router, prefix)
    try:
        text = raw.decode("ascii")
        if kind == b"ipv4":
            fields[f"{prefix}_ipv4"] = IPv4Address(text)
        elif kind == b"ipv6":
            fields[f"{prefix}_ipv6"] = IPv6Address(text)
        elif kind not in (b"dn",):
            raise _bad("address type must be ipv4, ipv6 or dn")
    except (AddressValueError, UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"bad {prefix} address") from exc
    if prefix == "keepalive" and kind == b"ipv4":
        raise _bad("keepalive address must be IPv6")


# ---------------------------------------------------------------------------- messages


class Kind(enum.Enum):
    """What a request asks for."""

    VERSION = "version"
    AUTHENTICATE = "authenticate"
    TUNNEL = "tunnel"


@dataclass(frozen=True, slots=True)
class Request:
    """One client request: its kind and its argument (version, mechanism or document)."""

    kind: Kind
    version: bytes = b""
    mechanism: bytes = b""
    document: TunnelDoc | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """One server answer: a status (or the capability line) and an optional document.

    ``framed``: sent with ``Content-length`` (every answer in the command phase, §4.4.3).
    """

    status: int
    reason: str
    capability: bytes = b""
    document: TunnelDoc | None = None
    framed: bool = False


def pad(message: bytes, size: int = REQUEST_SIZE) -> bytes:
    """The request padded with NULs to ``size`` (never truncated)."""
    return message + b"\x00" * max(0, size - len(message))


def _body(message: bytes, *, padded: bool) -> bytes:
    body = message.rstrip(b"\x00") if padded else message
    if b"\x00" in body:
        raise _bad("NUL byte inside a TSP message")
    if len(body) > MAX_MESSAGE:
        raise _bad("TSP message too large")
    return body


def _content(body: bytes) -> bytes:
    """The bytes announced by a leading ``Content-length:`` line."""
    line, sep, rest = body.partition(b"\r\n")
    name, colon, value = line.partition(b":")
    if not sep or not colon or name.strip().lower() != b"content-length":
        raise _bad("tunnel request without Content-length")
    length = _int(value.strip(), "Content-length")
    if length > len(rest):
        raise _bad("Content-length larger than the message")
    return rest[:length]


def encode_request(request: Request) -> bytes:
    """The request text (unpadded: the caller pads with ``pad``)."""
    if request.kind is Kind.VERSION:
        return b"VERSION=" + request.version + b"\r\n"
    if request.kind is Kind.AUTHENTICATE:
        return b"AUTHENTICATE " + request.mechanism + b"\r\n"
    if request.document is None:
        raise LocalProtocolError("tunnel request without a document")
    doc = request.document.encode() + b"\r\n"
    return b"Content-length: %d\r\n" % len(doc) + doc


def parse_request(message: bytes) -> Request:
    """Parse one client message (padding allowed)."""
    body = _body(message, padded=True)
    if body.startswith(b"VERSION="):
        version, sep, _ = body[8:].partition(b"\r\n")
        if not sep or not version:
            raise _bad("VERSION line without CRLF")
        return Request(Kind.VERSION, version=version)
    if body.startswith(b"AUTHENTICATE "):
        mech, sep, _ = body[13:].partition(b"\r\n")
        if not sep or not mech or not mech.isalnum():
            raise _bad("AUTHENTICATE line malformed")
        return Request(Kind.AUTHENTICATE, mechanism=mech)
    if is_command(body):
        return Request(Kind.TUNNEL, document=parse_document(_content(body).rstrip(b"\r\n")))
    raise _bad("unknown TSP command")


def encode_response(response: Response) -> bytes:
    """The answer text (never padded)."""
    if response.capability:
        return response.capability + b"\r\n"
    status = b"%d %s\r\n" % (response.status, response.reason.encode("ascii"))
    if response.document is None and not response.framed:
        return status
    content = status
    if response.document is not None:
        content += response.document.encode() + b"\r\n"
    return b"Content-length: %d\r\n" % len(content) + content


_STATUS = re.compile(rb"([1-9][0-9]{2,3}) ([ -~]*)")


def parse_response(message: bytes) -> Response:
    """Parse one server answer."""
    body = _body(message, padded=False)
    if body.startswith(b"CAPABILITY "):
        line, sep, _ = body.partition(b"\r\n")
        if not sep:
            raise _bad("CAPABILITY line without CRLF")
        return Response(0, "", capability=line)
    framed = body[:15].lower() == b"content-length:"
    if framed:
        body = _content(body)
    line, sep, rest = body.partition(b"\r\n")
    match = _STATUS.fullmatch(line)
    if not sep or match is None:
        raise _bad("malformed TSP status line")
    rest = rest.rstrip(b"\r\n")
    document = parse_document(rest) if rest else None
    return Response(int(match[1]), match[2].decode("ascii"), document=document, framed=framed)


def is_command(message: bytes) -> bool:
    """True when the message is of the command phase (starts with ``Content-length:``)."""
    return message[:15].lower() == b"content-length:"


def capabilities(line: bytes) -> frozenset[bytes]:
    """The ``TUNNEL=``/``AUTH=`` tokens of a CAPABILITY line."""
    return frozenset(line.split()[1:])
