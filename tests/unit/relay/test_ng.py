"""ng protocol core: datagram framing, key/flag mapping, family choice, replies, cache."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import Family
from rtc64.relay.bencode import Encodable, decode, encode
from rtc64.relay.engine import UnknownCallError
from rtc64.relay.ng import (
    Command,
    NgError,
    NgProtocol,
    interface_map,
    parse_request,
    sdp_family,
    split_datagram,
)
from rtc64.relay.options import IceMode, RelayOptions

from .fakes import SDP4, SDP6, FakeEngine, kamailio_offer, request


def ask(ng: NgProtocol, body: dict[str, Encodable], cookie: bytes = b"c1", now: float = 0.0) -> Any:
    out = ng.handle(request(cookie, body), now)
    assert out is not None
    got_cookie, _, wire = out.partition(b" ")
    assert got_cookie == cookie
    return decode(wire)


# --- framing ---


def test_split_datagram() -> None:
    assert split_datagram(b"0_24471_1 d7:command4:pinge") == (b"0_24471_1", b"d7:command4:pinge")
    for bad in (b"", b"nocookie", b" d7:command4:pinge", b"a\tb x", b"x" * 300 + b" de"):
        with pytest.raises(NgError):
            split_datagram(bad)


def test_ping_and_unanswerable() -> None:
    ng = NgProtocol(FakeEngine())
    assert ask(ng, {"command": "ping"}) == {b"result": b"pong"}
    assert ng.handle(b"garbage-without-space", 0.0) is None
    assert ng.stats.dropped == 1
    assert ng.stats.commands == {"ping": 1}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not bencode", b"could not decode request: unexpected byte"),
        (b"d7:command4:ping", b"could not decode request: unterminated dictionary at offset 16"),
        (b"le", b"request is not a dictionary"),
        (b"de", b"no command in request"),
        (encode({"command": "shutdown"}), b"unknown command 'shutdown'"),
        (encode({"command": "offer", "from-tag": "f", "sdp": SDP6}), b"no call-id in request"),
        (encode({"command": "offer", "call-id": "c", "sdp": SDP6}), b"no from-tag in request"),
        (encode({"command": "offer", "call-id": "c", "from-tag": "f"}), b"no SDP body in request"),
        (
            encode({"command": "answer", "call-id": "c", "from-tag": "f", "sdp": SDP4}),
            b"no to-tag in request",
        ),
        (
            encode(
                {
                    "command": "offer",
                    "call-id": "c",
                    "from-tag": "f",
                    "sdp": SDP6,
                    "address family": "IPX",
                }
            ),
            b"unknown address family 'IPX' (IP4 or IP6)",
        ),
        (
            encode(
                {
                    "command": "offer",
                    "call-id": "c",
                    "from-tag": "f",
                    "sdp": SDP6,
                    "received from": ["IP4", "999.1.1.1"],
                }
            ),
            b"bad 'received from' address",
        ),
        (
            encode({"command": "offer", "call-id": ["c"], "from-tag": "f", "sdp": SDP6}),
            b"'call id' must be a string",
        ),
        (
            encode(
                {
                    "command": "offer",
                    "call-id": "c",
                    "from-tag": "f",
                    "sdp": SDP6,
                    "flags": "trust-address",
                }
            ),
            b"'flags' must be a list",
        ),
        (encode({"command": "list", "limit": -1}), b"'limit' must be a non-negative integer"),
    ],
)
def test_bad_requests_get_error_replies(body: bytes, reason: bytes) -> None:
    ng = NgProtocol(FakeEngine())
    out = ng.handle(b"ck " + body, 0.0)
    assert out is not None and out.startswith(b"ck ")
    reply = decode(out[3:])
    assert isinstance(reply, dict)
    assert reply[b"result"] == b"error"
    assert reply[b"error-reason"].startswith(reason)  # type: ignore[union-attr]
    assert ng.stats.errors == 1


# --- mapping of keys and flags ---


def test_kamailio_offer_maps_to_engine_call() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    reply = ask(ng, kamailio_offer())
    assert reply == {
        b"result": b"ok",
        b"sdp": b"offer-sdp:IP4",
        b"warning": b"unknown interface 'internal' in direction, ignored; "
        b"unknown interface 'external' in direction, ignored",
    }
    op, args = engine.log[0]
    assert op == "offer"
    assert args["call_id"] == b"cid1" and args["from_tag"] == b"ft1" and args["sdp"] == SDP6
    assert args["to_family"] is Family.INET
    assert args["from_source"] == ip_address("fd00:64:6::2")
    assert args["options"] == RelayOptions(
        trust_address=False,
        strict_source=None,
        ice=IceMode.REMOVE,
        replace_origin=True,
        replace_session_connection=True,
        from_family=None,
    )


def test_key_spelling_is_folded() -> None:
    req = parse_request(
        encode(
            {
                "Command": "offer",
                "call_id": "c",
                "From Tag": "f",
                "SDP": SDP6,
                "address_family": "ip6",
                "ice": "FORCE",
                "received from": ["IP4", "10.0.0.1"],
                "flags": [
                    "SIP-source-address",
                    "asymmetric",
                    "strict_source",
                    "fatal",
                    "replace-origin",
                    "address-family=IP4",
                    "unknown-flag",
                ],
            }
        ),
        interface_map(),
    )
    assert req.command is Command.OFFER and req.call_id == b"c" and req.from_tag == b"f"
    assert req.family is Family.INET6  # the dictionary key wins over the flag-list form
    assert req.source == ip_address("10.0.0.1")
    assert req.fatal
    assert req.options == RelayOptions(
        trust_address=True,  # asymmetric: never learn
        strict_source=True,
        ice=IceMode.FORCE,
        replace_origin=True,
        replace_session_connection=False,
    )


def test_defaults_without_flags() -> None:
    req = parse_request(
        encode({"command": "offer", "call-id": "c", "from-tag": "f", "sdp": SDP6}),
        interface_map(),
    )
    assert req.options == RelayOptions(
        trust_address=False,
        strict_source=None,
        ice=IceMode.REMOVE,
        replace_origin=False,
        replace_session_connection=False,
    )
    assert (req.family, req.source, req.warnings) == (None, None, ())


def test_flag_list_key_value_forms() -> None:
    req = parse_request(
        encode(
            {
                "command": "offer",
                "call-id": "c",
                "from-tag": "f",
                "sdp": SDP6,
                "flags": ["address-family=IP4", "ICE=remove", "replace-session-connection"],
            }
        ),
        interface_map(),
    )
    assert req.family is Family.INET
    assert req.options.ice is IceMode.REMOVE and req.options.replace_session_connection


def test_flag_list_adds_to_dictionary_lists_whatever_the_key_order() -> None:
    for order in ("flags first", "replace first"):
        items: list[tuple[str, Encodable]] = [
            ("flags", ["replace-origin"]),
            ("replace", ["session-connection"]),
        ]
        if order == "replace first":
            items.reverse()
        body = b"d7:command5:offer7:call-id1:c8:from-tag1:f3:sdp%d:%s" % (len(SDP6), SDP6)
        for key, value in items:
            body += encode(key) + encode(value)
        req = parse_request(body + b"e", interface_map())
        assert req.options.replace_origin and req.options.replace_session_connection, order


def test_direction_uses_the_interface_map() -> None:
    table = interface_map({"internal": Family.INET, "external": Family.INET6})
    body = {"command": "offer", "call-id": "c", "from-tag": "f", "sdp": SDP6}
    req = parse_request(encode({**body, "direction": ["external", "internal"]}), table)
    assert (req.from_family, req.family, req.warnings) == (Family.INET6, Family.INET, ())
    assert req.options.from_family is Family.INET6
    # Built-in names, any case; an explicit address family wins over direction.
    req = parse_request(encode({**body, "direction": ["IPv4", "ipv6"]}), interface_map())
    assert (req.from_family, req.family) == (Family.INET, Family.INET6)
    req = parse_request(
        encode({**body, "direction": ["ipv4", "ipv6"], "address family": "IP4"}), interface_map()
    )
    assert req.family is Family.INET
    # Unknown names: ignored with a warning.
    req = parse_request(encode({**body, "direction": ["lan", "wan"]}), interface_map())
    assert req.family is None and len(req.warnings) == 2


def test_sdp_family() -> None:
    assert sdp_family(SDP6) is Family.INET6
    assert sdp_family(SDP4) is Family.INET
    assert sdp_family(b"v=0\r\nm=audio 1 RTP/AVP 0\r\n") is None


# --- family choice across offer and answer ---


def test_offer_without_family_keeps_the_sdp_family() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    ask(ng, {"command": "offer", "call-id": "c", "from-tag": "f", "sdp": SDP4})
    assert engine.log[-1][1]["to_family"] is Family.INET
    assert engine.log[-1][1]["from_source"] is None


def test_answer_family_explicit_else_its_own() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    ask(ng, kamailio_offer(direction=[]))
    body: dict[str, Encodable] = {
        "command": "answer",
        "call-id": "cid1",
        "from-tag": "ft1",
        "to-tag": "tt1",
        "sdp": SDP4,
        "received-from": ["IP4", "10.64.4.2"],
    }
    assert ask(ng, {**body, "address family": "IP6"}, cookie=b"c2") == {
        b"result": b"ok",
        b"sdp": b"answer-sdp:IP6",
    }
    op, args = engine.log[-1]
    assert op == "answer" and args["to_tag"] == b"tt1" and args["to_family"] is Family.INET6
    assert args["from_source"] == ip_address("10.64.4.2")
    # Without one: the answer's own family (the engine keeps the offerer's pairs anyway).
    ask(ng, body, cookie=b"c3")
    assert engine.log[-1][1]["to_family"] is Family.INET


def test_family_falls_back_to_received_from() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    no_c = b"v=0\r\no=- 1 1 IN IP6 fd00::2\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
    ask(ng, kamailio_offer(sdp=no_c, **{"address-family": "", "received-from": ["IP6", "::1"]}))
    assert engine.log[-1][1]["to_family"] is Family.INET6


def test_answer_for_unknown_offer_uses_its_own_family_and_engine_errors_reply() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    reply = ask(
        ng, {"command": "answer", "call-id": "nope", "from-tag": "f", "to-tag": "t", "sdp": SDP6}
    )
    assert reply == {b"result": b"error", b"error-reason": b"Unknown call-id"}
    assert engine.log[-1][1]["to_family"] is Family.INET6


# --- delete, query, list ---


def test_query_delete_list() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    ask(ng, kamailio_offer(), cookie=b"o")
    answer = {"command": "answer", "call-id": "cid1", "from-tag": "ft1", "to-tag": "tt"}
    ask(ng, {**answer, "sdp": SDP4}, cookie=b"a")
    assert ask(ng, {"command": "list"}, cookie=b"l") == {b"result": b"ok", b"calls": [b"cid1"]}
    assert ask(ng, {"command": "list", "limit": 0}, cookie=b"l0")[b"calls"] == []
    # Relay times are monotonic (call created at 100.0); replies carry Unix seconds.
    out = ng.handle(request(b"q", {"command": "query", "call-id": "cid1"}), 200.0, 1_700_000_100.0)
    assert out is not None
    reply: Any = decode(out[2:])
    assert reply[b"result"] == b"ok"
    assert (reply[b"created"], reply[b"last signal"]) == (1_700_000_000, 1_700_000_003)
    assert reply[b"totals"] == {
        b"RTP": {b"packets": 15, b"bytes": 2580, b"errors": 1},
        b"RTCP": {b"packets": 2, b"bytes": 344, b"errors": 0},
    }
    caller = reply[b"tags"][b"ft1"]
    assert caller[b"tag"] == b"ft1" and caller[b"in dialogue with"] == b"tt"
    (media,) = caller[b"medias"]
    assert (media[b"index"], media[b"type"]) == (1, b"audio")
    rtp, rtcp = media[b"streams"]
    assert rtp[b"local port"] == 30000 and rtp[b"local address"] == b"fd00:64:6::1"
    assert rtp[b"endpoint"] == {b"family": b"IPv6", b"address": b"fd00::2", b"port": 6000}
    assert rtp[b"advertised endpoint"] == rtp[b"endpoint"]
    assert rtp[b"stats"] == {b"packets": 10, b"bytes": 1720, b"errors": 1}
    assert rtp[b"last packet"] == 1_700_000_002 and rtp[b"flags"] == [b"RTP", b"filled"]
    assert rtcp[b"flags"] == [b"RTCP", b"filled"] and rtcp[b"local port"] == 30001
    callee_rtp = reply[b"tags"][b"tt"][b"medias"][0][b"streams"][0]
    assert callee_rtp[b"endpoint"][b"family"] == b"IPv4"
    assert reply[b"tags"][b"tt"][b"in dialogue with"] == b"ft1"

    deleted = ask(ng, {"command": "delete", "call-id": "cid1", "from-tag": "ft1"}, cookie=b"d")
    assert deleted[b"result"] == b"ok" and b"totals" in deleted
    assert engine.log[-1] == ("delete", {"call_id": b"cid1", "from_tag": b"ft1", "to_tag": None})
    assert ask(ng, {"command": "query", "call-id": "cid1"}, cookie=b"q2") == {
        b"result": b"error",
        b"error-reason": b"Unknown call-id",
    }
    assert ask(ng, {"command": "delete", "call-id": "cid1"}, cookie=b"d2") == {
        b"result": b"ok",
        b"warning": b"Call-ID not found or tags didn't match",
    }
    fatal = {"command": "delete", "call-id": "cid1", "flags": ["fatal"]}
    assert ask(ng, fatal, cookie=b"d3") == {
        b"result": b"error",
        b"error-reason": b"Call-ID not found or tags didn't match",
    }
    assert ng.stats.commands == {"offer": 1, "answer": 1, "list": 2, "query": 2, "delete": 3}


# --- retransmissions ---


def test_retransmission_gets_the_cached_reply_without_rerunning() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine, cache_ttl=30.0)
    data = request(b"k1", kamailio_offer())
    first = ng.handle(data, 0.0)
    assert ng.handle(data, 10.0) == first
    assert len(engine.log) == 1 and ng.stats.retransmissions == 1
    # After the TTL it runs again; same cookie with other bytes is a new request.
    ng.handle(data, 40.0)
    assert len(engine.log) == 2
    ng.handle(request(b"k1", kamailio_offer(**{"call-id": "other"})), 41.0)
    assert len(engine.log) == 3
    # Error replies are cached too.
    bad = b"k2 d7:command3:fooe"
    assert ng.handle(bad, 50.0) == ng.handle(bad, 50.5)
    assert ng.stats.retransmissions == 2


def test_cache_is_bounded() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine, cache_size=3)
    for n in range(10):
        ng.handle(request(b"p%d" % n, {"command": "ping"}), 0.0)
    assert len(ng._cache) == 3
    ng.handle(request(b"p0", {"command": "ping"}), 0.0)
    assert ng.stats.retransmissions == 0
    ng.handle(request(b"p9", {"command": "ping"}), 0.0)
    assert ng.stats.retransmissions == 1


def test_engine_rtc64_errors_become_error_replies() -> None:
    engine = FakeEngine(fail=RemoteProtocolError("SDP: bad m= line", 488))
    ng = NgProtocol(engine)
    assert ask(ng, kamailio_offer()) == {b"result": b"error", b"error-reason": b"SDP: bad m= line"}
    engine.fail = UnknownCallError(b"cid1")
    assert ask(ng, kamailio_offer(), cookie=b"u") == {
        b"result": b"error",
        b"error-reason": b"Unknown call-id",
    }
    # Anything else is the listener's to log and answer.
    engine.fail = RuntimeError("bug")
    with pytest.raises(RuntimeError):
        ng.handle(request(b"x", kamailio_offer()), 0.0)
    assert (
        ng.error_for(b"x d", "internal error")
        == b"x d12:error-reason14:internal error6:result5:errore"
    )
    assert ng.error_for(b"nocookie", "internal error") is None


# --- fuzz: whatever arrives, the core answers or drops; only its own errors escape ---

_values = st.recursive(
    st.binary(max_size=12)
    | st.integers(-5, 5)
    | st.sampled_from([b"offer", b"answer", b"delete", b"query", b"list", b"ping", b"IP4"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            [b"command", b"call-id", b"from-tag", b"to-tag", b"sdp", b"flags", b"direction",
             b"address family", b"received from", b"ICE", b"replace", b"limit", b"x"]
        ),
        children,
        max_size=6,
    ),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=400)
@given(_values)
def test_fuzz_any_bencoded_request_gets_a_reply(value: Any) -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    out = ng.handle(b"fz " + encode(value), 0.0, 0.0)
    assert out is not None and out.startswith(b"fz ")
    reply = decode(out[3:])
    assert isinstance(reply, dict) and reply[b"result"] in (b"ok", b"pong", b"error")


@given(st.binary(max_size=300))
def test_fuzz_raw_bytes(data: bytes) -> None:
    ng = NgProtocol(FakeEngine())
    out = ng.handle(data, 0.0)
    assert out is None or out.startswith(data.partition(b" ")[0] + b" ")
