# SDP parser (RFC 8866 §5, §9 grammar; RFC 3605; RFC 8839 §5.1).
#
# Rules:
# - Input is bytes (decoded as UTF-8, bytes that are not UTF-8 kept by surrogateescape so
#   they write back unchanged) or str. Lines end in CRLF or bare LF; blank lines are skipped.
# - Every line is ``<type>=<value>`` with a one-letter type and no space around ``=``.
# - Strict where the gateway uses the value: ``v=`` first, one ``o=``, ``c=``/``o=``
#   addresses of the family their addrtype names, ports, ``a=rtcp``, ``a=candidate``,
#   ``b=``/``t=`` numbers. Any such error is a ``RemoteProtocolError`` 400 naming the line.
# - Lenient (RFC 8866 §5 "be liberal"): a missing ``s=`` or ``t=`` is accepted (``name`` is
#   ``None``, ``times`` empty); session lines in another order than §5 are accepted and
#   written back in §5 order; known attributes that do not parse as typed (rtpmap, fmtp,
#   fingerprint, group, ssrc, extmap) stay verbatim ``Attribute``s; lines of an unknown
#   type and session-only lines found inside a media section are kept as ``UnknownLine``.
"""Parse SDP text into a ``SessionDescription``."""

from __future__ import annotations

from collections.abc import Callable

from rtc64.errors import RemoteProtocolError
from rtc64.sdp.hosts import address_family, read_address, read_port, read_uint
from rtc64.sdp.ice import decode_candidate
from rtc64.sdp.model import (
    AnyAttribute,
    Attribute,
    AttributeEntry,
    Bandwidth,
    Connection,
    Direction,
    Extmap,
    Fingerprint,
    Fmtp,
    Group,
    MediaDescription,
    Origin,
    Rtcp,
    RtpMap,
    SessionDescription,
    Ssrc,
    Timing,
    UnknownLine,
)


def parse_connection(value: str) -> Connection:
    """Read the value of ``c=`` (or the tail of ``a=rtcp``); ``ValueError`` if bad."""
    fields = value.split(" ")
    if len(fields) != 3:
        raise ValueError("expected '<nettype> <addrtype> <address>'")
    nettype, addrtype, text = fields
    if nettype != "IN":
        return Connection(nettype, addrtype, text)
    family = address_family(addrtype)
    if family is None:
        return Connection(nettype, addrtype, text)
    host, _, suffix = text.partition("/")
    address = read_address(host, family)
    ttl: int | None = None
    count: int | None = None
    if suffix:
        numbers = suffix.split("/")
        if addrtype == "IP4" and len(numbers) <= 2:
            ttl = read_uint(numbers[0], "TTL", 3)
            if len(numbers) == 2:
                count = read_uint(numbers[1], "number of addresses", 5)
        elif addrtype == "IP6" and len(numbers) == 1:
            count = read_uint(numbers[0], "number of addresses", 5)
        else:
            raise ValueError(f"bad multicast suffix {suffix!r}")
    return Connection(nettype, addrtype, address, ttl, count)


def parse_origin(value: str) -> Origin:
    """Read the value of ``o=``; ``ValueError`` if bad (a username may hold spaces)."""
    fields = value.rsplit(" ", 5)
    if len(fields) != 6 or not all(fields):
        raise ValueError(
            "expected '<username> <sess-id> <sess-version> <nettype> <addrtype> <addr>'"
        )
    username, sess_id, sess_version, nettype, addrtype, text = fields
    family = address_family(addrtype) if nettype == "IN" else None
    address = read_address(text, family) if family is not None else text
    return Origin(username, sess_id, sess_version, nettype, addrtype, address)


def _parse_rtcp(value: str) -> Rtcp:
    port, sep, rest = value.partition(" ")
    return Rtcp(read_port(port), parse_connection(rest) if sep else None)


def _parse_rtpmap(value: str) -> RtpMap:
    pt, _, rest = value.partition(" ")
    parts = rest.split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError("bad rtpmap")
    channels = read_uint(parts[2], "channels", 3) if len(parts) == 3 else None
    return RtpMap(read_uint(pt, "payload type", 3), parts[0], read_uint(parts[1], "rate"), channels)


def _parse_fmtp(value: str) -> Fmtp:
    fmt, sep, params = value.partition(" ")
    if not sep or not fmt:
        raise ValueError("bad fmtp")
    return Fmtp(fmt, params)


def _parse_fingerprint(value: str) -> Fingerprint:
    fields = value.split(" ")
    if len(fields) != 2 or not all(fields):
        raise ValueError("bad fingerprint")
    return Fingerprint(fields[0], fields[1])


def _parse_group(value: str) -> Group:
    fields = value.split(" ")
    if not all(fields):
        raise ValueError("bad group")
    return Group(fields[0], tuple(fields[1:]))


def _parse_ssrc(value: str) -> Ssrc:
    ssrc, sep, attr = value.partition(" ")
    if not sep or not attr:
        raise ValueError("bad ssrc")
    name, colon, attr_value = attr.partition(":")
    return Ssrc(read_uint(ssrc, "ssrc", 10), name, attr_value if colon else None)


def _parse_extmap(value: str) -> Extmap:
    fields = value.split(" ", 2)
    if len(fields) < 2 or not all(fields):
        raise ValueError("bad extmap")
    ident, slash, direction = fields[0].partition("/")
    return Extmap(
        read_uint(ident, "extmap id", 5),
        fields[1],
        Direction(direction) if slash else None,
        fields[2] if len(fields) == 3 else None,
    )


_Reader = Callable[[str], AnyAttribute]

STRICT_ATTRIBUTES: dict[str, _Reader] = {"rtcp": _parse_rtcp, "candidate": decode_candidate}
"""Attributes that carry addresses or ports: a malformed one rejects the SDP."""

LENIENT_ATTRIBUTES: dict[str, _Reader] = {
    "rtpmap": _parse_rtpmap,
    "fmtp": _parse_fmtp,
    "fingerprint": _parse_fingerprint,
    "group": _parse_group,
    "ssrc": _parse_ssrc,
    "extmap": _parse_extmap,
}
"""Attributes read as typed when well formed, else kept verbatim."""


def parse_attribute(value: str) -> AnyAttribute:
    """Read the value after ``a=``; ``ValueError`` for a malformed strict attribute."""
    name, colon, rest = value.partition(":")
    if not colon:
        return Attribute(name)
    strict = STRICT_ATTRIBUTES.get(name)
    if strict is not None:
        return strict(rest)
    lenient = LENIENT_ATTRIBUTES.get(name)
    if lenient is not None:
        try:
            typed = lenient(rest)
        except ValueError:
            return Attribute(name, rest)
        # Keep the attribute verbatim unless the typed form writes it back unchanged.
        if typed.value == rest:
            return typed
    return Attribute(name, rest)


def _parse_media(value: str) -> MediaDescription:
    fields = value.split(" ")
    if len(fields) < 3 or not all(fields[:3]):
        raise ValueError("expected '<media> <port>[/<count>] <proto> <fmt> ...'")
    port_text, slash, count_text = fields[1].partition("/")
    port = read_port(port_text)
    count = read_uint(count_text, "port count", 5) if slash else None
    if count == 0:
        raise ValueError("port count 0")
    formats = tuple(f for f in fields[3:] if f)
    return MediaDescription(fields[0], port, fields[2], formats, port_count=count)


def _parse_bandwidth(value: str) -> Bandwidth:
    bwtype, colon, number = value.partition(":")
    if not colon or not bwtype:
        raise ValueError("expected '<bwtype>:<bandwidth>'")
    return Bandwidth(bwtype, read_uint(number, "bandwidth"))


def _parse_timing(value: str) -> Timing:
    fields = value.split(" ")
    if len(fields) != 2:
        raise ValueError("expected '<start-time> <stop-time>'")
    return Timing(read_uint(fields[0], "start time"), read_uint(fields[1], "stop time"))


class _Media:
    """Mutable builder for one media section."""

    __slots__ = ("attributes", "bandwidths", "connections", "head", "information", "key")

    def __init__(self, head: MediaDescription) -> None:
        self.head = head
        self.information: str | None = None
        self.connections: list[Connection] = []
        self.bandwidths: list[Bandwidth] = []
        self.key: str | None = None
        self.attributes: list[AttributeEntry] = []

    def build(self) -> MediaDescription:
        h = self.head
        return MediaDescription(
            kind=h.kind,
            port=h.port,
            proto=h.proto,
            formats=h.formats,
            port_count=h.port_count,
            information=self.information,
            connections=tuple(self.connections),
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            attributes=tuple(self.attributes),
        )


def _lines(data: bytes | str) -> list[str]:
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    out = []
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]  # noqa: PLW2901 - strip the CR of CRLF in place
        if line:
            out.append(line)
    return out


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(number: int, line: str, what: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"Bad Request: SDP line {number} {_shorten(line)!r}: {_shorten(what)}"
    )


def parse(data: bytes | str) -> SessionDescription:
    """Parse an SDP body. Raises ``RemoteProtocolError`` (400) naming the offending line.

    Strict: ``v=`` first, one ``o=``; bad ``c=``/``o=``/``a=rtcp``/``a=candidate``
    addresses, ports and numbers. Lenient on purpose: CRLF or LF, blank lines, a missing
    ``s=`` (``name is None``) or ``t=`` (``times == ()``), session lines out of §5 order
    (written back in order), malformed rtpmap/fmtp/fingerprint/group/ssrc/extmap (kept
    verbatim), unknown line types (kept as ``UnknownLine``, in place).
    """
    lines = _lines(data)
    if not lines or not lines[0].startswith("v="):
        raise RemoteProtocolError("Bad Request: SDP does not start with v=")
    version = 0
    origin: Origin | None = None
    name: str | None = None
    information: str | None = None
    uri: str | None = None
    emails: list[str] = []
    phones: list[str] = []
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = []
    times: list[Timing] = []
    zone: str | None = None
    key: str | None = None
    attributes: list[AttributeEntry] = []
    media: list[_Media] = []
    seen: set[str] = set()
    single = frozenset("vosiuczk")

    for number, line in enumerate(lines, 1):
        kind = line[0]
        if len(line) < 2 or line[1] != "=" or not (kind.isascii() and kind.isalpha()):
            raise _error(number, line, "expected '<type>=<value>'")
        value = line[2:]
        try:
            if kind == "m":
                media.append(_Media(_parse_media(value)))
            elif media:
                section = media[-1]
                if kind == "a":
                    section.attributes.append(parse_attribute(value))
                elif kind == "c":
                    section.connections.append(parse_connection(value))
                elif kind == "b":
                    section.bandwidths.append(_parse_bandwidth(value))
                elif kind == "i" and section.information is None:
                    section.information = value
                elif kind == "k" and section.key is None:
                    section.key = value
                elif kind in "vo":
                    raise ValueError(f"{kind}= inside a media section")
                else:
                    section.attributes.append(UnknownLine(kind, value))
            elif kind == "a":
                attributes.append(parse_attribute(value))
            elif kind in single and kind in seen:
                raise ValueError(f"more than one {kind}= line")
            else:
                seen.add(kind)
                if kind == "v":
                    version = read_uint(value, "version", 5)
                elif kind == "o":
                    origin = parse_origin(value)
                elif kind == "s":
                    name = value
                elif kind == "i":
                    information = value
                elif kind == "u":
                    uri = value
                elif kind == "e":
                    emails.append(value)
                elif kind == "p":
                    phones.append(value)
                elif kind == "c":
                    connection = parse_connection(value)
                elif kind == "b":
                    bandwidths.append(_parse_bandwidth(value))
                elif kind == "t":
                    times.append(_parse_timing(value))
                elif kind == "r":
                    if not times:
                        raise ValueError("r= before any t=")
                    last = times[-1]
                    times[-1] = Timing(last.start, last.stop, (*last.repeats, value))
                elif kind == "z":
                    zone = value
                elif kind == "k":
                    key = value
                else:
                    attributes.append(UnknownLine(kind, value))
        except ValueError as exc:
            raise _error(number, line, str(exc)) from None

    if origin is None:
        raise RemoteProtocolError("Bad Request: SDP has no o= line")
    return SessionDescription(
        origin=origin,
        name=name,
        version=version,
        information=information,
        uri=uri,
        emails=tuple(emails),
        phones=tuple(phones),
        connection=connection,
        bandwidths=tuple(bandwidths),
        times=tuple(times),
        zone=zone,
        key=key,
        attributes=tuple(attributes),
        media=tuple(m.build() for m in media),
    )
