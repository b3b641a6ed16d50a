"""What UDP system calls cost here, and what batching or connect()ed sockets would save.

Loopback only, SIP-sized datagrams (600 bytes), CPU time (user+system) of this process per
datagram, best of several rounds (the machine is shared):

- send: back to back and paced (the receiver asleep in epoll before each datagram, as a
  SIPp peer between calls: the kernel wakes it from the sender's system call),
  ``sendto(data, addr)`` on an unconnected socket (what the gateway does today, via
  uvloop's ``transport.sendto``) vs ``send(data)`` on a socket ``connect()``ed to the peer
  (the kernel skips the per-call route lookup and address copy). The receiver is a child
  process draining with a large buffer.
- receive: a child process sends bursts of N datagrams; this process waits with epoll and
  either reads one datagram per wake-up (asyncio's selector transport) or drains the socket
  with ``recvfrom`` until EAGAIN (what libuv, hence uvloop, already does: up to 32 per
  wake-up). Python has no recvmmsg/sendmmsg.

    python -m bench.syscalls [--count 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import select
import socket
import sys
import time

PAYLOAD = b"x" * 600


def _drain(port_q: mp.Queue[int], stop: mp.Event) -> None:  # type: ignore[type-arg]
    """Receive and drop, sleeping in epoll whenever the socket is empty (as SIPp does)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    ep = select.epoll()
    ep.register(s.fileno(), select.EPOLLIN)
    port_q.put(s.getsockname()[1])
    while not stop.is_set():
        if ep.poll(0.2):
            try:
                while True:
                    s.recv(2048)
            except BlockingIOError:
                pass


def send_cost(count: int, connected: bool, port: int, gap: float = 0.0) -> float:
    """CPU µs per datagram sent; with ``gap`` (s) the sender pauses between datagrams so
    the receiver is asleep in epoll each time (the proxy's case: every send wakes a peer).
    The cost of the pause itself (measured alone) is subtracted."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    addr = ("127.0.0.1", port)
    if connected:
        s.connect(addr)
    sleep = time.sleep
    t0 = time.process_time()
    if connected:
        send = s.send
        for _ in range(count):
            send(PAYLOAD)
            if gap:
                sleep(gap)
    else:
        sendto = s.sendto
        for _ in range(count):
            sendto(PAYLOAD, addr)
            if gap:
                sleep(gap)
    dt = time.process_time() - t0
    if gap:
        t1 = time.process_time()
        for _ in range(count):
            sleep(gap)
        dt -= time.process_time() - t1
    s.close()
    return 1e6 * dt / count


def _blaster(port: int, count: int, burst: int, go: mp.Event) -> None:  # type: ignore[type-arg]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    go.wait()
    sent = 0
    while sent < count:
        for _ in range(burst):
            s.send(PAYLOAD)
        sent += burst
        time.sleep(0.0005)  # let the receiver catch up: bursts, not a flood
    s.close()


def recv_cost(count: int, burst: int, drain: bool) -> tuple[float, float]:
    """CPU µs per datagram received, and datagrams per wake-up."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    ep = select.epoll()
    ep.register(s.fileno(), select.EPOLLIN)
    go = mp.Event()
    child = mp.Process(target=_blaster, args=(s.getsockname()[1], count, burst, go))
    child.start()
    got = wakeups = 0
    recvfrom = s.recvfrom
    go.set()
    t0 = time.process_time()
    deadline = time.monotonic() + 60
    while got < count and time.monotonic() < deadline:
        if not ep.poll(0.5):
            if not child.is_alive():
                break
            continue
        wakeups += 1
        if drain:
            try:
                while True:
                    recvfrom(2048)
                    got += 1
            except BlockingIOError:
                pass
        else:
            try:
                recvfrom(2048)
                got += 1
            except BlockingIOError:
                pass
    dt = time.process_time() - t0
    child.join()
    ep.close()
    s.close()
    return 1e6 * dt / max(got, 1), got / max(wakeups, 1)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.syscalls", description=__doc__)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--burst", type=int, default=8)
    args = ap.parse_args()
    port_q: mp.Queue[int] = mp.Queue()
    stop = mp.Event()
    sink = mp.Process(target=_drain, args=(port_q, stop), daemon=True)
    sink.start()
    port = port_q.get(timeout=10)
    try:
        unconn = min(send_cost(args.count, False, port) for _ in range(args.rounds))
        conn = min(send_cost(args.count, True, port) for _ in range(args.rounds))
        paced = args.count // 10
        gap = 200e-6
        unconn_w = min(send_cost(paced, False, port, gap) for _ in range(args.rounds))
        conn_w = min(send_cost(paced, True, port, gap) for _ in range(args.rounds))
    finally:
        stop.set()
        sink.join(5)
    one = min(recv_cost(args.count, args.burst, False) for _ in range(args.rounds))
    batch = min(recv_cost(args.count, args.burst, True) for _ in range(args.rounds))
    print(f"# UDP system calls, {os.cpu_count()} CPUs, {args.count} datagrams x {args.rounds}")
    print("| operation | CPU µs/datagram | note |")
    print("|---|---:|---|")
    print(f"| sendto(data, addr), unconnected | {unconn:.2f} | today's path |")
    print(f"| send(data), connect()ed | {conn:.2f} | {100 * (1 - conn / unconn):.0f} % less |")
    print(f"| sendto, peer asleep (200 µs gaps) | {unconn_w:.2f} | each send wakes the peer |")
    print(
        f"| send, connect()ed, peer asleep | {conn_w:.2f} | "
        f"{100 * (1 - conn_w / unconn_w):.0f} % less |"
    )
    print(f"| recvfrom, one per epoll wake-up | {one[0]:.2f} | {one[1]:.1f} per wake-up |")
    print(
        f"| recvfrom until EAGAIN | {batch[0]:.2f} | {batch[1]:.1f} per wake-up, "
        f"{100 * (1 - batch[0] / one[0]):.0f} % less |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
