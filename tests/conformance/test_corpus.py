"""RFC 4475 / RFC 5118 torture corpus: verdicts match manifest.tsv, plus per-message detail.

Every file is read in binary and fed whole as one datagram. ``valid`` rows parse, pass the
strict header checks and round-trip; ``invalid`` rows are refused with the SIP status the
manifest note names and a reason saying what was wrong.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.sip.framing import parse_datagram
from rtc64.sip.headers import STAR, contacts, routes, validate
from rtc64.sip.lint import check, describe
from rtc64.sip.message import Message, Request, Response
from rtc64.sip.serializer import serialize
from rtc64.sip.uri import AbsoluteUri, SipUri, uri_equal

CORPUS = Path(__file__).parent / "corpus"


def _manifest() -> list[tuple[str, str, str, str]]:
    rows = []
    lines = (CORPUS / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        fields = line.split("\t")
        assert len(fields) == 6, line
        _rfc, name, file, expected, _section, note = fields
        rows.append((name, file, expected, note))
    return rows


ROWS = _manifest()

# Status (and a word of the reason) each invalid message is refused with; statuses are the
# ones the manifest notes name (501 for mismatch02, 505 for badvers, 400 otherwise).
REFUSALS: dict[str, tuple[int, str]] = {
    "badinv01": (400, "Via"),
    "clerr": (400, "Content-Length larger than body"),
    "ncl": (400, "Content-Length"),
    "scalar02": (400, "CSeq"),
    "scalarlg": (400, "CSeq"),
    "quotbal": (400, "unterminated quoted string in To"),
    "ltgtruri": (400, "Request-URI enclosed in <>"),
    "lwsruri": (400, "whitespace inside Request-URI"),
    "lwsstart": (400, "extra whitespace"),
    "trws": (400, "whitespace after SIP-Version"),
    "escruri": (400, "headers not allowed in Request-URI"),
    "baddate": (400, "Date"),
    "regbadct": (400, "Contact"),
    "badaspec": (400, "whitespace inside <> in To"),
    "baddn": (400, "display name"),
    "badvers": (505, "Version Not Supported"),
    "mismatch01": (400, "CSeq method"),
    "mismatch02": (501, "Not Implemented"),
    "bigcode": (400, "Status-Code"),
    "insuf": (400, "missing"),
    "multi01": (400, "multiple"),
    "mcl01": (400, "multiple Content-Length"),
    "ipv6-bad": (400, "IPv6 needs brackets"),
}


def _load(file: str) -> bytes:
    return (CORPUS / file).read_bytes()


def _parse(name: str) -> Message:
    file = next(f for n, f, _, _ in ROWS if n == name)
    msg = parse_datagram(_load(file))
    validate(msg)
    return msg


def test_manifest_shape() -> None:
    assert len(ROWS) == 61
    assert sum(1 for r in ROWS if r[2] == "valid") == 38
    assert {n for n, _, e, _ in ROWS if e == "invalid"} == set(REFUSALS)


@pytest.mark.parametrize(("name", "file", "expected", "note"), ROWS, ids=[r[0] for r in ROWS])
def test_verdict(name: str, file: str, expected: str, note: str) -> None:
    data = _load(file)
    result = check(data)
    if expected == "valid":
        assert result.valid, f"{name}: {result.verdict} ({note})"
        assert result.verdict == "valid"
        msg = result.message
        assert msg is not None
        again = parse_datagram(serialize(msg))
        if msg.has(b"content-length"):
            assert again == msg
        else:  # inv2543: the serializer adds the Content-Length a stream would need
            assert again.headers[:-1] == msg.headers
            assert again.headers[-1] == (b"Content-Length", str(len(msg.body)).encode())
            assert dataclasses.replace(again, headers=msg.headers) == msg
        assert parse_datagram(serialize(again)) == again
        assert describe(msg)
    else:
        status, words = REFUSALS[name]
        assert not result.valid, f"{name} accepted ({note})"
        assert result.message is None
        assert (result.status, result.verdict[:12]) == (status, f"invalid: {status}"[:12])
        assert result.reason is not None and words in result.reason
        with pytest.raises(RemoteProtocolError) as info:
            validate(parse_datagram(data))
        assert info.value.status == status


# -- RFC 4475 detail -------------------------------------------------------------------------


def test_wsinv() -> None:
    msg = _parse("wsinv")
    assert isinstance(msg, Request)
    assert msg.max_forwards == 68
    assert (msg.cseq.seq, msg.cseq.method) == (9, b"INVITE")
    assert msg.to.tag == b"1918181833n"
    assert msg.from_.tag == b"98asjd8"
    assert msg.from_.display_name == b'J Rosenberg \\"'
    assert [v.transport for v in msg.vias] == [b"UDP", b"TCP", b"UDP"]
    assert [v.host for v in msg.vias] == [
        IPv4Address("192.0.2.2"),
        "spindle.example.com",
        IPv4Address("192.168.255.111"),
    ]
    assert msg.vias[2].branch == b"z9hG4bK30239"
    assert msg.get(b"subject") == b""
    assert msg.get(b"NewFangledHeader") == b"newfangled value continued newfangled value"
    assert msg.get(b"unknownheaderwithunusualvalue") == b";;,,;;,;"
    (contact,) = contacts(msg)  # type: ignore[misc]
    assert contact.param(b"newparam") == b"newvalue"
    assert contact.param(b"q") == b"0.33"
    (route,) = routes(msg)
    assert isinstance(route.uri, SipUri) and route.uri.has_param(b"lr")
    assert len(msg.body) == 150


def test_intmeth() -> None:
    msg = _parse("intmeth")
    assert isinstance(msg, Request)
    assert msg.method == b"!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.to.display_name == b"BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.call_id == b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"


def test_esc01_compares_unescaped() -> None:
    msg = _parse("esc01")
    assert isinstance(msg, Request) and isinstance(msg.uri, SipUri)
    assert msg.uri.unescaped_user == b"sips:user@example.com"
    assert isinstance(msg.to.uri, SipUri) and msg.to.uri.unescaped_user == b"user"
    assert uri_equal(msg.to.uri, SipUri("example.com", user=b"user"))
    (c,) = contacts(msg)  # type: ignore[misc]
    assert isinstance(c.uri, SipUri)
    assert c.uri.unescaped_user == b"caller"
    assert c.uri.param(b"lr") == b""
    assert c.uri.param(b"name") == b"value%41"


def test_escnull_distinct_contacts() -> None:
    msg = _parse("escnull")
    found = contacts(msg)
    assert found is not STAR and len(found) == 2
    users = [c.uri.unescaped_user for c in found if isinstance(c.uri, SipUri)]
    assert users == [b"\x00", b"\x00\x00"]
    assert isinstance(msg.to.uri, SipUri)
    assert msg.to.uri.unescaped_user == b"null-\x00-null"


def test_esc02_percent_is_literal() -> None:
    msg = _parse("esc02")
    assert isinstance(msg, Request)
    assert msg.method == b"RE%47IST%45R" and msg.cseq.method == b"RE%47IST%45R"
    assert len(contacts(msg)) == 2  # type: ignore[arg-type]
    assert msg.get(b"C%6Fntact") == b"<sip:alias2@host2.example.com>"
    assert msg.to.display_name == b"%Z%45"


def test_lwsdisp() -> None:
    msg = _parse("lwsdisp")
    assert msg.from_.display == b"caller" and msg.from_.tag == b"323"


def test_longreq() -> None:
    msg = _parse("longreq")
    assert len(msg.vias) == 34
    assert msg.vias[-1].received == IPv4Address("192.0.2.5")
    assert len(msg.body) == 150


def test_dblreq_discards_trailing() -> None:
    msg = _parse("dblreq")
    assert isinstance(msg, Request) and msg.method == b"REGISTER"
    assert msg.body == b""
    assert msg.wire is not None and b"INVITE" not in msg.wire


def test_semiuri() -> None:
    msg = _parse("semiuri")
    assert isinstance(msg, Request) and isinstance(msg.uri, SipUri)
    assert msg.uri.unescaped_user == b"user;par=u@example.net"
    assert msg.uri.host == "example.com" and msg.uri.params == ()
    assert len(msg.values(b"accept")) == 6


def test_transports() -> None:
    msg = _parse("transports")
    assert [v.transport for v in msg.vias] == [b"UDP", b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]


def test_mpart01_binary_body() -> None:
    msg = _parse("mpart01")
    assert len(msg.body) == 553 and b"\x00" in msg.body
    assert msg.via.has_rport and msg.via.rport is None
    assert msg.via.port == 5070


def test_unreason_and_noreason() -> None:
    msg = _parse("unreason")
    assert isinstance(msg, Response) and msg.status == 200
    assert msg.reason.startswith(b"= 2**3 * 5**2 ") and msg.reason.decode("utf-8")
    msg = _parse("noreason")
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (100, b"")


def test_badbranch_and_inv2543() -> None:
    assert _parse("badbranch").via.branch == b"z9hG4bK"
    assert not _parse("badbranch").via.rfc3261_branch
    msg = _parse("inv2543")
    assert isinstance(msg, Request)
    assert msg.via.branch is None and msg.from_.tag is None and msg.max_forwards is None
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")


def test_unusual_schemes() -> None:
    unkscm = _parse("unkscm")
    assert isinstance(unkscm, Request)
    assert unkscm.uri == AbsoluteUri(b"nobodyknowsthisscheme", b"totallyopaquecontent")
    novelsc = _parse("novelsc")
    assert isinstance(novelsc, Request) and isinstance(novelsc.uri, AbsoluteUri)
    assert novelsc.uri.scheme == b"soap.beep"
    unksm2 = _parse("unksm2")
    assert unksm2.to.uri == AbsoluteUri(b"isbn", b"2983792873")
    assert unksm2.from_.uri == AbsoluteUri(b"http", b"//www.example.com")
    assert contacts(unksm2) == (
        dataclasses.replace(unksm2.to, uri=AbsoluteUri(b"name", b"John_Smith")),
    )


def test_cparam_contact_vs_uri_params() -> None:
    (c1,) = contacts(_parse("cparam01"))  # type: ignore[misc]
    assert isinstance(c1.uri, SipUri) and c1.uri.params == ()
    assert c1.params == ((b"unknownparam", None),)
    (c2,) = contacts(_parse("cparam02"))  # type: ignore[misc]
    assert isinstance(c2.uri, SipUri) and c2.uri.params == ((b"unknownparam", None),)
    assert c2.params == ()


def test_regescrt_keeps_uri_header() -> None:
    (c,) = contacts(_parse("regescrt"))  # type: ignore[misc]
    assert isinstance(c.uri, SipUri)
    assert c.uri.headers == ((b"Route", b"%3Csip:sip.example.com%3E"),)


def test_zeromf_bcast() -> None:
    assert _parse("zeromf").max_forwards == 0
    assert _parse("bcast").vias[1].host == IPv4Address("255.255.255.255")


# -- RFC 5118 detail -------------------------------------------------------------------------


def _ruri(name: str) -> SipUri:
    msg = _parse(name)
    assert isinstance(msg, Request) and isinstance(msg.uri, SipUri)
    return msg.uri


def test_ipv6_good() -> None:
    msg = _parse("ipv6-good")
    assert _ruri("ipv6-good").host == IPv6Address("2001:db8::10")
    assert _ruri("ipv6-good").port is None
    assert msg.via.host == IPv6Address("2001:db8::9:1")
    (c,) = contacts(msg)  # type: ignore[misc]
    assert isinstance(c.uri, SipUri) and c.uri.host == IPv6Address("2001:db8::1")
    assert "via 1: UDP host [2001:db8::9:1] port default" in describe(msg)
    assert "contact 1: host [2001:db8::1] port default" in describe(msg)


def test_port_ambiguous_and_unambiguous() -> None:
    amb = _ruri("port-ambiguous")
    assert (amb.host, amb.port) == (IPv6Address("2001:db8::10:5070"), None)
    unamb = _ruri("port-unambiguous")
    assert (unamb.host, unamb.port) == (IPv6Address("2001:db8::10"), 5070)


def test_via_received() -> None:
    with_delim = _parse("via-received-param-with-delim").via
    assert with_delim.received == IPv6Address("2001:db8::9:255")
    assert with_delim.host == IPv6Address("2001:db8::9:1")
    no_delim = _parse("via-received-param-no-delim").via
    assert no_delim.received == IPv6Address("2001:db8::9:255")
    assert no_delim.branch == b"z9hG4bKas3"


def test_sdp_messages_keep_body() -> None:
    assert len(_parse("ipv6-in-sdp").body) == 251
    assert b"c=IN IP6 2001:db8::1\r\n" in _parse("mult-ip-in-sdp").body
    msg = _parse("ipv4-mapped-ipv6")
    assert (msg.vias[0].host, msg.vias[0].port) == (IPv6Address("::ffff:192.0.2.10"), 19823)
    assert (msg.vias[1].host, msg.vias[1].port) == (IPv6Address("::ffff:192.0.2.2"), None)
    (c,) = contacts(msg)  # type: ignore[misc]
    assert isinstance(c.uri, SipUri) and c.uri.host == IPv6Address("::ffff:192.0.2.2")


def test_mult_ip_in_header() -> None:
    vias = _parse("mult-ip-in-header").vias
    assert [(v.transport, v.host, v.port) for v in vias] == [
        (b"UDP", IPv6Address("2001:db8::9:1"), 6050),
        (b"UDP", IPv4Address("192.0.2.1"), None),
        (b"TCP", IPv6Address("2001:db8::9:255"), None),
    ]
    assert vias[2].received == IPv4Address("192.0.2.200")


def test_three_colons_read_as_two() -> None:
    three = _parse("ipv6-bug-abnf-3-colons")
    two = _parse("ipv6-correct-abnf-2-colons")
    assert _ruri("ipv6-bug-abnf-3-colons").host == IPv6Address("2001:db8::192.0.2.1")
    assert _ruri("ipv6-correct-abnf-2-colons").host == IPv6Address("2001:db8::192.0.2.1")
    assert three.to.uri == two.to.uri
