# Rules: the shape of rtpengine's ``query`` (and ``delete``) reply, per its ng protocol docs:
#   "created", "last signal" (Unix seconds), "tags": {TAG: {"tag", "created",
#   "in dialogue with", "medias": [{"index", "type", "protocol", "streams": [{"local port",
#   "local address", "endpoint": {"family", "address", "port"}, "advertised endpoint",
#   "last packet", "flags", "stats": {"packets", "bytes", "errors"}}]}]}},
#   "totals": {"RTP": {...}, "RTCP": {...}} summed over every stream.
# Bencode has no floats: times are whole seconds. Families read "IPv4"/"IPv6" as rtpengine
# writes them. Kamailio's ``$rtpstat`` reads "totals".
"""Call statistics as the ng protocol reports them."""

from __future__ import annotations

from dataclasses import dataclass

from rtc64.net.address import IPAddress
from rtc64.relay.bencode import Encodable


@dataclass(frozen=True, slots=True)
class StreamReport:
    """One RTP or RTCP stream of a leg: the relay port and the peer it talks to."""

    local_port: int
    local_address: IPAddress | None = None
    endpoint: tuple[IPAddress, int] | None = None
    """Where media for this leg goes (latched, else advertised)."""
    advertised: tuple[IPAddress, int] | None = None
    """What the leg's SDP said."""
    rtcp: bool = False
    packets: int = 0
    octets: int = 0
    errors: int = 0
    last_packet: float | None = None
    """Unix time of the last packet received, if any."""


@dataclass(frozen=True, slots=True)
class MediaReport:
    """One media section (``m=`` line) of a leg."""

    index: int
    kind: str = "audio"
    protocol: str = "RTP/AVP"
    streams: tuple[StreamReport, ...] = ()


@dataclass(frozen=True, slots=True)
class LegReport:
    """One side of the call, named by its SIP tag."""

    tag: bytes
    created: float = 0.0
    peer_tag: bytes | None = None
    medias: tuple[MediaReport, ...] = ()


@dataclass(frozen=True, slots=True)
class CallReport:
    """A call's legs and counters."""

    call_id: bytes
    created: float = 0.0
    last_signal: float = 0.0
    legs: tuple[LegReport, ...] = ()


def _endpoint(endpoint: tuple[IPAddress, int]) -> dict[str, Encodable]:
    address, port = endpoint
    family = "IPv4" if address.version == 4 else "IPv6"
    return {"family": family, "address": str(address), "port": port}


def _stream(stream: StreamReport) -> dict[str, Encodable]:
    out: dict[str, Encodable] = {
        "local port": stream.local_port,
        "flags": ["RTCP" if stream.rtcp else "RTP"] + (["filled"] if stream.endpoint else []),
        "stats": {"packets": stream.packets, "bytes": stream.octets, "errors": stream.errors},
        "last packet": int(stream.last_packet or 0),
    }
    if stream.local_address is not None:
        out["local address"] = str(stream.local_address)
    if stream.endpoint is not None:
        out["endpoint"] = _endpoint(stream.endpoint)
    if stream.advertised is not None:
        out["advertised endpoint"] = _endpoint(stream.advertised)
    return out


def _leg(leg: LegReport) -> dict[str, Encodable]:
    out: dict[str, Encodable] = {
        "tag": leg.tag,
        "created": int(leg.created),
        "medias": [
            {
                "index": media.index,
                "type": media.kind,
                "protocol": media.protocol,
                "streams": [_stream(s) for s in media.streams],
            }
            for media in leg.medias
        ],
    }
    if leg.peer_tag is not None:
        out["in dialogue with"] = leg.peer_tag
    return out


def totals(report: CallReport) -> dict[str, dict[str, int]]:
    """Packets, bytes and errors summed over RTP streams and over RTCP streams."""
    sums = {"RTP": [0, 0, 0], "RTCP": [0, 0, 0]}
    for leg in report.legs:
        for media in leg.medias:
            for stream in media.streams:
                row = sums["RTCP" if stream.rtcp else "RTP"]
                row[0] += stream.packets
                row[1] += stream.octets
                row[2] += stream.errors
    return {
        name: {"packets": row[0], "bytes": row[1], "errors": row[2]} for name, row in sums.items()
    }


def report_dict(report: CallReport) -> dict[str, Encodable]:
    """The reply keys (without ``result``) describing ``report``."""
    tags: dict[bytes, Encodable] = {}
    for leg in report.legs:
        tags[leg.tag] = _leg(leg)
    return {
        "created": int(report.created),
        "last signal": int(report.last_signal),
        "tags": tags,
        "totals": dict(totals(report)),
    }
