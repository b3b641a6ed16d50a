"""Operator log lines of a running gateway with ``--log-format json``: registrations and
calls as structured fields, from real SIPp traffic across the families.

Topology (tests/interop/lab.py): SIPp on the IPv6-only host registers and calls a SIPp
UAS on the IPv4-only host through the gateway. Both networks are trusted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, report, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

GW6 = f"[{V6_GW}]:5060"
ARGS = [
    "--log-format", "json",
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
    "--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
]  # fmt: skip


def _events(gw: Gateway) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in gw.text().splitlines() if line.startswith("{")]
    return [line for line in lines if "event" in line]


def test_registrations_and_calls_are_json_fields(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, ARGS, config="[sip]\noverload_lag = 0\n")  # shared cores
    for name, expires in (("reg", "600"), ("unreg", "0")):
        (work / name).mkdir()
        reg = Sipp(
            net.v6, work / name, name, "register.xml", local=str(V6_HOST), port=5070,
            remote=GW6, keys={"domain": f"[{V6_GW}]", "expires": expires},
            extra=["-s", "alice"],
        )  # fmt: skip
        assert reg.wait() == 0, report(gw, reg)
    (work / "uas").mkdir()
    (work / "uac").mkdir()
    callee = Sipp(net.v4, work / "uas", "uas", "uas.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v4, "udp", 5060)
    caller = Sipp(
        net.v6, work / "uac", "uac", "uac.xml", local=str(V6_HOST), port=5072, remote=GW6,
        keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "callee"],
    )  # fmt: skip
    assert caller.wait() == 0, report(gw, caller, callee)
    assert callee.wait() == 0, report(gw, caller, callee)

    events = _events(gw)
    by = {e["event"]: e for e in events}
    reg, unreg = by["register"], by["unregister"]
    assert reg["aor"] == unreg["aor"] and "alice" in str(reg["aor"])
    assert reg["family"] == "IPv6" and reg["transport"] == "udp" and reg["expires"] == 600
    assert reg["source"] == f"{V6_HOST}:5070"
    # (SIP workers, the default, name themselves: rtc64.w<k>.proxy.registrar)
    assert re.fullmatch(r"rtc64(\.w\d+)?\.proxy\.registrar", str(reg["logger"])), reg
    assert reg["level"] == "info"
    setup, answered, ended = by["call-setup"], by["call-answered"], by["call-ended"]
    assert setup["call_id"] == answered["call_id"] == ended["call_id"]
    assert setup["caller_family"] == "IPv6" and setup["source"] == f"{V6_HOST}:5072"
    assert answered["callee_family"] == "IPv4" and answered["callee"] == f"{V4_HOST}:5060"
    assert answered["relay"] is True and answered["status"] == 200
    assert ended["reason"] == "bye-caller" and ended["status"] == 200
    assert isinstance(ended["duration"], float) and ended["duration"] >= ended["talk"]
    assert "Traceback" not in gw.text()
