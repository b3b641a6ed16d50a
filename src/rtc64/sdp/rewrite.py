# Rewriting primitives for the media relay (RFC 8866 §5.2/§5.7, RFC 3264 §5.1/§8.4,
# RFC 3605, RFC 5761 §5.1.3, RFC 8839 §4.1/§5.1, RFC 2543 §B.5 hold).
#
# Rules:
# - Pure functions: each returns a new ``SessionDescription``; nothing is modified in place.
# - Setting an address writes ``IN IP4``/``IN IP6`` as the address's family demands.
# - Media sections not targeted keep the connection they had: if they inherited the session
#   ``c=`` and that changes, the old one is copied down to them first.
# - Several media-level ``c=`` (layered multicast) collapse into the one new address; a new
#   unicast address carries no TTL or count.
# - Hold: an unspecified ``c=`` (``0.0.0.0``, or ``::``) in a section without ICE is an
#   RFC 2543 hold, kept unspecified (in the new family) by address rewriting when
#   ``keep_hold``. With ICE (``ice-ufrag`` or candidates) it is only the trickle ICE
#   placeholder (RFC 8840 §4.1.1) and is rewritten like any address.
# - ``a=rtcp`` follows: its address when it has one, its port when the RTP port changes
#   (the RTP port itself under ``a=rtcp-mux``, else port + 1, unless given).
# - Candidates: new ones go after the last candidate (before ``a=end-of-candidates``,
#   which stays).
# - ``map_addresses`` maps each IP address in place (``o=``, every ``c=``, ``a=rtcp``,
#   candidate addresses and ``raddr``s); host names, ``a=altc`` and
#   ``a=remote-candidates`` stay as written. A connection whose family changes loses its
#   TTL (IPv6 has none) and keeps its count.
"""Pure rewriting of SDP: addresses, ports, ICE candidates, direction, hold."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family, IPAddress, family_of
from rtc64.sdp.ice import Candidate
from rtc64.sdp.model import (
    DIRECTION_NAMES,
    Attribute,
    AttributeEntry,
    Connection,
    Direction,
    MediaDescription,
    Rtcp,
    SessionDescription,
)

UNSPECIFIED: dict[Family, IPAddress] = {
    Family.INET: IPv4Address(0),
    Family.INET6: IPv6Address(0),
}

_DROPPED_BY_FAMILY_REWRITE = frozenset({"altc", "remote-candidates"})


def _targets(sd: SessionDescription, media: Iterable[int] | None) -> set[int]:
    if media is None:
        return set(range(len(sd.media)))
    out = set(media)
    for i in out:
        if not 0 <= i < len(sd.media):
            raise LocalProtocolError(f"no media section {i} (SDP has {len(sd.media)})")
    return out


def _section(sd: SessionDescription, index: int) -> MediaDescription:
    _targets(sd, (index,))
    return sd.media[index]


def _with_media(sd: SessionDescription, index: int, m: MediaDescription) -> SessionDescription:
    return replace(sd, media=(*sd.media[:index], m, *sd.media[index + 1 :]))


def _has_ice(attributes: tuple[AttributeEntry, ...]) -> bool:
    return any(
        isinstance(a, Candidate) or (isinstance(a, Attribute) and a.name == "ice-ufrag")
        for a in attributes
    )


def uses_ice(sd: SessionDescription, index: int | None = None) -> bool:
    """True if media ``index`` (or, for ``None``, any part of ``sd``) carries ICE."""
    if _has_ice(sd.attributes):
        return True
    sections = sd.media if index is None else (_section(sd, index),)
    return any(_has_ice(m.attributes) for m in sections)


def _new_connection(old: Connection | None, address: IPAddress, keep_hold: bool) -> Connection:
    if keep_hold and old is not None and old.is_unspecified:
        return Connection.of(UNSPECIFIED[family_of(address)])
    return Connection.of(address)


# --- origin and connection data ---------------------------------------------------------


def set_origin_address(sd: SessionDescription, address: IPAddress) -> SessionDescription:
    """Set the ``o=`` address; nettype becomes ``IN`` and addrtype follows the family."""
    origin = replace(sd.origin, nettype="IN", addrtype=family_of(address).sdp, address=address)
    return replace(sd, origin=origin)


def _rtcp_address(
    attributes: tuple[AttributeEntry, ...], address: IPAddress, keep_hold: bool
) -> tuple[AttributeEntry, ...]:
    return tuple(
        replace(a, connection=_new_connection(a.connection, address, keep_hold))
        if isinstance(a, Rtcp) and a.connection is not None
        else a
        for a in attributes
    )


def set_connection_address(
    sd: SessionDescription,
    address: IPAddress,
    *,
    media: Iterable[int] | None = None,
    session: bool = True,
    keep_hold: bool = True,
) -> SessionDescription:
    """Point connection data at ``address``: the session ``c=`` and/or media sections.

    ``session``: set (or add) the session-level ``c=`` (and a stray session-level
    ``a=rtcp`` address). ``media``: the sections to point at
    ``address`` (default all); each one's own ``c=`` and ``a=rtcp`` address are replaced,
    and one without ``c=`` gets a media-level ``c=`` unless it inherits the new session
    one. RFC 2543 holds stay holds when ``keep_hold`` (see the module comment).
    """
    targets = _targets(sd, media)
    old_session = sd.connection
    new_session = old_session
    if session:
        hold = keep_hold and not uses_ice(sd)
        new_session = _new_connection(old_session, address, hold)
    sections = list(sd.media)
    for i, m in enumerate(sd.media):
        hold = keep_hold and not uses_ice(sd, i)
        if i in targets:
            old = m.connections[0] if m.connections else old_session
            if not m.connections and session:
                conns: tuple[Connection, ...] = ()
            else:
                conns = (_new_connection(old, address, hold),)
            attributes = _rtcp_address(m.attributes, address, hold)
            sections[i] = replace(m, connections=conns, attributes=attributes)
        elif session and not m.connections and old_session is not None:
            sections[i] = replace(m, connections=(old_session,))
    attributes = sd.attributes
    if session:  # a=rtcp is media-level (RFC 3605), but one at session level moves too
        attributes = _rtcp_address(attributes, address, keep_hold and not uses_ice(sd))
    return replace(sd, connection=new_session, attributes=attributes, media=tuple(sections))


def set_media_port(
    sd: SessionDescription,
    index: int,
    port: int,
    *,
    rtcp_port: int | None = None,
    port_count: int | None = None,
) -> SessionDescription:
    """Set the ``m=`` port of media ``index`` and the ``a=rtcp`` port that goes with it.

    ``port_count``: ``None`` keeps the count written (``49170/2``), ``1`` drops it. The
    ``a=rtcp`` port becomes ``rtcp_port`` if given, else the RTP port under ``a=rtcp-mux``,
    else ``port + 1``. An ``a=rtcp`` line is added only when ``rtcp_port`` is not the port
    a peer would assume without one.
    """
    m = _section(sd, index)
    mux = m.rtcp_mux
    implied = port if mux else port + 1
    new_rtcp = implied if rtcp_port is None else rtcp_port
    if not (0 <= port <= 65535 and 0 <= new_rtcp <= 65535):
        raise LocalProtocolError(f"no valid RTP/RTCP ports for {port}/{new_rtcp}: give rtcp_port")
    attributes = tuple(
        replace(a, port=new_rtcp) if isinstance(a, Rtcp) else a for a in m.attributes
    )
    if m.rtcp is None and new_rtcp != implied:
        attributes = (*attributes, Rtcp(new_rtcp))
    count = m.port_count if port_count is None else (None if port_count == 1 else port_count)
    return _with_media(sd, index, replace(m, port=port, port_count=count, attributes=attributes))


def set_media_address(
    sd: SessionDescription,
    index: int,
    address: IPAddress,
    port: int,
    *,
    rtcp_port: int | None = None,
    keep_hold: bool = True,
) -> SessionDescription:
    """Point media ``index`` at ``address``:``port`` with a media-level ``c=``."""
    sd = set_connection_address(sd, address, media=(index,), session=False, keep_hold=keep_hold)
    return set_media_port(sd, index, port, rtcp_port=rtcp_port)


# --- ICE candidates ----------------------------------------------------------------------


def _carries_family(c: Candidate, family: Family, hostnames: bool) -> bool:
    if hostnames and (isinstance(c.address, str) or isinstance(c.related_address, str)):
        return True
    return family in (c.family, c.related_family)


def _strip(
    attributes: tuple[AttributeEntry, ...], family: Family | None, hostnames: bool
) -> tuple[AttributeEntry, ...]:
    return tuple(
        a
        for a in attributes
        if not (
            isinstance(a, Candidate) and (family is None or _carries_family(a, family, hostnames))
        )
    )


def strip_candidates(
    sd: SessionDescription,
    family: Family | None = None,
    *,
    media: Iterable[int] | None = None,
    hostnames: bool = False,
) -> SessionDescription:
    """Remove ICE candidates: all of them, or those carrying an address of ``family``.

    A candidate carries ``family`` if its address or its ``raddr`` is of that family.
    Host names (mDNS) have no known family; ``hostnames`` removes candidates with one too.
    ``a=end-of-candidates`` and every other attribute stay.
    """
    targets = _targets(sd, media)
    sections = tuple(
        replace(m, attributes=_strip(m.attributes, family, hostnames)) if i in targets else m
        for i, m in enumerate(sd.media)
    )
    attributes = sd.attributes if media is not None else _strip(sd.attributes, family, hostnames)
    return replace(sd, attributes=attributes, media=sections)


def _insert_at(attributes: tuple[AttributeEntry, ...]) -> int:
    last = -1
    for i, a in enumerate(attributes):
        if isinstance(a, Candidate):
            last = i
    if last >= 0:
        return last + 1
    for i, a in enumerate(attributes):
        if isinstance(a, Attribute) and a.name == "end-of-candidates":
            return i
    return len(attributes)


def add_candidates(
    sd: SessionDescription, index: int, candidates: Iterable[Candidate]
) -> SessionDescription:
    """Add candidates to media ``index`` after its last candidate (see module comment)."""
    m = _section(sd, index)
    at = _insert_at(m.attributes)
    attributes = (*m.attributes[:at], *candidates, *m.attributes[at:])
    return _with_media(sd, index, replace(m, attributes=attributes))


def replace_candidates(
    sd: SessionDescription, index: int, candidates: Iterable[Candidate]
) -> SessionDescription:
    """Replace every candidate of media ``index`` with ``candidates``, where the first was."""
    m = _section(sd, index)
    first = next((i for i, a in enumerate(m.attributes) if isinstance(a, Candidate)), None)
    kept = _strip(m.attributes, None, False)
    at = _insert_at(kept) if first is None else first
    attributes = (*kept[:at], *candidates, *kept[at:])
    return _with_media(sd, index, replace(m, attributes=attributes))


# --- direction and hold ------------------------------------------------------------------


def _set_direction_attr(
    attributes: tuple[AttributeEntry, ...], direction: Direction | None
) -> tuple[AttributeEntry, ...]:
    out: list[AttributeEntry] = []
    placed = direction is None
    for a in attributes:
        if isinstance(a, Attribute) and a.value is None and a.name in DIRECTION_NAMES:
            if not placed and direction is not None:
                out.append(Attribute(direction.value))
                placed = True
            continue
        out.append(a)
    if not placed and direction is not None:
        out.append(Attribute(direction.value))
    return tuple(out)


def set_direction(
    sd: SessionDescription, direction: Direction, *, media: Iterable[int] | None = None
) -> SessionDescription:
    """Set the direction of media sections (default all), replacing the one written.

    For all sections the session-level direction is removed and each section states its
    own; the replacement keeps the position of the line it replaces.
    """
    targets = _targets(sd, media)
    sections = tuple(
        replace(m, attributes=_set_direction_attr(m.attributes, direction)) if i in targets else m
        for i, m in enumerate(sd.media)
    )
    if media is None:
        return replace(sd, attributes=_set_direction_attr(sd.attributes, None), media=sections)
    return replace(sd, media=sections)


_HOLD = {
    Direction.SENDRECV: Direction.SENDONLY,
    Direction.SENDONLY: Direction.SENDONLY,
    Direction.RECVONLY: Direction.INACTIVE,
    Direction.INACTIVE: Direction.INACTIVE,
}
_RESUME = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.SENDRECV,
    Direction.RECVONLY: Direction.RECVONLY,
    Direction.INACTIVE: Direction.RECVONLY,
}


def _map_direction(
    sd: SessionDescription, table: dict[Direction, Direction], media: Iterable[int] | None
) -> SessionDescription:
    targets = _targets(sd, media)
    for i in sorted(targets):
        sd = set_direction(sd, table[sd.media_direction(i)], media=(i,))
    return sd


def hold(sd: SessionDescription, *, media: Iterable[int] | None = None) -> SessionDescription:
    """Put media on hold (RFC 3264 §8.4): sendrecv→sendonly, recvonly→inactive."""
    return _map_direction(sd, _HOLD, media)


def resume(sd: SessionDescription, *, media: Iterable[int] | None = None) -> SessionDescription:
    """Take media off hold: sendonly→sendrecv, inactive→recvonly."""
    return _map_direction(sd, _RESUME, media)


def is_rfc2543_hold(sd: SessionDescription, index: int) -> bool:
    """True if media ``index`` is held the RFC 2543 way: ``c=`` unspecified, no ICE."""
    conns = sd.media_connections(index)
    return bool(conns) and not uses_ice(sd, index) and all(c.is_unspecified for c in conns)


def is_held(sd: SessionDescription, index: int) -> bool:
    """True if the sender of ``sd`` holds media ``index``: sendonly/inactive or RFC 2543."""
    direction = sd.media_direction(index)
    return direction in (Direction.SENDONLY, Direction.INACTIVE) or is_rfc2543_hold(sd, index)


# --- whole-description rewrite -----------------------------------------------------------


def rewrite_to_family(
    sd: SessionDescription,
    address: IPAddress,
    ports: Sequence[int | None] | None = None,
    *,
    rtcp_ports: Sequence[int | None] | None = None,
    strip_all_candidates: bool = False,
) -> SessionDescription:
    """Make ``sd`` point at ``address`` (a relay leg) and carry no address of the other family.

    Sets ``o=``, every ``c=`` and ``a=rtcp`` address; ``ports[i]`` (when given and not
    ``None``) becomes the port of media ``i`` with ``rtcp_ports[i]``. Removes candidates that
    carry the other family or a host name (all of them with ``strip_all_candidates``), and
    ``a=altc``/``a=remote-candidates`` (alternatives of the original endpoint). Holds stay
    holds, in the new family.
    """
    if ports is not None and len(ports) > len(sd.media):
        raise LocalProtocolError(f"{len(ports)} ports for {len(sd.media)} media sections")
    family = family_of(address)
    other = Family.INET if family is Family.INET6 else Family.INET6
    sd = set_origin_address(sd, address)
    sd = set_connection_address(sd, address)
    for i, port in enumerate(ports or ()):
        if port is not None:
            rtcp_port = rtcp_ports[i] if rtcp_ports is not None and i < len(rtcp_ports) else None
            sd = set_media_port(sd, i, port, rtcp_port=rtcp_port)
    sd = strip_candidates(sd, None if strip_all_candidates else other, hostnames=True)

    def keep(a: AttributeEntry) -> bool:
        return not (isinstance(a, Attribute) and a.name in _DROPPED_BY_FAMILY_REWRITE)

    sections = tuple(replace(m, attributes=tuple(filter(keep, m.attributes))) for m in sd.media)
    return replace(sd, attributes=tuple(filter(keep, sd.attributes)), media=sections)


# --- address mapping (NAT64 synthesis) -----------------------------------------------------


AddressMap = Callable[[IPAddress], IPAddress]


def _map_connection(conn: Connection, fn: AddressMap) -> Connection:
    if isinstance(conn.address, str):
        return conn
    new = fn(conn.address)
    if new == conn.address:
        return conn
    family = family_of(new)
    ttl = conn.ttl if family is Family.INET else None
    return Connection(conn.nettype, family.sdp, new, ttl, conn.count)


def _map_attributes(
    attributes: tuple[AttributeEntry, ...], fn: AddressMap
) -> tuple[AttributeEntry, ...]:
    return tuple(_map_attribute(a, fn) for a in attributes)


def _map_attribute(a: AttributeEntry, fn: AddressMap) -> AttributeEntry:
    if isinstance(a, Rtcp) and a.connection is not None:
        return replace(a, connection=_map_connection(a.connection, fn))
    if isinstance(a, Candidate):
        address = a.address if isinstance(a.address, str) else fn(a.address)
        related = a.related_address
        if related is not None and not isinstance(related, str):
            related = fn(related)
        if address != a.address or related != a.related_address:
            return replace(a, address=address, related_address=related)
    return a


def map_addresses(sd: SessionDescription, fn: AddressMap) -> SessionDescription:
    """Replace every IP address ``a`` of ``sd`` with ``fn(a)`` where it is written.

    Covers ``o=``, session and media ``c=``, ``a=rtcp`` addresses and candidate addresses
    and ``raddr``s; ``IN IP4``/``IN IP6`` follow the new address. ``fn`` returning its
    argument leaves that line untouched.
    """
    origin = sd.origin
    if not isinstance(origin.address, str):
        new = fn(origin.address)
        if new != origin.address:
            origin = replace(origin, addrtype=family_of(new).sdp, address=new)
    connection = None if sd.connection is None else _map_connection(sd.connection, fn)
    sections = tuple(
        replace(
            m,
            connections=tuple(_map_connection(c, fn) for c in m.connections),
            attributes=_map_attributes(m.attributes, fn),
        )
        for m in sd.media
    )
    return replace(
        sd,
        origin=origin,
        connection=connection,
        attributes=_map_attributes(sd.attributes, fn),
        media=sections,
    )
