"""The phones of the keepalive benchmark: a few UDP sockets standing in for 100,000 contacts.

Every contact has its own address (127.16.0.0/12 for IPv4; fd00:bee::/64, a local route
on lo, for IPv6) and one of ``--ports`` ports; the sockets are bound to the wildcard and
learn each datagram's destination with IP_PKTINFO/IPV6_RECVPKTINFO, so an OPTIONS is
answered *from the contact's own address* (the gateway would otherwise see a reply from a
new source). It polls every 5 ms instead of blocking: on loopback the wake-up of a
blocked receiver is paid inside the sender's ``sendto``, which would bill the gateway for
the phones' CPU. Pinhole keepalives are counted; OPTIONS get a 200 built from their header
lines. Every ``--report`` seconds one line of counters goes to stdout.

``python -m bench.keepalive_sink --ports 20000:8`` (run by ``bench.keepalive``).
"""

from __future__ import annotations

import argparse
import selectors
import socket
import struct
import sys
import time

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
POLL = 0.005
_COPY = (b"via:", b"v:", b"from:", b"f:", b"to:", b"t:", b"call-id:", b"i:", b"cseq:")


def answer(request: bytes) -> bytes:
    """A 200 to an OPTIONS: its Via, From, To (with a tag), Call-ID and CSeq lines."""
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    lines = [b"SIP/2.0 200 OK"]
    for line in head:
        low = line[:9].lower().replace(b" ", b"")
        if low.startswith(_COPY):
            tagged = low.startswith((b"to:", b"t:"))
            lines.append(line + b";tag=sink" if tagged else line)
    lines.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.keepalive_sink")
    parser.add_argument("--ports", default="20000:8", help="FIRST:COUNT, each in both families")
    parser.add_argument("--report", type=float, default=5.0)
    parser.add_argument("--silent-after", type=float, default=0.0, help="stop answering then")
    args = parser.parse_args()
    first, count = (int(x) for x in args.ports.split(":"))
    sel = selectors.DefaultSelector()
    for port in range(first, first + count):
        v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        v4.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        v4.bind(("0.0.0.0", port))
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        v6.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        v6.bind(("::", port))
        for sock in (v4, v6):
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
    pings = options = other = 0
    print("sink ready", flush=True)
    start = last = time.monotonic()
    while True:
        # Poll every POLL seconds rather than block: a sleeping receiver's wake-up would be
        # charged to the sender on loopback (the gateway's CPU), never on a real network.
        time.sleep(POLL)
        for key, _ in sel.select(0):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            for _ in range(4096):
                try:
                    data, anc, _flags, addr = sock.recvmsg(4096, 128)
                except BlockingIOError:
                    break
                if data.startswith(b"OPTIONS "):
                    options += 1
                    if args.silent_after and time.monotonic() - start > args.silent_after:
                        continue
                    if not anc:
                        continue
                    level, kind, info = anc[0]
                    if sock.family == socket.AF_INET:
                        dst = struct.unpack("I4s4s", info)[2]
                        cmsg = (level, kind, struct.pack("I4s4s", 0, dst, b"\0" * 4))
                    else:
                        cmsg = (level, kind, info)
                    sock.sendmsg([answer(data)], [cmsg], 0, addr)
                elif not data.strip(b"\r\n\0"):
                    pings += 1
                else:
                    other += 1
        now = time.monotonic()
        if now - last >= args.report:
            last = now
            print(f"t={now - start:.0f} pings={pings} options={options} other={other}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
