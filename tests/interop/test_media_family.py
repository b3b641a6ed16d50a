"""SDP of the other family than the leg it is sent to, with SIPp in the lab (issue 8).

Both SIPp instances run on one single-family host (tests/interop/lab.py), so both
signalling legs through ``rtc64 serve`` are of that family; the SDP one of them writes
names the other family (``c=IN IP4`` from the IPv6-only host, an IPv4-mapped
``::ffff:a.b.c.d``, or ``c=IN IP6`` from the IPv4-only host). With ``media.policy`` auto
the peer must get SDP naming the gateway's relay address of its own family, in the offer
(INVITE) and in the answer (200 OK). The addresses in those SDPs are documentation
addresses nobody listens on: only the SDP each SIPp received is checked.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Host, Lab
from tests.interop.peers import Gateway, Sipp, sipp_received, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

LISTEN = ["--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060"]
TRUSTED = ["--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24"]


def _connection(message: str) -> str:
    sdp = message.replace("\r\n", "\n").partition("\n\n")[2]
    found = re.search(r"^c=(IN IP[46] \S+)", sdp, re.M)
    assert found is not None, message
    return found.group(1)


def _call(
    net: Lab,
    host: Host,
    address: IPv4Address | IPv6Address,
    work: Path,
    *,
    offer: tuple[str, str],
    answer: tuple[str, str],
) -> tuple[str, str, Gateway]:
    """One call between two SIPp at ``address`` on ``host`` through the gateway; the
    ``c=`` the callee was offered and the one the caller was answered."""
    gw = Gateway(net.gw, work, [*LISTEN, *TRUSTED])
    local = str(address)
    gw_at = f"[{V6_GW}]:5060" if address.version == 6 else f"{V4_GW}:5060"
    uas_dir, uac_dir = work / "uas", work / "uac"
    uas_dir.mkdir()
    uac_dir.mkdir()
    callee = Sipp(
        host, uas_dir, "uas", "uas_sdp.xml", local=local, port=5080,
        keys={"answer_type": answer[0], "answer_addr": answer[1]},
    )  # fmt: skip
    wait_port(host, "udp", 5080)
    target = f"[{local}]:5080" if ":" in local else f"{local}:5080"
    caller = Sipp(
        host, uac_dir, "uac", "uac_sdp.xml", local=local, port=5070, remote=gw_at,
        keys={"target": target, "offer_type": offer[0], "offer_addr": offer[1]},
        extra=["-s", "callee"],
    )  # fmt: skip
    report = f"{gw.text()[-6000:]}\n{caller.messages()}\n{callee.messages()}"
    assert caller.wait() == 0, report
    assert callee.wait() == 0, report
    assert "Traceback" not in gw.text(), gw.text()[-6000:]
    (invite,) = sipp_received(uas_dir, "INVITE ")
    (ok,) = [m for m in sipp_received(uac_dir, "SIP/2.0 200") if "INVITE" in m]
    return _connection(invite), _connection(ok), gw


@pytest.mark.parametrize(
    "offer",
    [("IP4", "192.0.2.1"), ("IP6", "::ffff:192.0.2.2")],
    ids=["ipv4", "ipv4-mapped"],
)
def test_ipv4_sdp_between_two_ipv6_phones_is_relayed(
    net: Lab, work: Path, offer: tuple[str, str]
) -> None:
    """The IPv6 callee is offered the gateway's IPv6 relay address, not the IPv4 one."""
    offered, _, gw = _call(net, net.v6, V6_HOST, work, offer=offer, answer=("IP6", "2001:db8::20"))
    assert offered == f"IN IP6 {V6_GW}", gw.text()[-4000:]


def test_an_ipv4_answer_toward_an_ipv6_caller_is_relayed(net: Lab, work: Path) -> None:
    """The offer is usable as written (passes untouched); the callee answers with IPv4:
    the IPv6 caller gets the gateway's IPv6 relay address in the 200."""
    offered, answered, gw = _call(
        net, net.v6, V6_HOST, work, offer=("IP6", "2001:db8::10"), answer=("IP4", "192.0.2.9")
    )
    assert offered == "IN IP6 2001:db8::10"
    assert answered == f"IN IP6 {V6_GW}", gw.text()[-4000:]


def test_ipv6_sdp_between_two_ipv4_phones_is_relayed(net: Lab, work: Path) -> None:
    """The mirror case: the IPv4 callee is offered the gateway's IPv4 relay address."""
    offered, answered, gw = _call(
        net, net.v4, V4_HOST, work, offer=("IP6", "2001:db8::10"), answer=("IP4", "192.0.2.9")
    )
    assert offered == f"IN IP4 {V4_GW}", gw.text()[-4000:]
    # The answer came through the relay too. The caller is answered on the family its own
    # SDP named (the relay's pair facing it sends to that address, and receives on it).
    assert answered == f"IN IP6 {V6_GW}"
