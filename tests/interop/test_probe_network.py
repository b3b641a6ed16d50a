"""``rtc64 probe network`` on an IPv6-only host behind tayga (NAT64) + unbound (DNS64), with a
PREF64 router advertisement (scapy; Debian's radvd has no ``nat64prefix``), Kea offering
DHCPv4 option 108 (RFC 8925), and the HTML report rendered in headless Chromium.

The probe runs (as root) in the lab's IPv6-only namespace: it must find DNS64 (RFC 7050),
PREF64 (RFC 8781), a working NAT64 (a TCP connection to the IPv4-only host's synthesised
address), no CLAT, option 108 in Kea's OFFER, and say so in the JSON; the HTML report of
the same run is loaded in Chromium and its screenshot must not be blank.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.lab import V4_HOST, require_lab
from tests.interop.nat64lab import (
    NAT64_PREFIX,
    PYTHON,
    ROOT,
    RTC64,
    V4ONLY_NAME,
    V4ONLY_SYNTH,
    Nat64Lab,
    start_kea,
    wait_for,
)
from tests.interop.peers import Kamailio, wait_port

pytestmark = pytest.mark.interop

CHROMIUM = "/usr/bin/chromium"
TCP_PORT = 8099


@pytest.fixture(scope="module")
def nat64net() -> Iterator[Nat64Lab]:
    require_lab("tayga", "unbound", "unbound-checkconf", "ss", "kea-dhcp4")
    with Nat64Lab() as lab:
        yield lab


def _probe_network(lab: Nat64Lab, html: Path) -> tuple[int, dict[str, object], str]:
    h6, g6 = f"h6{lab._tag}", f"g6{lab._tag}"
    lab.v6.run("sysctl", "-qw", f"net.ipv6.conf.{h6}.accept_ra=2")
    lab.v6.run("sysctl", "-qw", f"net.ipv6.conf.{h6}.router_solicitations=0")
    log = lab.workdir / "ra.log"
    responder = lab.gw.popen(
        [PYTHON, "-m", "tests.interop.nat64lab", "ra-responder", "--iface", g6,
         "--prefix", str(NAT64_PREFIX), "--lifetime", "600"],
        log=log,
        cwd=ROOT,
    )  # fmt: skip

    def ready() -> bool:
        if responder.poll() is not None:
            raise RuntimeError(f"RA responder exited: {log.read_text()}")
        return "ready" in log.read_text()

    wait_for("the RA responder", ready, timeout=20)
    _kea(lab, g6)
    # An IPv4-only TCP service the probe reaches through NAT64.
    lab.v4.popen([PYTHON, "-m", "http.server", "--bind", str(V4_HOST), str(TCP_PORT)],
                 log=lab.workdir / "http.log", cwd=lab.workdir)  # fmt: skip
    wait_for("the IPv4 TCP service", lambda: str(TCP_PORT) in lab.v4.run(
        "ss", "-Hltn", f"sport = :{TCP_PORT}", check=False).stdout)  # fmt: skip
    assert lab.dns is not None
    proc = lab.v6.run(
        RTC64, "probe", "network", "--json", "--dns-server", lab.dns.server,
        "--nat64-target", f"{V4_HOST}:{TCP_PORT}", "--ra-listen", "3", "--html", str(html),
        check=False,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), log.read_text()


def _kea(lab: Nat64Lab, interface: str) -> None:
    """Kea on the IPv6-only link offering an IPv4 pool with option 108 (IPv6-mostly)."""
    lab.gw.run("ip", "-4", "addr", "add", "192.168.64.1/24", "dev", interface)
    start_kea(lab.gw, lab.workdir, interface, "192.168.64.0/24", v6only=1800)


def test_network_finds_dns64_pref64_nat64_and_no_clat(nat64net: Nat64Lab) -> None:
    html = nat64net.workdir / "network.html"
    code, doc, ra_log = _probe_network(nat64net, html)
    targets = doc["targets"]
    assert isinstance(targets, list)
    got = {c["id"]: (c["status"], c["reason"]) for c in targets[0]["checks"]}
    assert got, targets[0]["error"]
    assert got["net.ipv6"] == ("pass", "net.ipv6-default-route")
    assert got["net.ipv4"] == ("info", "net.ipv4-absent")
    assert got["net.dns64"] == ("pass", "net.dns64")
    assert got["net.pref64"] == ("pass", "net.pref64"), ra_log
    assert got["net.nat64"] == ("pass", "net.nat64-ok"), targets[0]["checks"]
    assert got["net.clat"] == ("warn", "net.no-clat")
    assert got["net.option108"] == ("pass", "net.option108"), targets[0]["checks"]
    assert code == 0  # warnings only
    pref64 = next(c for c in targets[0]["checks"] if c["id"] == "net.pref64")
    assert pref64["evidence"]["prefixes"][0]["prefix"] == str(NAT64_PREFIX)
    option108 = next(c for c in targets[0]["checks"] if c["id"] == "net.option108")
    assert option108["evidence"]["offers"][0]["v6only_wait"] == 1800
    _html_renders(html)


def _png_pixels(png: bytes) -> bytes:
    """The decompressed image rows of a PNG (filter bytes included)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(data)


def _html_renders(html: Path) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} missing as root (run make test)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri())
            assert page.title() == "rtc64 probe report"
            assert "net.nat64-ok" in page.inner_text("body")
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert requests == [html.as_uri()], "the report fetched something else: not self-contained"
    pixels = _png_pixels(shot)
    assert len(set(pixels)) > 16, "blank screenshot"


def test_dns64_answers_are_not_taken_for_ipv6_and_ipv4_runs_through_nat64(
    nat64net: Nat64Lab,
) -> None:
    """On the IPv6-only host the DNS64 invents an AAAA for the IPv4-only PBX: the probe
    must call that 'no AAAA' and still reach the PBX (Kamailio) and a STUN server
    (coturn) over IPv4 through tayga."""
    require_lab("kamailio", "turnserver")
    lab = nat64net
    assert lab.dns is not None
    work = lab.workdir / "dns64case"
    work.mkdir()
    Kamailio(lab.v4, work, f"udp:{V4_HOST}:5060")
    lab.v4.popen(
        ["turnserver", "-n", f"--listening-ip={V4_HOST}", f"--relay-ip={V4_HOST}",
         "--listening-port=3478", "--no-tls", "--no-dtls", "--no-cli", "--log-file=stdout",
         "--simple-log", f"--pidfile={work / 'turn.pid'}", f"--userdb={work / 'turndb'}"],
        log=work / "turnserver.log",
    )  # fmt: skip
    wait_port(lab.v4, "udp", 3478)
    proc = lab.v6.run(
        RTC64, "probe", "--json", "--dns-server", lab.dns.server, "--transport", "udp",
        "--ra-listen", "0", "--no-dhcp", "--timeout", "2",
        f"sip:{V4ONLY_NAME}", f"stun:{V4ONLY_NAME}", check=False,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    doc = json.loads(proc.stdout)
    sip, stun = doc["targets"]
    dns6 = [c for c in sip["checks"] if c["id"] == "sip.dns.address" and c["family"] == 6]
    assert [c["reason"] for c in dns6] == ["dns.no-aaaa"], dns6
    assert dns6[0]["evidence"]["synthesised"] == [str(V4ONLY_SYNTH)]
    options = {c["family"]: c for c in sip["checks"] if c["id"] == "sip.options"}
    assert options[6]["reason"] == "dns.no-aaaa"
    assert options[4]["status"] == "pass", options[4]
    assert options[4]["evidence"]["attempts"][0]["via_nat64"] == str(V4ONLY_SYNTH)
    assert sip["matrix"]["signalling"] == {"ipv6-only": "fail", "dual-stack": "pass",
                                           "nat64": "warn"}  # fmt: skip
    binding = [c for c in stun["checks"] if c["id"] == "turn.binding" and c["status"] == "pass"]
    assert [c["family"] for c in binding] == [4], stun["checks"]
    assert "via NAT64" in binding[0]["message"]
    assert proc.returncode == 1
