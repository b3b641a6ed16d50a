"""Record-Route tokens are no relay ticket: real SIPp peers, neither in a trusted network.

Topology (tests/interop/lab.py): v6 host fd00:64:6::2 — gateway (fd00:64:6::1,
10.64.4.1) — v4 host 10.64.4.2. alice on the IPv6-only host authenticates her INVITE to
the IPv4-only callee. The callee (uas_dialog_abuse.xml) then reuses the Route set and token
it received: a MESSAGE to a third host and an INFO with an extra Route are refused (403),
its own INFO, re-INVITE and BYE toward the caller pass, and after the BYE the same token
gets 403. The caller's re-INVITE, INFO (same call) and BYE (a second call) pass too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.lab import V4_HOST, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, report, wait_port
from tests.interop.test_sip_gateway import GW6, LISTEN, USERS

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

CALLEE = f"{V4_HOST}:5060"
THIRD = "10.64.4.99:5060"  # no party of the call (inside the lab's own subnet)
AUTH = ["-s", "bob", "-au", "alice", "-ap", "al1ce-secret", "-auth_uri", f"bob@{CALLEE}"]


def _pair(net: Lab, work: Path, gw: Gateway, name: str, uac_sf: str, uas_sf: str) -> None:
    uas_dir, uac_dir = work / f"uas-{name}", work / f"uac-{name}"
    uas_dir.mkdir()
    uac_dir.mkdir()
    uas = Sipp(net.v4, uas_dir, "uas", uas_sf, local=str(V4_HOST), port=5060, keys={"third": THIRD})
    wait_port(net.v4, "udp", 5060)
    uac = Sipp(
        net.v6, uac_dir, "uac", uac_sf, local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": CALLEE}, extra=AUTH,
    )  # fmt: skip
    assert uas.wait() == 0, report(gw, uac, uas)
    assert uac.wait() == 0, report(gw, uac, uas)


def test_callee_cannot_reuse_the_token_and_the_dialog_still_works(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, LISTEN, config=USERS)
    _pair(net, work, gw, "abuse", "uac_dialog.xml", "uas_dialog_abuse.xml")
    log = gw.text()
    assert "refused: Forbidden: Request-URI is not a remote target" in log, log[-4000:]
    assert "refused: Forbidden: Route outside the dialog's route set" in log
    assert "refused: Forbidden: no such dialog here" in log
    # The caller ends the next call: BYE from the (untrusted) caller passes.
    _pair(net, work, gw, "caller-bye", "uac_auth.xml", "uas.xml")
