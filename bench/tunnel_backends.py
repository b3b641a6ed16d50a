"""``python -m bench tunnel``: the tunnel server's two IPv6 sides, TUN device and routed
prefix (sink link + packet tap + raw socket), in the lab namespaces of
``tests/interop/test_tunnel_lab.py`` (root).

The IPv6-only peer floods Echo Requests (``ping -f``, 160-byte payload) to the tunnel
client through the server: each is one downstream and one upstream packet. Measured on
the server process: CPU seconds (utime+stime from /proc) per forwarded packet, and system
calls per packet (``strace -c`` in a second, shorter flood: strace slows the process).
Prints one line per run and the load average next to it (timed figures are distorted by
other load; the system call count is not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.interop.lab import Host
from tests.interop.test_tunnel_lab import (
    PREFIX,
    SERVER_V4,
    Tunnel,
    _address,
    _ping,
    _wait,
    build_hosts,
    connect_client,
    remove_hosts,
)

from bench.procstat import cpu_seconds


def _forwarded(t: Tunnel) -> int:
    stats = json.loads(t.server_stats.read_text())
    return int(stats["up_packets"]) + int(stats["down_packets"])


def _flood(t: Tunnel, count: int) -> int:
    """Packets the server forwarded during a flood of ``count`` echoes (its counters are
    written every second)."""
    time.sleep(1.2)
    before = _forwarded(t)
    t.peer.run("ping", "-6", "-q", "-f", "-c", str(count), "-s", "160", str(_address(t)))
    time.sleep(1.2)
    return _forwarded(t) - before


def _syscalls(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.rstrip().endswith("total"):
            return int(line.split()[3])
    return 0


def run(backend: str, count: int, work: Path) -> dict[str, object]:
    """One server with ``backend`` in fresh namespaces; its per-packet costs."""
    work.mkdir(parents=True, exist_ok=True)
    hosts: list[Host] = []
    try:
        build_hosts("t16b", hosts)
        t = Tunnel(*hosts, work, work / "server.json", work / "client.json")
        argv = [sys.executable, "-m", "rtc64.cli", "tunnel", "serve", "--backend", backend]
        argv += ["--listen", f"udp:{SERVER_V4}:3653", "--prefix", str(PREFIX)]
        argv += ["--stats", str(t.server_stats), "--rate", "1e9", "--burst", "1e9"]
        server = t.server.popen(argv, log=work / "server.log")
        _wait(t.server_stats.exists, "server stats", work / "server.log")
        connect_client(t)
        _wait(lambda: _ping(t), "first ping", work / "client.log")
        before = cpu_seconds([server.pid])
        packets = _flood(t, count)
        cpu = cpu_seconds([server.pid]) - before
        trace = work / "strace.txt"
        strace = subprocess.Popen(["strace", "-c", "-f", "-p", str(server.pid), "-o", str(trace)])
        time.sleep(0.5)
        traced = _flood(t, max(500, count // 5))
        strace.terminate()
        strace.wait()
        return {
            "backend": backend,
            "packets": packets,
            "cpu_us_per_packet": round(cpu / packets * 1e6, 1),
            "syscalls_per_packet": round(_syscalls(trace) / traced, 2),
            "load": round(os.getloadavg()[0], 1),
        }
    finally:
        remove_hosts(hosts)


def main(quick: bool = False, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tunnel")
    parser.add_argument("--count", type=int, default=2000 if quick else 10000)
    parser.add_argument("--runs", type=int, default=1 if quick else 2)
    args = parser.parse_args(argv or [])
    if os.geteuid() != 0 or shutil.which("strace") is None:
        print("tunnel: skipped (needs root and strace)")
        return 0
    with tempfile.TemporaryDirectory(prefix="rtc64-bench-tunnel-") as tmp:
        for n in range(args.runs):
            for backend in ("tun", "routed"):
                print(json.dumps(run(backend, args.count, Path(tmp) / f"{backend}{n}")))
    return 0


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
