# ICE candidates in SDP (RFC 8839 §5.1, priorities RFC 8445 §5.1.2).
#
# Rules:
# - ``candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
#   [raddr <address>] [rport <port>] *(<ext name> <ext value>)``, fields split on spaces.
# - The address is IPv4, IPv6 (bare) or a host name (mDNS ``.local``, RFC 8839 §5.1);
#   no ``addrtype`` says which, so a host name has no known family.
# - Transport and type keep their spelling (``UDP``/``udp``); the known types read as
#   ``CandidateType`` members, which compare equal to their strings.
# - Extension pairs (``generation 0``, ``tcptype active``, ``network-id 1``) keep their order;
#   ``raddr``/``rport`` are written right after ``typ`` as the grammar orders them.
# - A malformed candidate is an error, never passed through: a candidate left unparsed would
#   escape family rewriting.
"""ICE candidate attribute: model, reading, writing, building."""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from typing import ClassVar

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import Family, IPAddress
from rtc64.sdp.hosts import (
    Address,
    family_of_address,
    format_address,
    read_address,
    read_port,
    read_uint,
)


class CandidateType(enum.StrEnum):
    """Candidate types (RFC 8445 §5.1.1)."""

    HOST = "host"
    SRFLX = "srflx"
    PRFLX = "prflx"
    RELAY = "relay"


TYPE_PREFERENCE = {
    CandidateType.HOST: 126,
    CandidateType.PRFLX: 110,
    CandidateType.SRFLX: 100,
    CandidateType.RELAY: 0,
}
"""Recommended type preferences (RFC 8445 §5.1.2.2)."""

_TYPES = {t.value: t for t in CandidateType}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ``a=candidate`` line."""

    name: ClassVar[str] = "candidate"
    foundation: str
    component: int
    transport: str
    priority: int
    address: Address
    port: int
    typ: str
    related_address: Address | None = None
    related_port: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()

    @property
    def family(self) -> Family | None:
        """Family of the address; ``None`` for a host name."""
        return family_of_address(self.address)

    @property
    def related_family(self) -> Family | None:
        if self.related_address is None:
            return None
        return family_of_address(self.related_address)

    def extension(self, name: str) -> str | None:
        """The value of extension ``name`` (``generation``, ``tcptype``...), if present."""
        for key, val in self.extensions:
            if key == name:
                return val
        return None

    @property
    def value(self) -> str:
        """The value after ``a=candidate:``."""
        parts = [
            self.foundation,
            str(self.component),
            self.transport,
            str(self.priority),
            format_address(self.address),
            str(self.port),
            "typ",
            self.typ,
        ]
        if self.related_address is not None:
            parts += ("raddr", format_address(self.related_address))
        if self.related_port is not None:
            parts += ("rport", str(self.related_port))
        for pair in self.extensions:
            parts += pair
        return " ".join(parts)


def decode_candidate(value: str) -> Candidate:
    """Read the value after ``a=candidate:``; ``ValueError`` with the reason if malformed."""
    fields = value.split()
    if len(fields) < 8:
        raise ValueError("candidate needs 8 fields up to 'typ <type>'")
    foundation, component, transport, priority, address, port, typ_kw, typ = fields[:8]
    if typ_kw != "typ":
        raise ValueError(f"expected 'typ', found {typ_kw!r}")
    rest = fields[8:]
    if len(rest) % 2:
        raise ValueError(f"extension {rest[-1]!r} has no value")
    related_address: Address | None = None
    related_port: int | None = None
    extensions: list[tuple[str, str]] = []
    for i in range(0, len(rest), 2):
        key, val = rest[i], rest[i + 1]
        if key == "raddr" and related_address is None:
            related_address = read_address(val)
        elif key == "rport" and related_port is None:
            related_port = read_port(val)
        else:
            extensions.append((key, val))
    return Candidate(
        foundation=foundation,
        component=read_uint(component, "component id", 3),
        transport=transport,
        priority=read_uint(priority, "priority", 10),
        address=read_address(address),
        port=read_port(port),
        typ=_TYPES.get(typ, typ),
        related_address=related_address,
        related_port=related_port,
        extensions=tuple(extensions),
    )


def parse_candidate(text: str | bytes) -> Candidate:
    """Read a candidate as trickled or written in SDP (``[a=]candidate:...``).

    Raises ``RemoteProtocolError`` (400) naming what is wrong.
    """
    s = text.decode("utf-8", "surrogateescape") if isinstance(text, bytes) else text
    s = s.strip().removeprefix("a=")
    if not s.startswith("candidate:"):
        raise RemoteProtocolError(f"Bad Request: not an ICE candidate: {s[:80]!r}")
    try:
        return decode_candidate(s[len("candidate:") :])
    except ValueError as exc:
        raise RemoteProtocolError(f"Bad Request: bad ICE candidate {s[:120]!r}: {exc}") from None


def candidate_priority(typ: str, component: int = 1, local_preference: int = 65535) -> int:
    """RFC 8445 §5.1.2.1: ``2^24 * type pref + 2^8 * local pref + (256 - component)``."""
    type_pref = TYPE_PREFERENCE.get(_TYPES.get(typ, CandidateType.HOST), 0)
    return (type_pref << 24) + (local_preference << 8) + (256 - component)


def make_candidate(
    address: IPAddress,
    port: int,
    *,
    typ: str = CandidateType.HOST,
    component: int = 1,
    transport: str = "udp",
    foundation: str | None = None,
    priority: int | None = None,
    related: tuple[Address, int] | None = None,
    extensions: tuple[tuple[str, str], ...] = (),
) -> Candidate:
    """Build a candidate; foundation and priority default to stable, RFC 8445 values.

    The default foundation is derived from type, transport and address (RFC 8445 §5.1.1.3:
    same for candidates that share them), so the same inputs give the same candidate.
    """
    if foundation is None:
        key = f"{typ} {transport.lower()} {format_address(address)}".encode()
        foundation = str(zlib.crc32(key))
    return Candidate(
        foundation=foundation,
        component=component,
        transport=transport,
        priority=candidate_priority(typ, component) if priority is None else priority,
        address=address,
        port=port,
        typ=_TYPES.get(typ, typ),
        related_address=None if related is None else related[0],
        related_port=None if related is None else related[1],
        extensions=extensions,
    )


def media_candidates(
    address: IPAddress,
    port: int,
    *,
    rtcp_port: int | None = None,
    typ: str = CandidateType.HOST,
    transport: str = "udp",
    related: tuple[Address, int] | None = None,
) -> tuple[Candidate, ...]:
    """Candidates for a relay leg: component 1 (RTP), and 2 (RTCP) when ``rtcp_port`` is set."""
    rtp = make_candidate(address, port, typ=typ, transport=transport, related=related)
    if rtcp_port is None:
        return (rtp,)
    rtcp = make_candidate(
        address, rtcp_port, typ=typ, component=2, transport=transport, related=related
    )
    return (rtp, rtcp)
