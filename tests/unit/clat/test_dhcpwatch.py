"""The daemon's option 108 probes per link, with a fake packet socket."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP

from rtc64.clat import dhcpwatch
from rtc64.clat.dhcp4 import Event, V6Only

MAC = bytes.fromhex("02aabbccddee")


@dataclass
class FakeSocket:
    ifname: str
    sent: list[bytes] = field(default_factory=list)
    inbox: list[bytes] = field(default_factory=list)
    closed: bool = False

    def fileno(self) -> int:
        return 0

    def send(self, packet: bytes) -> None:
        self.sent.append(packet)

    def recv_all(self) -> list[bytes]:
        out, self.inbox = self.inbox, []
        return out

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def sockets(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeSocket]:
    made: dict[str, FakeSocket] = {}

    def make(name: str) -> FakeSocket:
        if name == "perm0":
            raise PermissionError("Operation not permitted")
        made[name] = FakeSocket(name)
        return made[name]

    monkeypatch.setattr(dhcpwatch, "Dhcp4Socket", make)
    monkeypatch.setattr(dhcpwatch, "hardware_address", lambda n: None if n == "tun0" else MAC)
    return made


def offer_to(sent: bytes, v6only: int | None) -> bytes:
    request = BOOTP(bytes(IP(sent)[UDP].payload))
    options: list[object] = [("message-type", "offer"), ("server_id", "10.0.0.1")]
    if v6only is not None:
        options.append(("ipv6-only-preferred", v6only))
    reply = BOOTP(op=2, xid=request.xid, chaddr=request.chaddr) / DHCP(options=[*options, "end"])
    return bytes(IP(src="10.0.0.1", dst="255.255.255.255") / UDP(sport=67, dport=68) / reply)


def test_probes_follow_the_links_and_hand_over_what_they_learn(
    sockets: dict[str, FakeSocket], caplog: pytest.LogCaptureFixture
) -> None:
    events: list[tuple[int, Event]] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader = lambda *a: None  # type: ignore[method-assign,assignment]
        loop.remove_reader = lambda *a: True  # type: ignore[method-assign,assignment]
        watch = dhcpwatch.Dhcp4Watch(logging.getLogger("t"), lambda i, e: events.append((i, e)))
        links = [(2, "eth0", True), (3, "eth1", False), (4, "tun0", True), (5, "perm0", True)]
        watch.follow(links, 0)
        assert set(sockets) == {"eth0"} and watch.unavailable == {4, 5}
        (discover,) = sockets["eth0"].sent
        assert IP(discover)[UDP].dport == 67
        sockets["eth0"].inbox = [b"junk", offer_to(discover, 1800)]
        watch._readable(2)
        assert events == [(2, V6Only(1800.0, IPv4Address("10.0.0.1")))]
        assert watch.dropped == 1 and "option 108" in (watch.describe(2) or "")
        watch.follow([(2, "eth0", False)], 1)  # link down: probe gone, socket closed
        assert sockets["eth0"].closed and watch.describe(2) is None
        watch.follow([(5, "perm0", True)], 2)  # reported once, not retried
        watch.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(go())
    assert caplog.text.count("perm0: no DHCPv4 option 108 probe") == 1
