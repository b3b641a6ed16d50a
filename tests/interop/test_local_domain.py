"""One local domain without configuration (issue 8), with SIPp in the lab.

No ``--domain``: a SIPp phone on the IPv4-only host registers as ``sip:bob@10.64.4.1``
(the gateway's IPv4 address); a SIPp phone on the IPv6-only host dials
``sip:bob@[fd00:64:6::1]`` (the same gateway's IPv6 address). Both addresses are aliases
of the gateway's one local domain, so the call reaches bob and completes. Run with
listeners on the addresses themselves and on the wildcards (the host's addresses).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, report, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

TRUST_BOTH = ["--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24"]
LISTENS = {
    "addresses": ["--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060"],
    "wildcards": ["--sip-listen", "udp:[::]:5060", "--sip-listen", "udp:0.0.0.0:5060"],
}


@pytest.mark.parametrize("listen", sorted(LISTENS))
def test_registered_on_the_ipv4_address_called_on_the_ipv6_address(
    net: Lab, work: Path, listen: str
) -> None:
    gw = Gateway(net.gw, work, [*LISTENS[listen], *TRUST_BOTH])
    assert "sip.domains = (none)" in gw.text()
    dirs = {n: work / n for n in ("reg", "uas", "uac")}
    for d in dirs.values():
        d.mkdir()
    reg = Sipp(
        net.v4, dirs["reg"], "register", "register.xml", local=str(V4_HOST), port=5060,
        remote=f"{V4_GW}:5060", keys={"domain": str(V4_GW), "expires": "300"},
        extra=["-s", "bob"],
    )  # fmt: skip
    assert reg.wait() == 0, report(gw, reg)
    uas = Sipp(net.v4, dirs["uas"], "uas", "uas.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v4, "udp", 5060)
    uac = Sipp(
        net.v6, dirs["uac"], "uac", "uac.xml", local=str(V6_HOST), port=5070,
        remote=f"[{V6_GW}]:5060", keys={"target": f"[{V6_GW}]"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert uac.wait() == 0, report(gw, uac, uas)
    assert uas.wait() == 0, report(gw, uac, uas)
    assert "Traceback" not in gw.text(), gw.text()[-6000:]


def test_options_to_the_domain_is_answered_by_the_gateway(net: Lab, work: Path) -> None:
    """An untrusted phone pings the served domain: 200 from the gateway, no challenge."""
    gw = Gateway(net.gw, work, [*LISTENS["addresses"], "--domain", "example.net"])
    ping = Sipp(
        net.v6, work, "options", "options.xml", local=str(V6_HOST), port=5070,
        remote=f"[{V6_GW}]:5060", keys={"domain": "example.net"},
    )  # fmt: skip
    assert ping.wait() == 0, report(gw, ping)
    assert "Allow:" in ping.messages() and "Supported:" in ping.messages(), report(gw, ping)
