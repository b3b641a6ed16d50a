# SDP serializer (RFC 8866 §5).
#
# Rules:
# - Lines end in CRLF, the last one too; fields are written in §5 order
#   (v o s i u e p c b t r z k a, then per m= section i c b k a).
# - Attributes and unknown lines are written in the order the model holds them.
# - Addresses are written bare (``hosts.format_address``); text that came in as non-UTF-8
#   bytes (kept as surrogates by the parser) is written back as the same bytes.
"""Write a ``SessionDescription`` as SDP bytes."""

from __future__ import annotations

from rtc64.sdp.hosts import format_address
from rtc64.sdp.model import (
    AttributeEntry,
    Bandwidth,
    MediaDescription,
    SessionDescription,
    UnknownLine,
)


def _attributes(out: list[str], attributes: tuple[AttributeEntry, ...]) -> None:
    for a in attributes:
        if isinstance(a, UnknownLine):
            out.append(f"{a.type}={a.value}")
        else:
            value = a.value
            out.append(f"a={a.name}" if value is None else f"a={a.name}:{value}")


def _bandwidths(out: list[str], bandwidths: tuple[Bandwidth, ...]) -> None:
    out.extend(f"b={b.type}:{b.value}" for b in bandwidths)


def _media(out: list[str], m: MediaDescription) -> None:
    port = str(m.port) if m.port_count is None else f"{m.port}/{m.port_count}"
    out.append(" ".join(("m=" + m.kind, port, m.proto, *m.formats)))
    if m.information is not None:
        out.append(f"i={m.information}")
    out.extend(f"c={c.text}" for c in m.connections)
    _bandwidths(out, m.bandwidths)
    if m.key is not None:
        out.append(f"k={m.key}")
    _attributes(out, m.attributes)


def serialize_lines(sd: SessionDescription) -> list[str]:
    """The SDP lines of ``sd``, without line ends."""
    o = sd.origin
    out = [
        f"v={sd.version}",
        f"o={o.username} {o.session_id} {o.session_version} {o.nettype} {o.addrtype} "
        + format_address(o.address),
    ]
    if sd.name is not None:
        out.append(f"s={sd.name}")
    if sd.information is not None:
        out.append(f"i={sd.information}")
    if sd.uri is not None:
        out.append(f"u={sd.uri}")
    out.extend(f"e={e}" for e in sd.emails)
    out.extend(f"p={p}" for p in sd.phones)
    if sd.connection is not None:
        out.append(f"c={sd.connection.text}")
    _bandwidths(out, sd.bandwidths)
    for t in sd.times:
        out.append(f"t={t.start} {t.stop}")
        out.extend(f"r={r}" for r in t.repeats)
    if sd.zone is not None:
        out.append(f"z={sd.zone}")
    if sd.key is not None:
        out.append(f"k={sd.key}")
    _attributes(out, sd.attributes)
    for m in sd.media:
        _media(out, m)
    return out


def serialize(sd: SessionDescription) -> bytes:
    """Write ``sd`` as SDP: UTF-8, CRLF after every line."""
    lines = serialize_lines(sd)
    lines.append("")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")
