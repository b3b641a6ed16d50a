"""The ng protocol over the real MediaRelay (fake forwarder, fake clock): Kamailio's flow."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.net.address import Family
from rtc64.relay.bencode import Encodable, decode, encode
from rtc64.relay.engine import MediaRelay
from rtc64.relay.ng import NgProtocol
from rtc64.relay.options import RelaySettings

from .helpers import V4, V6, Clock, FakeForwarder, sdp

CALLER6 = "2001:db8::10"
CALLEE4 = "192.0.2.20"


def _ng() -> tuple[NgProtocol, MediaRelay, Clock]:
    clock = Clock()
    relay = MediaRelay(
        RelaySettings(addresses=(V4, V6), ports=(30000, 30099)), FakeForwarder(), clock=clock
    )
    ng = NgProtocol(relay, interfaces={"internal": Family.INET, "external": Family.INET6})
    return ng, relay, clock


def _ask(ng: NgProtocol, cookie: bytes, body: dict[str, Encodable], clock: Clock) -> Any:
    out = ng.handle(cookie + b" " + encode(body), clock.now, 1_700_000_000.0)
    assert out is not None and out.startswith(cookie + b" ")
    return decode(out[len(cookie) + 1 :])


def test_offer_answer_query_delete_across_families() -> None:
    ng, relay, clock = _ng()
    common: dict[str, Encodable] = {
        "call-id": "c1",
        "from-tag": "A",
        "replace": ["origin", "session-connection"],
        "ICE": "remove",
        "flags": ["trust-address", "symmetric"],
    }
    offer = _ask(
        ng,
        b"1",
        {
            **common,
            "command": "offer",
            "sdp": sdp(CALLER6),
            "direction": ["external", "internal"],
            "received-from": ["IP6", CALLER6],
        },
        clock,
    )
    assert offer[b"result"] == b"ok", offer
    assert f"c=IN IP4 {V4}".encode() in offer[b"sdp"]
    assert f"o=alice 2890844526 2890844526 IN IP4 {V4}".encode() in offer[b"sdp"]
    assert b"IP6" not in offer[b"sdp"]
    answer = _ask(
        ng,
        b"2",
        {
            **common,
            "command": "answer",
            "to-tag": "B",
            "sdp": sdp(CALLEE4, 7000),
            "received-from": ["IP4", CALLEE4],
        },
        clock,
    )
    assert answer[b"result"] == b"ok", answer
    assert f"c=IN IP6 {V6}".encode() in answer[b"sdp"] and b"IP4" not in answer[b"sdp"]
    assert relay.calls() == [b"c1"]
    query = _ask(ng, b"3", {"command": "query", "call-id": "c1"}, clock)
    assert set(query[b"tags"]) == {b"A", b"B"}
    assert query[b"tags"][b"A"][b"in dialogue with"] == b"B"
    stream = query[b"tags"][b"B"][b"medias"][0][b"streams"][0]
    assert stream[b"advertised endpoint"] == {
        b"family": b"IPv4",
        b"address": CALLEE4.encode(),
        b"port": 7000,
    }
    assert stream[b"local address"] == str(V4).encode()
    deleted = _ask(ng, b"4", {"command": "delete", "call-id": "c1", "from-tag": "A"}, clock)
    assert deleted[b"result"] == b"ok" and b"totals" in deleted
    assert relay.calls() == []


def test_engine_errors_become_ng_errors() -> None:
    ng, relay, clock = _ng()
    base: dict[str, Encodable] = {"command": "offer", "call-id": "c", "from-tag": "A"}
    bad_sdp = _ask(ng, b"1", {**base, "sdp": b"v=0\r\nbogus\r\n"}, clock)
    assert bad_sdp[b"result"] == b"error"
    ice = _ask(ng, b"2", {**base, "sdp": sdp(CALLER6), "ICE": "force"}, clock)
    assert ice == {
        b"result": b"error",
        b"error-reason": b"ICE through the relay needs STUN on relay ports",
    }
    unknown = _ask(
        ng,
        b"3",
        {"command": "answer", "call-id": "x", "from-tag": "A", "to-tag": "B", "sdp": sdp(CALLEE4)},
        clock,
    )
    assert unknown == {b"result": b"error", b"error-reason": b"Unknown call-id"}
    assert relay.calls() == []


_lines = st.sampled_from(
    [
        "c=IN IP6 2001:db8::10",
        "c=IN IP4 192.0.2.20",
        "c=IN IP4 0.0.0.0",
        "c=IN IP6 ::",
        "c=IN IP4 host.example",
        "m=audio 0 RTP/AVP 0",
        "m=audio 5004 RTP/AVP 0",
        "m=video 5006 RTP/AVP 96",
        "a=rtcp:5011 IN IP4 192.0.2.20",
        "a=rtcp-mux",
        "a=sendonly",
        "a=candidate:1 1 UDP 2130706431 2001:db8::10 5004 typ host",
        "a=ice-ufrag:abcd",
        "garbage",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_lines, max_size=8),
    st.sampled_from(["IP4", "IP6", ""]),
    st.lists(st.sampled_from(["internal", "external", "lan"]), max_size=3),
)
def test_fuzz_sdp_and_flags_against_the_engine(
    lines: list[str], family: str, direction: list[str]
) -> None:
    ng, relay, clock = _ng()
    body = "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nt=0 0\r\n" + "".join(
        line + "\r\n" for line in lines
    )
    request: dict[str, Encodable] = {
        "command": "offer",
        "call-id": "f",
        "from-tag": "A",
        "sdp": body.encode(),
        "direction": list(direction),
    }
    if family:
        request["address family"] = family
    reply = _ask(ng, b"1", request, clock)
    assert reply[b"result"] in (b"ok", b"error")
    if reply[b"result"] == b"ok":
        answer = {**request, "command": "answer", "to-tag": "B"}
        assert _ask(ng, b"2", answer, clock)[b"result"] in (b"ok", b"error")
    _ask(ng, b"3", {"command": "delete", "call-id": "f"}, clock)
    assert relay.calls() == []
