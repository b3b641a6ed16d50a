# What an SDP says about where its sender receives media, and the SDP the relay sends on
# (RFC 3264 §5/§6/§8, RFC 8866 §5.7/§5.14, RFC 3605, RFC 5761 §5.1, RFC 8839, RFC 2543 hold).
#
# Rules:
# - Per ``m=`` section: the address is the media-level ``c=`` or else the session one. An
#   unspecified ``c=`` with ICE is a trickle placeholder: the best candidate (highest
#   priority, component 1; component 2 for RTCP) says where media goes. An unspecified
#   ``c=`` without ICE is an RFC 2543 hold: no address. A host name is no address either.
# - RTCP goes to ``a=rtcp`` (its address when given) or RTP port + 1; to the RTP port under
#   ``a=rtcp-mux`` (RFC 5761 §5.1.3; the relay forwards RTCP wherever it arrives).
# - Port 0 is a rejected (or disabled) stream: nothing is allocated for it.
# - Rewriting points every address at one relay address (never mixed families), the
#   ``m=`` ports at the relay pairs, and drops ICE per ``IceMode``; codecs, fmtp, crypto,
#   direction and every other attribute pass untouched; holds stay holds.
"""Read media endpoints from SDP; rewrite SDP to point at the relay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family, IPAddress, family_of
from rtc64.rtp.header import clock_rates
from rtc64.sdp.ice import Candidate
from rtc64.sdp.model import Attribute, MediaDescription, SessionDescription
from rtc64.sdp.rewrite import is_held, rewrite_to_family, set_connection_address, uses_ice

ICE_ATTRIBUTES = frozenset(
    {
        "candidate",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
        "ice-pacing",
        "remote-candidates",
        "end-of-candidates",
    }
)


@dataclass(frozen=True, slots=True)
class SignalledMedia:
    """Where the sender of an SDP receives one media stream."""

    index: int
    kind: str
    port: int
    """RTP port; 0 for a rejected/disabled stream."""
    address: IPAddress | None
    """``None``: on hold (unspecified), a host name, or no connection data."""
    family: Family | None
    """Family written in the SDP for this stream (also for a hold ``0.0.0.0``/``::``)."""
    rtcp_port: int
    rtcp_address: IPAddress | None
    rtcp_mux: bool
    held: bool
    clock_rates: tuple[tuple[int, int], ...] = ()

    @property
    def rejected(self) -> bool:
        return self.port == 0


def _best(candidates: Sequence[Candidate], component: int) -> Candidate | None:
    usable = [
        c
        for c in candidates
        if c.component == component
        and not isinstance(c.address, str)
        and c.transport.lower() == "udp"
    ]
    return max(usable, key=lambda c: c.priority) if usable else None


def _ip(address: object) -> IPAddress | None:
    return address if isinstance(address, IPv4Address | IPv6Address) else None


def _media(sd: SessionDescription, index: int) -> SignalledMedia:
    m: MediaDescription = sd.media[index]
    conns = sd.media_connections(index)
    conn = conns[0] if conns else None
    family = None if conn is None else conn.family
    address = None if conn is None else _ip(conn.address)
    port = m.port
    rtcp = m.rtcp
    mux = m.rtcp_mux
    rtcp_port = port if mux else port + 1
    rtcp_address = address
    if rtcp is not None:
        rtcp_port = rtcp.port
        if rtcp.connection is not None:
            rtcp_address = _ip(rtcp.connection.address)
    held = port != 0 and is_held(sd, index)
    if address is not None and address.is_unspecified:
        best = _best(m.candidates, 1) if uses_ice(sd, index) else None
        if best is not None:
            address = _ip(best.address)
            family = best.family
            port = best.port
            rtcp_address = address
            rtcp_port = port if mux else port + 1
            second = _best(m.candidates, 2)
            if second is not None and not mux:
                rtcp_address = _ip(second.address)
                rtcp_port = second.port
        else:
            address = None
            rtcp_address = None
    rates = clock_rates(((r.payload_type, r.encoding, r.clock_rate) for r in m.rtpmaps), m.formats)
    return SignalledMedia(
        index=index,
        kind=m.kind,
        port=port if m.port != 0 else 0,
        address=address,
        family=family,
        rtcp_port=rtcp_port,
        rtcp_address=rtcp_address,
        rtcp_mux=mux,
        held=held,
        clock_rates=tuple(sorted(rates.items())),
    )


def read_media(sd: SessionDescription) -> tuple[SignalledMedia, ...]:
    """Every ``m=`` section's receive endpoint, in order."""
    return tuple(_media(sd, i) for i in range(len(sd.media)))


def _strip_ice(sd: SessionDescription) -> SessionDescription:
    def keep(a: object) -> bool:
        return not (isinstance(a, Attribute | Candidate) and a.name in ICE_ATTRIBUTES)

    media = tuple(replace(m, attributes=tuple(filter(keep, m.attributes))) for m in sd.media)
    return replace(sd, attributes=tuple(filter(keep, sd.attributes)), media=media)


def rewrite_for_relay(
    sd: SessionDescription,
    address: IPAddress,
    ports: Sequence[int | None],
    *,
    replace_origin: bool = True,
    replace_session_connection: bool = True,
    remove_ice: bool = True,
) -> SessionDescription:
    """``sd`` pointing at ``address`` and ``ports[i]`` (RTCP on port + 1; ``None`` keeps a
    rejected stream's port 0), ICE removed when ``remove_ice``."""
    if not remove_ice:
        raise LocalProtocolError("ICE through the relay needs STUN on relay ports", 501)
    family = family_of(address)
    out = rewrite_to_family(sd, address, ports, strip_all_candidates=True)
    keep = sd.connection
    if not replace_session_connection and keep is not None and keep.family is family:
        out = set_connection_address(out, address, session=False)
        out = replace(out, connection=keep)
    if not replace_origin:
        out = replace(out, origin=sd.origin)
    return _strip_ice(out)
