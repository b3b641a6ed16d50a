# Per-packet cost of a TURN UDP listener's client -> peer ChannelData path, receive
# included, native reader (io/turn_native.c, recvmmsg) against the pure path (uvloop's
# datagram transport, RTC64_NO_NATIVE=1): a relay with one channel on uvloop; a client
# socket sends BATCH datagrams to the listener, then the loop runs until the relay counted
# them, N packets in all. Load-independent figures:
# - user-space instructions per packet under callgrind ((I(2N) - I(N)) / N), minus the
#   same harness with nobody reading (the client's own sends and the waiting loop);
# - system calls per packet by name (strace -c -f), the client's sendto(2) subtracted.
# BATCH is the datagrams per loop wake-up (the bench's 25,000 pps gave ~4-5).
"""python -m bench.turn_native_icount [--icount N] [--batch B] | [--bare N --path P]"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from ipaddress import ip_address

import uvloop

from bench import icount as icount_tools
from rtc64.io.turn_fastpath import source_address
from rtc64.io.turn_listeners import ClientSink, TurnListeners
from rtc64.io.turn_relay import TurnRelays
from rtc64.net.address import Family
from rtc64.net.endpoint import Transport, parse_listen
from rtc64.relay.ports import PortPool
from rtc64.turn.events import Bind, ClientFlow, Permit
from rtc64.turn.protocols import UDP

PAYLOAD = b"x" * 172  # as `python -m bench turn`
CHANNEL = 0x4001
PATHS = ("native", "pure", "send")


class _Sink:
    def from_client(self, *args: object) -> None:
        pass

    def connection_closed(self, *args: object) -> None:
        pass


async def _run(n: int, path: str, batch: int) -> None:
    v4 = ip_address("127.0.0.1")
    sink: ClientSink = _Sink()
    listeners = TurnListeners([parse_listen("udp:127.0.0.1:0")], sink, native=path == "native")
    await listeners.start()
    local = next(iter(listeners.udp))
    udp = listeners.udp[local]
    low = 47000 + os.getpid() % 200 * 40
    relays = TurnRelays([PortPool([v4], low, low + 40)], [v4], listeners)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows
    caddr, paddr = client.getsockname(), peer.getsockname()
    remote = source_address(caddr)
    udp._sources[caddr] = remote  # as its first request would have left it
    udp._raw[remote] = caddr
    flow = ClientFlow(Transport.UDP, remote, local, 0)
    relays.serving = flow
    relay = relays.reserve(Family.INET, UDP, even=False, reserve_next=False)
    relays.serving = None
    await asyncio.sleep(0.05)  # the relay's loop transport starts
    relays.permit(Permit(relay, v4, 1e9))
    relays.bind(Bind(relay, flow, CHANNEL, (v4, paddr[1])))
    data = CHANNEL.to_bytes(2, "big") + len(PAYLOAD).to_bytes(2, "big") + PAYLOAD
    relay_socket = relays.udp[relay]
    if path == "send":  # nobody reads: the client's sends and the loop turns only
        listeners.udp.clear()
        udp.close()
        client.connect(("127.0.0.1", peer.getsockname()[1]))
    else:
        client.connect(("127.0.0.1", local[1]))
    send = client.send
    target = 0
    for _ in range(n // batch):
        for _ in range(batch):
            send(data)
        target += batch
        if path == "send":
            await asyncio.sleep(0)
            continue
        while relay_socket.to_peer_packets < target:
            await asyncio.sleep(0)
    relays.stop()
    await listeners.stop()
    client.close()
    peer.close()


def _syscalls(args: list[str], env: dict[str, str]) -> dict[str, int]:
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        subprocess.run(
            ["strace", "-f", "-c", "-o", out.name, sys.executable, "-m", "bench.turn_native_icount",
             *args],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        text = open(out.name).read()  # noqa: SIM115
    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = int(m.group(1))
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.turn_native_icount", description=__doc__)
    ap.add_argument("--icount", type=int, default=20000, metavar="N")
    ap.add_argument("--batch", type=int, default=4, help="datagrams per loop wake-up")
    ap.add_argument("--bare", type=int, metavar="N", help="run N packets (under a tool)")
    ap.add_argument("--path", choices=PATHS, default="native")
    args = ap.parse_args(argv)
    if args.bare is not None:
        uvloop.run(_run(args.bare, args.path, args.batch))
        return 0
    for tool in ("valgrind", "strace"):
        if shutil.which(tool) is None:
            print(f"{tool} not installed", file=sys.stderr)
            return 1
    n, b = args.icount, str(args.batch)
    envs = {
        "native": {**os.environ, "RTC64_NO_NATIVE": "0"},
        "pure": {**os.environ, "RTC64_NO_NATIVE": "1"},
        "send": dict(os.environ),
    }
    ir: dict[str, float] = {}
    calls: dict[str, dict[str, float]] = {}
    for path in PATHS:
        bare = ["--bare", str(n), "--path", path, "--batch", b]
        counts = [
            icount_tools.callgrind_ir(
                ["--bare", str(k), "--path", path, "--batch", b],
                envs[path],
                "bench.turn_native_icount",
            )
            for k in (n, 2 * n)
        ]
        ir[path] = (counts[1] - counts[0]) / n
        one, two = (
            _syscalls(bare, envs[path]),
            _syscalls(["--bare", str(2 * n), *bare[2:]], envs[path]),
        )
        calls[path] = {k: (two.get(k, 0) - one.get(k, 0)) / n for k in set(one) | set(two)}
    print(f"batch {args.batch} datagrams per wake-up, N = {n}")
    print("| path | user-space instructions per packet | system calls per packet |")
    print("|---|---:|---|")
    for path in ("native", "pure"):
        per = {
            k: v - calls["send"].get(k, 0.0)
            for k, v in calls[path].items()
            if abs(v - calls["send"].get(k, 0.0)) >= 0.01
        }
        text = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
        total = sum(per.values())
        print(f"| {path} | {ir[path] - ir['send']:,.0f} | {total:.2f}: {text} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
