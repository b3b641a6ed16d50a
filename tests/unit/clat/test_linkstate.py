"""The per-link CLAT state machine, driven by fake events and a fake clock."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv6Address, IPv6Interface, IPv6Network

import pytest

from rtc64.clat.addressing import (
    INTERNAL_V6,
    Slot,
    choose_prefix,
    choose_shared,
    clat_address,
    free_slot,
    internal_address,
)
from rtc64.clat.linkstate import MAX_PREF64, LinkState, LinkView, Off, Reason, Want, is_clat_v4
from rtc64.net.rfc6052 import Rfc6052Error

P1 = IPv6Network("fd64:64:64::/96")
P2 = IPv6Network("2001:db8:64::/96")
ROUTER = IPv6Address("fe80::1")
GUA = IPv6Interface("2001:db8:1::5/64")
ULA = IPv6Interface("fd00:64:6::2/64")


def view(**kw: object) -> LinkView:
    base: dict[str, object] = {
        "index": 2,
        "name": "eth0",
        "up": True,
        "ipv6": (ULA,),
        "router": ROUTER,
    }
    base.update(kw)
    return LinkView(**base)  # type: ignore[arg-type]


def state(**kw: object) -> LinkState:
    s = LinkState(2)
    s.observe(view(**kw))
    return s


def test_pref64_turns_the_clat_on_and_lifetime_expiry_turns_it_off() -> None:
    s = state()
    assert s.decide(0) == Off(Reason.NO_NAT64)
    s.pref64_seen(P1, 600, now=0)
    d = s.decide(10)
    assert isinstance(d, Want) and d.prefix.prefix == P1 and d.prefix.source == "pref64"
    assert d.source == ULA.network
    assert s.get_timer() == 600
    s.handle_timer(599)
    assert isinstance(s.decide(599), Want)
    s.handle_timer(600)
    assert s.decide(600) == Off(Reason.NO_NAT64)
    assert s.get_timer() is None


def test_pref64_lifetime_zero_withdraws_and_a_new_prefix_replaces() -> None:
    s = state()
    s.pref64_seen(P1, 600, 0)
    s.pref64_seen(P2, 600, 5)
    d = s.decide(6)
    assert isinstance(d, Want) and d.prefix.prefix == P2
    s.pref64_seen(P2, 0, 7)
    d = s.decide(7)
    assert isinstance(d, Want) and d.prefix.prefix == P1
    s.pref64_seen(P1, 0, 8)
    assert s.decide(8) == Off(Reason.NO_NAT64)


def test_pref64_wins_over_dns64_which_wins_over_config() -> None:
    s = LinkState(2, configured=IPv6Network("64:ff9b::/96"))
    s.observe(view())
    d = s.decide(0)
    assert isinstance(d, Want) and d.prefix.source == "config"
    s.dns64_result([P2], ttl=300, now=0)
    d = s.decide(0)
    assert isinstance(d, Want) and d.prefix.source == "rfc7050" and d.prefix.prefix == P2
    s.pref64_seen(P1, 600, 0)
    d = s.decide(0)
    assert isinstance(d, Want) and d.prefix.source == "pref64"


def test_dns64_refresh_never_sooner_than_the_floor() -> None:
    s = state()
    assert s.wants_dns64(0)
    s.dns64_result([P1], ttl=0, now=0)  # TTL 0: no query flood
    assert not s.wants_dns64(59)
    assert s.wants_dns64(60)
    s.dns64_result([], ttl=300, now=60)  # DNS64 gone
    assert s.decide(61) == Off(Reason.NO_NAT64)


def test_ipv4_address_or_default_route_turns_it_off_option108_overrides() -> None:
    s = state()
    s.pref64_seen(P1, 600, 0)
    s.observe(view(ipv4=(IPv4Interface("10.0.0.5/24"),)))
    d = s.decide(1)
    assert isinstance(d, Off) and d.reason is Reason.IPV4_PRESENT and "10.0.0.5" in d.detail
    s.observe(view(ipv4_default=True))
    assert isinstance(s.decide(1), Off)
    s.option108(0, now=1)  # below the minimum: held 300 s (RFC 8925 §3.4)
    assert isinstance(s.decide(2), Want)
    s.handle_timer(301)
    assert isinstance(s.decide(301), Off)


def test_link_local_and_own_clat_ipv4_do_not_count_as_ipv4() -> None:
    s = state(ipv4=(IPv4Interface("169.254.3.4/16"), IPv4Interface("192.0.0.1/31")))
    s.pref64_seen(P1, 600, 0)
    assert isinstance(s.decide(0), Want)


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"up": False}, Reason.LINK_DOWN),
        ({"router": None}, Reason.NO_ROUTER),
        ({"ipv6": (IPv6Interface("fe80::9/64"),)}, Reason.NO_PREFIX),
        ({"ipv6": ()}, Reason.NO_PREFIX),
    ],
)
def test_missing_pieces_are_named(kw: dict[str, object], reason: Reason) -> None:
    s = state(**kw)
    s.pref64_seen(P1, 600, 0)
    d = s.decide(0)
    assert isinstance(d, Off) and d.reason is reason


def test_foreign_clat_is_deferred_to() -> None:
    s = state()
    s.pref64_seen(P1, 600, 0)
    s.foreign_clat("NetworkManager (clat0)")
    assert s.decide(0) == Off(Reason.FOREIGN_CLAT, "NetworkManager (clat0)")
    s.foreign_clat(None)
    assert isinstance(s.decide(0), Want)


def test_forged_pref64_with_a_bad_length_is_refused() -> None:
    s = state()
    with pytest.raises(Rfc6052Error):
        s.pref64_seen(IPv6Network("fd64::/80"), 600, 0)
    assert s.decide(0) == Off(Reason.NO_NAT64)


def test_view_of_another_link_is_refused() -> None:
    with pytest.raises(ValueError, match="link 3"):
        LinkState(2).observe(view(index=3))


def test_source_prefix_gua_over_ula_then_longest_match() -> None:
    near = IPv6Interface("2001:db8:64::7/64")
    prefix, why = choose_prefix([ULA, GUA, near], P2)
    assert prefix == near.network and "GUA" in why
    prefix, _ = choose_prefix([ULA, GUA], P1)
    assert prefix == GUA.network
    assert choose_prefix([IPv6Interface("2001:db8::1/128")], P1)[0] is None


def test_slots_and_addresses_are_deterministic_and_disjoint() -> None:
    slots = [Slot(i) for i in range(4)]
    v4 = [a for s in slots for a in (s.clat_v4, s.host_v4)]
    assert len(set(v4)) == 8 and all(is_clat_v4(a) for a in v4)
    assert str(Slot(0).host_v4) == "192.0.0.1" and str(Slot(3).clat_v4) == "192.0.0.6"
    assert all(len(n) <= 15 for s in slots for n in (s.host_veth, s.ns_veth, s.uplink, s.tun))
    assert free_slot([0, 2]) == Slot(1) and free_slot(range(4)) is None
    with pytest.raises(ValueError, match="slot 4"):
        Slot(4)
    a = clat_address(ULA.network, "eth0", Slot(0))
    assert a in ULA.network and a == clat_address(ULA.network, "eth0", Slot(0))
    assert a != clat_address(ULA.network, "eth0", Slot(0), attempt=1)
    assert a != clat_address(ULA.network, "eth1", Slot(0))


def test_a_flood_of_forged_pref64_prefixes_stays_bounded() -> None:
    s = state()
    s.pref64_seen(P1, 600, 0)
    for i in range(1000):
        s.pref64_seen(IPv6Network(f"2001:db8:{i:x}::/96"), 600, 0)
    assert len(s.pref64) == MAX_PREF64 == len(s.pref64_order)
    assert P1 not in s.pref64
    d = s.decide(0)
    assert isinstance(d, Want) and d.prefix.prefix == IPv6Network("2001:db8:3e7::/96")


def test_a_link_with_only_a_128_shares_the_host_address() -> None:
    lease = IPv6Interface("2001:db8::9/128")
    s = state(ipv6=(IPv6Interface("fd00:9::9/128"), lease, IPv6Interface("fe80::9/64")))
    s.pref64_seen(P1, 600, 0)
    d = s.decide(0)
    assert isinstance(d, Want) and d.shared == lease.ip  # GUA over ULA here too
    assert d.source == IPv6Network("2001:db8::9/128")
    assert "shared GUA address 2001:db8::9" in d.why and "SNAT" in d.why
    # a /64 on the link wins: a dedicated address, nothing shared
    s.observe(view(ipv6=(lease, ULA)))
    d = s.decide(0)
    assert isinstance(d, Want) and d.shared is None and d.source == ULA.network


def test_shared_policy_never_shares_link_local_or_an_internal_address() -> None:
    internal = IPv6Interface(f"{internal_address(Slot(0))}/128")
    assert internal.ip in INTERNAL_V6
    shared, why = choose_shared([IPv6Interface("fe80::1/64"), internal], P1)
    assert shared is None and "only link-local" in why
    assert internal_address(Slot(1)) != internal_address(Slot(0))
