"""What ``rtc64 probe`` learns from a running ``rtc64 clat``."""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address
from pathlib import Path

from rtc64.clat.service import running_clats
from rtc64.probe import netcheck
from rtc64.probe.verdict import Status

LINK = {
    "interface": "eth0",
    "state": "running",
    "ipv4": "192.0.0.1",
    "clat_ipv6": "2001:db8:1::77",
    "prefix": "64:ff9b::/96",
    "prefix_source": "pref64",
    "engine": "tayga",
}


def test_running_clats_reads_only_a_live_daemon(tmp_path: Path) -> None:
    off = {"interface": "wlan0", "state": "off", "reason": "IPv4 present on the link"}
    status = {"pid": os.getpid(), "links": [LINK, off]}
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert running_clats(tmp_path) == [{k: v for k, v in LINK.items() if k != "state"}]
    status["pid"] = 999_999_999
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert running_clats(tmp_path) == []


def test_network_check_names_the_rtc64_clat() -> None:
    clat = {k: v for k, v in LINK.items() if k != "state"}
    facts = netcheck.NetFacts(addresses=(IPv4Address("192.0.0.1"),), extra={"clat_daemon": [clat]})
    (check,) = [c for c in netcheck.checks(facts) if c.id == "net.clat"]
    assert check.status is Status.PASS
    assert "run by rtc64 clat: 192.0.0.1 on eth0 -> 2001:db8:1::77" in check.message
    assert check.evidence["clat_daemon"] == [clat]
    plain = netcheck.NetFacts(addresses=(IPv4Address("192.0.0.1"),))
    (check,) = [c for c in netcheck.checks(plain) if c.id == "net.clat"]
    assert check.status is Status.PASS and "rtc64" not in check.message
