"""The bounded parse cache of ``parse_name_addr``: same results, errors never cached, the
``angle`` rule never bypassed, bounded in entries and value length, emptied on request."""

from __future__ import annotations

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.sip import nameaddr
from rtc64.sip.nameaddr import parse_name_addr
from rtc64.sip.uri import clear_caches


@pytest.fixture(autouse=True)
def _empty() -> None:
    clear_caches()


def test_repeated_value_gives_the_same_result() -> None:
    v = b'"Bob" <sip:bob@example.net>;tag=1928301774'
    a = parse_name_addr(v, "From")
    b = parse_name_addr(v, "To")
    assert a is b
    assert a.tag == b"1928301774" and a.display_name == b"Bob"


def test_errors_are_not_cached_and_name_their_header() -> None:
    bad = b"<sip:bob@example.net"
    for what in ("From", "To"):
        with pytest.raises(RemoteProtocolError, match=f"missing '>' in {what}"):
            parse_name_addr(bad, what)
    assert bad not in nameaddr._PARSED


def test_angle_rule_is_not_bypassed_by_a_cached_bare_form() -> None:
    bare = b"sip:p1.example.net;lr"
    assert parse_name_addr(bare, "Contact").params == ((b"lr", None),)
    with pytest.raises(RemoteProtocolError, match="must be enclosed in <>"):
        parse_name_addr(bare, "Route", angle=True)
    routed = parse_name_addr(b"<sip:p1.example.net;lr>", "Route", angle=True)
    assert routed.params == ()


def test_bounded_in_entries() -> None:
    for i in range(nameaddr._CACHE_MAX + 10):
        parse_name_addr(b"<sip:u%d@example.net>;tag=%d" % (i, i), "From")
    assert 0 < len(nameaddr._PARSED) <= nameaddr._CACHE_MAX


def test_long_values_are_not_kept() -> None:
    long = b"<sip:" + b"a" * 600 + b"@example.net>;tag=1"
    assert parse_name_addr(long, "From").tag == b"1"
    assert long not in nameaddr._PARSED


def test_clear_caches_empties_it() -> None:
    parse_name_addr(b"<sip:a@example.net>", "To")
    parse_name_addr(b"<sip:a@example.net;lr>", "Route", angle=True)
    clear_caches()
    assert not nameaddr._PARSED and not nameaddr._PARSED_ANGLE
