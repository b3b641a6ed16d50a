# Every address an SDP carries, and where (RFC 8866 §5.2, §5.7; RFC 3605; RFC 8839 §5.1,
# §5.2; RFC 6947 §5).
#
# Rules:
# - ``addresses`` lists, in line order: ``o=``, session ``c=``, then per media section its
#   ``c=`` lines, ``a=rtcp`` addresses, candidate addresses and ``raddr``s,
#   ``a=remote-candidates`` and ``a=altc`` addresses (these two read leniently: a malformed
#   one is skipped, it is not used to send media).
# - The family of a host name is what its ``addrtype`` says (``c=``/``o=``/``a=rtcp``);
#   a candidate's host name (mDNS) has no known family.
# - ``families`` counts where media may go: every source but ``o=`` (an identifier) and
#   ``raddr`` (diagnostic, RFC 8839 §5.1). Chromium's ``c=IN IP4 0.0.0.0`` next to IPv6
#   candidates is therefore mixed: it does carry both families.
"""Inspect the addresses of an SDP: families, mixed family, private/unusable ones."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from rtc64.net.address import Family, IPAddress
from rtc64.net.ranges import is_private_or_unusable_for_media
from rtc64.sdp.hosts import Address, address_family, family_of_address, read_address, read_port
from rtc64.sdp.ice import Candidate
from rtc64.sdp.model import Attribute, AttributeEntry, Connection, Rtcp, SessionDescription


class AddressSource(enum.Enum):
    """Where in the SDP an address was written."""

    ORIGIN = "o="
    SESSION_CONNECTION = "session c="
    MEDIA_CONNECTION = "media c="
    RTCP = "a=rtcp"
    CANDIDATE = "a=candidate"
    CANDIDATE_RELATED = "a=candidate raddr"
    REMOTE_CANDIDATE = "a=remote-candidates"
    ALTERNATE = "a=altc"


MEDIA_SOURCES = frozenset(AddressSource) - {AddressSource.ORIGIN, AddressSource.CANDIDATE_RELATED}
"""Sources that say where media may be sent."""


@dataclass(frozen=True, slots=True)
class AddressUse:
    """One address in an SDP: the address, its source, the media index and port if any."""

    address: Address
    source: AddressSource
    family: Family | None
    media: int | None = None
    port: int | None = None

    @property
    def ip(self) -> IPAddress | None:
        """The address if it is an IP address (not a host name)."""
        return None if isinstance(self.address, str) else self.address


def _connection(
    conn: Connection, source: AddressSource, media: int | None, port: int | None
) -> AddressUse:
    return AddressUse(conn.address, source, conn.family, media, port)


def _remote_candidates(value: str, index: int) -> list[AddressUse]:
    fields = value.split()
    out = []
    for i in range(0, len(fields) - 2, 3):
        try:
            address = read_address(fields[i + 1])
            port = read_port(fields[i + 2])
        except ValueError:
            continue
        family = family_of_address(address)
        out.append(AddressUse(address, AddressSource.REMOTE_CANDIDATE, family, index, port))
    return out


def _altc(value: str, index: int) -> list[AddressUse]:
    fields = value.split()
    if len(fields) < 4:
        return []
    family = address_family(fields[1])
    try:
        address = read_address(fields[2], family)
        port = read_port(fields[3])
    except ValueError:
        return []
    return [AddressUse(address, AddressSource.ALTERNATE, family, index, port)]


def _attribute_addresses(
    attributes: tuple[AttributeEntry, ...], index: int | None
) -> list[AddressUse]:
    out: list[AddressUse] = []
    for a in attributes:
        if isinstance(a, Candidate):
            out.append(AddressUse(a.address, AddressSource.CANDIDATE, a.family, index, a.port))
            if a.related_address is not None:
                source = AddressSource.CANDIDATE_RELATED
                related = AddressUse(
                    a.related_address, source, a.related_family, index, a.related_port
                )
                out.append(related)
        elif isinstance(a, Rtcp):
            if a.connection is not None:
                out.append(_connection(a.connection, AddressSource.RTCP, index, a.port))
        elif isinstance(a, Attribute) and a.value is not None and index is not None:
            if a.name == "remote-candidates":
                out += _remote_candidates(a.value, index)
            elif a.name == "altc":
                out += _altc(a.value, index)
    return out


def addresses(sd: SessionDescription) -> list[AddressUse]:
    """Every address ``sd`` carries, in line order, with where it came from."""
    o = sd.origin
    out = [AddressUse(o.address, AddressSource.ORIGIN, o.family)]
    if sd.connection is not None:
        out.append(_connection(sd.connection, AddressSource.SESSION_CONNECTION, None, None))
    out += _attribute_addresses(sd.attributes, None)
    for index, m in enumerate(sd.media):
        for conn in m.connections:
            out.append(_connection(conn, AddressSource.MEDIA_CONNECTION, index, m.port))
        out += _attribute_addresses(m.attributes, index)
    return out


def families(sd: SessionDescription, *, include_origin: bool = False) -> set[Family]:
    """The address families media may be sent to (see the module comment)."""
    return {
        use.family
        for use in addresses(sd)
        if use.family is not None
        and (use.source in MEDIA_SOURCES or (include_origin and use.source is AddressSource.ORIGIN))
    }


def is_mixed_family(sd: SessionDescription) -> bool:
    """True when media addresses of both families appear (RFC 5118 §4.8)."""
    return len(families(sd)) > 1


def unusable_addresses(
    sd: SessionDescription, sources: Collection[AddressSource] | None = None
) -> list[AddressUse]:
    """IP addresses that cannot be trusted for media: private, CGNAT, CLAT, link-local...

    Uses ``net.ranges.is_private_or_unusable_for_media``; ``sources`` limits the search
    (default: every source, the origin included). The unspecified addresses of a hold
    (``0.0.0.0``, ``::``) are listed too: filter them by source or address if unwanted.
    """
    return [
        use
        for use in addresses(sd)
        if isinstance(use.address, IPv4Address | IPv6Address)
        and (sources is None or use.source in sources)
        and is_private_or_unusable_for_media(use.address)
    ]


def media_family(address: IPAddress) -> Family:
    """The family media to ``address`` needs: an IPv4-mapped IPv6 address is IPv4 (an
    IPv6-only host cannot reach it; RFC 4038 §4.2)."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return Family.INET
    return Family.INET6 if address.version == 6 else Family.INET


def stream_families(sd: SessionDescription) -> list[set[Family]]:
    """Per ``m=`` section that is not rejected (port 0), the families its media may be
    sent to: its ``c=`` (else the session ``c=``), ``a=rtcp``, candidates and ``a=altc``
    addresses, IPv4-mapped counted as IPv4. The unspecified address of a hold and host
    names (mDNS) name no family; a section with only those gives an empty set."""
    uses = addresses(sd)
    session = [u for u in uses if u.source is AddressSource.SESSION_CONNECTION]
    out: list[set[Family]] = []
    for index, m in enumerate(sd.media):
        if m.port == 0:
            continue
        mine = [u for u in uses if u.media == index and u.source in MEDIA_SOURCES]
        if not any(u.source is AddressSource.MEDIA_CONNECTION for u in mine):
            mine += session
        out.append(
            {media_family(u.ip) for u in mine if u.ip is not None and not u.ip.is_unspecified}
        )
    return out


def needs_other_family(sd: SessionDescription, family: Family) -> bool:
    """True when some stream can be reached only on the family other than ``family``:
    a peer on ``family`` alone (an IPv6-only phone, an IPv4-only one) cannot send to it."""
    return any(fams and family not in fams for fams in stream_families(sd))
