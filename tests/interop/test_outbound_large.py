"""RFC 3261 §18.1.1 with real SIPp peers: a 3000-byte INVITE from the IPv6-only host over
UDP (the kernel fragments it on the wire) is forwarded over TCP to the IPv4-only callee
that listens on TCP; to a callee that has no TCP the connection is refused and the
gateway sends it over UDP after all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, report, sipp_received, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

GW6 = f"[{V6_GW}]:5060"
ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060",
    "--sip-listen", f"udp:{V4_GW}:5060",
    "--sip-listen", f"tcp:[{V6_GW}]:5060",
    "--sip-listen", f"tcp:{V4_GW}:5060",
    "--trusted-network", "fd00:64:6::/64",
    "--trusted-network", "10.64.4.0/24",
]  # fmt: skip
# The lab shares two cores with other work: overload shedding (503 Retry-After: 5 when the
# event loop lags) would turn a slow moment into a failed REGISTER or call here.
CONFIG = "[sip]\noverload_lag = 0\n"


def _call(net: Lab, work: Path, uas_transport: str) -> tuple[Gateway, Sipp, Sipp]:
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    uas_dir, uac_dir = work / "uas", work / "uac"
    uas_dir.mkdir()
    uac_dir.mkdir()
    uas = Sipp(
        net.v4, uas_dir, "uas", "uas.xml", local=str(V4_HOST), port=5060, transport=uas_transport
    )
    wait_port(net.v4, "tcp" if uas_transport == "t1" else "udp", 5060)
    uac = Sipp(
        net.v6, uac_dir, "uac", "uac_large.xml", local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert uac.wait() == 0, report(gw, uac, uas)
    assert uas.wait() == 0, report(gw, uac, uas)
    return gw, uac, uas


def test_large_invite_over_udp_goes_on_over_tcp(net: Lab, work: Path) -> None:
    gw, _uac, uas = _call(net, work, "t1")
    (invite,) = sipp_received(uas.workdir, "INVITE ")
    assert len(invite.encode()) > 3000, invite
    top_via = next(line for line in invite.splitlines() if line.startswith("Via:"))
    # (the port: 5060, or with SIP workers, the default, the worker's own port)
    assert top_via.startswith(f"Via: SIP/2.0/TCP {V4_GW}:"), report(gw, uas)
    assert "over TCP (RFC 3261 §18.1.1)" in gw.text()


def test_large_invite_falls_back_to_udp_without_tcp(net: Lab, work: Path) -> None:
    gw, _uac, uas = _call(net, work, "u1")
    (invite,) = sipp_received(uas.workdir, "INVITE ")
    top_via = next(line for line in invite.splitlines() if line.startswith("Via:"))
    assert top_via.startswith(f"Via: SIP/2.0/UDP {V4_GW}:"), report(gw, uas)
    assert "request sent over UDP" in gw.text(), report(gw)
