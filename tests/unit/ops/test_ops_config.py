"""The operations keys: hep.*, sip.trace, general.drain_seconds; errors name key and form."""

from __future__ import annotations

from ipaddress import IPv6Address, ip_network

import pytest

from rtc64 import config
from rtc64.errors import ConfigError
from rtc64.net.endpoint import Transport


def test_defaults_and_values() -> None:
    cfg = config.load(None)
    assert cfg.hep.collector is None and cfg.hep.capture_id == 2001
    assert cfg.sip.trace == () and cfg.general.drain_seconds == 30
    cfg = config.load(
        None,
        {
            "hep.collector": "udp:[2001:db8::9]:9060",
            "sip.trace": ["2001:db8::/64", "SIP:Alice@Example.NET"],
            "general.drain_seconds": "0",
        },
    )
    assert cfg.hep.collector is not None
    assert cfg.hep.collector.transport is Transport.UDP
    assert cfg.hep.collector.address == IPv6Address("2001:db8::9")
    assert cfg.sip.trace == (ip_network("2001:db8::/64"), "sip:Alice@example.net")
    assert cfg.general.drain_seconds == 0


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("hep.collector", "tcp:[::1]:9060", "udp:ADDRESS:PORT"),
        ("hep.collector", "udp:[::]:9060", "a real address"),
        ("hep.collector", "udp:127.0.0.1:0", "a real address and port"),
        ("hep.collector", "udp:collector.example:9060", "udp:ADDRESS:PORT"),
        ("hep.capture_id", -1, "0 to 4294967295"),
        ("sip.trace", ["sip:bob"], "user@host"),
        ("sip.trace", ["not a network"], "CIDR"),
        ("general.drain_seconds", "-1", "seconds from 0 to 86400"),
        ("general.drain_seconds", "1e9", "seconds from 0 to 86400"),
    ],
)
def test_bad_values_name_the_key_and_the_form(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(None, {key: value})
    text = str(err.value)
    assert key in text and words in text, text
