"""The whole gateway seen from outside when two SIP workers run (issue 12): HEP capture
from every worker reaching one collector, /metrics summed over the workers, /api/calls
and ``rtc64 ctl calls`` listing the calls of both workers.

Two calls with media (IPv6 host → IPv4 host), each sent to one worker's private port, so
each worker handles one call with its own relay; the console is worker 0's.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path

import pytest

from tests.interop.lab import V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, media_dirs, report, wait_port
from tests.interop.test_workers_sipp import _own_ports
from tests.interop.webclient import TOKEN, Web, metric_samples, web_config

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "curl", "tcpdump")
ROOT = Path(__file__).resolve().parents[2]

WEB = f"[{V6_GW}]:8064"
ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", "udp:10.64.4.1:5060",
    "--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
    "--domain", "example.net", "--media-ports", "30000-30400", "--sip-workers", "2",
    "--hep-collector", "udp:[::1]:9060", "--hep-capture-id", "77",
]  # fmt: skip
SINK = (
    "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
    "s.bind(('::1',9060))\nout=open({path!r},'a',buffering=1)\nprint('ready',flush=True)\n"
    "while True: out.write(s.recv(70000).hex()+'\\n')\n"
)
CONFIG = "[sip]\noverload_lag = 0\n" + web_config(WEB)
CALL_MS = 10000


def _chunks(packet: bytes) -> dict[int, bytes]:
    """HEP3 chunks by type (vendor 0), read from the specification."""
    assert packet[:4] == b"HEP3"
    chunks, offset = {}, 6
    while offset < len(packet):
        _, kind, length = struct.unpack_from("!HHH", packet, offset)
        chunks[kind] = packet[offset + 6 : offset + length]
        offset += length
    return chunks


def _call(net: Lab, work: Path, name: str, remote: str, port: int) -> tuple[Sipp, Sipp]:
    uas_dir, uac_dir = media_dirs(work, name)
    callee = Sipp(net.v4, uas_dir, f"{name}-uas", "uas_media.xml", local=str(V4_HOST),
                  port=port, extra=["-mp", str(6000 + 100 * (port - 5060))])  # fmt: skip
    wait_port(net.v4, "udp", port)
    caller = Sipp(
        net.v6, uac_dir, f"{name}-uac", "web_uac_call.xml", local=str(V6_HOST),
        port=port + 10, remote=remote, keys={"target": f"{V4_HOST}:{port}"},
        extra=["-s", "callee", "-d", str(CALL_MS), "-mp", str(6400 + 100 * (port - 5060))],
    )  # fmt: skip
    return caller, callee


def test_hep_metrics_and_calls_cover_every_worker(net: Lab, work: Path) -> None:
    hep = work / "hep.hex"
    net.gw.popen([sys.executable, "-c", SINK.format(path=str(hep))], log=work / "sink.log")
    wait_port(net.gw, "udp", 9060)
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    web = Web(net.v6, f"http://{WEB}", work)
    web.wait_up()
    own = _own_ports(gw)
    peers = [_call(net, work, f"w{k}", own[k][6], 5060 + k) for k in (0, 1)]
    try:
        body = web.wait_for(
            "/api/calls",
            lambda b: (
                len(b["calls"]) == 2 and all(c["answered"] and c["packets"] > 0 for c in b["calls"])
            ),
        )
        ports = sorted(
            s["relay_port"] for c in body["calls"] for leg in c["legs"] for s in leg["streams"]
        )
        # each worker relays its call from its own slice of media.ports
        slices = [
            tuple(map(int, m))
            for m in re.findall(
                r"SIP worker \d+: own ports .*?, media ports (\d+)-(\d+)", gw.text()
            )
        ]
        assert len(slices) == 2, gw.text()
        for low, high in slices:
            assert any(low <= p <= high for p in ports), (slices, ports)
        out = net.gw.run(
            "env", f"RTC64_TOKEN={TOKEN}", sys.executable, "-m", "rtc64.cli", "ctl", "calls",
            "--url", f"http://{WEB}", "--json", check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)["calls"]) == 2, out.stdout
        overview = web.json("/api/overview")
        assert overview["calls"]["by_families"] == {"IPv6→IPv4": 2}, overview
    finally:
        for p in peers:
            for sipp in p:
                sipp.wait()
    assert all(p[0].proc.returncode == 0 for p in peers), report(gw, *peers[0], *peers[1])
    web.wait_for("/api/calls", lambda b: b["calls"] == [])
    status, text = web.request("/metrics")
    assert status == 200, text
    m = metric_samples(text)

    def value(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    # one INVITE reached each worker: the scrape of worker 0's console counts both
    assert value("rtc64_sip_requests_total", method="INVITE", transport="udp", family="IPv6") == 2
    assert value("rtc64_processes_reporting") == 3  # worker 0, worker 1, TURN
    assert value("rtc64_relay_packets_total", family="IPv4") > 0
    # the transports' counters of both workers, summed: each call is INVITE, ACK and BYE
    # from the caller and 180, 200, 200 from the callee at least
    assert value("rtc64_sip_transport_received_total") >= 12, text
    assert value("rtc64_sip_transport_sent_total") >= 12, text
    assert ("rtc64_sip_worker_messages_total", (("kind", "refused"),)) in m, text
    assert value("rtc64_sip_worker_messages_total", kind="dropped") == 0, text
    # HEP: the INVITE to each worker's private port was captured (by the worker it reached)
    captured = [_chunks(bytes.fromhex(line)) for line in hep.read_text().split()]
    invites = {
        struct.unpack("!H", c[8])[0]
        for c in captured
        if c[15].startswith(b"INVITE ") and c[1] == b"\x0a" and c[6] == V6_GW.packed
    }
    wanted = {int(own[k][6].rpartition(":")[2]) for k in (0, 1)}
    assert wanted <= invites, (wanted, invites)
    assert all(struct.unpack("!I", c[12])[0] == 77 for c in captured)
    assert "Traceback" not in gw.text(), gw.text()[-6000:]
    gw.stop()
