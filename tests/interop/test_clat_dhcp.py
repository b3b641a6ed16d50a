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

import json
import signal
from pathlib import Path

import pytest

from tests.interop.clatlab import ClatLab
from tests.interop.lab import require_lab
from tests.interop.nat64lab import NAT64_PREFIX

pytestmark = pytest.mark.timeout(120)


def kea_config(workdir: Path, iface: str, v6only: bool) -> Path:
    subnet: dict[str, object] = {
        "id": 1,
        "subnet": "10.99.0.0/24",
        "pools": [{"pool": "10.99.0.100 - 10.99.0.199"}],
    }
    if v6only:
        subnet["option-data"] = [{"name": "v6-only-preferred", "data": "1800"}]
    conf = {
        "Dhcp4": {
            "interfaces-config": {"interfaces": [iface], "dhcp-socket-type": "raw"},
            "lease-database": {
                "type": "memfile",
                "persist": True,
                "name": str(workdir / "leases.csv"),
                "lfc-interval": 0,
            },
            "valid-lifetime": 600,
            "subnet4": [subnet],
            "loggers": [
                {"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "DEBUG",
                 "debuglevel": 40}
            ],
        }
    }  # fmt: skip
    path = workdir / f"kea-{'v6only' if v6only else 'plain'}.json"
    path.write_text(json.dumps(conf, indent=1))
    return path


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
    env = {"KEA_PIDFILE_DIR": str(work), "KEA_LOCKFILE_DIR": str(work)}
    lab.gw.run("ip", "-4", "addr", "add", "10.99.0.1/24", "dev", gw_if)
    lab.v6.run("ip", "-4", "addr", "add", "10.99.0.50/24", "dev", host_if)
    kea = lab.gw.popen(
        ["kea-dhcp4", "-c", str(kea_config(work, gw_if, v6only=True))],
        log=work / "kea-v6only.log",
        env=env,
    )
    clat.wait("Kea", lambda: "DHCP4_STARTED" in (work / "kea-v6only.log").read_text())
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
    lab.gw.popen(
        ["kea-dhcp4", "-c", str(kea_config(work, gw_if, v6only=False))],
        log=work / "kea-plain.log",
        env=env,
    )
    clat.wait("Kea again", lambda: "DHCP4_STARTED" in (work / "kea-plain.log").read_text())
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
