# Prometheus /metrics: names in the style of the Kamailio exporter and rtpengine's
# (``rtc64_<area>_<what>[_total]``), with an address-family label (``family``, or
# ``client_family``/``relay_family``, ``caller_family``/``callee_family``) wherever the
# family can differ.
#
# Rules: a scrape reads the services' snapshots once and renders them (a fresh registry
# per scrape, nothing kept in the client library's global registry); label values come
# from fixed sets (methods outside the known set are ``OTHER``, families are IPv4/IPv6/
# unknown), so no peer can grow the series count. Relay packet totals are summed here from
# the live calls' counters at each sample (``RelayTotals``): a call's packets after the
# last sample before it ended are not counted.
"""Metrics rendering and the relay totals kept between scrapes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rtc64.gateway.location.bindings import Binding
from rtc64.net.address import Family, family_of
from rtc64.relay.stats import CallStats
from rtc64.web.tunnel import tunnel_metrics
from rtc64.web.views import Sources, call_families, label

LegKey = tuple[bytes, bytes, int, str]


@dataclass(slots=True)
class _Seen:
    packets: int = 0
    octets: int = 0
    lost: int = 0
    dropped: int = 0


class RelayTotals:
    """Relayed packets, bytes, losses and drops per family since start, summed from the
    live calls' per-leg counters each time ``update`` runs."""

    def __init__(self) -> None:
        self.totals: dict[str, _Seen] = {}
        self._last: dict[LegKey, _Seen] = {}

    def update(self, calls: list[CallStats]) -> None:
        seen: dict[LegKey, _Seen] = {}
        for call in calls:
            for leg in call.legs:
                key = (call.call_id, leg.tag, leg.media, leg.component)
                now = _Seen(leg.packets, leg.octets, leg.lost, leg.dropped)
                before = self._last.get(key, _Seen())
                total = self.totals.setdefault(label(family_of(leg.local[0])), _Seen())
                total.packets += max(0, now.packets - before.packets)
                total.octets += max(0, now.octets - before.octets)
                total.lost += max(0, now.lost - before.lost)
                total.dropped += max(0, now.dropped - before.dropped)
                seen[key] = now
        self._last = seen


@dataclass(frozen=True, slots=True)
class Scrape:
    """What one scrape read."""

    sources: Sources
    bindings: list[Binding]
    calls: list[CallStats]
    totals: RelayTotals
    loop_lag: float
    now: float


class _Collector(Collector):
    def __init__(self, scrape: Scrape) -> None:
        self.scrape = scrape

    def collect(self) -> Iterator[Metric]:
        s = self.scrape
        src = s.sources
        info = GaugeMetricFamily("rtc64_build_info", "rtc64 version", labels=["version"])
        info.add_metric([src.status.version], 1)
        yield info
        yield GaugeMetricFamily(
            "rtc64_uptime_seconds", "seconds since start", value=s.now - src.status.started
        )
        yield GaugeMetricFamily(
            "rtc64_event_loop_lag_seconds", "event loop lateness (smoothed)", value=s.loop_lag
        )
        yield from self._sip()
        yield from self._sip_io()
        yield from self._registrations()
        yield from self._keepalives()
        yield from self._calls()
        yield from self._turn()
        yield from self._blocks()
        yield from tunnel_metrics(src.tunnel)

    def _sip(self) -> Iterator[Metric]:
        proxy = self.scrape.sources.proxy
        if proxy is None:
            return
        req = CounterMetricFamily(
            "rtc64_sip_requests",
            "SIP requests received",
            labels=["method", "transport", "family"],
        )
        for (method, transport, family), n in sorted(proxy.traffic.requests.items()):
            req.add_metric([method, transport, family.label], n)
        yield req
        resp = CounterMetricFamily(
            "rtc64_sip_responses",
            "SIP responses received",
            labels=["code", "transport", "family"],
        )
        for (code, transport, family), n in sorted(proxy.traffic.responses.items()):
            resp.add_metric([str(code), transport, family.label], n)
        yield resp
        yield GaugeMetricFamily(
            "rtc64_sip_transactions_in_flight",
            "proxied requests waiting for a final response",
            value=proxy.in_flight,
        )
        calls = GaugeMetricFamily(
            "rtc64_sip_calls",
            "calls in progress through the proxy, relayed or not (callee family unknown "
            "until answered)",
            labels=["caller_family", "callee_family", "state", "relayed"],
        )
        by: Counter[tuple[str, str, str, str]] = Counter(
            (
                label(c.caller.family),
                "unknown" if c.callee is None else label(c.callee.family),
                c.state,
                "true" if c.relayed else "false",
            )
            for c in proxy.calls_in_progress()
        )
        for key, n in sorted(by.items()):
            calls.add_metric(list(key), n)
        yield calls
        fallbacks = proxy.fallbacks
        eyeballs = CounterMetricFamily(
            "rtc64_happy_eyeballs_fallbacks",
            "branches that answered or connected on a later address of their race, by the "
            "family that won",
            labels=["family"],
        )
        dns = CounterMetricFamily(
            "rtc64_dns_fallbacks",
            "targets reached other than on the first address named: nat64 (IPv4-only "
            "target through the NAT64 prefix) or family (no listener of the first family)",
            labels=["kind", "family"],
        )
        for family in Family:
            eyeballs.add_metric([family.label], fallbacks.happy_eyeballs[family])
            for kind in ("nat64", "family"):
                dns.add_metric([kind, family.label], fallbacks.dns[kind, family])
        yield eyeballs
        yield dns
        limited = CounterMetricFamily(
            "rtc64_sip_rate_limit_drops",
            "new requests dropped by sip.request_rate, by the source's family",
            labels=["family"],
        )
        episodes = CounterMetricFamily(
            "rtc64_sip_rate_limit_blocks",
            "sources throttled (episodes over sip.request_rate), by family",
            labels=["family"],
        )
        for family in Family:
            limited.add_metric([family.label], proxy.traffic.rate_limited[family])
            episodes.add_metric([family.label], proxy.traffic.throttled[family])
        yield limited
        yield episodes
        stats = proxy.stats
        names = {
            "race_fallbacks": "rtc64_sip_happy_eyeballs_fallbacks",
            "race_attempts": "rtc64_sip_happy_eyeballs_attempts",
            "rate_limited": "rtc64_sip_rate_limited",
        }
        for f in fields(stats):
            name = names.get(f.name, f"rtc64_sip_{f.name}")
            yield CounterMetricFamily(name, f"proxy counter {f.name}", value=getattr(stats, f.name))

    def _sip_io(self) -> Iterator[Metric]:
        """The transports' counters (``rtc64_sip_transport_<name>``; connections open is a
        gauge) and, with SIP workers, the worker channel's by kind."""
        read = self.scrape.sources.sip_io
        if read is None:
            return
        counters = read()
        for name, value in sorted(counters.transport.items()):
            if name == "connections_open":
                yield GaugeMetricFamily(
                    "rtc64_sip_connections_open", "SIP stream connections open", value=value
                )
            else:
                yield CounterMetricFamily(
                    f"rtc64_sip_transport_{name}", f"SIP transport counter {name}", value=value
                )
        if not counters.link:
            return
        link = CounterMetricFamily(
            "rtc64_sip_worker_messages",
            "messages on the SIP workers' channel: handed to another worker (of which "
            "spread: trusted sources' requests by Call-ID/AOR), taken from one, dropped, "
            "sends refused (a connection id no worker holds); state (connections, "
            "aliases, failures) that waited for a full channel, and state lost",
            labels=["kind"],
        )
        for kind, value in sorted(counters.link.items()):
            link.add_metric([kind], value)
        yield link

    def _registrations(self) -> Iterator[Metric]:
        if self.scrape.sources.registrations is None:
            return
        contacts = GaugeMetricFamily(
            "rtc64_registrations",
            "registered contacts",
            labels=["family", "transport"],
        )
        counts = Counter(
            (label(None if b.received_ip is None else family_of(b.received_ip)), b.transport)
            for b in self.scrape.bindings
        )
        for (family, transport), n in sorted(counts.items()):
            contacts.add_metric([family, transport], n)
        yield contacts
        yield GaugeMetricFamily(
            "rtc64_registered_aors",
            "addresses-of-record with a live contact",
            value=len({b.aor for b in self.scrape.bindings}),
        )

    def _keepalives(self) -> Iterator[Metric]:
        keepalive = self.scrape.sources.keepalive
        if keepalive is None:
            return
        k = keepalive.counters()
        yield GaugeMetricFamily(
            "rtc64_keepalive_contacts", "registered contacts kept alive", value=k.tracked
        )
        for name, what, value in (
            ("rtc64_keepalive_pings", "pinhole keepalives sent (CRLF, STUN-less)", k.pings),
            ("rtc64_keepalive_options", "keepalive OPTIONS sent", k.options),
            ("rtc64_keepalive_replies", "keepalive OPTIONS answered", k.replies),
            ("rtc64_keepalive_removed", "bindings removed as unreachable", k.removed),
        ):
            yield CounterMetricFamily(name, what, value=value)
        for name, what, by in (
            ("rtc64_keepalive_failures", "keepalive OPTIONS unanswered", k.failures),
            ("rtc64_keepalive_unreachable", "contacts marked unreachable", k.unreachable),
        ):
            metric = CounterMetricFamily(name, what, labels=["family"])
            for family in Family:
                metric.add_metric([family.label], by.get(family, 0))
            yield metric
        unsent = CounterMetricFamily(
            "rtc64_keepalive_send_failures", "keepalives that could not be sent", labels=["kind"]
        )
        unsent.add_metric(["ping"], k.ping_failures)
        unsent.add_metric(["options"], k.options_unsent)
        yield unsent

    def _calls(self) -> Iterator[Metric]:
        relay = self.scrape.sources.relay
        if relay is None:
            return
        calls = GaugeMetricFamily(
            "rtc64_calls",
            "relayed calls in progress",
            labels=["caller_family", "callee_family"],
        )
        for (a, b), n in sorted(Counter(call_families(c) for c in self.scrape.calls).items()):
            calls.add_metric([a, b], n)
        yield calls
        streams = GaugeMetricFamily(
            "rtc64_relay_streams",
            "relayed RTP streams (one per party and m= line)",
            labels=["family"],
        )
        counts = Counter(
            label(family_of(leg.local[0]))
            for c in self.scrape.calls
            for leg in c.legs
            if leg.component == "rtp"
        )
        for family, n in sorted(counts.items()):
            streams.add_metric([family], n)
        yield streams
        totals = self.scrape.totals.totals
        for name, what, attr in (
            ("rtc64_relay_packets", "media packets received by the relay", "packets"),
            ("rtc64_relay_bytes", "media bytes received by the relay", "octets"),
            ("rtc64_relay_packets_lost", "RTP packets lost before the relay", "lost"),
            ("rtc64_relay_packets_dropped", "media packets dropped by the relay", "dropped"),
        ):
            metric = CounterMetricFamily(name, what, labels=["family"])
            for family, seen in sorted(totals.items()):
                metric.add_metric([family], getattr(seen, attr))
            yield metric
        counters = relay.counters
        for f in fields(counters):
            yield CounterMetricFamily(
                f"rtc64_relay_{f.name}", f"relay engine counter {f.name}", getattr(counters, f.name)
            )

    def _turn(self) -> Iterator[Metric]:
        turn = self.scrape.sources.turn
        if turn is None:
            return
        stats = turn.stats()
        live = GaugeMetricFamily(
            "rtc64_turn_allocations",
            "live TURN relayed addresses",
            labels=["client_family", "relay_family"],
        )
        counts = Counter(
            (a.client.family.label, f.label) for a in turn.allocations() for f, _ in a.relays
        )
        for (c, r), n in sorted(counts.items()):
            live.add_metric([c, r], n)
        yield live
        made = CounterMetricFamily(
            "rtc64_turn_allocations_created",
            "TURN relayed addresses allocated since start",
            labels=["client_family", "relay_family"],
        )
        for (c_fam, r_fam), n in sorted(stats.core.allocations_by_family.items()):
            made.add_metric([c_fam.label, r_fam.label], n)
        yield made
        errors = CounterMetricFamily(
            "rtc64_turn_errors", "TURN error responses sent", labels=["code"]
        )
        for code, n in sorted(stats.core.errors.items()):
            errors.add_metric([str(code)], n)
        yield errors
        dropped = CounterMetricFamily("rtc64_turn_dropped", "TURN input dropped", labels=["reason"])
        for reason, n in sorted(stats.core.dropped.items()):
            dropped.add_metric([reason], n)
        yield dropped
        packets = CounterMetricFamily(
            "rtc64_turn_relayed_packets",
            "packets relayed by TURN",
            labels=["client_family", "relay_family", "direction"],
        )
        octets = CounterMetricFamily(
            "rtc64_turn_relayed_bytes",
            "bytes relayed by TURN",
            labels=["client_family", "relay_family", "direction"],
        )
        for t in stats.traffic:
            c, r = label(t.client_family), t.relay_family.label
            packets.add_metric([c, r, "to_peer"], t.to_peer_packets)
            packets.add_metric([c, r, "from_peer"], t.from_peer_packets)
            octets.add_metric([c, r, "to_peer"], t.to_peer_bytes)
            octets.add_metric([c, r, "from_peer"], t.from_peer_bytes)
        yield packets
        yield octets

    def _blocks(self) -> Iterator[Metric]:
        blocks = self.scrape.sources.blocks
        if blocks is None:
            return
        now = self.scrape.sources.wall()
        current = GaugeMetricFamily(
            "rtc64_auth_blocked",
            "blocks after failed authentication: source prefixes, users from a source, users",
            labels=["kind", "family"],
        )
        counts: Counter[tuple[str, str]] = Counter()
        for b in blocks.blocked(now):
            key = b.key
            if isinstance(key, str):
                counts["user", "any"] += 1
            elif isinstance(key, tuple):
                counts["user_at_source", f"IPv{key[1].version}"] += 1
            else:
                counts["source", f"IPv{key.version}"] += 1
        for (kind, family), n in sorted(counts.items()):
            current.add_metric([kind, family], n)
        yield current


def render(scrape: Scrape) -> bytes:
    """The text exposition of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(scrape))
    return generate_latest(registry)
