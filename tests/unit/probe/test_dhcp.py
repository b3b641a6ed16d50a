"""DHCPv4 option 108 (RFC 8925): the DISCOVER, reading OFFERs, hostile answers, verdicts."""

from __future__ import annotations

import contextlib
import random
import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from rtc64.probe import dhcp
from rtc64.probe.netcheck import NetFacts, checks
from rtc64.probe.verdict import Status

MAC = bytes.fromhex("02005e001234")
XID = 0x12345678


def offer(*options: bytes, xid: int = XID, mac: bytes = MAC, op: int = 2) -> bytes:
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4,
        bytes((192, 168, 64, 100)), b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"),
        b"\0" * 64, b"\0" * 128,
    )  # fmt: skip
    return header + dhcp.MAGIC + b"".join(options) + b"\xff"


TYPE_OFFER = bytes((53, 1, 2))
SERVER = bytes((54, 4, 192, 168, 64, 1))
V6ONLY = bytes((108, 4)) + (1800).to_bytes(4, "big")


def test_the_discover_asks_for_option_108_with_the_broadcast_flag() -> None:
    packet = dhcp.discover(XID, MAC)
    assert packet[0] == 1 and struct.unpack_from("!I", packet, 4)[0] == XID
    assert struct.unpack_from("!H", packet, 10)[0] == 0x8000
    options = dhcp.read_options(packet[240:])
    assert options[53] == bytes((1,))
    assert 108 in options[55]
    assert 50 not in options  # no requested address: nothing is leased


def test_an_offer_with_and_without_option_108() -> None:
    got = dhcp.parse_offer(offer(TYPE_OFFER, SERVER, V6ONLY), XID, MAC)
    assert got == dhcp.Offer(IPv4Address("192.168.64.1"), IPv4Address("192.168.64.100"), 1800)
    plain = dhcp.parse_offer(offer(TYPE_OFFER, SERVER), XID, MAC)
    assert plain.v6only_wait is None


@pytest.mark.parametrize(
    "data",
    [
        offer(TYPE_OFFER, xid=XID + 1),
        offer(TYPE_OFFER, mac=bytes(6)),
        offer(TYPE_OFFER, op=1),
        offer(bytes((53, 1, 5))),  # an ACK, not an OFFER
        offer(TYPE_OFFER, bytes((108, 2, 0, 1))),
        offer(TYPE_OFFER, bytes((108, 200, 0))),
        b"\x02" * 100,
    ],
)
def test_answers_that_are_not_our_offer_are_refused(data: bytes) -> None:
    with pytest.raises(dhcp.DhcpError):
        dhcp.parse_offer(data, XID, MAC)


@pytest.mark.parametrize("seed", range(30))
def test_hostile_answers_raise_only_dhcp_error(seed: int) -> None:
    rng = random.Random(seed)
    data = bytearray(offer(TYPE_OFFER, SERVER, V6ONLY))
    for _ in range(rng.randint(1, 20)):
        data[rng.randrange(236, len(data))] = rng.randrange(256)
    for sample in (bytes(data), bytes(data[: rng.randint(0, len(data))])):
        with contextlib.suppress(dhcp.DhcpError):
            dhcp.parse_offer(sample, XID, MAC)


def _option108(facts: NetFacts) -> tuple[Status, str]:
    check = next(c for c in checks(facts) if c.id == "net.option108")
    return check.status, check.reason


def test_option108_verdicts() -> None:
    ready = NetFacts(v6_source=IPv6Address("2001:db8::2"),
                     dns64_prefixes=(IPv6Network("64:ff9b::/96"),))  # fmt: skip
    assert _option108(ready) == (Status.SKIPPED, "local.not-root")
    offered = NetFacts(dhcp_tried=("eth0",), dhcp_offers=(("eth0", "192.0.2.1", 1800),))
    assert _option108(offered) == (Status.PASS, "net.option108")
    without = NetFacts(
        v6_source=ready.v6_source,
        dns64_prefixes=ready.dns64_prefixes,
        dhcp_tried=("eth0",),
        dhcp_offers=(("eth0", "192.0.2.1", None),),
    )
    assert _option108(without) == (Status.WARN, "net.no-option108")
    silent = NetFacts(dhcp_tried=("eth0",))
    assert _option108(silent) == (Status.INFO, "net.no-dhcpv4")
