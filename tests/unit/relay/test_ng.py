"""ng protocol core: datagram framing, key/flag mapping, family choice, replies, cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import Family, IPAddress
from rtc64.relay.bencode import Encodable, decode, encode
from rtc64.relay.ng import (
    Command,
    IceMode,
    MediaOptions,
    NgError,
    NgProtocol,
    interface_map,
    parse_request,
    sdp_family,
    split_datagram,
)
from rtc64.relay.ngreport import CallReport, LegReport, MediaReport, StreamReport

SDP6 = (
    b"v=0\r\no=- 1 1 IN IP6 fd00::2\r\ns=-\r\nc=IN IP6 fd00::2\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
)
SDP4 = (
    b"v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    b"m=audio 7000 RTP/AVP 0\r\n"
)


@dataclass
class Call:
    offer: dict[str, Any]
    answer: dict[str, Any] | None = None


@dataclass
class FakeEngine:
    """Records what the protocol asks; answers with a marker SDP."""

    calls_: dict[bytes, Call] = field(default_factory=dict)
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: Exception | None = None

    def offer(
        self,
        call_id: bytes,
        from_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
        options: MediaOptions,
    ) -> bytes:
        args = {
            "call_id": call_id,
            "from_tag": from_tag,
            "sdp": sdp,
            "to_family": to_family,
            "from_source": from_source,
            "options": options,
        }
        self.log.append(("offer", args))
        if self.fail:
            raise self.fail
        self.calls_[call_id] = Call(args)
        return b"offer-sdp:" + to_family.sdp.encode()

    def answer(
        self,
        call_id: bytes,
        from_tag: bytes,
        to_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
        options: MediaOptions,
    ) -> bytes:
        args = {
            "call_id": call_id,
            "from_tag": from_tag,
            "to_tag": to_tag,
            "sdp": sdp,
            "to_family": to_family,
            "from_source": from_source,
            "options": options,
        }
        self.log.append(("answer", args))
        if call_id not in self.calls_:
            raise RemoteProtocolError("Unknown call-id")
        self.calls_[call_id].answer = args
        return b"answer-sdp:" + to_family.sdp.encode()

    def _report(self, call_id: bytes) -> CallReport:
        call = self.calls_[call_id]
        stream = StreamReport(
            30000,
            IPv4Address("10.64.4.1"),
            (IPv4Address("10.0.0.2"), 7000),
            (IPv4Address("10.0.0.2"), 7000),
            packets=10,
            octets=1720,
            errors=1,
            last_packet=1700000000.5,
        )
        rtcp = StreamReport(30001, rtcp=True, packets=2, octets=100)
        legs = [
            LegReport(
                call.offer["from_tag"],
                1.0,
                b"tt",
                (MediaReport(1, "audio", "RTP/AVP", (stream, rtcp)),),
            )
        ]
        if call.answer:
            legs.append(
                LegReport(
                    b"tt",
                    2.0,
                    call.offer["from_tag"],
                    (
                        MediaReport(
                            1,
                            streams=(
                                StreamReport(
                                    30002,
                                    endpoint=(IPv6Address("fd00::2"), 6000),
                                    packets=5,
                                    octets=860,
                                ),
                            ),
                        ),
                    ),
                )
            )
        return CallReport(call_id, 1.0, 3.0, tuple(legs))

    def delete(
        self, call_id: bytes, from_tag: bytes | None = None, to_tag: bytes | None = None
    ) -> CallReport | None:
        self.log.append(("delete", {"call_id": call_id, "from_tag": from_tag, "to_tag": to_tag}))
        if call_id not in self.calls_:
            return None
        report = self._report(call_id)
        del self.calls_[call_id]
        return report

    def query(self, call_id: bytes) -> CallReport | None:
        return self._report(call_id) if call_id in self.calls_ else None

    def calls(self) -> list[bytes]:
        return list(self.calls_)


def request(cookie: bytes, body: dict[str, Encodable]) -> bytes:
    return cookie + b" " + encode(body)


def ask(ng: NgProtocol, body: dict[str, Encodable], cookie: bytes = b"c1", now: float = 0.0) -> Any:
    out = ng.handle(request(cookie, body), now)
    assert out is not None
    got_cookie, _, wire = out.partition(b" ")
    assert got_cookie == cookie
    return decode(wire)


def kamailio_offer(**extra: Encodable) -> dict[str, Encodable]:
    """What Kamailio 5.6's rtpengine_offer() sends (captured from the real module)."""
    body: dict[str, Encodable] = {
        "supports": ["load limit"],
        "sdp": SDP6,
        "address-family": "IP4",
        "ICE": "remove",
        "direction": ["internal", "external"],
        "flags": ["trust-address", "symmetric"],
        "replace": ["origin", "session-connection"],
        "SDES": ["off"],
        "call-id": "cid1",
        "received-from": ["IP6", "fd00:64:6::2"],
        "from-tag": "ft1",
        "command": "offer",
    }
    body.update(extra)
    return body


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
        (b"d7:command4:ping", b"could not decode request: unexpected end of input at offset 16"),
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
    assert args["options"] == MediaOptions(
        trust_address=True,
        strict_source=False,
        symmetric=True,
        ice=IceMode.REMOVE,
        replace_origin=True,
        replace_session_connection=True,
        family=Family.INET,
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
    assert req.options == MediaOptions(
        trust_address=False,
        strict_source=True,
        symmetric=False,
        ice=IceMode.FORCE,
        replace_origin=True,
        replace_session_connection=False,
        family=Family.INET6,
    )


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


def test_direction_uses_the_interface_map() -> None:
    table = interface_map({"internal": Family.INET, "external": Family.INET6})
    body = {"command": "offer", "call-id": "c", "from-tag": "f", "sdp": SDP6}
    req = parse_request(encode({**body, "direction": ["external", "internal"]}), table)
    assert (req.from_family, req.family, req.warnings) == (Family.INET6, Family.INET, ())
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


def test_answer_goes_back_in_the_offers_family() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    ask(ng, kamailio_offer(direction=[]))
    reply = ask(
        ng,
        {
            "command": "answer",
            "call-id": "cid1",
            "from-tag": "ft1",
            "to-tag": "tt1",
            "sdp": SDP4,
            "received-from": ["IP4", "10.64.4.2"],
        },
        cookie=b"c2",
    )
    assert reply == {b"result": b"ok", b"sdp": b"answer-sdp:IP6"}
    op, args = engine.log[-1]
    assert op == "answer" and args["to_tag"] == b"tt1" and args["to_family"] is Family.INET6
    assert args["from_source"] == ip_address("10.64.4.2")
    # An explicit family in the answer wins.
    ask(
        ng,
        {
            "command": "answer",
            "call-id": "cid1",
            "from-tag": "ft1",
            "to-tag": "tt1",
            "sdp": SDP4,
            "address family": "IP4",
        },
        cookie=b"c3",
    )
    assert engine.log[-1][1]["to_family"] is Family.INET


def test_answer_for_unknown_offer_uses_its_own_family_and_engine_errors_reply() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    reply = ask(
        ng, {"command": "answer", "call-id": "nope", "from-tag": "f", "to-tag": "t", "sdp": SDP6}
    )
    assert reply == {b"result": b"error", b"error-reason": b"Unknown call-id"}
    assert engine.log[-1][1]["to_family"] is Family.INET6


def test_strict_source_default_comes_from_configuration() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine, strict_source=True)
    ask(ng, kamailio_offer())
    assert engine.log[-1][1]["options"].strict_source


# --- delete, query, list ---


def test_query_delete_list() -> None:
    engine = FakeEngine()
    ng = NgProtocol(engine)
    ask(ng, kamailio_offer(), cookie=b"o")
    ask(
        ng,
        {"command": "answer", "call-id": "cid1", "from-tag": "ft1", "to-tag": "tt", "sdp": SDP4},
        cookie=b"a",
    )
    assert ask(ng, {"command": "list"}, cookie=b"l") == {b"result": b"ok", b"calls": [b"cid1"]}
    assert ask(ng, {"command": "list", "limit": 0}, cookie=b"l0")[b"calls"] == []
    reply = ask(ng, {"command": "query", "call-id": "cid1"}, cookie=b"q")
    assert reply[b"result"] == b"ok"
    assert reply[b"created"] == 1 and reply[b"last signal"] == 3
    assert reply[b"totals"] == {
        b"RTP": {b"packets": 15, b"bytes": 2580, b"errors": 1},
        b"RTCP": {b"packets": 2, b"bytes": 100, b"errors": 0},
    }
    leg = reply[b"tags"][b"ft1"]
    assert leg[b"tag"] == b"ft1" and leg[b"in dialogue with"] == b"tt"
    media = leg[b"medias"][0]
    assert (media[b"index"], media[b"type"], media[b"protocol"]) == (1, b"audio", b"RTP/AVP")
    rtp = media[b"streams"][0]
    assert rtp[b"local port"] == 30000 and rtp[b"local address"] == b"10.64.4.1"
    assert rtp[b"endpoint"] == {b"family": b"IPv4", b"address": b"10.0.0.2", b"port": 7000}
    assert rtp[b"advertised endpoint"][b"port"] == 7000
    assert rtp[b"stats"] == {b"packets": 10, b"bytes": 1720, b"errors": 1}
    assert rtp[b"last packet"] == 1700000000 and rtp[b"flags"] == [b"RTP", b"filled"]
    assert media[b"streams"][1][b"flags"] == [b"RTCP"]
    assert reply[b"tags"][b"tt"][b"medias"][0][b"streams"][0][b"endpoint"][b"family"] == b"IPv6"
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
    assert ask(ng, {"command": "delete", "call-id": "cid1", "flags": ["fatal"]}, cookie=b"d3") == {
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
    # Anything else is the listener's to log and answer.
    engine.fail = RuntimeError("bug")
    with pytest.raises(RuntimeError):
        ng.handle(request(b"x", kamailio_offer()), 0.0)
    assert (
        ng.error_for(b"x d", "internal error")
        == b"x d6:result5:error12:error-reason14:internal errore"
    )
    assert ng.error_for(b"nocookie", "internal error") is None
