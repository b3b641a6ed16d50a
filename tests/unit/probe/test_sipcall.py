"""REGISTER/INVITE building, digest answers and SDP verdicts on recorded answers."""

from __future__ import annotations

from ipaddress import ip_address

from rtc64.probe import sipcall
from rtc64.probe.sipcall import Dialog
from rtc64.probe.verdict import Status
from rtc64.sip import digest
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request

CHALLENGE = (
    b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bKx\r\n"
    b"From: <sip:alice@example.net>;tag=1\r\nTo: <sip:alice@example.net>;tag=2\r\n"
    b"Call-ID: c1\r\nCSeq: 1 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="example.net", nonce="n0nce", qop="auth", algorithm=MD5\r\n'
    b'WWW-Authenticate: Digest realm="example.net", nonce="n0nce", qop="auth", '
    b"algorithm=SHA-256\r\nContent-Length: 0\r\n\r\n"
)


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(["v=0", "o=- 1 1 IN IP6 2001:db8::5", "s=-", *lines, ""])).encode()


def test_requests_parse_and_bracket_ipv6() -> None:
    dialog = Dialog("example.net", "alice", "udp", (ip_address("2001:db8::9"), 5062))
    data, branch = dialog.request("REGISTER", "sip:example.net", extra=("Expires: 60",))
    msg = parse_datagram(data)
    assert isinstance(msg, Request) and msg.cseq.seq == 1
    assert b"Contact: <sip:alice@[2001:db8::9]:5062>" in data
    assert branch.startswith("z9hG4bK")
    body = sipcall.offer(ip_address("2001:db8::9"))
    invite, _ = dialog.request("INVITE", "sip:bob@example.net", to="sip:bob@example.net", body=body)
    assert parse_datagram(invite).body == body
    assert b"c=IN IP6 2001:db8::9" in body


def test_the_digest_answer_prefers_sha256_and_verifies() -> None:
    header = sipcall.authorization(
        CHALLENGE, user="alice", password="secret", method="REGISTER", uri="sip:example.net"
    )
    assert header is not None and header.startswith("Authorization: Digest ")
    creds = digest.parse_credentials(header.split(": ", 1)[1])
    assert creds.algorithm is digest.Algorithm.SHA_256
    assert creds.qop == "auth"
    key = digest.ha1("alice", "example.net", "secret", digest.Algorithm.SHA_256)
    expected = digest.compute_response(
        key, algorithm=creds.algorithm, method=b"REGISTER", uri="sip:example.net",
        nonce="n0nce", qop="auth", nc=creds.nc, cnonce=creds.cnonce,
    )  # fmt: skip
    assert creds.response == expected


def test_unusable_challenges_give_none() -> None:
    broken = CHALLENGE.replace(b"Digest realm", b"Basic realm")
    assert sipcall.authorization(broken, user="a", password="b", method="REGISTER",
                                 uri="sip:x") is None  # fmt: skip


def test_final_response_matcher() -> None:
    match = sipcall.answers("c1", 1, "REGISTER")
    assert match(CHALLENGE)
    assert not sipcall.answers("c1", 2, "REGISTER")(CHALLENGE)
    assert not match(CHALLENGE.replace(b"401 Unauthorized", b"100 Trying"))


def test_sdp_verdicts() -> None:
    v4_media = sdp("c=IN IP4 192.0.2.10", "t=0 0", "m=audio 4000 RTP/AVP 0")
    check = sipcall.sdp_check(6, 200, v4_media)
    assert (check.status, check.reason, check.ipv4_literal) == (
        Status.FAIL, "sip.sdp-foreign-family", True)  # fmt: skip
    assert sipcall.sdp_check(4, 200, v4_media).status is Status.PASS
    private = sdp("c=IN IP4 10.1.2.3", "t=0 0", "m=audio 4000 RTP/AVP 0")
    assert sipcall.sdp_check(4, 200, private).reason == "sip.sdp-private"
    clat = sdp("c=IN IP4 192.0.0.2", "t=0 0", "m=audio 4000 RTP/AVP 0")
    assert sipcall.sdp_check(4, 200, clat).reason == "sip.sdp-clat"
    mapped = sdp("c=IN IP6 ::ffff:192.0.2.10", "t=0 0", "m=audio 4000 RTP/AVP 0")
    assert sipcall.sdp_check(6, 200, mapped).reason == "sip.sdp-foreign-family"
    good = sdp("c=IN IP6 2001:db8::10", "t=0 0", "m=audio 4000 RTP/AVP 0")
    assert sipcall.sdp_check(6, 200, good).reason == "sip.call-ok"
    assert sipcall.sdp_check(6, 486, b"").reason == "sip.call-failed"
    assert sipcall.sdp_check(6, 200, b"garbage").reason == "sip.sdp-bad"
