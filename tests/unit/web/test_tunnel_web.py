"""/api/tunnel and the rtc64_tunnel_ metrics, read from the tunnel's snapshot only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from rtc64.tunnel.server import Counters
from rtc64.tunnel.stats import DROP_REASONS, TunnelStats
from rtc64.web.tunnel import tunnel_status
from tests.unit.web.fakes import TOKEN, guard, sources, with_client
from tests.unit.web.test_metrics import samples

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class FakeTunnel:
    counters: Counters

    def stats(self) -> TunnelStats:
        return TunnelStats(
            listen="0.0.0.0:3653",
            prefix="fd00:64::/64",
            backend="routed",
            device="tsp0",
            counters=self.counters.snapshot(),
            udp_send_errors=2,
            device_write_errors=1,
        )


def _counters() -> Counters:
    c = Counters()
    c.up_packets, c.up_bytes, c.down_packets, c.down_bytes = 10, 1000, 7, 700
    c.signalling, c.tunnels_created, c.signalling_errors = 3, 1, 1
    c.dropped_spoofed, c.dropped_rate_limited, c.dropped_malformed = 4, 5, 6
    c.dropped_hop_limit, c.icmp_sent, c.keepalives = 2, 8, 9
    return c


def _get(src: Any, path: str) -> Any:
    out: list[Any] = []

    async def job(client: Client) -> None:
        r = await client.get(path, headers=AUTH)
        assert r.status == 200
        out.append(await (r.json() if path.startswith("/api/") else r.text()))

    with_client(src, guard(), job)
    return out[0]


def test_api_tunnel_view() -> None:
    view = _get(sources(tunnel=FakeTunnel(_counters())), "/api/tunnel")
    assert view["enabled"] and view["backend"] == "routed" and view["prefix"] == "fd00:64::/64"
    assert view["upstream"] == {"packets": 10, "bytes": 1000}
    assert view["downstream"] == {"packets": 7, "bytes": 700}
    assert view["signalling"] == {"datagrams": 3, "errors": 1, "tunnels_created": 1}
    assert view["dropped"]["egress_filter"] == 4 and view["dropped"]["rate_limit"] == 5
    assert view["dropped"]["malformed"] == 6 and view["dropped"]["hop_limit"] == 2
    assert set(view["dropped"]) == set(DROP_REASONS.values())
    assert view["send_errors"] == {"udp": 2, "device": 1}
    assert _get(sources(), "/api/tunnel") == {"enabled": False}


def test_metrics_per_direction_and_reason() -> None:
    m = samples(_get(sources(tunnel=FakeTunnel(_counters())), "/metrics"))
    assert m["rtc64_tunnel_packets_total", (("direction", "upstream"),)] == 10
    assert m["rtc64_tunnel_bytes_total", (("direction", "downstream"),)] == 700
    assert m["rtc64_tunnel_dropped_total", (("reason", "egress_filter"),)] == 4
    assert m["rtc64_tunnel_dropped_total", (("reason", "rate_limit"),)] == 5
    assert m["rtc64_tunnel_dropped_total", (("reason", "malformed"),)] == 6
    assert m["rtc64_tunnel_signalling_total", ()] == 3
    assert m["rtc64_tunnel_created_total", ()] == 1
    assert m["rtc64_tunnel_send_errors_total", (("side", "udp"),)] == 2
    assert m["rtc64_tunnel_info", (("backend", "routed"), ("prefix", "fd00:64::/64"))] == 1
    assert not any(
        name.startswith("rtc64_tunnel") for name, _ in samples(_get(sources(), "/metrics"))
    )


def test_every_counter_is_shown_somewhere() -> None:
    """A counter added to the core is not silently left out of the API and metrics."""
    c = Counters()
    for i, name in enumerate(c.__slots__, start=1):
        setattr(c, name, 1000 + i)
    view = _get(sources(tunnel=FakeTunnel(c)), "/api/tunnel")
    shown = str(view)
    missing = [n for n in c.__slots__ if str(getattr(c, n)) not in shown]
    assert missing == []


def test_status_line() -> None:
    assert tunnel_status(FakeTunnel(Counters())) == ("udp:0.0.0.0:3653 fd00:64::/64 routed (tsp0)",)
    assert tunnel_status(None) == ()
    status = _get(sources(), "/api/status")
    assert status["tunnel"] == []
