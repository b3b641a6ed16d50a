# Per-packet cost of the TURN fast path (io/turn_listeners.py, io/turn_fastpath.py) in
# instructions, load-independent: a relay with one channel bound on uvloop, then N
# ChannelData datagrams handed straight to the UDP listener's ``datagram_received``
# (client -> peer, what `python -m bench turn` relays) or N peer datagrams to the relay
# socket's (peer -> client). The kernel's receive is not in it; ``sendto`` is (its user
# space part). Under callgrind: (I(2N) - I(N)) / N per direction.
"""python -m bench.turn_fastpath_icount [--icount N] | [--bare N --direction out|in]"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sys
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


class _Sink:
    def from_client(self, *args: object) -> None:
        pass

    def connection_closed(self, *args: object) -> None:
        pass


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows
    return sock


async def _run(n: int, direction: str) -> None:
    v4 = ip_address("127.0.0.1")
    sink: ClientSink = _Sink()
    listeners = TurnListeners([parse_listen("udp:127.0.0.1:0")], sink)
    await listeners.start()
    local = next(iter(listeners.udp))
    udp = listeners.udp[local]
    low = 47000 + os.getpid() % 200 * 40
    relays = TurnRelays([PortPool([v4], low, low + 40)], [v4], listeners)
    client, peer = _socket(), _socket()
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
    channel_data = CHANNEL.to_bytes(2, "big") + len(PAYLOAD).to_bytes(2, "big") + PAYLOAD
    relay_socket = relays.udp[relay]
    if direction == "out":
        for _ in range(n):
            udp.datagram_received(channel_data, caddr)
        assert relay_socket.to_peer_packets == n
    else:
        for _ in range(n):
            relay_socket.datagram_received(PAYLOAD, paddr)
        assert relay_socket.from_peer_packets == n
    relays.stop()
    await listeners.stop()
    client.close()
    peer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.turn_fastpath_icount", description=__doc__)
    ap.add_argument("--icount", type=int, default=20000, metavar="N")
    ap.add_argument("--bare", type=int, metavar="N", help="run N packets (under callgrind)")
    ap.add_argument("--direction", choices=("out", "in"), default="out")
    args = ap.parse_args(argv)
    if args.bare is not None:
        uvloop.run(_run(args.bare, args.direction))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind not installed", file=sys.stderr)
        return 1
    n = args.icount
    print("| direction | instructions per packet (user space) |")
    print("|---|---:|")
    for direction in ("out", "in"):
        ir = [
            icount_tools.callgrind_ir(
                ["--bare", str(k), "--direction", direction],
                dict(os.environ),
                "bench.turn_fastpath_icount",
            )
            for k in (n, 2 * n)
        ]
        label = "client -> peer (ChannelData)" if direction == "out" else "peer -> client"
        print(f"| {label} | {(ir[1] - ir[0]) / n:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
