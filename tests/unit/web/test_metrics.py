"""/metrics: Prometheus text with family labels, totals that survive the calls."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from rtc64.gateway.ratelimit import AuthFailureTracker
from rtc64.gateway.stats import ContactHealth, KeepaliveCounters
from rtc64.io.stats import TransportStats
from rtc64.net.address import Family
from rtc64.web.metrics import RelayTotals
from rtc64.web.views import SipIoCounters
from tests.unit.web.fakes import (
    NOW,
    TOKEN,
    V4,
    V6,
    FakeProxy,
    FakeRelay,
    FakeStore,
    binding,
    call,
    guard,
    signalled,
    sources,
    with_client,
)

Client = TestClient[Any, Any]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_carry_family_labels() -> None:
    proxy = FakeProxy()
    proxy.traffic.request(b"INVITE", "udp", Family.INET6)
    proxy.traffic.request(b"INVITE", "tcp", Family.INET)
    proxy.traffic.response(200, "udp", Family.INET6)
    proxy.stats.race_fallbacks = 2
    proxy.fallbacks.happy_eyeballs[Family.INET] += 2
    proxy.fallbacks.dns["nat64", Family.INET6] += 1
    proxy.traffic.rate_limited[Family.INET] += 4
    proxy.traffic.throttled[Family.INET] += 1
    proxy.calls = [signalled(b"c1", V6, V4), signalled(b"d", V4, None, relayed=False)]
    relay = FakeRelay({b"c1": call(b"c1", V6, V4, lost=2)})
    tracker = AuthFailureTracker(1, 60, 300)
    tracker.record_failure(V6, NOW)
    store = FakeStore([binding("sip:a@x", V6), binding("sip:b@x", V4, "tcp")])
    src = sources(proxy=proxy, relay=relay, blocks=tracker, registrations=store)
    text: list[str] = []

    async def job(client: Client) -> None:
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text.append(await r.text())

    with_client(src, guard(), job)
    m = samples(text[0])
    assert (
        m[
            "rtc64_sip_requests_total",
            (("family", "IPv6"), ("method", "INVITE"), ("transport", "udp")),
        ]
        == 1
    )
    assert (
        m[
            "rtc64_sip_requests_total",
            (("family", "IPv4"), ("method", "INVITE"), ("transport", "tcp")),
        ]
        == 1
    )
    assert (
        m["rtc64_sip_responses_total", (("code", "200"), ("family", "IPv6"), ("transport", "udp"))]
        == 1
    )
    assert m["rtc64_sip_happy_eyeballs_fallbacks_total", ()] == 2
    assert m["rtc64_happy_eyeballs_fallbacks_total", (("family", "IPv4"),)] == 2
    assert m["rtc64_happy_eyeballs_fallbacks_total", (("family", "IPv6"),)] == 0
    assert m["rtc64_dns_fallbacks_total", (("family", "IPv6"), ("kind", "nat64"))] == 1
    assert m["rtc64_dns_fallbacks_total", (("family", "IPv4"), ("kind", "family"))] == 0
    assert m["rtc64_sip_rate_limit_drops_total", (("family", "IPv4"),)] == 4
    assert m["rtc64_sip_rate_limit_blocks_total", (("family", "IPv4"),)] == 1
    assert m["rtc64_sip_rate_limit_drops_total", (("family", "IPv6"),)] == 0
    every = (("callee_family", "IPv4"), ("caller_family", "IPv6"))
    assert m["rtc64_sip_calls", (*every, ("relayed", "true"), ("state", "confirmed"))] == 1
    early = (("callee_family", "unknown"), ("caller_family", "IPv4"))
    assert m["rtc64_sip_calls", (*early, ("relayed", "false"), ("state", "early"))] == 1
    assert m["rtc64_registrations", (("family", "IPv6"), ("transport", "udp"))] == 1
    assert m["rtc64_registrations", (("family", "IPv4"), ("transport", "tcp"))] == 1
    assert m["rtc64_calls", (("callee_family", "IPv4"), ("caller_family", "IPv6"))] == 1
    assert m["rtc64_relay_streams", (("family", "IPv6"),)] == 1
    assert m["rtc64_relay_packets_total", (("family", "IPv6"),)] == 100
    assert m["rtc64_relay_packets_lost_total", (("family", "IPv6"),)] == 2
    assert m["rtc64_turn_allocations", (("client_family", "IPv6"), ("relay_family", "IPv4"))] == 1
    assert m["rtc64_turn_allocations", (("client_family", "IPv6"), ("relay_family", "IPv6"))] == 1
    assert (
        m[
            "rtc64_turn_allocations_created_total",
            (("client_family", "IPv6"), ("relay_family", "IPv4")),
        ]
        == 3
    )
    assert m["rtc64_turn_errors_total", (("code", "401"),)] == 2
    assert (
        m[
            "rtc64_turn_relayed_bytes_total",
            (("client_family", "unknown"), ("direction", "to_peer"), ("relay_family", "IPv4")),
        ]
        == 500
    )
    assert m["rtc64_auth_blocked", (("family", "IPv6"), ("kind", "source"))] == 1
    assert ("rtc64_event_loop_lag_seconds", ()) in m


class Keepalive:
    def health(self, aor: str, contact: bytes) -> ContactHealth | None:
        return None

    def counters(self) -> KeepaliveCounters:
        return KeepaliveCounters(
            tracked=3, pings=40, options=9, replies=6,
            failures={Family.INET6: 3}, unreachable={Family.INET6: 1},
            removed=1, ping_failures=2, options_unsent=0,
        )  # fmt: skip


def test_keepalive_failures_by_family() -> None:
    text: list[str] = []

    async def job(client: Client) -> None:
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        text.append(await r.text())

    with_client(sources(keepalive=Keepalive()), guard(), job)
    m = samples(text[0])
    assert m["rtc64_keepalive_failures_total", (("family", "IPv6"),)] == 3
    assert m["rtc64_keepalive_failures_total", (("family", "IPv4"),)] == 0
    assert m["rtc64_keepalive_unreachable_total", (("family", "IPv6"),)] == 1
    assert m["rtc64_keepalive_send_failures_total", (("kind", "ping"),)] == 2
    assert m["rtc64_keepalive_contacts", ()] == 3
    assert m["rtc64_keepalive_replies_total", ()] == 6


def test_relay_totals_keep_ended_calls_and_count_deltas() -> None:
    totals = RelayTotals()
    totals.update([call(b"c1", V6, V4, packets=10)])
    totals.update([call(b"c1", V6, V4, packets=25)])
    assert totals.totals["IPv6"].packets == 25
    assert totals.totals["IPv4"].packets == 25
    totals.update([])  # the call ended: its packets stay counted
    assert totals.totals["IPv6"].packets == 25
    totals.update([call(b"c2", V4, V4, packets=5)])
    assert totals.totals["IPv4"].packets == 35
    assert totals.totals["IPv4"].octets == 35 * 172


def test_sip_transport_and_worker_channel_counters() -> None:
    stats = TransportStats(received=7, sent=5, bad_datagrams=2, connections_open=3)
    link = {"handed": 4, "spread": 3, "taken": 1, "dropped": 0, "refused": 2}
    text: list[str] = []

    async def job(client: Client) -> None:
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        text.append(await r.text())

    reads = lambda: SipIoCounters(stats.snapshot(), link)  # noqa: E731
    with_client(sources(sip_io=reads), guard(), job)
    m = samples(text[0])
    assert m["rtc64_sip_transport_received_total", ()] == 7
    assert m["rtc64_sip_transport_sent_total", ()] == 5
    assert m["rtc64_sip_transport_bad_datagrams_total", ()] == 2
    assert m["rtc64_sip_transport_alias_reuses_total", ()] == 0
    assert m["rtc64_sip_connections_open", ()] == 3  # a gauge, not a counter
    assert ("rtc64_sip_transport_connections_open_total", ()) not in m
    assert m["rtc64_sip_worker_messages_total", (("kind", "handed"),)] == 4
    assert m["rtc64_sip_worker_messages_total", (("kind", "refused"),)] == 2


def test_no_worker_channel_series_for_one_process() -> None:
    text: list[str] = []

    async def job(client: Client) -> None:
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        text.append(await r.text())

    reads = lambda: SipIoCounters(TransportStats(sent=1).snapshot(), {})  # noqa: E731
    with_client(sources(sip_io=reads), guard(), job)
    m = samples(text[0])
    assert m["rtc64_sip_transport_sent_total", ()] == 1
    assert not [k for k in m if k[0].startswith("rtc64_sip_worker_messages")]
