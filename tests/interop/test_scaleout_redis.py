"""Two gateways, one Redis location store (issue 12, "beyond one machine").

Topology (tests/interop/lab.py with the dual-stack host): gateway A in the gateway
namespace (fd00:64:6::1, 10.64.4.1, 10.64.5.1), gateway B in the dual-stack host's
namespace (fd00:64:5::2, 10.64.5.2), one Debian redis-server in A's namespace on
10.64.5.1 (the link both share). bob's phone (v4 host 10.64.4.2) registers through A;
a caller on B's host calls him through B. This module's lab turns IPv4 forwarding on in
A's namespace so B reaches bob's registered address, as two edge nodes of one provider
would. Each gateway runs two SIP workers.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_DS, V4_DS_GW, V4_GW, V4_HOST, V6_DS, V6_GW, Lab
from tests.interop.peers import Gateway, Sipp, report, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "redis-server", "redis-cli")
LAB_DUAL_STACK = True

REDIS_PORT = 6390
STORE = f"redis://{V4_DS_GW}:{REDIS_PORT}/0"
TRUSTED = [
    "--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
    "--trusted-network", "fd00:64:5::/64", "--trusted-network", "10.64.5.0/24",
]  # fmt: skip
A_ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
    "--store", STORE, "--sip-workers", "2", *TRUSTED,
]  # fmt: skip
B_ARGS = [
    "--sip-listen", f"udp:[{V6_DS}]:5062", "--sip-listen", f"udp:{V4_DS}:5062",
    "--store", STORE, "--sip-workers", "2", "--media-policy", "always", *TRUSTED,
]  # fmt: skip
CONFIG = '[sip]\ndomains = ["example.net"]\n[turn]\nenabled = false\n'
KEY = "rtc64:loc:sip:bob@example.net"


def _dir(work: Path, name: str) -> Path:
    d = work / name
    d.mkdir()
    return d


@pytest.fixture
def redis(net: Lab, work: Path) -> str:
    """redis-server in gateway A's namespace; returns its address for redis-cli."""
    exe = shutil.which("redis-server")
    assert exe is not None
    net.gw.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    net.gw.popen(
        [exe, "--bind", str(V4_DS_GW), "--port", str(REDIS_PORT), "--save", "",
         "--appendonly", "no", "--dir", str(work), "--protected-mode", "no"],
        log=work / "redis.log",
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while _cli(net, "PING") != "PONG":
        assert time.monotonic() < deadline, (work / "redis.log").read_text()
        time.sleep(0.1)
    return str(V4_DS_GW)


def _cli(net: Lab, *args: str) -> str:
    cmd = ["redis-cli", "-h", str(V4_DS_GW), "-p", str(REDIS_PORT), *args]
    return net.gw.run(*cmd, check=False).stdout.strip()


def _register(
    net: Lab, work: Path, name: str, host: str, remote: str, port: int, expires: int = 300
) -> Sipp:
    on = net.v4 if host == str(V4_HOST) else net.dual
    return Sipp(
        on, _dir(work, name), name, "register.xml", local=host, port=port, remote=remote,
        keys={"domain": "example.net", "expires": str(expires)}, extra=["-s", "bob"],
    )  # fmt: skip


def test_phone_registered_through_one_gateway_is_called_through_the_other(
    net: Lab, work: Path, redis: str
) -> None:
    gw_a = Gateway(net.gw, _dir(work, "a"), A_ARGS, config=CONFIG)
    gw_b = Gateway(net.dual, _dir(work, "b"), B_ARGS, config=CONFIG)
    try:
        # Both gateways register contacts of the same AOR at the same moment: the
        # compare-and-set keeps both (neither overwrites the other's).
        regs = [
            _register(net, work, "reg-a", str(V4_HOST), f"{V4_GW}:5060", 5060),
            _register(net, work, "reg-b", str(V4_DS), f"{V4_DS}:5062", 5064),
        ]
        for reg in regs:
            assert reg.wait() == 0, report(gw_a, gw_b, reg)
        stored = _cli(net, "GET", KEY)
        assert f"sip:bob@{V4_HOST}:5060" in stored and f"sip:bob@{V4_DS}:5064" in stored, stored
        # B's contact removed through B (Expires 0): bob stays reachable at what A stored.
        reg = _register(net, work, "unreg-b", str(V4_DS), f"{V4_DS}:5062", 5064, expires=0)
        assert reg.wait() == 0, report(gw_b, reg)
        stored = _cli(net, "GET", KEY)
        assert f"sip:bob@{V4_HOST}:5060" in stored and f"{V4_DS}:5064" not in stored, stored
        # A call from B's host (IPv6) to bob through gateway B.
        uas = Sipp(net.v4, _dir(work, "uas"), "uas", "uas.xml", local=str(V4_HOST), port=5060)
        wait_port(net.v4, "udp", 5060)
        uac = Sipp(
            net.dual, _dir(work, "uac"), "uac", "uac.xml", local=str(V6_DS), port=5070,
            remote=f"[{V6_DS}]:5062", keys={"target": "example.net"}, extra=["-s", "bob"],
        )  # fmt: skip
        assert uac.wait() == 0, report(gw_a, gw_b, uac, uas)
        assert uas.wait() == 0, report(gw_a, gw_b, uac, uas)
        invite = uas.messages()
        # B handled it (its Via first), and its own relay carries the media: the SDP bob
        # got names B's IPv4 address, not A's.
        assert re.search(rf"Via: SIP/2.0/UDP {V4_DS}:\d+;branch=", invite), invite
        assert f"c=IN IP4 {V4_DS}" in invite, invite
        assert f"c=IN IP4 {V4_GW}" not in invite
        assert "INVITE sip:bob" not in gw_a.text()  # A never saw the call
    finally:
        gw_b.stop()
        gw_a.stop()


def test_redis_down_at_start_is_a_one_line_error(net: Lab, work: Path) -> None:
    """No Redis on the configured address: the supervisor reports the store and exits
    (no worker is started)."""
    args = [*A_ARGS]
    args[args.index("--store") + 1] = f"redis://{V4_DS_GW}:{REDIS_PORT + 1}/0"
    with pytest.raises(RuntimeError) as info:
        Gateway(net.gw, _dir(work, "gw"), args, config=CONFIG)
    assert "redis" in str(info.value) and "SIP worker 0 started" not in str(info.value)
