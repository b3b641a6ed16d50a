# The tunnel server's counters for the API (/api/tunnel), /metrics and the console,
# read through its ``TunnelView`` snapshot only. Metric names follow metrics.py's style:
# ``rtc64_tunnel_<what>_total`` with a ``direction`` (upstream: from tunnel clients,
# downstream: toward them) or ``reason`` label from fixed sets.
"""Tunnel views and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from rtc64.tunnel.stats import TunnelView

Json = dict[str, Any]

#: plain counters: (metric name without _total, help, counter name in the snapshot)
_COUNTERS = (
    ("rtc64_tunnel_signalling", "TSP signalling datagrams received", "signalling"),
    ("rtc64_tunnel_signalling_errors", "TSP requests answered with an error", "signalling_errors"),
    ("rtc64_tunnel_created", "tunnel create requests answered with tunnel info", "tunnels_created"),
    ("rtc64_tunnel_keepalives", "keepalive Echo Requests answered", "keepalives"),
    (
        "rtc64_tunnel_client_to_client_packets",
        "packets between two tunnel clients",
        "client_to_client",
    ),
    ("rtc64_tunnel_icmp_sent", "ICMPv6 errors generated", "icmp_sent"),
    ("rtc64_tunnel_ignored_multicast", "the host's multicast on the device", "ignored_multicast"),
    ("rtc64_tunnel_icmp_rate_limited", "ICMPv6 errors not sent (rate limit)", "icmp_rate_limited"),
)


def tunnel_view(view: TunnelView | None) -> Json:
    """/api/tunnel: what the tunnel server serves and its counters."""
    if view is None:
        return {"enabled": False}
    stats = view.stats()
    c = stats.counters
    return {
        "enabled": True,
        "listen": stats.listen,
        "prefix": stats.prefix,
        "backend": stats.backend,
        "device": stats.device,
        "upstream": {"packets": c.get("up_packets", 0), "bytes": c.get("up_bytes", 0)},
        "downstream": {"packets": c.get("down_packets", 0), "bytes": c.get("down_bytes", 0)},
        "client_to_client": c.get("client_to_client", 0),
        "keepalives": c.get("keepalives", 0),
        "ignored_multicast": c.get("ignored_multicast", 0),
        "signalling": {
            "datagrams": c.get("signalling", 0),
            "errors": c.get("signalling_errors", 0),
            "tunnels_created": c.get("tunnels_created", 0),
        },
        "icmp": {"sent": c.get("icmp_sent", 0), "rate_limited": c.get("icmp_rate_limited", 0)},
        "dropped": stats.drops,
        "send_errors": {"udp": stats.udp_send_errors, "device": stats.device_write_errors},
    }


def tunnel_status(view: TunnelView | None) -> tuple[str, ...]:
    """The tunnel's line on the status page: ``udp:LISTEN PREFIX BACKEND (DEVICE)``."""
    if view is None:
        return ()
    s = view.stats()
    return (f"udp:{s.listen} {s.prefix} {s.backend} ({s.device})",)


def tunnel_metrics(view: TunnelView | None) -> Iterator[Metric]:
    """The tunnel's metric families (nothing when it does not run)."""
    if view is None:
        return
    stats = view.stats()
    c = stats.counters
    info = GaugeMetricFamily(
        "rtc64_tunnel_info", "the tunnel server's prefix and backend", labels=["prefix", "backend"]
    )
    info.add_metric([stats.prefix, stats.backend], 1)
    yield info
    packets = CounterMetricFamily(
        "rtc64_tunnel_packets", "IPv6 packets forwarded by the tunnel", labels=["direction"]
    )
    octets = CounterMetricFamily(
        "rtc64_tunnel_bytes", "IPv6 bytes forwarded by the tunnel", labels=["direction"]
    )
    for direction, prefix in (("upstream", "up"), ("downstream", "down")):
        packets.add_metric([direction], c.get(f"{prefix}_packets", 0))
        octets.add_metric([direction], c.get(f"{prefix}_bytes", 0))
    yield packets
    yield octets
    dropped = CounterMetricFamily("rtc64_tunnel_dropped", "tunnel input dropped", labels=["reason"])
    for reason, n in sorted(stats.drops.items()):
        dropped.add_metric([reason], n)
    yield dropped
    for name, what, key in _COUNTERS:
        yield CounterMetricFamily(name, what, value=c.get(key, 0))
    errors = CounterMetricFamily(
        "rtc64_tunnel_send_errors", "packets the tunnel could not send", labels=["side"]
    )
    errors.add_metric(["udp"], stats.udp_send_errors)
    errors.add_metric(["device"], stats.device_write_errors)
    yield errors
