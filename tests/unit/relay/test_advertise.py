"""A relay behind a 1:1 NAT: ``media.advertise`` puts the public address into SDP while the
relay binds the local one; a ``media.addresses`` entry that is not on this host is refused
unless it is advertised."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from rtc64 import config
from rtc64.errors import ConfigError
from rtc64.net.address import Family, IPAddress
from rtc64.relay.engine import MediaRelay
from rtc64.relay.options import RelaySettings, bind_addresses, refuse_foreign
from rtc64.sdp import parse

from .helpers import Clock, FakeForwarder, sdp

LOCAL4, PUBLIC4 = ip_address("10.0.0.5"), ip_address("203.0.113.5")
LOCAL6, PUBLIC6 = ip_address("fd00::5"), ip_address("2001:db8::5")
HOST: frozenset[IPAddress] = frozenset({LOCAL4, LOCAL6, ip_address("127.0.0.1")})
CALLER6, CALLEE4 = "2001:db8:1::10", "198.51.100.20"


def _relay(settings: RelaySettings) -> tuple[MediaRelay, FakeForwarder]:
    fwd = FakeForwarder()
    return MediaRelay(settings, fwd, clock=Clock(), on_timeout=lambda _: None), fwd


def test_sdp_carries_the_advertised_address_and_the_relay_binds_the_local_one() -> None:
    settings = RelaySettings(
        addresses=(LOCAL4, LOCAL6), ports=(30000, 30099), advertise=(PUBLIC4, PUBLIC6)
    )
    relay, fwd = _relay(settings)
    offer = relay.offer(
        b"c1", b"A", sdp(CALLER6), to_family=Family.INET, from_source=ip_address(CALLER6)
    )
    sd = parse(offer)
    assert sd.connection is not None and sd.connection.address == PUBLIC4
    assert sd.origin.address == PUBLIC4
    assert b"10.0.0.5" not in offer
    port = sd.media[0].port
    assert (LOCAL4, port) in fwd.ports and (LOCAL4, port + 1) in fwd.ports
    assert not any(address in (PUBLIC4, PUBLIC6) for address, _ in fwd.ports)
    answer = relay.answer(
        b"c1",
        b"A",
        b"B",
        sdp(CALLEE4, 6000),
        to_family=Family.INET6,
        from_source=ip_address(CALLEE4),
    )
    sa = parse(answer)
    assert sa.connection is not None and sa.connection.address == PUBLIC6
    assert (LOCAL6, sa.media[0].port) in fwd.ports


def test_only_the_advertised_family_changes() -> None:
    settings = RelaySettings(addresses=(LOCAL4, LOCAL6), ports=(30000, 30099), advertise=(PUBLIC4,))
    assert settings.sdp_address(LOCAL4) == PUBLIC4
    assert settings.sdp_address(LOCAL6) == LOCAL6
    relay, _ = _relay(settings)
    offer = relay.offer(
        b"c1", b"A", sdp(CALLEE4), to_family=Family.INET6, from_source=ip_address(CALLEE4)
    )
    assert parse(offer).connection.address == LOCAL6  # type: ignore[union-attr]


def test_an_address_not_on_this_host_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        refuse_foreign([PUBLIC4], [], HOST)
    assert info.value.key == "media.addresses" and info.value.value == "203.0.113.5"
    assert "media.advertise" in str(info.value) and "10.0.0.5" in str(info.value)
    refuse_foreign([LOCAL4, LOCAL6], [], HOST)  # addresses of this host are fine


def test_an_advertised_address_in_media_addresses_binds_the_local_one() -> None:
    assert bind_addresses([PUBLIC4], [PUBLIC4], HOST, [LOCAL4, LOCAL6]) == (LOCAL4,)
    assert bind_addresses([PUBLIC4, LOCAL6], [PUBLIC4], HOST, [LOCAL4]) == (LOCAL4, LOCAL6)
    assert bind_addresses([], [PUBLIC4], HOST, [LOCAL4]) == ()
    with pytest.raises(ConfigError, match="local IPv6 address"):
        bind_addresses([PUBLIC6], [PUBLIC6], HOST, [LOCAL4])
    with pytest.raises(ConfigError) as info:
        bind_addresses([LOCAL4], [PUBLIC6], HOST, [LOCAL4])
    assert info.value.key == "media.advertise"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (["203.0.113.5", "203.0.113.6"], "at most one address per family"),
        (["0.0.0.0"], "unicast"),
        (["::1"], "unicast"),
        (["not-an-ip"], "media.advertise"),
    ],
)
def test_bad_media_advertise(value: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        config.load(None, {"media.advertise": value})
