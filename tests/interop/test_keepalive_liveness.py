"""Keepalive liveness with real peers: SIPp answers rtc64's OPTIONS (its ``-aa`` automatic
answers) and stays registered; once it is gone, the contact is marked unreachable after
``keepalive.max_failures`` unanswered OPTIONS and removed, and a call to it gets 404.
coturn's ``turnutils_stunclient`` gets its mapped address from the SIP UDP port (RFC 5626
§4.4.2 STUN keep-alives), over both families."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, report

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "turnutils_stunclient")

# overload_lag 0: the lab shares two cores; a lagging moment must not shed a request.
CONFIG = "[keepalive]\nmax_failures = 2\n[sip]\noverload_lag = 0\n"
ARGS = [
    "--sip-listen",
    f"udp:[{V6_GW}]:5060",
    "--sip-listen",
    f"udp:{V4_GW}:5060",
    "--trusted-network",
    "fd00:64:6::/64",
    "--trusted-network",
    "10.64.4.0/24",
    "--media-policy",
    "never",
    "--keepalive-interval",
    "0.5",
    "--keepalive-options-interval",
    "1",
]


def _wait_log(gateway: Gateway, text: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in gateway.text():
            return True
        time.sleep(0.1)
    return False


def test_answering_contacts_stay_and_silent_ones_are_removed(net: Lab, work: Path) -> None:
    gateway = Gateway(net.gw, work, ARGS, config=CONFIG)
    domain = f"[{V6_GW}]"
    reg = Sipp(
        net.v6,
        work,
        "register",
        "register.xml",
        local=str(V6_HOST),
        port=5070,
        remote=f"{domain}:5060",
        keys={"domain": domain, "expires": "300"},
        extra=["-s", "alice"],
    )
    assert reg.wait() == 0, report(gateway, reg)
    # The phone: a UAS on the registered port that answers OPTIONS by itself (-aa; each
    # OPTIONS is a new "call" to SIPp, hence the large -m).
    phone = Sipp(
        net.v6,
        work,
        "phone",
        "uas.xml",
        local=str(V6_HOST),
        port=5070,
        calls=10_000,
        extra=["-aa"],
    )
    assert _wait_log(gateway, "reachable (OPTIONS RTT"), report(gateway, phone)
    time.sleep(4)  # several OPTIONS rounds, all answered
    assert "unreachable (" not in gateway.text(), report(gateway, phone)
    assert phone.proc.poll() is None, report(gateway, phone)
    phone.proc.terminate()
    phone.wait()
    assert _wait_log(gateway, "unreachable (2 OPTIONS unanswered): removed"), report(gateway)
    call = Sipp(
        net.gw,
        work,
        "call",
        "uac_notfound.xml",
        local=str(V6_GW),
        port=5080,
        remote=f"{domain}:5060",
        keys={"target": domain},
        extra=["-s", "alice"],
    )
    assert call.wait() == 0, report(gateway, call)  # 404: no contact left


@pytest.mark.parametrize(("host", "server"), [("v6", V6_GW), ("v4", V4_GW)])
def test_stun_keepalives_on_the_sip_port(net: Lab, work: Path, host: str, server: object) -> None:
    gateway = Gateway(net.gw, work, ARGS, config=CONFIG)
    client = net.v6 if host == "v6" else net.v4
    mine = V6_HOST if host == "v6" else V4_HOST
    out = client.run("turnutils_stunclient", "-p", "5060", str(server), check=False)
    text = out.stdout + out.stderr
    assert f"UDP reflexive addr: {mine}:" in text, text + report(gateway)
    assert "dropped malformed message" not in gateway.text()  # not taken for bad SIP
