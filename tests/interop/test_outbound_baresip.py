"""baresip 1.0 as an RFC 5626 UA (Debian's build has it: the account parameter
``sipnat=outbound`` adds +sip.instance and reg-id, ``Supported: outbound`` and flow
keep-alives): it registers over TCP from the IPv6-only host, gets Require: outbound and
a Flow-Timer, and a call to its AOR from the IPv4-only host reaches it over that flow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Baresip, Gateway, Sipp, report

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "baresip")

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
ACCOUNT = (
    f'<sip:erin@example.net;transport=tcp>;outbound="sip:[{V6_GW}]:5060;transport=tcp"'
    ";sipnat=outbound;regint=600;answermode=auto"
)


def test_baresip_outbound_registers_and_is_called_over_its_flow(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    phone = Baresip(net.v6, work / "erin", address=str(V6_HOST), account=ACCOUNT)
    assert phone.wait_registered(), phone.text() + gw.text()[-4000:]
    trace = phone.text()
    register = trace[trace.index("REGISTER sip:") :]
    assert re.search(r"reg-id=1", register) and "+sip.instance=" in register, register[:2000]
    ok = trace[trace.index("SIP/2.0 200 OK") :]
    assert "Require: outbound" in ok and "Flow-Timer: 120" in ok, ok[:2000]
    d = work / "caller"
    d.mkdir()
    uac = Sipp(
        net.v4, d, "caller", "uac.xml", local=str(V4_HOST), port=5090, remote=f"{V4_GW}:5060",
        keys={"target": "example.net"}, extra=["-s", "erin"],
    )  # fmt: skip
    assert uac.wait() == 0, report(gw, uac) + phone.text()[-4000:]
    assert phone.wait_for("Call established"), phone.text()[-4000:]
    phone.stop()
