"""A phone registered over TCP with a gateway of two SIP workers receives calls handled
by either worker over its one connection (issue 11, RFC 5626 §5.3: a request to a
phone's connection that lives in another worker goes over that connection, never a new
one).

Topology (tests/interop/lab.py): the phone is a SIPp on the IPv6-only host holding one
TCP connection to the gateway's shared port (the kernel picks the worker that accepts
it; ``-oocsf`` answers the INVITEs arriving on it); the caller is a SIPp UAC on the
IPv4-only host sending each call to one worker's own UDP port, so worker 0 handles one
call and worker 1 the other whichever of them holds the phone's connection.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Host, Lab
from tests.interop.peers import SCENARIOS, Gateway, Sipp, report, sipp_received

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
    "--sip-listen", f"tcp:[{V6_GW}]:5060", "--sip-listen", f"tcp:{V4_GW}:5060",
    "--domain", "example.net",
    "--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
    "--sip-workers", "2",
]  # fmt: skip
CONFIG = "[sip]\noverload_lag = 0\n"  # no shedding when the shared machine is slow


def own_udp4(gw: Gateway) -> dict[int, str]:
    """{worker: "10.64.4.1:port"}: each worker's own IPv4 UDP port."""
    found = {}
    for k, ports in re.findall(r"SIP worker (\d+): own ports (.*?), media ports", gw.text()):
        for spec in ports.split(", "):
            kind, _, hostport = spec.partition(":")
            if kind == "udp" and not hostport.startswith("["):
                found[int(k)] = hostport
    return found


def established(gw: Host, peer: str) -> list[str]:
    """The gateway namespace's established TCP connections with ``peer``."""
    out = gw.run("ss", "-tnH", "state", "established", check=False).stdout
    return [line for line in out.splitlines() if f"[{peer}]" in line]


def test_a_tcp_phone_gets_calls_from_both_workers_over_its_one_connection(
    net: Lab, work: Path
) -> None:
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    try:
        own = own_udp4(gw)
        assert sorted(own) == [0, 1], gw.text()[-3000:]
        d = work / "phone"
        d.mkdir()
        phone = Sipp(
            net.v6, d, "phone", "tcp_phone.xml", local=str(V6_HOST), port=5070,
            remote=f"[{V6_GW}]:5060", transport="t1", keys={"domain": "example.net"},
            extra=["-s", "dave", "-oocsf", str(SCENARIOS / "outbound_ooc.xml")],
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not sipp_received(d, "SIP/2.0 200"):
            assert phone.proc.poll() is None and time.monotonic() < deadline, report(gw, phone)
            time.sleep(0.1)
        (connection,) = established(net.gw, str(V6_HOST))
        for k in (0, 1):
            c = work / f"call{k}"
            c.mkdir()
            uac = Sipp(
                net.v4, c, f"call{k}", "uac.xml", local=str(V4_HOST), port=5080 + k,
                remote=own[k], keys={"target": "example.net"}, extra=["-s", "dave"],
            )  # fmt: skip
            assert uac.wait() == 0, report(gw, uac, phone)
            assert established(net.gw, str(V6_HOST)) == [connection], gw.text()[-3000:]
        assert len(sipp_received(d, "INVITE ")) == 2, report(gw, phone)
        assert len(sipp_received(d, "BYE ")) == 2, report(gw, phone)
        # exactly one worker wrote on the other's connection (INVITE, ACK, BYE)
        handed = set(re.findall(r"rtc64\.w(\d)\.link.*send over worker \d's tcp", gw.text()))
        assert len(handed) == 1, gw.text()[-4000:]
        assert phone.proc.poll() is None, report(phone)
    finally:
        assert gw.stop() == 0, gw.text()[-4000:]
    assert "Traceback" not in gw.text(), gw.text()[-8000:]
