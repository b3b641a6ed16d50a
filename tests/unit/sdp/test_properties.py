"""Property tests: generated sessions round-trip; family rewrites leave one family."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.net.address import Family, IPAddress, family_of
from rtc64.sdp import parse, serialize
from rtc64.sdp.addresses import addresses, families
from rtc64.sdp.hosts import Address
from rtc64.sdp.ice import Candidate, CandidateType
from rtc64.sdp.model import (
    Attribute,
    AttributeEntry,
    Bandwidth,
    Connection,
    Direction,
    Extmap,
    Fingerprint,
    Fmtp,
    Group,
    MediaDescription,
    Origin,
    Rtcp,
    RtpMap,
    SessionDescription,
    Ssrc,
    Timing,
    UnknownLine,
)
from rtc64.sdp.rewrite import rewrite_to_family, strip_candidates

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+!#$%&'*^`{|}~"
TYPED_NAMES = {"rtpmap", "fmtp", "rtcp", "candidate", "fingerprint", "group", "ssrc", "extmap"}

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
# Any text a line may hold: no CR or LF (surrogates are not text).
texts = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30
)
ports = st.integers(0, 65535)
uints = st.integers(0, 2**40)
ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)
ips: st.SearchStrategy[IPAddress] = st.one_of(ipv4, ipv6)
hostnames = st.from_regex(
    r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z][a-z0-9]{0,5}){0,3}", fullmatch=True
)


@st.composite
def connections(draw: st.DrawFn, multicast: bool = True) -> Connection:
    kind = draw(st.sampled_from(["ip", "ip", "ip", "name", "other"]))
    if kind == "other":
        return Connection(draw(tokens.filter(lambda t: t != "IN")), draw(tokens), draw(tokens))
    if kind == "name":
        return Connection("IN", draw(st.sampled_from(["IP4", "IP6"])), draw(hostnames))
    address = draw(ips)
    ttl = count = None
    if multicast and draw(st.booleans()):
        if address.version == 4:
            ttl = draw(st.integers(0, 255))
            count = draw(st.none() | st.integers(1, 99999))
        else:
            count = draw(st.integers(1, 99999))
    return Connection.of(address, ttl, count)


addresses_or_names: st.SearchStrategy[Address] = st.one_of(ips, hostnames)

candidates = st.builds(
    Candidate,
    foundation=st.text("abcXYZ0123456789+/", min_size=1, max_size=32),
    component=st.integers(1, 256),
    transport=st.sampled_from(["udp", "UDP", "tcp"]),
    priority=st.integers(0, 2**32 - 1),
    address=addresses_or_names,
    port=ports,
    typ=st.sampled_from([*CandidateType, "x-new"]),
    related_address=st.none() | addresses_or_names,
    related_port=st.none() | ports,
    extensions=st.lists(
        st.tuples(st.sampled_from(["generation", "network-id", "tcptype", "ufrag"]), tokens),
        max_size=3,
    ).map(tuple),
)

generic_attributes = st.builds(
    Attribute,
    name=st.text(TOKEN_CHARS, min_size=1, max_size=12).filter(lambda n: n not in TYPED_NAMES),
    value=st.none() | texts,
)
no_slash = st.text(TOKEN_CHARS.replace("/", ""), min_size=1, max_size=12)
attributes: st.SearchStrategy[AttributeEntry] = st.one_of(
    generic_attributes,
    st.sampled_from([Attribute(d.value) for d in Direction]),
    st.builds(
        RtpMap, st.integers(0, 127), no_slash, st.integers(1, 10**6), st.none() | st.integers(1, 8)
    ),
    st.builds(Fmtp, tokens, texts),
    st.builds(Rtcp, ports, st.none() | connections(multicast=False)),
    st.builds(Fingerprint, tokens, tokens),
    st.builds(Group, tokens, st.lists(tokens, max_size=3).map(tuple)),
    st.builds(
        Ssrc,
        st.integers(0, 2**32 - 1),
        st.text(TOKEN_CHARS.replace(":", ""), min_size=1),
        st.none() | texts,
    ),
    st.builds(
        Extmap,
        st.integers(1, 255),
        tokens,
        st.none() | st.sampled_from(Direction),
        st.none() | texts.filter(bool),
    ),
    candidates,
    st.builds(UnknownLine, st.sampled_from("dfghjlnqwxy"), texts),
)
# In a media section, session-only types (s t u e p z r) are kept as unknown lines too.
media_unknown = st.builds(UnknownLine, st.sampled_from("dfghjlnqwxystuepzr"), texts)

media_descriptions = st.builds(
    MediaDescription,
    kind=tokens,
    port=ports,
    proto=tokens,
    formats=st.lists(tokens, max_size=4).map(tuple),
    port_count=st.none() | st.integers(1, 100),
    information=st.none() | texts,
    connections=st.lists(connections(), max_size=2).map(tuple),
    bandwidths=st.lists(
        st.builds(Bandwidth, tokens.filter(lambda t: ":" not in t), uints), max_size=2
    ).map(tuple),
    key=st.none() | texts,
    attributes=st.lists(st.one_of(attributes, media_unknown), max_size=8).map(tuple),
)


@st.composite
def origins(draw: st.DrawFn) -> Origin:
    conn = draw(connections(multicast=False))
    return Origin(
        draw(tokens), draw(tokens), draw(tokens), conn.nettype, conn.addrtype, conn.address
    )


sessions = st.builds(
    SessionDescription,
    origin=origins(),
    name=st.none() | texts,
    version=st.integers(0, 9),
    information=st.none() | texts,
    uri=st.none() | texts,
    emails=st.lists(texts, max_size=2).map(tuple),
    phones=st.lists(texts, max_size=2).map(tuple),
    connection=st.none() | connections(),
    bandwidths=st.lists(
        st.builds(Bandwidth, tokens.filter(lambda t: ":" not in t), uints), max_size=2
    ).map(tuple),
    times=st.lists(
        st.builds(Timing, uints, uints, st.lists(texts, max_size=2).map(tuple)), max_size=2
    ).map(tuple),
    zone=st.none() | texts,
    key=st.none() | texts,
    attributes=st.lists(attributes, max_size=6).map(tuple),
    media=st.lists(media_descriptions, max_size=3).map(tuple),
)


@settings(max_examples=200)
@given(sessions)
def test_generated_sessions_round_trip(sd: SessionDescription) -> None:
    body = serialize(sd)
    assert body.endswith(b"\r\n")
    parsed = parse(body)
    assert parsed == sd
    assert serialize(parsed) == body


@settings(max_examples=100)
@given(sessions)
def test_lf_only_parses_the_same(sd: SessionDescription) -> None:
    body = serialize(sd)
    assert parse(body.replace(b"\r\n", b"\n")) == sd


@settings(max_examples=200)
@given(
    sessions,
    ips,
    st.lists(st.none() | st.integers(0, 32767).map(lambda p: 2 * p), max_size=4),
    st.booleans(),
)
def test_rewrite_to_family_leaves_only_that_family(
    sd: SessionDescription, relay: IPAddress, new_ports: list[int | None], strip_all: bool
) -> None:
    family = family_of(relay)
    out = rewrite_to_family(sd, relay, new_ports[: len(sd.media)], strip_all_candidates=strip_all)
    for use in addresses(out):
        assert use.family is family, use
        assert not isinstance(use.address, str), use
    assert families(out) <= {family}
    assert out.origin.address == relay
    for i, m in enumerate(out.media):
        for conn in out.media_connections(i):
            assert conn.address in (relay, IPv4Address(0), IPv6Address(0))
        if i < len(new_ports) and new_ports[i] is not None:
            assert m.port == new_ports[i]
        if m.rtcp is not None and m.rtcp.connection is not None:
            assert m.rtcp.connection.family is family
    assert parse(serialize(out)) == out


@settings(max_examples=100)
@given(sessions, st.sampled_from(Family))
def test_strip_candidates_of_a_family(sd: SessionDescription, family: Family) -> None:
    out = strip_candidates(sd, family)
    for m in out.media:
        for c in m.candidates:
            assert family not in (c.family, c.related_family)
    non_candidates = [[a for a in m.attributes if not isinstance(a, Candidate)] for m in sd.media]
    assert [[a for a in m.attributes if not isinstance(a, Candidate)] for m in out.media] == (
        non_candidates
    )
