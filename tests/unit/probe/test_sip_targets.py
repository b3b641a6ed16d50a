"""Which SIP transports a target is probed over, and bad targets."""

from __future__ import annotations

import pytest

from rtc64.probe.sip import TargetError, parse_target, wanted_transports


@pytest.mark.parametrize(
    ("target", "requested", "expected"),
    [
        ("sip:example.net", (), ("udp", "tcp", "tls")),
        ("sips:example.net", (), ("tls",)),
        ("sip:example.net;transport=tcp", (), ("tcp",)),
        ("sips:example.net;transport=tcp", (), ("tls",)),
        ("sip:example.net;transport=ws", (), ("ws",)),
        ("sips:example.net;transport=ws", (), ("wss",)),
        ("sip:example.net", ("udp", "wss"), ("udp", "wss")),
        ("sips:example.net", ("udp", "wss"), ("wss",)),
        ("sip:example.net;transport=sctp", (), ("udp", "tcp", "tls")),
    ],
)
def test_transports(target: str, requested: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert wanted_transports(parse_target(target), requested) == expected


@pytest.mark.parametrize("target", ["sip:", "tel:+4930123", "sip:exa mple.net", "sip:[::1"])
def test_bad_targets_say_what_was_expected(target: str) -> None:
    with pytest.raises(TargetError, match=r"SIP URI|sip:DOMAIN"):
        parse_target(target)
