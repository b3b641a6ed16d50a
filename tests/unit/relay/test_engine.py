"""MediaRelay engine on a fake forwarder and a fake clock: SDP, ports, legs, timers."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address, ip_address, ip_network

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import Family
from rtc64.relay.engine import MediaRelay, UnknownCallError
from rtc64.relay.options import RelayOptions, RelaySettings
from rtc64.relay.ports import RelayUnavailableError
from rtc64.rtp.legs import LatchMode
from rtc64.sdp import parse
from rtc64.sdp.addresses import families

from .helpers import V4, V6, Clock, FakeForwarder, sdp

CALLER6 = "2001:db8:1::10"
CALLEE4 = "203.0.113.20"


def make(**kw: object) -> tuple[MediaRelay, FakeForwarder, Clock, list[bytes]]:
    settings = RelaySettings(addresses=(V4, V6), ports=(30000, 30099))
    settings = replace(settings, **kw)  # type: ignore[arg-type]
    fwd = FakeForwarder()
    clock = Clock()
    timeouts: list[bytes] = []
    relay = MediaRelay(settings, fwd, clock=clock, on_timeout=timeouts.append)
    return relay, fwd, clock, timeouts


def call(relay: MediaRelay, cid: bytes = b"c1") -> tuple[bytes, bytes]:
    offer = relay.offer(
        cid, b"A", sdp(CALLER6), to_family=Family.INET, from_source=ip_address(CALLER6)
    )
    answer = relay.answer(
        cid, b"A", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6, from_source=ip_address(CALLEE4)
    )
    return offer, answer


def test_offer_rewritten_to_the_callee_family_only() -> None:
    relay, fwd, _, _ = make()
    out = relay.offer(
        b"c1", b"A", sdp(CALLER6), to_family=Family.INET, from_source=ip_address(CALLER6)
    )
    sd = parse(out)
    assert families(sd, include_origin=True) == {Family.INET}
    assert b"IP6" not in out and b"2001:db8" not in out
    assert sd.connection is not None and sd.connection.address == V4
    assert sd.origin.address == V4
    m = sd.media[0]
    assert 30000 <= m.port < 30100 and m.port % 2 == 0
    # codecs and other attributes untouched, in order
    assert (
        b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000"
        b"\r\na=fmtp:101 0-16\r\na=ptime:20\r\n" in out
    )
    # an A-facing pair (IPv6) and a B-facing pair (IPv4) are open
    assert sum(1 for a, _ in fwd.ports if a == V6) == 2
    assert sum(1 for a, _ in fwd.ports if a == V4) == 2
    assert (V4, m.port) in fwd.ports and (V4, m.port + 1) in fwd.ports


def test_answer_rewritten_to_the_offerer_family_and_legs_linked() -> None:
    relay, fwd, _, _ = make()
    offer, answer = call(relay)
    b_port = parse(offer).media[0].port
    sd = parse(answer)
    assert families(sd, include_origin=True) == {Family.INET6}
    assert sd.connection is not None and sd.connection.address == V6
    a_port = sd.media[0].port
    a_rtp = fwd.leg_on((V6, a_port))
    b_rtp = fwd.leg_on((V4, b_port))
    assert len(a_rtp) == 1 and len(b_rtp) == 1
    assert a_rtp[0].peer == b_rtp[0].leg and b_rtp[0].peer == a_rtp[0].leg
    assert a_rtp[0].remote == (ip_address(CALLER6), 49170)
    assert b_rtp[0].remote == (ip_address(CALLEE4), 6000)
    assert fwd.leg_on((V4, b_port + 1))[0].remote == (ip_address(CALLEE4), 6001)
    assert a_rtp[0].window == 3.0
    assert dict(a_rtp[0].clock_rates) == {0: 8000, 8: 8000, 101: 8000}
    assert relay.calls() == [b"c1"]


def test_latch_modes_follow_the_sdp_address() -> None:
    relay, fwd, _, _ = make()
    _offer, answer = call(relay)
    a = fwd.leg_on((V6, parse(answer).media[0].port))[0]
    assert a.mode is LatchMode.ADDRESS  # public, same family as signalling
    # CLAT address in SDP (464XLAT caller signalling over IPv6): learn from anyone
    relay.offer(
        b"c2", b"A", sdp("192.0.0.2"), to_family=Family.INET, from_source=ip_address(CALLER6)
    )
    out = relay.answer(
        b"c2", b"A", b"B", sdp(CALLEE4), to_family=Family.INET, from_source=ip_address(CALLEE4)
    )
    sd = parse(out)
    a_leg = fwd.leg_on((V4, sd.media[0].port))[0]
    assert a_leg.mode is LatchMode.ANY
    # public IPv4 in SDP but the signalling came over IPv6: learn from anyone
    relay.offer(
        b"c3", b"A", sdp("198.51.100.7"), to_family=Family.INET, from_source=ip_address(CALLER6)
    )
    stats = relay.query(b"c3")
    assert stats is not None and stats.legs[0].mode is LatchMode.ANY
    # trust_address: never learn
    relay.offer(
        b"c4",
        b"A",
        sdp("198.51.100.7"),
        to_family=Family.INET,
        options=RelayOptions(trust_address=True),
    )
    stats = relay.query(b"c4")
    assert stats is not None and stats.legs[0].mode is LatchMode.OFF


def test_trusted_networks_make_private_addresses_usable() -> None:
    relay, _, _, _ = make(trusted_networks=(ip_network("10.0.0.0/8"),))
    relay.offer(b"c", b"A", sdp("10.1.2.3"), to_family=Family.INET)
    relay.offer(b"d", b"A", sdp("172.16.0.5"), to_family=Family.INET)
    assert relay.query(b"c").legs[0].mode is LatchMode.ADDRESS  # type: ignore[union-attr]
    assert relay.query(b"d").legs[0].mode is LatchMode.ANY  # type: ignore[union-attr]


def test_ice_is_removed() -> None:
    relay, _, _, _ = make()
    ice = (
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"
        f"a=candidate:1 1 UDP 2130706431 {CALLER6} 49170 typ host\r\n"
        "a=candidate:2 1 UDP 2130706431 192.168.1.5 49170 typ host\r\n"
        "a=candidate:3 1 UDP 1694498815 198.51.100.1 50000 typ srflx"
        " raddr 192.168.1.5 rport 49170\r\n"
        "a=end-of-candidates\r\n"
    )
    out = relay.offer(b"c", b"A", sdp(CALLER6, media_extra=ice), to_family=Family.INET)
    assert b"candidate" not in out and b"ice-" not in out
    assert b"a=fmtp:101 0-16" in out


def test_trickle_placeholder_uses_the_best_candidate() -> None:
    relay, _, _, _ = make()
    ice = (
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"
        f"a=candidate:1 1 UDP 2130706431 {CALLER6} 40000 typ host\r\n"
        f"a=candidate:1 2 UDP 2130706430 {CALLER6} 40001 typ host\r\n"
    )
    relay.offer(b"c", b"A", sdp("0.0.0.0", 9, media_extra=ice), to_family=Family.INET)
    stats = relay.query(b"c")
    assert stats is not None
    rtp = stats.leg(b"A", 0, "rtp")
    assert rtp is not None and rtp.remote == (ip_address(CALLER6), 40000)
    assert rtp.local[0] == V6  # A-facing pair follows the candidate's family
    assert not rtp.held


def test_rtcp_mux_and_a_rtcp() -> None:
    relay, _, _, _ = make()
    out = relay.offer(b"c", b"A", sdp(CALLER6, media_extra="a=rtcp-mux\r\n"), to_family=Family.INET)
    m = parse(out).media[0]
    assert m.rtcp_mux and (m.rtcp is None or m.rtcp.port == m.port)
    out = relay.offer(
        b"d", b"A", sdp(CALLER6, media_extra="a=rtcp:50001\r\n"), to_family=Family.INET
    )
    m = parse(out).media[0]
    assert m.rtcp is not None and m.rtcp.port == m.port + 1
    rtcp = relay.query(b"d").leg(b"A", 0, "rtcp")  # type: ignore[union-attr]
    assert rtcp is not None and rtcp.remote == (ip_address(CALLER6), 50001)


def test_rejected_stream_gets_no_ports() -> None:
    relay, fwd, _, _ = make()
    video = "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    out = relay.offer(b"c", b"A", sdp(CALLER6, second=video), to_family=Family.INET)
    sd = parse(out)
    assert sd.media[1].port == 0
    assert len(fwd.ports) == 4


def test_reoffer_reuses_ports() -> None:
    relay, fwd, _, _ = make()
    offer, answer = call(relay)
    ports = set(fwd.ports)
    again = relay.offer(b"c1", b"A", sdp(CALLER6), to_family=Family.INET)
    assert parse(again).media[0].port == parse(offer).media[0].port
    answer2 = relay.answer(b"c1", b"A", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6)
    assert parse(answer2).media[0].port == parse(answer).media[0].port
    assert fwd.ports == ports
    # a re-INVITE from the callee (its tag as From tag) goes to the caller's side
    back = relay.offer(b"c1", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6)
    assert parse(back).media[0].port == parse(answer).media[0].port
    assert parse(back).connection.address == V6  # type: ignore[union-attr]
    assert fwd.ports == ports


def test_reoffer_family_switch_moves_the_party_to_a_new_pair() -> None:
    relay, fwd, _, _ = make()
    relay.offer(b"c", b"A", sdp("198.51.100.7"), to_family=Family.INET)
    ans = relay.answer(b"c", b"A", b"B", sdp(CALLEE4), to_family=Family.INET)
    old_a = parse(ans).media[0].port
    b_before = {s.local for s in fwd.legs.values() if s.local[0] == V4 and s.local[1] != old_a}
    # the caller moves to IPv6 (e.g. Wi-Fi to an IPv6-only mobile network)
    relay.offer(b"c", b"A", sdp(CALLER6), to_family=Family.INET)
    ans2 = relay.answer(b"c", b"A", b"B", sdp(CALLEE4), to_family=Family.INET6)
    sd = parse(ans2)
    assert sd.connection is not None and sd.connection.address == V6
    new_a = sd.media[0].port
    assert (V6, new_a) in fwd.ports
    assert (V4, old_a) not in fwd.ports  # released
    a_leg = fwd.leg_on((V6, new_a))[0]
    b_leg = next(s for s in fwd.legs.values() if s.leg == a_leg.peer)
    assert b_leg.local in b_before  # the callee keeps its pair and its audio
    assert b_leg.peer == a_leg.leg


def test_forked_answers_each_get_their_b_side() -> None:
    relay, fwd, _, _ = make()
    offer = relay.offer(b"c", b"A", sdp(CALLER6), to_family=Family.INET)
    b_port = parse(offer).media[0].port
    relay.answer(b"c", b"A", b"B1", sdp("203.0.113.21", 7000), to_family=Family.INET6)
    ans2 = relay.answer(b"c", b"A", b"B2", sdp("203.0.113.22", 8000), to_family=Family.INET6)
    shared = fwd.leg_on((V4, b_port))
    assert {s.remote for s in shared} == {
        (ip_address("203.0.113.21"), 7000),
        (ip_address("203.0.113.22"), 8000),
    }
    a_leg = fwd.leg_on((V6, parse(ans2).media[0].port))[0]
    b2 = next(s for s in shared if s.remote[1] == 8000)  # type: ignore[index]
    b1 = next(s for s in shared if s.remote[1] == 7000)  # type: ignore[index]
    assert a_leg.peer == b2.leg  # the latest answer gets the caller's media
    assert b1.peer == a_leg.leg and b2.peer == a_leg.leg  # every fork reaches the caller
    stats = relay.query(b"c")
    assert stats is not None and set(stats.tags) == {b"A", b"B1", b"B2"}
    # the losing fork goes; the call stays with the other
    gone = relay.delete(b"c", b"A", b"B2")
    assert gone is not None and {leg.tag for leg in gone.legs} == {b"B2"}
    a_leg = fwd.legs[a_leg.leg]
    assert a_leg.peer == b1.leg
    assert b2.leg not in fwd.legs
    assert (V4, b_port) in fwd.ports


def test_hold_keeps_ports_and_uses_hold_timeout() -> None:
    relay, fwd, clock, timeouts = make(timeout=60.0, hold_timeout=3600.0)
    call(relay)
    ports = set(fwd.ports)
    relay.offer(b"c1", b"A", sdp(CALLER6, media_extra="a=sendonly\r\n"), to_family=Family.INET)
    relay.answer(
        b"c1", b"A", b"B", sdp(CALLEE4, 6000, media_extra="a=recvonly\r\n"), to_family=Family.INET6
    )
    assert fwd.ports == ports
    assert relay.get_timer() == clock.now + 3600.0
    clock.now += 120
    relay.handle_timer(clock.now)
    assert timeouts == [] and relay.calls() == [b"c1"]
    # RFC 2543 hold (c=0.0.0.0) keeps it a hold, in the callee's family
    out = relay.offer(b"c1", b"A", sdp("::"), to_family=Family.INET)
    sd = parse(out)
    assert str(sd.connection.address) == "0.0.0.0"  # type: ignore[union-attr]
    assert fwd.ports == ports
    # resume: back to the media timeout
    relay.offer(b"c1", b"A", sdp(CALLER6), to_family=Family.INET)
    relay.answer(b"c1", b"A", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6)
    assert relay.get_timer() == clock.now + 60.0


def test_resume_after_a_hold_longer_than_the_timeout_is_not_a_timeout() -> None:
    """The resuming re-offer is signalling activity: the timer runs between it and its
    answer (a loop timer at the deadline) and must not end the call (found in the lab)."""
    relay, _, clock, timeouts = make(timeout=3.0, hold_timeout=3600.0)
    call(relay)
    relay.offer(b"c1", b"A", sdp(CALLER6, media_extra="a=sendonly\r\n"), to_family=Family.INET)
    relay.answer(
        b"c1", b"A", b"B", sdp(CALLEE4, 6000, media_extra="a=recvonly\r\n"), to_family=Family.INET6
    )
    clock.now += 7.0
    relay.handle_timer(clock.now)
    relay.offer(b"c1", b"A", sdp(CALLER6), to_family=Family.INET)
    assert relay.get_timer() == clock.now + 3.0
    relay.handle_timer(clock.now)
    assert timeouts == [] and relay.calls() == [b"c1"]
    relay.answer(b"c1", b"A", b"B", sdp(CALLEE4, 6000), to_family=Family.INET6)
    clock.now += 3.5
    relay.handle_timer(clock.now)
    assert timeouts == [b"c1"]


def test_media_timeout_reports_and_deletes() -> None:
    relay, fwd, clock, _timeouts = make(timeout=60.0)
    seen: list[object] = []
    relay.on_timeout = lambda cid: seen.append(relay.query(cid))
    call(relay)
    start = clock.now
    assert relay.get_timer() == start + 60
    # media flows until +50 s
    leg = next(iter(fwd.legs))
    fwd.activity(leg, start + 50)
    clock.now = start + 60
    relay.handle_timer(clock.now)
    assert relay.calls() == [b"c1"] and not seen
    assert relay.get_timer() == start + 110
    clock.now = start + 110
    relay.handle_timer(clock.now)
    assert relay.calls() == [] and len(seen) == 1 and seen[0] is not None
    assert fwd.ports == set() and fwd.legs == {}
    assert relay.counters.timeouts == 1
    assert relay.get_timer() is None


def test_unanswered_offer_expires_silently() -> None:
    relay, fwd, clock, timeouts = make(offer_timeout=60.0)
    relay.offer(b"c", b"A", sdp(CALLER6), to_family=Family.INET)
    assert relay.get_timer() == clock.now + 60
    clock.now += 61
    relay.handle_timer(clock.now)
    assert relay.calls() == [] and timeouts == [] and fwd.ports == set()
    assert relay.counters.expired_offers == 1


def test_port_exhaustion_is_503_and_leaves_nothing() -> None:
    relay, fwd, _, _ = make(ports=(30000, 30007))  # 4 pairs per address
    relay.offer(b"c1", b"A", sdp(CALLER6), to_family=Family.INET)  # one V6, one V4 pair
    relay.offer(b"c2", b"A", sdp("198.51.100.7"), to_family=Family.INET)  # two V4 pairs
    relay.offer(b"c3", b"A", sdp(CALLER6), to_family=Family.INET)  # the last V4 pair
    before = set(fwd.ports)
    with pytest.raises(RelayUnavailableError) as err:
        relay.offer(b"c4", b"A", sdp("198.51.100.8"), to_family=Family.INET)
    assert err.value.status == 503
    assert fwd.ports == before and b"c4" not in relay.calls()
    relay.delete(b"c1")
    relay.offer(b"c4", b"A", sdp(CALLER6), to_family=Family.INET)


def test_no_address_of_a_family_is_503() -> None:
    settings = RelaySettings(addresses=(V4,), ports=(30000, 30099))
    relay = MediaRelay(settings, FakeForwarder(), clock=Clock())
    with pytest.raises(RelayUnavailableError):
        relay.offer(b"c", b"A", sdp(CALLER6), to_family=Family.INET)
    assert relay.calls() == []


def test_bind_failure_tries_another_pair() -> None:
    settings = RelaySettings(addresses=(V4, V6), ports=(30000, 30099))
    fwd = FakeForwarder(fail=[(V4, 30000)])
    relay = MediaRelay(settings, fwd, clock=Clock())
    out = relay.offer(b"c", b"A", sdp(CALLER6), to_family=Family.INET)
    assert parse(out).media[0].port == 30002
    assert (V4, 30001) not in fwd.ports


def test_answer_for_unknown_call() -> None:
    relay, _, _, _ = make()
    with pytest.raises(UnknownCallError):
        relay.answer(b"nope", b"A", b"B", sdp(CALLEE4), to_family=Family.INET)


def test_options_keep_origin_and_session_connection() -> None:
    relay, _, _, _ = make()
    opts = RelayOptions(replace_origin=False, replace_session_connection=False)
    out = relay.offer(b"c", b"A", sdp("198.51.100.7"), to_family=Family.INET, options=opts)
    sd = parse(out)
    assert str(sd.origin.address) == "198.51.100.7"
    assert str(sd.connection.address) == "198.51.100.7"  # type: ignore[union-attr]
    assert sd.media[0].connection is not None and sd.media[0].connection.address == V4
    # a session c= of the other family is replaced anyway: never mixed families
    out = relay.offer(b"d", b"A", sdp(CALLER6), to_family=Family.INET, options=opts)
    assert families(parse(out)) == {Family.INET}


def test_from_family_override_and_strict_option() -> None:
    relay, _, _, _ = make(strict_source=False)
    opts = RelayOptions(from_family=Family.INET6, strict_source=True)
    relay.offer(b"c", b"A", sdp("198.51.100.7"), to_family=Family.INET, options=opts)
    leg = relay.query(b"c").leg(b"A")  # type: ignore[union-attr]
    assert leg is not None and isinstance(leg.local[0], IPv6Address)
    assert leg.mode is LatchMode.ANY  # SDP family differs from the leg's


def test_delete_whole_call_returns_stats_and_frees_everything() -> None:
    relay, fwd, _, _ = make()
    call(relay)
    stats = relay.delete(b"c1")
    assert stats is not None and {leg.tag for leg in stats.legs} == {b"A", b"B"}
    assert len(stats.legs) == 4
    assert relay.delete(b"c1") is None and relay.query(b"c1") is None
    assert fwd.ports == set() and fwd.legs == {}
    assert relay.pool.in_use == 0


def test_released_ports_are_reused_last() -> None:
    relay, _, _, _ = make(addresses=(V4,), ports=(30000, 30011))
    out = relay.offer(b"c", b"A", sdp("198.51.100.7"), to_family=Family.INET)
    first = parse(out).media[0].port
    relay.delete(b"c")
    out = relay.offer(b"d", b"A", sdp("198.51.100.7"), to_family=Family.INET)
    assert parse(out).media[0].port != first


def test_bad_sdp_raises_remote_error_and_leaves_nothing() -> None:
    relay, fwd, _, _ = make()
    with pytest.raises(RemoteProtocolError):
        relay.offer(b"c", b"A", b"not sdp", to_family=Family.INET)
    assert relay.calls() == [] and fwd.ports == set()


def test_close_shuts_down() -> None:
    relay, fwd, _, _ = make()
    call(relay)
    relay.close()
    assert relay.calls() == [] and fwd.closed_all and fwd.ports == set()


def test_repeated_offer_before_answer_keeps_its_ports() -> None:
    relay, fwd, _, _ = make()
    first = relay.offer(b"c", b"A", sdp(CALLER6), to_family=Family.INET)
    ports = set(fwd.ports)
    again = relay.offer(b"c", b"A", sdp(CALLER6), to_family=Family.INET)
    assert parse(again).media[0].port == parse(first).media[0].port
    assert fwd.ports == ports
    # the same offer to the other family gets a pair of that family
    v6 = relay.offer(b"c", b"A", sdp(CALLER6), to_family=Family.INET6)
    assert parse(v6).connection.address == V6  # type: ignore[union-attr]
