"""``rtc64 clat`` and DHCPv4 option 108 (RFC 8925) with Kea from Debian.

    v6 host (rtc64 clat run; 10.99.0.50/24 set by hand: a legacy IPv4 config)
        == gateway (tayga PLAT; kea-dhcp4 on the same link, 10.99.0.0/24) == v4 host

- Kea with ``v6-only-preferred`` 1800: the probe's OFFER carries option 108, the CLAT runs
  although the link has IPv4, and Kea's lease file holds no lease (no REQUEST was sent);
  UDP port 68 stays free for the host's own DHCP client (the probe uses a packet socket).
- The same Kea without option 108: the host's IPv4 counts, no CLAT ("IPv4 present"), the
  status reports the IPv4 offer; still no lease taken.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.interop.clatlab import ClatLab
from tests.interop.lab import require_lab
from tests.interop.nat64lab import NAT64_PREFIX, start_kea

pytestmark = pytest.mark.timeout(120)


def leases(workdir: Path) -> list[str]:
    path = workdir / "leases.csv"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines[1:] if line.strip()]  # the first line is the header


def test_option_108_turns_the_clat_on_without_a_lease_and_its_absence_lets_ipv4_count(
    clat: ClatLab,
) -> None:
    require_lab("tayga", "unbound", "kea-dhcp4")
    lab, tag = clat.lab, clat.lab._tag
    gw_if, host_if = f"g6{tag}", f"h6{tag}"
    work = lab.workdir / "kea"
    work.mkdir()
    lab.gw.run("ip", "-4", "addr", "add", "10.99.0.1/24", "dev", gw_if)
    lab.v6.run("ip", "-4", "addr", "add", "10.99.0.50/24", "dev", host_if)
    lease_file = work / "leases.csv"
    kea = start_kea(lab.gw, work, gw_if, "10.99.0.0/24", v6only=1800, leases=lease_file,
                    name="kea-v6only")  # fmt: skip
    clat.start("--prefix", str(NAT64_PREFIX), "--no-dns64", "--interface", host_if)
    clat.wait("the CLAT up on option 108", lambda: bool(clat.running()), timeout=40)
    (link,) = clat.running()
    assert "option 108 from 10.99.0.1" in link["dhcpv4"] and "1800" in link["dhcpv4"]
    assert leases(work) == []  # an OFFER only: rtc64 never REQUESTed the address
    assert "DHCPREQUEST" not in (work / "kea-v6only.log").read_text()
    # a packet socket, not UDP port 68: the host's own DHCP client can still bind it
    assert lab.v6.run("ss", "-Hlun", "sport = :68").stdout.strip() == ""
    assert clat.proc is not None
    clat.proc.send_signal(signal.SIGTERM)
    clat.proc.wait(30)
    kea.send_signal(signal.SIGTERM)
    kea.wait(10)
    # the same server without option 108: the host's IPv4 counts again
    start_kea(lab.gw, work, gw_if, "10.99.0.0/24", v6only=None, leases=lease_file, name="kea-plain")
    clat.start("--prefix", str(NAT64_PREFIX), "--no-dns64", "--interface", host_if)

    def offered() -> bool:
        links = clat.status().get("links", [])
        return bool(links) and "without option 108" in links[0].get("dhcpv4", "")

    clat.wait("the IPv4 offer reported", offered, timeout=40)
    (entry,) = clat.status()["links"]
    assert entry["state"] == "off" and entry["reason"] == "IPv4 present on the link"
    offer = entry["dhcpv4"].split()
    assert 100 <= int(offer[1].split(".")[3]) <= 199  # an address of Kea's pool
    assert "offered by 10.99.0.1 without option 108 (not taken)" in entry["dhcpv4"]
    assert leases(work) == []
