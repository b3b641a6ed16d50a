"""Parser and serializer: real SDPs, byte-exact round trips, leniency, bad input."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import Family
from rtc64.sdp import parse, serialize
from rtc64.sdp.ice import Candidate, CandidateType
from rtc64.sdp.model import (
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    Extmap,
    Fingerprint,
    Fmtp,
    Group,
    Rtcp,
    RtpMap,
    Ssrc,
    Timing,
    UnknownLine,
)

from .samples import (
    BARESIP_V4,
    BARESIP_V6,
    CHROMIUM_OFFER,
    HOLD_2543_V6,
    MULTICAST,
    crlf,
    rfc5118_body,
)

ALL_SAMPLES = {
    "baresip-v4": BARESIP_V4,
    "baresip-v6": BARESIP_V6,
    "chromium": CHROMIUM_OFFER,
    "multicast": MULTICAST,
    "hold-v6": HOLD_2543_V6,
    "rfc5118-4.6": rfc5118_body("ipv6-in-sdp"),
    "rfc5118-4.8": rfc5118_body("mult-ip-in-sdp"),
    "rfc5118-4.9": rfc5118_body("ipv4-mapped-ipv6"),
}


@pytest.mark.parametrize("body", ALL_SAMPLES.values(), ids=ALL_SAMPLES.keys())
def test_well_formed_input_round_trips_byte_exact(body: bytes) -> None:
    sd = parse(body)
    assert serialize(sd) == body
    assert parse(serialize(sd)) == sd


@pytest.mark.parametrize("body", ALL_SAMPLES.values(), ids=ALL_SAMPLES.keys())
def test_lf_only_input_parses_the_same_and_writes_crlf(body: bytes) -> None:
    lf = body.replace(b"\r\n", b"\n")
    assert parse(lf) == parse(body)
    assert serialize(parse(lf)) == body


def test_str_input_is_accepted() -> None:
    assert parse(BARESIP_V4.decode()) == parse(BARESIP_V4)


def test_baresip_v4_fields() -> None:
    sd = parse(BARESIP_V4)
    assert sd.version == 0
    assert sd.origin.username == "-"
    assert sd.origin.session_id == "1860529718"
    assert sd.origin.address == IPv4Address("192.0.2.10")
    assert sd.origin.family is Family.INET
    assert sd.connection == Connection("IN", "IP4", IPv4Address("192.0.2.10"))
    assert sd.times == (Timing(0, 0),)
    (audio,) = sd.media
    assert (audio.kind, audio.port, audio.proto) == ("audio", 10120, "RTP/AVP")
    assert audio.formats == ("0", "8", "101")
    assert audio.bandwidths == (Bandwidth("AS", 80),)
    assert audio.rtpmaps == (
        RtpMap(0, "PCMU", 8000),
        RtpMap(8, "PCMA", 8000),
        RtpMap(101, "telephone-event", 8000),
    )
    assert audio.fmtps == (Fmtp("101", "0-15"),)
    assert audio.rtcp == Rtcp(10121, Connection("IN", "IP4", IPv4Address("192.0.2.10")))
    assert audio.direction is Direction.SENDRECV
    assert audio.ssrcs == (Ssrc(1298465411, "cname", "sip:alice@example.com"),)
    assert audio.attribute("ptime") == "20"
    assert audio.attribute("rtcp-rsize") == ""
    assert audio.attribute("nope") is None


def test_baresip_v6_fields() -> None:
    sd = parse(BARESIP_V6)
    assert sd.origin.address == IPv6Address("2001:db8:1::10")
    assert sd.connection is not None
    assert sd.connection.addrtype == "IP6"
    assert sd.connection.family is Family.INET6
    rtcp = sd.media[0].rtcp
    assert rtcp is not None
    assert rtcp.connection == Connection("IN", "IP6", IPv6Address("2001:db8:1::10"))


def test_chromium_offer_fields() -> None:
    sd = parse(CHROMIUM_OFFER)
    assert sd.groups == (Group("BUNDLE", ("0", "1")),)
    assert sd.attribute("msid-semantic") == " WMS stream1"
    audio, video = sd.media
    assert audio.proto == "UDP/TLS/RTP/SAVPF"
    assert audio.rtcp_mux
    assert audio.mid == "0"
    assert video.mid == "1"
    assert audio.ice_ufrag == "Fz3x"
    assert audio.ice_pwd == "6qjKcVx4mW+0m0B1Q9ZpQ2a8"
    assert audio.ice_options == ("trickle",)
    assert audio.setup == "actpass"
    (fp,) = audio.fingerprints
    assert isinstance(fp, Fingerprint)
    assert fp.hash_function == "sha-256"
    assert fp.fingerprint.startswith("49:66:12")
    assert RtpMap(111, "opus", 48000, 2) in audio.rtpmaps
    assert Fmtp("111", "minptime=10;useinbandfec=1").parameter_map() == {
        "minptime": "10",
        "useinbandfec": "1",
    }
    assert audio.extmaps[0] == Extmap(1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level")
    assert video.extmaps[1] == Extmap(13, "urn:3gpp:video-orientation", Direction.SENDRECV)
    assert audio.ssrcs[1] == Ssrc(3735928559, "msid", "stream1 track-audio")
    assert audio.rtcp == Rtcp(9, Connection("IN", "IP4", IPv4Address(0)))
    assert len(audio.candidates) == 6
    assert not audio.end_of_candidates
    assert video.end_of_candidates
    families = [c.family for c in audio.candidates]
    assert families == [Family.INET, Family.INET6, Family.INET, Family.INET, Family.INET, None]
    srflx = audio.candidates[2]
    assert srflx.typ is CandidateType.SRFLX
    assert srflx.related_address == IPv4Address("192.168.1.20")
    assert srflx.related_port == 54400
    tcp = audio.candidates[3]
    assert tcp.transport == "tcp"
    assert tcp.extension("tcptype") == "active"
    mdns = audio.candidates[5]
    assert mdns.address == "5f8c4d2e-1b3a-4c7d-9e8f-0a1b2c3d4e5f.local"
    assert sd.media_direction(0) is Direction.SENDRECV


def test_rfc5118_bodies() -> None:
    v6 = parse(rfc5118_body("ipv6-in-sdp"))
    assert v6.origin.address == IPv6Address("2001:db8::20")
    assert v6.connection == Connection("IN", "IP6", IPv6Address("2001:db8::20"))
    assert v6.name == "Live video feed for today's meeting"
    assert v6.media_connections(1) == (v6.connection,)

    mixed = parse(rfc5118_body("mult-ip-in-sdp"))
    assert mixed.origin.address == "host.example.com"
    assert mixed.origin.family is Family.INET
    assert mixed.name == ""
    assert mixed.connection is None
    assert mixed.media[0].connection == Connection("IN", "IP4", IPv4Address("192.0.2.1"))
    assert mixed.media[1].connection == Connection("IN", "IP6", IPv6Address("2001:db8::1"))

    mapped = parse(rfc5118_body("ipv4-mapped-ipv6"))
    assert mapped.connection is not None
    address = mapped.connection.address
    assert isinstance(address, IPv6Address)
    assert address.ipv4_mapped == IPv4Address("192.0.2.2")
    assert b"c=IN IP6 ::ffff:192.0.2.2\r\n" in serialize(mapped)


def test_multicast_and_every_session_field() -> None:
    sd = parse(MULTICAST)
    assert sd.information == "A Seminar on the session description protocol"
    assert sd.uri == "http://www.example.com/seminars/sdp.pdf"
    assert sd.emails == ("j.doe@example.com (Jane Doe)",)
    assert sd.phones == ("+1 617 555-6011",)
    assert sd.connection == Connection("IN", "IP4", IPv4Address("233.252.0.1"), ttl=127)
    assert sd.bandwidths == (Bandwidth("CT", 1000),)
    assert sd.times == (Timing(2873397496, 2873404696, ("7d 1h 0 25h",)),)
    assert sd.zone == "2882844526 -1h 2898848070 0"
    assert sd.key == "clear:secret"
    assert sd.direction is Direction.RECVONLY
    assert sd.media_direction(0) is Direction.RECVONLY
    layered = sd.media[1]
    assert (layered.port, layered.port_count) == (51372, 2)
    assert layered.information == "Two layers"
    assert layered.connections == (
        Connection("IN", "IP4", IPv4Address("224.2.1.1"), ttl=127, count=3),
        Connection("IN", "IP4", IPv4Address("233.252.0.3"), ttl=127),
    )
    v6 = sd.media[2]
    assert v6.connections == (Connection("IN", "IP6", IPv6Address("ff15::101"), count=3),)
    assert v6.key == "prompt"


def test_unknown_lines_and_attributes_kept_in_order() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
a=x-first:1
y=session unknown
a=x-second
m=audio 4000 RTP/AVP 0
a=x-custom:a  b   c
q=media unknown
t=0 0
a=rtpmap:0 PCMU/8000/ extra
a=rtpmap:bad
""")
    sd = parse(body)
    assert serialize(sd) == body
    assert sd.attributes == (
        Attribute("x-first", "1"),
        UnknownLine("y", "session unknown"),
        Attribute("x-second"),
    )
    assert sd.media[0].attributes == (
        Attribute("x-custom", "a  b   c"),
        UnknownLine("q", "media unknown"),
        UnknownLine("t", "0 0"),
        Attribute("rtpmap", "0 PCMU/8000/ extra"),
        Attribute("rtpmap", "bad"),
    )


def test_non_utf8_text_written_back_unchanged() -> None:
    body = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=X\nt=0 0").replace(b"s=X", b"s=Caf\xe9")
    sd = parse(body)
    assert serialize(sd) == body


def test_lenient_order_and_missing_lines_are_documented_behaviour() -> None:
    # No s=, no t=, c= after t= and b= before c=: accepted, written back in RFC order.
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
t=0 0
b=AS:64
c=IN IP4 192.0.2.1
m=audio 4000 RTP/AVP 0
""")
    sd = parse(body)
    assert sd.name is None
    assert serialize(sd) == crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
c=IN IP4 192.0.2.1
b=AS:64
t=0 0
m=audio 4000 RTP/AVP 0
""")
    no_t = parse(crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-"))
    assert no_t.times == ()
    assert serialize(no_t) == crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-")


def test_blank_lines_and_trailing_garbage_whitespace_skipped() -> None:
    body = b"v=0\r\n\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\r\n"
    assert serialize(parse(body)) == crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0")


def test_candidate_spacing_is_normalised() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
m=audio 4000 RTP/AVP 0
a=candidate:1  1 UDP 2130706431 2001:DB8::1 4000 typ host
""")
    out = serialize(parse(body))
    assert b"a=candidate:1 1 UDP 2130706431 2001:db8::1 4000 typ host\r\n" in out


def test_typed_attributes_in_the_model() -> None:
    sd = parse(CHROMIUM_OFFER)
    kinds = {type(a) for m in sd.media for a in m.attributes}
    assert {Candidate, Rtcp, RtpMap, Fmtp, Fingerprint, Ssrc, Extmap, Attribute} <= kinds


HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n"

BAD = [
    (HEAD + "m=audio abc RTP/AVP 0", 5, "bad port"),
    (HEAD + "m=audio 70000 RTP/AVP 0", 5, "bad port"),
    (HEAD + "m=audio 4000/0 RTP/AVP 0", 5, "port count 0"),
    (HEAD + "m=audio 4000/x RTP/AVP 0", 5, "bad port count"),
    (HEAD + "m=audio 4000", 5, "expected"),
    (HEAD + "c=IN IP4 999.1.1.1", 5, "bad address"),
    (HEAD + "c=IN IP4 2001:db8::1", 5, "not an IP4 address"),
    (HEAD + "c=IN IP6 192.0.2.1", 5, "not an IP6 address"),
    (HEAD + "c=IN IP4", 5, "expected"),
    (HEAD + "c=IN IP6 ff15::101/127/3", 5, "bad multicast suffix"),
    (HEAD + "c=IN IP4 224.2.1.1/ttl", 5, "bad TTL"),
    (HEAD + "c=IN IP4 192.0.2.1 extra", 5, "expected"),
    (HEAD + "m=audio 4000 RTP/AVP 0\nc=IN IP4 bad_address!", 6, "bad address"),
    (HEAD + "m=audio 4000 RTP/AVP 0\na=rtcp:x", 6, "bad port"),
    (HEAD + "m=audio 4000 RTP/AVP 0\na=rtcp:4001 IN IP6 1.2.3.4", 6, "not an IP6"),
    (HEAD + "m=audio 4000 RTP/AVP 0\na=candidate:1 1 udp 1 192.0.2.1 x typ host", 6, "port"),
    (HEAD + "m=audio 4000 RTP/AVP 0\na=candidate:1 1 udp 1 192.0.2.1 4000 host", 6, "8 fields"),
    (HEAD + "m=audio 4000 RTP/AVP 0\na=candidate:1 1 udp 1 ::1::2 4000 typ host", 6, "address"),
    (HEAD + "m=audio 4000 RTP/AVP 0\nv=0", 6, "inside a media section"),
    (HEAD + "b=AS:fast", 5, "bad bandwidth"),
    (HEAD + "t=0", 5, "expected"),
    (HEAD + "o=- 2 2 IN IP4 192.0.2.1", 5, "more than one o="),
    (HEAD + "c=IN IP4 192.0.2.1\nc=IN IP4 192.0.2.2", 6, "more than one c="),
    (HEAD + "garbage", 5, "expected '<type>=<value>'"),
    (HEAD + "a =x", 5, "expected '<type>=<value>'"),
    ("v=0\ns=-\nr=7d 1h 0 25h", 3, "r= before any t="),
    ("v=x\no=- 1 1 IN IP4 192.0.2.1", 1, "bad version"),
    ("v=0\no=- 1 1 IN IP4", 2, "expected"),
    ("v=0\no=- 1 1 IN IP4 192.0.2", 2, "bad address"),
]


@pytest.mark.parametrize(("text", "number", "what"), BAD)
def test_bad_input_names_the_line(text: str, number: int, what: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse(text.encode())
    err = info.value
    assert err.status == 400
    line = text.split("\n")[number - 1]
    assert err.reason.startswith(f"Bad Request: SDP line {number} {line!r}: ")
    assert what in err.reason


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (b"", "does not start with v="),
        (b"o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n", "does not start with v="),
        (b"v=0\r\ns=-\r\nt=0 0\r\n", "no o= line"),
    ],
)
def test_missing_mandatory_lines(text: bytes, what: str) -> None:
    with pytest.raises(RemoteProtocolError, match=what) as info:
        parse(text)
    assert info.value.reason.startswith("Bad Request: ")


def test_long_bad_line_is_shortened_in_the_error() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse((HEAD + "c=IN IP4 " + "9" * 300).encode())
    assert len(info.value.reason) < 300


def test_fqdn_and_unknown_nettype_kept_as_text() -> None:
    body = crlf("""
v=0
o=alice 1 1 IN IP6 host.example.com
s=-
c=IN IP4 media.example.com
t=0 0
m=audio 4000 RTP/AVP 0
c=ATM NSAP 47.0005.80.ffe100.0000.f200.0000.0000.0000.0000.0000
""")
    sd = parse(body)
    assert serialize(sd) == body
    assert sd.connection is not None
    assert sd.connection.address == "media.example.com"
    assert sd.connection.family is Family.INET
    assert sd.origin.family is Family.INET6
    atm = sd.media[0].connection
    assert atm is not None
    assert atm.family is None
    assert atm.nettype == "ATM"
