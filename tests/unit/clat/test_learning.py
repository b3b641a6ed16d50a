"""What ``rtc64 probe`` learns from a running ``rtc64 clat``."""

from __future__ import annotations

import json
import logging
import os
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from rtc64.clat.learning import RECHECK, ClatWatch
from rtc64.clat.service import clat_addresses, idle_links, running_clats
from rtc64.probe import netcheck
from rtc64.probe.verdict import Status

LINK = {
    "interface": "eth0",
    "state": "running",
    "ipv4": "192.0.0.1",
    "clat_ipv6": "2001:db8:1::77",
    "policy": "dedicated",
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
    assert "(prefix from pref64, dedicated address, tayga)" in check.message
    assert check.evidence["clat_daemon"] == [clat]
    plain = netcheck.NetFacts(addresses=(IPv4Address("192.0.0.1"),))
    (check,) = [c for c in netcheck.checks(plain) if c.id == "net.clat"]
    assert check.status is Status.PASS and "rtc64" not in check.message


def test_clat_addresses_are_the_ipv4_and_a_dedicated_ipv6_never_a_shared_one() -> None:
    shared = {**LINK, "interface": "wwan0", "ipv4": "192.0.0.3", "clat_ipv6": "2001:db8:9::9",
              "policy": "shared"}  # fmt: skip
    junk = {**LINK, "ipv4": "not an address", "clat_ipv6": "nor this"}
    assert clat_addresses([LINK, shared, junk]) == {
        IPv4Address("192.0.0.1"),
        IPv6Address("2001:db8:1::77"),
        IPv4Address("192.0.0.3"),  # the host's own /128 stays usable
    }


def test_the_gateway_learns_clats_that_come_and_go_after_it_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    watch = ClatWatch(tmp_path, logging.getLogger("test.clat"), clock=lambda: now[0])
    assert watch.addresses() == frozenset()
    (tmp_path / "status.json").write_text(json.dumps({"pid": os.getpid(), "links": [LINK]}))
    assert watch.addresses() == frozenset()  # looked at no sooner than RECHECK
    now[0] += RECHECK
    with caplog.at_level(logging.INFO):
        assert IPv6Address("2001:db8:1::77") in watch.addresses()
    assert "eth0: 192.0.0.1, 2001:db8:1::77 (dedicated)" in caplog.text
    # the daemon died (kill -9 leaves its status file): its addresses stop counting
    (tmp_path / "status.json").write_text(json.dumps({"pid": 999_999_999, "links": [LINK]}))
    now[0] += RECHECK
    assert watch.addresses() == frozenset()


def test_network_check_says_why_a_running_daemon_keeps_no_clat(tmp_path: Path) -> None:
    off = {"interface": "wlan0", "state": "off", "reason": "IPv4 present on the link",
           "detail": "IPv4 address 10.0.0.5/24", "dhcpv4": "IPv4 10.0.0.5 offered"}  # fmt: skip
    (tmp_path / "status.json").write_text(json.dumps({"pid": os.getpid(), "links": [off]}))
    idle = idle_links(tmp_path)
    assert idle == [{k: off[k] for k in ("interface", "state", "reason", "detail")}]
    facts = netcheck.NetFacts(extra={"clat_daemon": [], "clat_idle": idle})
    (check,) = [c for c in netcheck.checks(facts) if c.id == "net.clat"]
    assert check.status is Status.INFO
    assert check.message.endswith(
        "rtc64 clat runs but: wlan0 off: IPv4 present on the link (IPv4 address 10.0.0.5/24)"
    )
    assert check.evidence["clat_idle"] == idle
