"""RFC 5922 server identity: which certificates name which SIP domain."""

from __future__ import annotations

import pytest

from rtc64.sip.tls_identity import identities, matches, normalise, peercert_matches

URI = ("URI", "sip:example.com")
DNS = ("DNS", "sip.example.com")


@pytest.mark.parametrize(
    ("domain", "san", "cns", "ok"),
    [
        ("example.com", [URI], [], True),  # §7.1 URI entry
        ("EXAMPLE.com.", [("URI", "sips:Example.COM")], [], True),  # case, trailing dot
        ("example.com", [("URI", "sip:example.com:5061;transport=tls")], [], True),
        ("example.com", [("URI", "sip:alice@example.com")], [], False),  # user part: a user
        ("example.com", [("URI", "https://example.com/")], [], False),
        ("sip.example.com", [DNS], [], True),  # §7.1 DNS entry
        ("example.com", [DNS], [], False),  # the SRV target is not the domain
        ("a.example.com", [("DNS", "*.example.com")], [], False),  # §7.2: no wildcards
        ("*.example.com", [("DNS", "*.example.com")], [], False),
        ("example.com", [], ["example.com"], True),  # CN only without URI/DNS entries
        ("example.com", [DNS], ["example.com"], False),
        ("example.com", [("IP Address", "192.0.2.1")], ["example.com"], True),
        ("192.0.2.1", [("IP Address", "192.0.2.1")], [], True),  # numeric target
        ("::1", [("IP Address", "0:0:0:0:0:0:0:1")], [], True),
        ("[::1]", [("IP Address", "::1")], [], True),
        ("192.0.2.1", [("DNS", "192.0.2.1")], ["192.0.2.1"], False),  # only iPAddress
        ("192.0.2.2", [("IP Address", "192.0.2.1")], [], False),
        ("", [URI], [], False),
    ],
)
def test_matches(domain: str, san: list[tuple[str, str]], cns: list[str], ok: bool) -> None:
    assert matches(domain, san, cns) is ok


def test_peercert_dictionary() -> None:
    cert = {
        "subject": ((("commonName", "ignored.example"),),),
        "subjectAltName": (("DNS", "sip.example.com"), ("URI", "sip:example.com")),
    }
    assert peercert_matches("example.com", cert)
    assert peercert_matches("sip.example.com", cert)
    assert not peercert_matches("ignored.example", cert)
    assert not peercert_matches("example.com", {})
    assert not peercert_matches("example.com", None)
    assert not peercert_matches("example.com", {"subjectAltName": "garbage"})


def test_identities_and_normalise() -> None:
    assert identities([URI, DNS, ("IP Address", "0:0:0:0:0:0:0:1")]) == {
        "example.com",
        "sip.example.com",
        "::1",
    }
    assert normalise("[2001:DB8::1]") == "2001:db8::1"
    assert normalise("Example.NET.") == "example.net"
