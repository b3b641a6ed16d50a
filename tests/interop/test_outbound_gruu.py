"""RFC 5627 GRUUs and IPv6 privacy addresses with real SIPp UAs: a phone (+sip.instance,
no reg-id, over UDP) registers from one IPv6 address, then from a new one (its privacy
address changed); the new binding replaces the old one, so calls to the AOR, to its
public GRUU and to its temporary GRUU all reach the new address only."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import SCENARIOS, Gateway, Sipp, report, sipp_received

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060",
    "--sip-listen", f"udp:{V4_GW}:5060",
    "--domain", "example.net",
    "--trusted-network", "fd00:64:6::/64",
    "--trusted-network", "10.64.4.0/24",
]  # fmt: skip
CONFIG = "[sip]\noverload_lag = 0\n"  # shared cores: no overload shedding in this test
NEW_ADDRESS = IPv6Address("fd00:64:6::3")  # the phone's next privacy address


@pytest.fixture
def second_address(net: Lab) -> Iterator[IPv6Address]:
    dev = next(
        line.split(":")[1].strip().split("@")[0]
        for line in net.v6.run("ip", "-o", "link").stdout.splitlines()
        if ": h6" in line
    )
    net.v6.run("ip", "-6", "addr", "add", f"{NEW_ADDRESS}/64", "dev", dev, "nodad")
    try:
        yield NEW_ADDRESS
    finally:
        net.v6.run("ip", "-6", "addr", "del", f"{NEW_ADDRESS}/64", "dev", dev, check=False)


def phone(net: Lab, work: Path, name: str, address: IPv6Address, instance: str) -> Sipp:
    d = work / name
    d.mkdir()
    ua = Sipp(
        net.v6, d, name, "gruu_register.xml", local=str(address), port=5075,
        remote=f"[{V6_GW}]:5060", keys={"domain": "example.net", "instance": instance},
        extra=["-s", "carol", "-oocsf", str(SCENARIOS / "outbound_ooc.xml")],
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while not sipp_received(d, "SIP/2.0 200"):
        assert ua.proc.poll() is None and time.monotonic() < deadline, report(ua)
        time.sleep(0.1)
    time.sleep(0.3)  # a failed pub-gruu/temp-gruu check ends the SIPp run
    assert ua.proc.poll() is None, report(ua)
    return ua


def call(net: Lab, work: Path, n: int, user: str, target: str) -> Sipp:
    d = work / f"call{n}"
    d.mkdir()
    return Sipp(
        net.v4, d, f"call{n}", "uac.xml", local=str(V4_HOST), port=5080 + n,
        remote=f"{V4_GW}:5060", keys={"target": target}, extra=["-s", user],
    )  # fmt: skip


def invites(ua: Sipp) -> int:
    return len(sipp_received(ua.workdir, "INVITE "))


def test_new_address_replaces_the_binding_and_gruus_reach_it(
    net: Lab, work: Path, second_address: IPv6Address
) -> None:
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    instance = str(uuid.uuid4())
    old = phone(net, work, "old", V6_HOST, instance)
    new = phone(net, work, "new", second_address, instance)
    (ok,) = sipp_received(new.workdir, "SIP/2.0 200")
    contacts = [line for line in ok.splitlines() if line.lower().startswith("contact:")]
    assert len(contacts) == 1 and f"[{second_address}]" in contacts[0], ok  # replaced
    temp = re.search(r'temp-gruu="sip:(tgruu\.[a-z2-7]+)@example\.net;gr"', ok)
    assert temp is not None, ok

    targets = [
        ("carol", "example.net"),
        ("carol", f"example.net;gr=urn:uuid:{instance}"),
        (temp.group(1), "example.net;gr"),
    ]
    for n, (user, target) in enumerate(targets, start=1):
        uac = call(net, work, n, user, target)
        assert uac.wait() == 0, report(gw, uac, old, new)
        assert (invites(old), invites(new)) == (0, n), report(gw, old, new)
