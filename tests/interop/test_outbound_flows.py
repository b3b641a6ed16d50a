"""RFC 5626 outbound with real SIPp UAs: two TCP flows of one instance, calls to the AOR
over the newest live flow, failover when its connection closes, 430 when none is left;
a client without outbound support registers as usual.

Topology (tests/interop/lab.py): the phone is on the IPv6-only host and registers over
TCP (each flow one SIPp process: its own connection; ``-oocsf`` answers the INVITEs that
arrive on it); the caller is a SIPp UAC on the IPv4-only host.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Host, Lab
from tests.interop.peers import SCENARIOS, Gateway, Sipp, report, sipp_received

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

GW6 = f"[{V6_GW}]:5060"
GW4 = f"{V4_GW}:5060"
ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060",
    "--sip-listen", f"udp:{V4_GW}:5060",
    "--sip-listen", f"tcp:[{V6_GW}]:5060",
    "--sip-listen", f"tcp:{V4_GW}:5060",
    "--domain", "example.net",
    "--trusted-network", "fd00:64:6::/64",
    "--trusted-network", "10.64.4.0/24",
]  # fmt: skip
# The lab shares two cores with other work: overload shedding (503 Retry-After: 5 when the
# event loop lags) would turn a slow moment into a failed REGISTER or call here.
CONFIG = "[sip]\noverload_lag = 0\n"


def flow(net: Lab, work: Path, instance: str, reg_id: int) -> Sipp:
    """One registered flow: a SIPp process holding its own TCP connection to us."""
    d = work / f"flow{reg_id}"
    d.mkdir()
    phone = Sipp(
        net.v6, d, f"flow{reg_id}", "outbound_register.xml", local=str(V6_HOST),
        port=5070 + reg_id, remote=GW6, transport="t1",
        keys={"domain": "example.net", "instance": instance, "regid": str(reg_id)},
        extra=["-s", "carol", "-oocsf", str(SCENARIOS / "outbound_ooc.xml")],
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while not sipp_received(d, "SIP/2.0 200"):
        assert phone.proc.poll() is None and time.monotonic() < deadline, report(phone)
        time.sleep(0.1)
    time.sleep(0.3)  # a failed Require/Flow-Timer/pub-gruu check ends the SIPp run
    assert phone.proc.poll() is None, report(phone)
    return phone


def established(gw: Host, peer: str) -> int:
    """Established TCP connections of the gateway namespace with ``peer``."""
    out = gw.run("ss", "-tnH", "state", "established", check=False).stdout
    return sum(1 for line in out.splitlines() if f"[{peer}]" in line)


def hang_up(gw: Gateway, phone: Sipp, remaining: int) -> None:
    """Kill a flow's SIPp (the kernel closes its connection) and wait until the gateway
    has seen the close."""
    phone.proc.kill()
    phone.proc.wait(5)
    deadline = time.monotonic() + 10
    while established(gw.host, str(V6_HOST)) > remaining:
        assert time.monotonic() < deadline, "the gateway kept a closed flow open"
        time.sleep(0.05)


def call(net: Lab, work: Path, n: int, scenario: str = "uac.xml") -> Sipp:
    d = work / f"call{n}"
    d.mkdir()
    return Sipp(
        net.v4, d, f"call{n}", scenario, local=str(V4_HOST), port=5080 + n, remote=GW4,
        keys={"target": "example.net"}, extra=["-s", "carol"],
    )  # fmt: skip


def invites(phone: Sipp) -> int:
    return len(sipp_received(phone.workdir, "INVITE "))


def test_two_flows_failover_and_430(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    instance = str(uuid.uuid4())
    first = flow(net, work, instance, 1)
    second = flow(net, work, instance, 2)  # registered last: the preferred flow
    assert established(net.gw, str(V6_HOST)) == 2

    uac = call(net, work, 1)
    assert uac.wait() == 0, report(gw, uac, first, second)
    assert (invites(first), invites(second)) == (0, 1), report(gw, first, second)

    hang_up(gw, second, remaining=1)
    uac = call(net, work, 2)
    assert uac.wait() == 0, report(gw, uac, first)
    assert invites(first) == 1, report(gw, first)

    hang_up(gw, first, remaining=0)
    uac = call(net, work, 3, "uac_flow_failed.xml")
    assert uac.wait() == 0, report(gw, uac)
    assert "Flow Failed" in gw.text() or gw.alive()


def test_client_without_outbound_registers_and_is_called(net: Lab, work: Path) -> None:
    """pjsip-style: a plain REGISTER over TCP (no +sip.instance, no reg-id) gets a plain
    200, never 439 nor Require: outbound, and the AOR is reachable."""
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    d = work / "plain"
    d.mkdir()
    reg = Sipp(
        net.v6, d, "plain", "register.xml", local=str(V6_HOST), port=5060, remote=GW6,
        transport="t1", keys={"domain": "example.net", "expires": "300"}, extra=["-s", "dave"],
    )  # fmt: skip
    assert reg.wait() == 0, report(gw, reg)
    (ok,) = sipp_received(d, "SIP/2.0 200")
    assert "Require:" not in ok and "Flow-Timer" not in ok, ok
    assert "sip:dave@" in ok
