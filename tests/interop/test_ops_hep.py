"""HEPv3 capture of real SIP traffic (SIPp through ``rtc64 serve``), to a collector over
IPv6 or IPv4, checked against what tshark decodes on the wire.

Topology (tests/interop/lab.py): SIPp UAC on the IPv6-only host calls a SIPp UAS on the
IPv4-only host through the gateway, so every call has an IPv6 leg and an IPv4 leg. The
gateway copies each SIP message to a collector on its own loopback (a UDP sink, so no
ICMP error interferes). tcpdump in the gateway's namespace captures the SIP on the wire
and the HEP packets; tshark decodes both. Each SIP datagram on the wire must have a HEP
twin with the same family, addresses, ports, Call-ID and CSeq (read from the HEP chunks
by a reader written from Homer's HEP3 specification), and sngrep, an independent HEP
decoder (``-E``), must turn the capture back into the same IPv4 SIP datagrams (its pcap
writer cannot write IPv6 headers, so only the IPv4 leg is compared through it). Debian's
Kamailio with its ``sipcapture`` module is a second independent HEPv3 decoder (a Homer
capture node): run as the collector, it logs each decoded message's transport, source
address and port, Call-ID and CSeq, for both families.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab, stop
from tests.interop.peers import Gateway, Sipp, report, wait_port
from tests.interop.sniff import Sniffer

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "tcpdump", "tshark", "sngrep", "kamailio")
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
# A Homer-style capture node: sipcapture decodes HEP (db_text only satisfies its DB
# binding; nothing is stored) and routes each message, whose source is the HEP one.
KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:[::1]:9061
mpath="{modules}/"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_text.so"
loadmodule "sipcapture.so"
modparam("sipcapture", "db_url", "text://{db}")
modparam("sipcapture", "hep_capture_on", 1)
modparam("sipcapture", "capture_on", 0)
request_route {{
    xlog("L_NOTICE", "HEP-DECODED|$proto|$si|$sp|$ci|$cs $rm|\n");
    drop;
}}
onreply_route {{
    xlog("L_NOTICE", "HEP-DECODED|$proto|$si|$sp|$ci|$cs $rm|\n");
    drop;
}}
"""

GW6 = f"[{V6_GW}]:5060"
LISTEN = ["--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060"]
TRUSTED = ["--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24"]
SINK = "import socket,sys\ns=socket.socket({family},socket.SOCK_DGRAM)\ns.bind(({host!r},9060))\nprint('ready',flush=True)\nwhile True: s.recv(70000)\n"  # noqa: E501

NO_SHEDDING = "[sip]\noverload_lag = 0\n"  # shared cores: no 503 for the test call
Row = tuple[str, str, int, str, int, str, str]  # family, src, sport, dst, dport, Call-ID, CSeq


def _wait_text(path: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not in {path}")
        time.sleep(0.05)


def _tshark(pcap: Path, display: str, *fields: str) -> list[list[str]]:
    argv = ["tshark", "-r", str(pcap), "-Y", display, "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def _wire(pcap: Path, ports: set[int] | None = None) -> set[Row]:
    """The SIP datagrams tshark decodes on the gateway's links (to or from ``ports``)."""
    shown = ",".join(str(p) for p in sorted(ports or {5060}))
    rows = _tshark(
        pcap, f"sip && udp.port in {{{shown}}}",
        "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst", "udp.dstport",
        "sip.Call-ID", "sip.CSeq",
    )  # fmt: skip
    found: set[Row] = set()
    for ip4s, ip6s, sport, ip4d, ip6d, dport, call_id, cseq in rows:
        family = "4" if ip4s else "6"
        src, dst = (ip4s, ip4d) if ip4s else (ip6s, ip6d)
        found.add((family, str(ip_address(src)), int(sport), str(ip_address(dst)), int(dport),
                   call_id, cseq))  # fmt: skip
    return found


def _own_lines(log: str) -> str:
    """The supervisor's lines naming each SIP worker's own ports."""
    return "\n".join(line for line in log.splitlines() if ": own ports " in line)


def _chunks(packet: bytes) -> dict[int, bytes]:
    """HEP3 chunks by type (vendor 0), from the specification."""
    assert packet[:4] == b"HEP3", packet[:16]
    total = struct.unpack_from("!H", packet, 4)[0]
    assert total == len(packet)
    chunks, offset = {}, 6
    while offset < total:
        vendor, kind, length = struct.unpack_from("!HHH", packet, offset)
        assert vendor == 0 and length >= 6, (vendor, kind, length)
        chunks[kind] = packet[offset + 6 : offset + length]
        offset += length
    return chunks


def _header(payload: bytes, name: bytes) -> str:
    match = re.search(rb"^" + name + rb":\s*(.*?)\r$", payload, re.M | re.I)
    assert match is not None, payload[:300]
    return match.group(1).decode().strip()


def _hep(pcap: Path, capture_id: int) -> set[Row]:
    """What the HEP packets sent to the collector say, decoded from their chunks."""
    found: set[Row] = set()
    for (hexed,) in _tshark(pcap, "udp.dstport == 9060", "udp.payload"):
        c = _chunks(bytes.fromhex(hexed.replace(":", "")))
        assert c[11] == b"\x01" and c[2] == b"\x11"  # SIP over UDP
        assert struct.unpack("!I", c[12])[0] == capture_id
        if c[1] == b"\x02":
            assert 5 not in c and 6 not in c
            src, dst, family = IPv4Address(c[3]), IPv4Address(c[4]), "4"
        else:
            assert c[1] == b"\x0a" and 3 not in c and 4 not in c
            src, dst, family = IPv6Address(c[5]), IPv6Address(c[6]), "6"
        sport, dport = struct.unpack("!H", c[7])[0], struct.unpack("!H", c[8])[0]
        payload = c[15]
        found.add((family, str(src), sport, str(dst), dport,
                   _header(payload, b"Call-ID"), _header(payload, b"CSeq")))  # fmt: skip
    return found


def _sngrep(pcap: Path, work: Path) -> set[tuple[str, int, str, int, str]]:
    """sngrep's own HEP decoding (``-E``) of a loopback capture, back to SIP datagrams."""
    out = work / "sngrep.pcap"
    subprocess.run(
        ["sngrep", "-N", "-q", "-E", "-I", str(pcap), "-O", str(out)],
        check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    rows = _tshark(out, "sip", "ip.src", "udp.srcport", "ip.dst", "udp.dstport", "sip.Call-ID")
    # Not IPv6 (written as 0.0.0.0), not the gateway's probes to itself (they go on after
    # the other capture stopped).
    return {(s, int(sp), d, int(dp), cid) for s, sp, d, dp, cid in rows if s not in ("0.0.0.0", d)}


@pytest.mark.parametrize("collector", ["udp:[::1]:9060", "udp:127.0.0.1:9060"])
def test_hep_copies_every_sip_datagram_with_its_family_addresses_and_ports(
    net: Lab, work: Path, collector: str
) -> None:
    host = "::1" if "[" in collector else "127.0.0.1"
    family = "socket.AF_INET6" if "[" in collector else "socket.AF_INET"
    sink = net.gw.popen(
        [sys.executable, "-c", SINK.format(family=family, host=host)], log=work / "sink.log"
    )
    wait_port(net.gw, "udp", 9060)
    sniff = Sniffer(net.gw, work, "gw", "udp")  # SIP workers' own ports too
    loopback = work / "lo.pcap"  # sngrep reads Ethernet-framed captures, not -i any's
    lo = net.gw.popen(
        ["tcpdump", "-i", "lo", "-n", "-U", "-Z", "root", "-w", str(loopback), "udp port 9060"],
        log=work / "lo.log",
    )
    _wait_text(work / "lo.log", "listening on")
    gw = Gateway(net.gw, work, [*LISTEN, *TRUSTED, "--hep-collector", collector,
                                "--hep-capture-id", "4242"], config=NO_SHEDDING)  # fmt: skip
    (work / "uas").mkdir()
    (work / "uac").mkdir()
    callee = Sipp(net.v4, work / "uas", "uas", "uas.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v4, "udp", 5060)
    caller = Sipp(
        net.v6, work / "uac", "uac", "uac.xml", local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "callee"],
    )  # fmt: skip
    assert caller.wait() == 0, report(gw, caller, callee)
    assert callee.wait() == 0, report(gw, caller, callee)
    sniff.stop()
    stop(lo)
    assert sink.poll() is None, (work / "sink.log").read_text()
    assert "HEP capture to" in gw.text() and "failing" not in gw.text(), gw.text()[-4000:]

    # 5060 and, with SIP workers (the default), each worker's own ports
    ports = {5060} | {int(p) for p in re.findall(r"udp:[^ ,]*:(\d+)", _own_lines(gw.text()))}
    wire, hep = _wire(sniff.path, ports), _hep(sniff.path, 4242)
    assert {r[0] for r in wire} == {"4", "6"}, wire
    # Every SIP datagram on the wire (both legs, both directions) has its HEP twin.
    assert wire <= hep, sorted(wire - hep)
    assert hep <= wire, sorted(hep - wire)
    # (the gateway's own load probes through each listener are on the wire and in HEP too)
    v6_leg = {(r[1], r[3]) for r in hep if r[0] == "6" and r[1] != r[3]}
    assert v6_leg == {(str(V6_HOST), str(V6_GW)), (str(V6_GW), str(V6_HOST))}, v6_leg

    # sngrep decodes the same IPv4 datagrams from the HEP packets on its own.
    ipv4 = {(r[1], r[2], r[3], r[4], r[5]) for r in wire if r[0] == "4" and r[1] != r[3]}
    assert ipv4
    assert _sngrep(loopback, work) == ipv4


def test_kamailio_sipcapture_decodes_the_hep_of_both_families(net: Lab, work: Path) -> None:
    """Kamailio's sipcapture (Debian) as the collector: every SIP datagram on the wire is
    decoded from its HEP packet with the same transport, source, Call-ID and CSeq."""
    (work / "db").mkdir()
    cfg = work / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(modules=KAMAILIO_MODULES, db=work / "db"))
    kam_log = work / "kamailio.log"
    kam = net.gw.popen(["kamailio", "-DD", "-E", "-f", str(cfg)], log=kam_log)
    wait_port(net.gw, "udp", 9061)
    sniff = Sniffer(net.gw, work, "gw", "udp port 5060")
    gw = Gateway(net.gw, work, [*LISTEN, *TRUSTED, "--hep-collector", "udp:[::1]:9061"],
                 config=NO_SHEDDING)  # fmt: skip
    (work / "uas").mkdir()
    (work / "uac").mkdir()
    callee = Sipp(net.v4, work / "uas", "uas", "uas.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v4, "udp", 5060)
    caller = Sipp(
        net.v6, work / "uac", "uac", "uac.xml", local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "callee"],
    )  # fmt: skip
    assert caller.wait() == 0, report(gw, caller, callee)
    assert callee.wait() == 0, report(gw, caller, callee)
    sniff.stop()
    time.sleep(0.5)  # the last HEP packets reach the collector
    log = gw.text()  # (after the collector stops, the gateway's self-probes fail to reach it)
    assert "HEP capture to" in log and "failing" not in log, log[-4000:]
    stop(kam)
    decoded: set[tuple[str, int, str, str]] = set()
    for line in kam_log.read_text(errors="replace").splitlines():
        if "HEP-DECODED|" in line:
            proto, src, sport, call_id, cseq = line.split("HEP-DECODED|", 1)[1].split("|")[:5]
            assert proto == "udp", line
            decoded.add((str(ip_address(src)), int(sport), call_id, " ".join(cseq.split()[:2])))
    wire = {(r[1], r[2], r[5], r[6]) for r in _wire(sniff.path) if r[1] != r[3]}
    assert {ip_address(r[0]).version for r in wire} == {4, 6}, wire
    assert wire <= decoded, (sorted(wire - decoded), kam_log.read_text()[-3000:])
