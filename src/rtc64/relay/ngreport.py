# Rules: the shape of rtpengine's ``query`` (and ``delete``) reply, per its ng protocol docs:
#   "created", "last signal" (Unix seconds), "tags": {TAG: {"tag", "in dialogue with",
#   "medias": [{"index", "type", "streams": [{"local port", "local address", "endpoint":
#   {"family", "address", "port"}, "advertised endpoint", "last packet", "flags",
#   "stats": {"packets", "bytes", "errors"}}]}]}}, "totals": {"RTP": {...}, "RTCP": {...}}
#   summed over every stream.
# - One stream per relay leg (a tag's RTP or RTCP of one ``m=`` line), in media order, RTP
#   first. "endpoint" is where the relay sends (the latched source, else the signalled
#   address); "advertised endpoint" what the SDP said. "errors" counts packets dropped on
#   that leg's port (foreign sources). Extra keys rtpengine lacks: "local address",
#   "forwarded", "lost", "jitter" (ms).
# - Bencode has no floats: times are whole Unix seconds, jitter whole milliseconds.
#   Relay times are monotonic; ``to_wall`` (wall minus monotonic now) converts them.
# - Families read "IPv4"/"IPv6" as rtpengine writes them. Kamailio's ``$rtpstat``
#   reads "totals".
"""Call statistics as the ng protocol reports them."""

from __future__ import annotations

from rtc64.net.address import IPAddress
from rtc64.relay.bencode import Encodable
from rtc64.relay.stats import CallStats, LegStats


def _endpoint(endpoint: tuple[IPAddress, int]) -> dict[str, Encodable]:
    address, port = endpoint
    family = "IPv4" if address.version == 4 else "IPv6"
    return {"family": family, "address": str(address), "port": port}


def _stream(leg: LegStats, to_wall: float) -> dict[str, Encodable]:
    target = leg.latched or leg.remote
    flags = ["RTCP" if leg.component == "rtcp" else "RTP"]
    if target is not None:
        flags.append("filled")
    if leg.held:
        flags.append("hold")
    out: dict[str, Encodable] = {
        "local address": str(leg.local[0]),
        "local port": leg.local[1],
        "flags": flags,
        "stats": {"packets": leg.packets, "bytes": leg.octets, "errors": leg.dropped},
        "forwarded": leg.forwarded,
        "last packet": 0 if leg.last_packet is None else int(leg.last_packet + to_wall),
        "lost": leg.lost,
        "jitter": round(leg.jitter_ms),
    }
    if target is not None:
        out["endpoint"] = _endpoint(target)
    if leg.remote is not None:
        out["advertised endpoint"] = _endpoint(leg.remote)
    return out


def _peer(stats: CallStats, tag: bytes) -> bytes | None:
    others = [t for t in stats.tags if t != tag]
    return others[-1] if others else None


def totals(stats: CallStats) -> dict[str, dict[str, int]]:
    """Packets, bytes and errors summed over RTP legs and over RTCP legs."""
    sums = {"RTP": [0, 0, 0], "RTCP": [0, 0, 0]}
    for leg in stats.legs:
        row = sums["RTCP" if leg.component == "rtcp" else "RTP"]
        row[0] += leg.packets
        row[1] += leg.octets
        row[2] += leg.dropped
    return {
        name: {"packets": row[0], "bytes": row[1], "errors": row[2]} for name, row in sums.items()
    }


def report_dict(stats: CallStats, to_wall: float = 0.0) -> dict[str, Encodable]:
    """The reply keys (without ``result``) describing ``stats``."""
    tags: dict[bytes, Encodable] = {}
    for tag in stats.tags:
        medias: dict[int, tuple[str, list[Encodable]]] = {}
        legs = sorted(
            (leg for leg in stats.legs if leg.tag == tag),
            key=lambda leg: (leg.media, leg.component != "rtp"),
        )
        for leg in legs:
            medias.setdefault(leg.media, (leg.kind, []))[1].append(_stream(leg, to_wall))
        entry: dict[str, Encodable] = {
            "tag": tag,
            "medias": [
                {"index": index + 1, "type": kind, "streams": streams}
                for index, (kind, streams) in sorted(medias.items())
            ],
        }
        peer = _peer(stats, tag)
        if peer is not None:
            entry["in dialogue with"] = peer
        tags[tag] = entry
    last = stats.answered if stats.answered is not None else stats.created
    return {
        "created": int(stats.created + to_wall),
        "last signal": int(last + to_wall),
        "tags": tags,
        "totals": dict(totals(stats)),
    }


def summary(stats: CallStats) -> str:
    """One line per call for logs: per tag, RTP packets received and forwarded."""
    parts = []
    for tag in stats.tags:
        rtp = [leg for leg in stats.legs if leg.tag == tag and leg.component == "rtp"]
        received = sum(leg.packets for leg in rtp)
        forwarded = sum(leg.forwarded for leg in rtp)
        dropped = sum(leg.dropped for leg in rtp)
        parts.append(
            f"tag {tag.decode('utf-8', 'replace')}: RTP {received} received, "
            f"{forwarded} forwarded, {dropped} dropped"
        )
    return "; ".join(parts) or "no parties"
