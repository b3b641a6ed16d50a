# SDP data model (RFC 8866).
#
# Rules:
# - Every message is a frozen, slotted dataclass; rewriting builds new ones
#   (``dataclasses.replace``).
# - Session fields follow RFC 8866 §5 order: v o s i u e p c b t r z k a, then m= sections
#   with i c b k a. The serializer writes that order, whatever order the input had.
# - Wire tokens the gateway never interprets stay ``str`` (nettype, usernames, protos, formats);
#   values it works with are typed: ports and counts ``int``, addresses ``ipaddress`` objects,
#   direction an enum. A host name (FQDN in ``c=``/``o=`` §5.7, mDNS ``.local`` in ICE
#   candidates, RFC 8839 §5.1) stays ``str``.
# - Attributes keep their order. Known ones are typed (``RtpMap``, ``Fmtp``, ``Rtcp`` RFC 3605,
#   ``Fingerprint`` RFC 8122, ``Group`` RFC 5888, ``Ssrc`` RFC 5576, ``Extmap`` RFC 8285,
#   ``Candidate`` RFC 8839 in ``ice.py``); every other one is an ``Attribute`` kept verbatim.
#   Lines of an unknown type (``x=...``) are ``UnknownLine`` entries among the attributes.
# - Addresses are ``hosts.Address``: written bare, RFC 5952 form (see ``hosts.py``).
"""SDP session and media descriptions as frozen dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family, IPAddress, family_of
from rtc64.sdp.hosts import Address, family_of_address, format_address
from rtc64.sdp.ice import Candidate


class Direction(enum.Enum):
    """Media direction attributes (RFC 8866 §6.7, RFC 3264 §5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


DIRECTION_NAMES = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (§5.2)."""

    username: str
    session_id: str
    session_version: str
    nettype: str
    addrtype: str
    address: Address

    @property
    def family(self) -> Family | None:
        return family_of_address(self.address, self.addrtype)


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <address>[/<ttl>][/<count>]`` (§5.7).

    IPv4 multicast carries a TTL and optionally a count (``224.2.1.1/127/3``); IPv6
    multicast only a count (``ff15::101/3``), so ``ttl`` is ``None`` for IPv6.
    """

    nettype: str
    addrtype: str
    address: Address
    ttl: int | None = None
    count: int | None = None

    @classmethod
    def of(cls, address: IPAddress, ttl: int | None = None, count: int | None = None) -> Connection:
        """``IN IP4``/``IN IP6`` connection data for ``address`` (a TTL is IPv4-only)."""
        family = family_of(address)
        if ttl is not None and family is Family.INET6:
            raise LocalProtocolError("IPv6 connection data has no TTL (RFC 8866 §5.7)")
        return cls("IN", family.sdp, address, ttl, count)

    @property
    def family(self) -> Family | None:
        return family_of_address(self.address, self.addrtype)

    @property
    def is_unspecified(self) -> bool:
        """``0.0.0.0`` or ``::``: RFC 2543 hold, or an ICE placeholder."""
        return not isinstance(self.address, str) and self.address.is_unspecified

    @property
    def text(self) -> str:
        """The value after ``c=``."""
        parts = [self.nettype, " ", self.addrtype, " ", format_address(self.address)]
        if self.ttl is not None:
            parts.append(f"/{self.ttl}")
        if self.count is not None:
            parts.append(f"/{self.count}")
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (§5.8), bandwidth in kbit/s (or as bwtype says)."""

    type: str
    value: int


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=<start> <stop>`` (§5.9) with its ``r=`` lines (§5.10), kept as written."""

    start: int
    stop: int
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` or ``a=<name>:<value>`` (§5.13), kept verbatim."""

    name: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownLine:
    """A line of a type this model does not know (``x=...``), kept verbatim and in place."""

    type: str
    value: str


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` (§6.6)."""

    name: ClassVar[str] = "rtpmap"
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @property
    def value(self) -> str:
        tail = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True)
class Fmtp:
    """``a=fmtp:<format> <parameters>`` (§6.15); parameters kept as written."""

    name: ClassVar[str] = "fmtp"
    format: str
    parameters: str

    @property
    def value(self) -> str:
        return f"{self.format} {self.parameters}"

    def parameter_map(self) -> dict[str, str]:
        """``key=value`` pairs split on ``;`` (the usual form; a bare key maps to ``""``)."""
        out: dict[str, str] = {}
        for item in self.parameters.split(";"):
            key, _, val = item.strip().partition("=")
            if key:
                out[key] = val
        return out


@dataclass(frozen=True, slots=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1)."""

    name: ClassVar[str] = "rtcp"
    port: int
    connection: Connection | None = None

    @property
    def value(self) -> str:
        if self.connection is None:
            return str(self.port)
        return f"{self.port} {self.connection.text}"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """``a=fingerprint:<hash function> <fingerprint>`` (RFC 8122 §5)."""

    name: ClassVar[str] = "fingerprint"
    hash_function: str
    fingerprint: str

    @property
    def value(self) -> str:
        return f"{self.hash_function} {self.fingerprint}"


@dataclass(frozen=True, slots=True)
class Group:
    """``a=group:<semantics> *(SP <mid>)`` (RFC 5888 §5), e.g. ``BUNDLE 0 1``."""

    name: ClassVar[str] = "group"
    semantics: str
    mids: tuple[str, ...] = ()

    @property
    def value(self) -> str:
        return " ".join((self.semantics, *self.mids))


@dataclass(frozen=True, slots=True)
class Ssrc:
    """``a=ssrc:<ssrc-id> <attribute>[:<value>]`` (RFC 5576 §4.1)."""

    name: ClassVar[str] = "ssrc"
    ssrc: int
    attribute: str
    attribute_value: str | None = None

    @property
    def value(self) -> str:
        if self.attribute_value is None:
            return f"{self.ssrc} {self.attribute}"
        return f"{self.ssrc} {self.attribute}:{self.attribute_value}"


@dataclass(frozen=True, slots=True)
class Extmap:
    """``a=extmap:<id>[/<direction>] <uri> [<attributes>]`` (RFC 8285 §8)."""

    name: ClassVar[str] = "extmap"
    id: int
    uri: str
    direction: Direction | None = None
    attributes: str | None = None

    @property
    def value(self) -> str:
        head = str(self.id) if self.direction is None else f"{self.id}/{self.direction.value}"
        tail = "" if self.attributes is None else f" {self.attributes}"
        return f"{head} {self.uri}{tail}"


AnyAttribute = Attribute | RtpMap | Fmtp | Rtcp | Fingerprint | Group | Ssrc | Extmap | Candidate
"""Every ``a=`` line: a typed attribute, or a verbatim ``Attribute``."""

AttributeEntry = AnyAttribute | UnknownLine
"""What an attribute list holds: ``a=`` lines, and unknown line types kept in place."""


def _direction_in(attributes: tuple[AttributeEntry, ...]) -> Direction | None:
    for a in attributes:
        if isinstance(a, Attribute) and a.value is None and a.name in DIRECTION_NAMES:
            return Direction(a.name)
    return None


class _AttributeAccess:
    """Lookups shared by session and media descriptions (over ``self.attributes``)."""

    __slots__ = ()
    attributes: tuple[AttributeEntry, ...]

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name[:value]`` (``""`` for a flag), or ``None``."""
        for a in self.attributes:
            if not isinstance(a, UnknownLine) and a.name == name:
                value = a.value
                return "" if value is None else value
        return None

    def has_attribute(self, name: str) -> bool:
        return any(not isinstance(a, UnknownLine) and a.name == name for a in self.attributes)

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written at this level, if any."""
        return _direction_in(self.attributes)

    @property
    def ice_ufrag(self) -> str | None:
        return self.attribute("ice-ufrag")

    @property
    def ice_pwd(self) -> str | None:
        return self.attribute("ice-pwd")

    @property
    def ice_options(self) -> tuple[str, ...]:
        value = self.attribute("ice-options")
        return () if value is None else tuple(value.split())

    @property
    def fingerprints(self) -> tuple[Fingerprint, ...]:
        return tuple(a for a in self.attributes if isinstance(a, Fingerprint))

    @property
    def setup(self) -> str | None:
        return self.attribute("setup")


@dataclass(frozen=True, slots=True)
class MediaDescription(_AttributeAccess):
    """One ``m=`` section (§5.14) and the lines under it."""

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...] = ()
    port_count: int | None = None
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[AttributeEntry, ...] = ()

    @property
    def connection(self) -> Connection | None:
        """The first media-level ``c=`` (several only for layered multicast)."""
        return self.connections[0] if self.connections else None

    @property
    def rtcp(self) -> Rtcp | None:
        for a in self.attributes:
            if isinstance(a, Rtcp):
                return a
        return None

    @property
    def rtcp_mux(self) -> bool:
        return self.has_attribute("rtcp-mux")

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(a for a in self.attributes if isinstance(a, Candidate))

    @property
    def end_of_candidates(self) -> bool:
        return self.has_attribute("end-of-candidates")

    @property
    def mid(self) -> str | None:
        return self.attribute("mid")

    @property
    def rtpmaps(self) -> tuple[RtpMap, ...]:
        return tuple(a for a in self.attributes if isinstance(a, RtpMap))

    @property
    def fmtps(self) -> tuple[Fmtp, ...]:
        return tuple(a for a in self.attributes if isinstance(a, Fmtp))

    @property
    def ssrcs(self) -> tuple[Ssrc, ...]:
        return tuple(a for a in self.attributes if isinstance(a, Ssrc))

    @property
    def extmaps(self) -> tuple[Extmap, ...]:
        return tuple(a for a in self.attributes if isinstance(a, Extmap))


@dataclass(frozen=True, slots=True)
class SessionDescription(_AttributeAccess):
    """A whole SDP body (§5). ``name`` is ``None`` only when the input had no ``s=``."""

    origin: Origin
    name: str | None = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[Timing, ...] = (Timing(0, 0),)
    zone: str | None = None
    key: str | None = None
    attributes: tuple[AttributeEntry, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    @property
    def groups(self) -> tuple[Group, ...]:
        return tuple(a for a in self.attributes if isinstance(a, Group))

    @property
    def ice_lite(self) -> bool:
        return self.has_attribute("ice-lite")

    def media_connections(self, index: int) -> tuple[Connection, ...]:
        """The connection data that applies to media ``index``: its own, else the session's."""
        own = self.media[index].connections
        if own:
            return own
        return () if self.connection is None else (self.connection,)

    def media_direction(self, index: int) -> Direction:
        """Effective direction of media ``index`` (media level, session level, sendrecv)."""
        return self.media[index].direction or _direction_in(self.attributes) or Direction.SENDRECV
