# The tunnel server's read-only snapshot for its readers (the web console, /metrics,
# the --stats file): what it serves (listen address, prefix, backend) and its monotonic
# counters. ``TunnelView`` is all a reader may call.
"""TunnelStats: a read-only snapshot of the tunnel server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

#: the drop counters of ``server.Counters``, by the reason label /metrics gives them
DROP_REASONS: Mapping[str, str] = {
    "dropped_spoofed": "egress_filter",
    "dropped_rate_limited": "rate_limit",
    "dropped_malformed": "malformed",
    "dropped_unroutable": "unroutable",
    "dropped_too_big": "too_big",
    "dropped_hop_limit": "hop_limit",
    "amplification_refused": "amplification",
}


@dataclass(frozen=True, slots=True)
class TunnelStats:
    """The tunnel server at one moment."""

    listen: str
    prefix: str
    backend: str
    """``tun`` or ``routed``."""
    device: str
    counters: Mapping[str, int]
    """``server.Counters`` by name (packets/bytes per direction, drops per reason...)."""
    udp_send_errors: int
    device_write_errors: int

    @property
    def drops(self) -> dict[str, int]:
        """Dropped input by reason label."""
        return {label: self.counters.get(name, 0) for name, label in DROP_REASONS.items()}

    def as_json(self) -> dict[str, object]:
        """The flat form of the --stats file (counters first, then the rest)."""
        return {
            **self.counters,
            "udp_send_errors": self.udp_send_errors,
            "device_write_errors": self.device_write_errors,
        }


class TunnelView(Protocol):
    """What readers of the tunnel server may call."""

    def stats(self) -> TunnelStats: ...
