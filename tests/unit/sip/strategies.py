"""Hypothesis strategies for SIP values."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from rtc64.net.address import Host
from rtc64.sip.grammar import (
    HEADER_CHARS,
    PARAM_CHARS,
    PASSWORD_CHARS,
    TOKEN_CHARS,
    USER_CHARS,
    WORD_CHARS,
    quote,
)
from rtc64.sip.nameaddr import NameAddr
from rtc64.sip.uri import AbsoluteUri, SipUri, TelUri, Uri
from rtc64.sip.via import Via


def chars(alphabet: bytes, *, min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[bytes]:
    """Byte strings over ``alphabet`` (``%`` left out: escapes are generated separately)."""
    pool = sorted(set(alphabet) - {ord("%")})
    return st.lists(st.sampled_from(pool), min_size=min_size, max_size=max_size).map(bytes)


def escaped(alphabet: bytes) -> st.SearchStrategy[bytes]:
    escape = st.integers(0, 255).map(lambda b: b"%%%02X" % b)
    return st.lists(st.one_of(chars(alphabet, max_size=4), escape), min_size=1, max_size=4).map(
        b"".join
    )


labels = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
hosts: st.SearchStrategy[Host] = st.one_of(
    domains,
    st.integers(0, 2**32 - 1).map(IPv4Address),
    st.integers(0, 2**128 - 1).map(IPv6Address),
)
ports = st.none() | st.integers(0, 65535)
tokens = chars(TOKEN_CHARS)
uri_params = st.lists(
    st.tuples(escaped(PARAM_CHARS), st.none() | escaped(PARAM_CHARS)), max_size=3
).map(tuple)
gen_params = st.lists(st.tuples(tokens, st.none() | tokens), max_size=3).map(tuple)

sip_uris = st.builds(
    SipUri,
    host=hosts,
    port=ports,
    user=st.none() | escaped(USER_CHARS),
    password=st.none(),
    params=uri_params,
    headers=st.lists(st.tuples(escaped(HEADER_CHARS), escaped(HEADER_CHARS)), max_size=2).map(
        tuple
    ),
    scheme=st.sampled_from([b"sip", b"sips"]),
)
sip_uris_with_password = st.builds(
    SipUri, host=hosts, port=ports, user=escaped(USER_CHARS), password=escaped(PASSWORD_CHARS)
)
tel_uris = st.builds(TelUri, number=chars(b"0123456789-.+*#"), params=uri_params)
absolute_uris = st.builds(
    AbsoluteUri,
    scheme=st.from_regex(r"[a-z][a-z0-9+.-]{0,6}", fullmatch=True)
    .filter(lambda s: s not in ("sip", "sips", "tel"))
    .map(str.encode),
    opaque=chars(b"abcdefXYZ0123456789-_.!~*'();/?:@&=+$,"),
)
uris: st.SearchStrategy[Uri] = st.one_of(sip_uris, sip_uris_with_password, tel_uris, absolute_uris)
# URIs that may stand in a Request-URI (no ?headers on SIP URIs).
request_uris: st.SearchStrategy[Uri] = st.one_of(
    sip_uris.map(lambda u: SipUri(u.host, u.port, u.user, None, u.params, (), u.scheme)),
    tel_uris,
    absolute_uris,
)

vias = st.builds(
    Via,
    transport=st.sampled_from([b"UDP", b"TCP", b"TLS", b"SCTP", b"WS", b"WSS", b"FOO"]),
    host=hosts,
    port=ports,
    params=st.tuples(
        st.tuples(st.just(b"branch"), tokens.map(lambda t: b"z9hG4bK" + t)),
    ).map(tuple)
    | gen_params.filter(
        lambda ps: (
            not any(
                n.lower() in (b"received", b"maddr", b"rport", b"ttl", b"branch") for n, _ in ps
            )
        )
    ),
)
displays = (
    st.none()
    | tokens
    | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12).map(
        lambda t: quote(t.encode())
    )
)
name_addrs = st.builds(NameAddr, uri=uris, display=displays, params=gen_params)
call_ids = st.tuples(chars(WORD_CHARS), st.none() | chars(WORD_CHARS)).map(
    lambda p: p[0] if p[1] is None else p[0] + b"@" + p[1]
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
    lambda t: t.strip(" ").encode()
)
extension_headers = st.lists(
    st.tuples(st.from_regex(r"X-[A-Za-z0-9]{1,8}", fullmatch=True).map(str.encode), header_values),
    max_size=4,
)
