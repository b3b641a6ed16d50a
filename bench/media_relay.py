"""Packets/s and CPU of rtc64's media forwarder on loopback (IPv6 in → IPv4 out).

The relay runs in its own process (uvloop unless ``--asyncio``) with N calls set up
through ``MediaRelay.offer/answer``; a generator process sends 172-byte RTP packets
(``--streams`` x ``--pps``) from ``::1`` to the calls' A-facing ports; a sink thread on
``127.0.0.1`` counts what comes out. CPU: utime+stime of the relay process
(/proc/PID/stat) over the measured seconds. Compare with LAB-NOTES (rtpengine userspace
~62 % of a core at 25k pps). ``python -m bench.media_relay --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import struct
import threading
import time
from ipaddress import ip_address
from multiprocessing.connection import Connection

PORTS = (42000, 44999)


def _sdp(host: str, port: int) -> bytes:
    fam = "IP6" if ":" in host else "IP4"
    return (
        f"v=0\r\no=- 1 1 IN {fam} {host}\r\ns=-\r\nc=IN {fam} {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def _relay(conn: Connection, streams: int, uv: bool, stats: bool, sink_port: int) -> None:
    from rtc64.net.address import Family  # noqa: PLC0415
    from rtc64.relay.options import RelaySettings  # noqa: PLC0415
    from rtc64.relay.service import start_relay  # noqa: PLC0415
    from rtc64.sdp import parse  # noqa: PLC0415

    async def main() -> None:
        settings = RelaySettings(
            addresses=(ip_address("127.0.0.1"), ip_address("::1")),
            ports=PORTS,
            rtp_stats=stats,
            timeout=3600,
        )
        relay = start_relay(settings)
        targets = []
        for i in range(streams):
            cid = b"bench-%d" % i
            relay.offer(cid, b"A", _sdp("::1", 20000 + 2 * i), to_family=Family.INET)
            ans = relay.answer(
                cid, b"A", b"B", _sdp("127.0.0.1", sink_port), to_family=Family.INET6
            )
            targets.append(parse(ans).media[0].port)
        conn.send(targets)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: done.done() or done.set_result(None))
        await done
        stats_out = [relay.query(b"bench-%d" % i) for i in range(min(streams, 3))]
        conn.send([s.leg(b"A").packets if s and s.leg(b"A") else 0 for s in stats_out])  # type: ignore[union-attr]
        relay.close()

    if uv:
        import uvloop  # noqa: PLC0415

        factory = uvloop.new_event_loop
    else:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--pps", type=int, default=50, help="packets/s per stream")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--asyncio", action="store_true", help="default loop instead of uvloop")
    ap.add_argument("--no-stats", action="store_true", help="no per-packet RTP statistics")
    args = ap.parse_args()

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    received = [0]
    running = [True]

    def drain() -> None:
        while running[0]:
            try:
                sink.recv(2048)
                received[0] += 1
            except TimeoutError:
                pass

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_relay,
        args=(child, args.streams, not args.asyncio, not args.no_stats, sink.getsockname()[1]),
    )
    proc.start()
    targets: list[int] = parent.recv()
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.bind(("::1", 0))
    payload = b"\xd5" * 160
    interval = 1.0 / args.pps
    seq = 0
    sent = 0
    start_cpu = _cpu(proc.pid)  # type: ignore[arg-type]
    start = time.monotonic()
    next_tick = start
    while time.monotonic() - start < args.seconds:
        header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0x1234)
        packet = header + payload
        for port in targets:
            sender.sendto(packet, ("::1", port))
        sent += len(targets)
        seq += 1
        next_tick += interval
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - start
    time.sleep(0.3)
    cpu = _cpu(proc.pid) - start_cpu  # type: ignore[arg-type]
    parent.send(b"stop")
    counted = parent.recv()
    proc.join(5)
    running[0] = False
    loop = "asyncio" if args.asyncio else "uvloop"
    print(
        f"{loop}, rtp_stats={'off' if args.no_stats else 'on'}: {args.streams} streams, "
        f"offered {sent / elapsed:,.0f} pps, delivered {received[0] / elapsed:,.0f} pps "
        f"({received[0] / max(sent, 1):.1%}), relay CPU {cpu / elapsed:.0%} of a core "
        f"({cpu / max(received[0], 1) * 1e6:.1f} us/packet); legs counted {counted}"
    )


if __name__ == "__main__":
    main()
