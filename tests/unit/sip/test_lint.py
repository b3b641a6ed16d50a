"""The linter API behind ``rtc64 sip check``."""

from __future__ import annotations

from rtc64.sip.lint import check, describe

from .helpers import INVITE, RESPONSE


def test_check_and_describe() -> None:
    ok = check(INVITE)
    assert ok.valid and ok.verdict == "valid" and ok.message is not None
    lines = describe(ok.message)
    assert lines[0] == "request: INVITE"
    assert lines[1].startswith("request-uri: sip:bob@biloxi.example.com (host biloxi")
    assert "via 1: UDP host [2001:db8::10] port 5060" in lines
    assert "via 3: UDP host 192.0.2.4 port default" in lines
    assert "contact 1: host [2001:db8::10] port 5060" in lines
    resp = check(RESPONSE)
    assert resp.message is not None and describe(resp.message)[0] == "response: 180 Ringing"
    bad = check(INVITE.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert not bad.valid and bad.message is None
    assert bad.verdict == "invalid: 505 Version Not Supported: 'SIP/3.0'"
