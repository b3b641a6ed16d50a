"""``rtc64.settings``: each service's settings object from the typed configuration."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from rtc64 import config, settings
from rtc64.errors import ConfigError
from rtc64.net.address import Family, IPAddress
from rtc64.net.endpoint import parse_listen
from rtc64.relay.ngserver import NgSettings
from rtc64.relay.options import RelaySettings

LOCAL4, PUBLIC4 = ip_address("10.0.0.5"), ip_address("203.0.113.5")
LOCAL6 = ip_address("fd00::5")
LINK6, LOOP4, LOOP6 = ip_address("fe80::1"), ip_address("127.0.0.1"), ip_address("::1")
HOST: frozenset[IPAddress] = frozenset({LOCAL4, LOCAL6, LINK6, LOOP4, LOOP6})


def test_relay_settings_carry_every_media_key() -> None:
    cfg = config.load(
        None,
        {
            "media.addresses": ["10.0.0.5", "fd00::5"],
            "media.ports": "30001-30100",
            "media.workers": "3",
            "media.strict_source": "true",
            "media.timeout": 30,
            "media.hold_timeout": 600,
            "sip.trusted_networks": ["10.0.0.0/8"],
        },
    )
    got = settings.relay_settings(cfg.media, trusted_networks=cfg.sip.trusted_networks)
    assert got == RelaySettings(
        addresses=(LOCAL4, LOCAL6),
        ports=(30002, 30100),
        workers=3,
        strict_source=True,
        timeout=30.0,
        hold_timeout=600.0,
        trusted_networks=(ip_network("10.0.0.0/8"),),
    )
    assert isinstance(got.timeout, float) and isinstance(got.hold_timeout, float)


def test_relay_settings_fall_back_to_the_given_addresses() -> None:
    media = config.load(None).media
    assert settings.relay_settings(media).addresses == ()
    assert settings.relay_settings(media, fallback=[LOCAL6]).addresses == (LOCAL6,)
    assert settings.relay_settings(media, fallback=[LOCAL6], host=HOST).addresses == (LOCAL6,)


def test_relay_settings_check_the_host_and_carry_advertise() -> None:
    cfg = config.load(
        None, {"media.addresses": ["203.0.113.5"], "media.advertise": ["203.0.113.5"]}
    )
    got = settings.relay_settings(cfg.media, fallback=[LOCAL4], host=HOST)
    assert got.addresses == (LOCAL4,) and got.advertise == (PUBLIC4,)
    assert got.sdp_address(LOCAL4) == PUBLIC4
    foreign = config.load(None, {"media.addresses": ["192.0.2.99"]})
    with pytest.raises(ConfigError, match=r"media\.addresses = '192\.0\.2\.99'"):
        settings.relay_settings(foreign.media, fallback=[LOCAL4], host=HOST)
    # Without ``host`` nothing is checked (tests, benchmarks binding what they are given).
    assert settings.relay_settings(foreign.media).addresses == (ip_address("192.0.2.99"),)


def test_ng_settings_off_or_from_the_section() -> None:
    assert settings.ng_settings(config.load(None).ng) is None
    cfg = config.load(None, {"ng.listen": "udp:[::1]:2223", "ng.interfaces": ["lan=ipv4"]})
    assert settings.ng_settings(cfg.ng) == NgSettings(
        listen=parse_listen("udp:[::1]:2223"), interfaces=(("lan", Family.INET),)
    )


def test_one_per_family_prefers_routable_addresses() -> None:
    assert settings.one_per_family(HOST) == (LOCAL6, LOCAL4)
    assert settings.one_per_family({LOOP4, LOOP6, LINK6}) == (LOOP6, LOOP4)
    assert settings.one_per_family({LINK6}) == (LINK6,)
    assert settings.one_per_family(()) == ()


def test_standalone_relay_needs_an_address_and_binds_local_for_advertised() -> None:
    with pytest.raises(ConfigError, match=r"media\.addresses = \[\].*--media-address"):
        settings.standalone_relay_settings(config.load(None).media, (), HOST)
    cfg = config.load(
        None, {"media.addresses": ["203.0.113.5"], "media.advertise": ["203.0.113.5"]}
    )
    got = settings.standalone_relay_settings(cfg.media, (), HOST)
    assert got.addresses == (LOCAL4,) and got.advertise == (PUBLIC4,)
    with pytest.raises(ConfigError, match=r"local IPv4 address"):
        settings.standalone_relay_settings(cfg.media, (), {LOCAL6})
    advertise_only = config.load(None, {"media.addresses": ["::1"], "media.advertise": ["1.2.3.4"]})
    with pytest.raises(ConfigError, match=r"media\.advertise = '1\.2\.3\.4'"):
        settings.standalone_relay_settings(advertise_only.media, (), HOST)


def test_standalone_ng_needs_a_socket() -> None:
    with pytest.raises(ConfigError, match=r"ng\.listen = ''.*--ng-listen"):
        settings.standalone_ng_settings(config.load(None).ng)
    cfg = config.load(None, {"ng.listen": "udp:127.0.0.1:2223"})
    assert settings.standalone_ng_settings(cfg.ng).listen.port == 2223


def test_a_clat_address_is_never_a_relay_address() -> None:
    """On a host running a CLAT (rtc64 clat), 192.0.0.1 is its only IPv4 address: a relay
    there must not offer it in SDP or as a TURN relay (nobody outside can reach it)."""
    clat = ip_address("192.0.0.1")
    assert settings.one_per_family({LOCAL6, clat}) == (LOCAL6,)
    assert settings.one_per_family({LOCAL6, clat, LOCAL4}) == (LOCAL6, LOCAL4)
    assert settings.first_usable({clat}, Family.INET) is None
