# Rules: plain counters, incremented by the transport adapters and read by metrics.
# Nothing here decides anything; gauges (connections_open) go up and down, the rest only up.
"""Counters of the SIP transport layer, later exposed as metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class TransportStats:
    """Counters for every transport of one ``SipTransportLayer``."""

    received: int = 0
    """SIP messages delivered to ``on_message``."""
    sent: int = 0
    """SIP messages written (or queued on a connection being opened)."""
    send_errors: int = 0
    """Messages that could not be sent (no listener/route, connect failure, socket error)."""
    bad_datagrams: int = 0
    """Messages that failed to parse: UDP datagrams, WebSocket messages, and stream
    messages framed correctly but malformed inside."""
    framing_errors: int = 0
    """Stream connections closed because the peer broke SIP or WebSocket framing."""
    keepalives: int = 0
    """CRLF keep-alive pings received on streams (RFC 5626 §4.4.1)."""
    keepalives_sent: int = 0
    """Keep-alives we sent: UDP pinhole payloads, stream CRLF CRLF, WebSocket pings."""
    stun_received: int = 0
    """STUN messages on the SIP UDP ports (RFC 5626 §4.4.2 keep-alives)."""
    stun_answered: int = 0
    """STUN Binding requests answered there."""
    overflows: int = 0
    """Connections closed because their buffered bytes passed the limit."""
    connections_open: int = 0
    """Gauge: connections established now."""
    connections_accepted: int = 0
    connections_connected: int = 0
    """Outbound connections established."""
    connections_closed: int = 0
    connections_rejected: int = 0
    """Inbound connections refused because ``max_connections`` was reached."""
    connections_idle_closed: int = 0
    aliases: int = 0
    """RFC 5923 aliases recorded (a verified client certificate naming the Via sent-by)."""
    aliases_refused: int = 0
    """``;alias`` requests refused: no verified certificate, or one not naming the Via host."""
    alias_reuses: int = 0
    """Requests sent over a connection the peer opened, through its alias."""

    def snapshot(self) -> dict[str, int]:
        """The counters as a name → value mapping."""
        return asdict(self)
