"""The REST API's content, from fake services with real snapshot types."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import signal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from rtc64.gateway.ratelimit import AuthFailureTracker
from rtc64.gateway.stats import ContactHealth, SipTraffic
from rtc64.net.address import Family
from rtc64.web.app import STATE
from rtc64.web.views import Sources
from rtc64.web.wiring import reload_by_signal
from tests.unit.web.fakes import (
    NOW,
    SECRET,
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
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def get(src: Sources, path: str, status: int = 200) -> Any:
    out: list[Any] = []

    async def job(client: Client) -> None:
        r = await client.get(path, headers=AUTH)
        assert r.status == status, await r.text()
        out.append(await r.json())

    with_client(src, guard(), job)
    return out[0]


def test_registrations_per_aor_with_family_transport_received() -> None:
    store = FakeStore(
        [
            binding("sip:alice@example.net", V6),
            binding("sip:alice@example.net", V4, "tcp"),
            binding("sip:bob@example.net", V4),
        ]
    )
    body = get(sources(registrations=store), "/api/registrations")
    alice = body["aors"][0]
    assert alice["aor"] == "sip:alice@example.net"
    assert [(c["family"], c["transport"], c["received"]) for c in alice["contacts"]] == [
        ("IPv6", "udp", "[2001:db8::10]:5062"),
        ("IPv4", "tcp", "192.0.2.10:5062"),
    ]
    assert alice["contacts"][0]["expires_in"] == 300
    assert alice["contacts"][0]["last_keepalive"] is None  # no keepalive view on this build
    one = get(sources(registrations=store), "/api/registrations?aor=sip:BOB@Example.NET;x=1")
    assert one["aors"] == []  # the user part is case-sensitive (RFC 3261 §19.1.4)
    one = get(sources(registrations=store), "/api/registrations?aor=sip:bob@Example.NET:5060")
    assert [a["aor"] for a in one["aors"]] == ["sip:bob@example.net"]
    bad = get(sources(registrations=store), "/api/registrations?aor=mailto:x", status=400)
    assert "aor" in bad["error"]


def test_calls_with_legs_families_ports_loss_jitter() -> None:
    relay = FakeRelay({b"c1;f=4": call(b"c1;f=4", V6, V4, lost=3)})
    body = get(sources(relay=relay), "/api/calls")
    (c,) = body["calls"]
    assert (c["call_id"], c["session"]) == ("c1", "c1;f=4")  # the relay's per-family key
    assert c["families"] == ["IPv6", "IPv4"]
    assert c["answered"] is True
    assert c["age"] == 10.0
    caller, callee = c["legs"]
    stream = caller["streams"][0]
    assert stream["relay_port"] == 30000
    assert stream["family"] == "IPv6"
    assert stream["lost"] == 3
    assert stream["jitter_ms"] == 2.0
    assert stream["packets"] == 100
    assert callee["family"] == "IPv4"


def test_calls_in_progress_come_from_the_proxy_relayed_or_not() -> None:
    """Every call through the proxy is listed with its legs' signalling families and
    transports; relayed ones carry the relay's legs; ng-only relay sessions follow."""
    proxy = FakeProxy(
        calls=[
            signalled(b"c1", V6, V4, transports=("tcp", "udp")),
            signalled(b"direct", V6, V6, relayed=False, transports=("tls", "udp")),
            signalled(b"ringing", V4, None, relayed=False),
        ]
    )
    relay = FakeRelay({b"c1;f=4": call(b"c1;f=4", V6, V4), b"ng-1": call(b"ng-1", V4, V6)})
    body = get(sources(proxy=proxy, relay=relay), "/api/calls")
    relayed, direct, ringing, ng = body["calls"]
    assert (relayed["call_id"], relayed["session"], relayed["state"]) == (
        "c1",
        "c1;f=4",
        "confirmed",
    )
    assert relayed["caller"] == {
        "family": "IPv6",
        "transport": "tcp",
        "address": "[2001:db8::10]:5062",
    }
    assert relayed["callee"] == {"family": "IPv4", "transport": "udp", "address": "192.0.2.10:5060"}
    assert relayed["families"] == ["IPv6", "IPv4"] and relayed["relayed"] is True
    assert [leg["family"] for leg in relayed["legs"]] == ["IPv6", "IPv4"]
    assert relayed["packets"] == 200 and relayed["talk"] == 10.0
    assert direct["relayed"] is False and direct["legs"] == [] and direct["session"] is None
    assert direct["caller"]["transport"] == "tls" and direct["families"] == ["IPv6", "IPv6"]
    assert ringing["state"] == "early" and ringing["answered"] is False
    assert ringing["callee"] is None and ringing["families"] == ["IPv4", "unknown"]
    assert (ng["call_id"], ng["state"], ng["caller"]) == ("ng-1", "relay", None)
    assert ng["families"] == ["IPv4", "IPv6"]
    overview = get(sources(proxy=proxy, relay=relay), "/api/overview")
    assert overview["calls"] == {
        "total": 4,
        "by_families": {"IPv6→IPv4": 1, "IPv6→IPv6": 1, "IPv4→unknown": 1, "IPv4→IPv6": 1},
    }


def test_turn_allocations() -> None:
    body = get(sources(), "/api/turn")
    (a,) = body["allocations"]
    assert a["client"] == {"transport": "udp", "address": "[2001:db8::10]:40000", "family": "IPv6"}
    assert a["relays"] == [
        {"family": "IPv4", "address": "192.0.2.10:50000"},
        {"family": "IPv6", "address": "[2001:db8::2]:50002"},
    ]
    assert a["peers"] == ["198.51.100.7"]
    assert a["to_peer_bytes"] == 500
    assert body["traffic"][0]["relay_family"] == "IPv4"
    assert get(sources(turn=None), "/api/turn") == {
        "enabled": False,
        "allocations": [],
        "traffic": [],
    }


def test_status_masks_secrets_and_shows_nat64() -> None:
    body = get(sources(), "/api/status")
    assert body["nat64_prefixes"] == ["64:ff9b::/96"]
    assert {"key": "web.token", "value": "set, hidden"} in body["config"]
    assert body["uptime"] == 100.0


def test_blocks_and_unblock_by_source_prefix_and_user() -> None:
    tracker = AuthFailureTracker(1, 60, 300)
    tracker.record_failure(V6, NOW)  # source 2001:db8::/64
    tracker.record_failure(("mallory", V4), NOW)
    tracker.record_failure("eve", NOW)
    src = sources(blocks=tracker)

    async def job(client: Client) -> None:
        body = await (await client.get("/api/blocks", headers=AUTH)).json()
        kinds = {(b["kind"], b["source"], b["user"]) for b in body["blocks"]}
        assert kinds == {
            ("source", "2001:db8::/64", None),
            ("user-at-source", "192.0.2.10/32", "mallory"),
            ("user", None, "eve"),
        }

        async def unblock(target: Any) -> Any:
            r = await client.post("/api/blocks/unblock", json={"target": target}, headers=AUTH)
            return r.status, await r.json()

        assert await unblock("2001:db8::ffff") == (200, {"target": "2001:db8::ffff", "lifted": 1})
        assert (await unblock("192.0.2.10"))[1]["lifted"] == 1  # mallory from that source
        assert (await unblock("nobody"))[1]["lifted"] == 0
        assert (await unblock("eve"))[1]["lifted"] == 1
        assert (await unblock(""))[0] == 400
        assert (await unblock(["x"]))[0] == 400
        assert (await unblock("x" * 300))[0] == 400
        r = await client.post(
            "/api/blocks/unblock", data=b"{", headers={**AUTH, "Content-Type": "application/json"}
        )
        assert r.status == 400
        r = await client.post(
            "/api/blocks/unblock", data=b"[1]", headers={**AUTH, "Content-Type": "application/json"}
        )
        assert r.status == 400
        r = await client.post(
            "/api/blocks/unblock",
            data=b"x" * 70000,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert r.status == 413
        assert (await (await client.get("/api/blocks", headers=AUTH)).json())["blocks"] == []

    with_client(src, guard(), job)


def test_turn_credentials_are_coturn_rest() -> None:
    body = get(sources(), "/api/turn-credentials?username=alice&ttl=600")
    _expiry, user = body["username"].split(":")
    assert user == "alice"
    assert body["ttl"] == 600
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), body["username"].encode(), hashlib.sha1).digest()
    ).decode()
    assert body["password"] == expected
    assert body["uris"] == ["turn:192.0.2.1:3478?transport=udp"]
    for bad in (
        "username=a:b",
        "username=",
        "username=a&ttl=0",
        "username=a&ttl=x",
        "username=a&ttl=86401",
        "username=" + "a" * 200,
        "username=a%20b",
        "username=a%C2%85",
        "username=%7F",
    ):
        get(sources(), f"/api/turn-credentials?{bad}", status=400)
    get(sources(turn_rest=None), "/api/turn-credentials?username=a", status=404)


def test_overview_counts_by_family_and_recent_errors() -> None:
    relay = FakeRelay({b"c1": call(b"c1", V6, V4), b"c2": call(b"c2", V4, V4)})
    store = FakeStore([binding("sip:a@x", V6), binding("sip:b@x", V6), binding("sip:c@x", V4)])
    src = sources(relay=relay, registrations=store)

    async def job(client: Client) -> None:
        logging.getLogger("rtc64").addHandler(client.app[STATE].errors)  # as start_web does
        try:
            logging.getLogger("rtc64.proxy").warning("test warning %d", 7)
        finally:
            logging.getLogger("rtc64").removeHandler(client.app[STATE].errors)
        body = await (await client.get("/api/overview", headers=AUTH)).json()
        assert body["registrations"] == {
            "aors": 3,
            "contacts": 3,
            "by_family": {"IPv4": 1, "IPv6": 2},
        }
        assert body["calls"] == {"total": 2, "by_families": {"IPv6→IPv4": 1, "IPv4→IPv4": 1}}
        assert body["turn_allocations"] == 1
        assert body["errors"][0]["message"] == "test warning 7"
        client.app[STATE].sample()
        hist = await (await client.get("/api/history", headers=AUTH)).json()
        assert hist["samples"][-1]["calls"] == 2
        assert hist["samples"][-1]["relay_packets"] == 400

    with_client(src, guard(), job)


def test_events_stream_a_call_appearing_and_disappearing() -> None:
    relay = FakeRelay()
    src = sources(relay=relay)

    async def job(client: Client) -> None:
        r = await client.get("/api/events", headers=AUTH)
        assert r.headers["Content-Type"] == "text/event-stream"

        async def next_calls() -> list[Any]:
            while True:
                line = (await r.content.readline()).decode()
                if line.startswith("data: "):
                    return list(json.loads(line[6:]))

        assert await next_calls() == []
        relay.live[b"live-1"] = call(b"live-1", V6, V4)
        assert [c["call_id"] for c in await next_calls()] == ["live-1"]
        del relay.live[b"live-1"]
        assert await next_calls() == []
        r.close()

    with_client(src, guard(), job)


@pytest.mark.parametrize("disposition", [signal.SIG_DFL, signal.SIG_IGN])
def test_reload_without_a_sighup_handler_is_501(disposition: signal.Handlers) -> None:
    before = signal.signal(signal.SIGHUP, disposition)  # as the runner left it (nohup: IGN)
    try:
        _reload_501(disposition)
    finally:
        signal.signal(signal.SIGHUP, before)


def _reload_501(disposition: signal.Handlers) -> None:
    assert reload_by_signal() is False  # never kills the process
    src = sources(reload=reload_by_signal)

    async def job(client: Client) -> None:
        r = await client.post("/api/reload", headers=AUTH)
        assert r.status == 501
        got: list[int] = []
        signal.signal(signal.SIGHUP, lambda *_: got.append(1))
        try:
            r = await client.post("/api/reload", headers=AUTH)
            assert r.status == 202
            assert got == [1]
        finally:
            signal.signal(signal.SIGHUP, disposition)

    with_client(src, guard(), job)
    assert os.getpid() > 0


def test_sip_traffic_labels_are_bounded() -> None:
    t = SipTraffic()
    t.request(b"INVITE", "udp", Family.INET6)
    t.request(b"XATTACK" * 10, "udp", Family.INET6)
    t.request(b"FOO", "udp", Family.INET6)
    t.response(486, "tcp", Family.INET)
    assert t.requests == {("INVITE", "udp", Family.INET6): 1, ("OTHER", "udp", Family.INET6): 2}
    assert t.responses == {(486, "tcp", Family.INET): 1}


@pytest.mark.parametrize("target", ["2001:db8::1/64", "2001:db8::1"])
def test_tracker_unblock_prefix_forms(target: str) -> None:
    tracker = AuthFailureTracker(1, 60, 300)
    tracker.record_failure(V6, NOW)
    tracker.record_failure(("u", V6), NOW)
    assert len(tracker.blocked(NOW)) == 2
    assert tracker.unblock(target, NOW) == 2
    assert tracker.blocked(NOW) == []
    assert tracker.check(V6, "u", NOW) is None


def test_registrations_show_keepalive_health_when_a_view_exists() -> None:
    class Keepalive:
        def health(self, aor: str, contact: bytes) -> ContactHealth | None:
            if aor == "sip:alice@example.net":
                return ContactHealth("reachable", 0, NOW - 5, 0.0123)
            return None

    store = FakeStore([binding("sip:alice@example.net", V6), binding("sip:bob@example.net", V4)])
    body = get(sources(registrations=store, keepalive=Keepalive()), "/api/registrations")
    alice, bob = (a["contacts"][0] for a in body["aors"])
    assert (alice["keepalive"], alice["keepalive_failures"]) == ("reachable", 0)
    assert (alice["last_keepalive"], alice["rtt_ms"]) == (NOW - 5, 12.3)
    assert (bob["keepalive"], bob["rtt_ms"]) == (None, None)
