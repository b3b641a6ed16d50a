"""Instructions per datagram in the UDP listener's own code (``io/udp.py``).

``UdpListener.datagram_received`` on a request, a response and a CRLF keepalive from one
source, with raw handlers that take every datagram at once: what is counted is the
listener's own work per datagram (source address, flow, STUN/keepalive tests, dispatch),
not the proxy's. The address tuple and its host text are fresh per datagram, as the event
loop hands them over. Run under callgrind for N and 2N datagrams: the difference / N.

    python -m bench.udp_listener --measure 20000                  # this tree, pure+compiled
    python -m bench.udp_listener --measure 20000 --before /tmp/before
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

KINDS = ("request", "response", "keepalive")
REQUEST = (
    b"INVITE sip:callee@192.0.2.50:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:25100;rport;branch=z9hG4bK-1-1-0\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:caller@198.51.100.7>;tag=c1\r\n"
    b"To: <sip:callee@192.0.2.50>\r\nCall-ID: 1-4242@198.51.100.7\r\nCSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)
RESPONSE = b"SIP/2.0 180 Ringing" + REQUEST[REQUEST.index(b"\r\n") :]


class Stats:
    received = keepalives = stun_received = stun_answered = sent = send_errors = 0


class Owner:
    """The listener's ``ConnectionOwner``: counters only; nothing reaches it unparsed."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.log = logging.getLogger("bench.udp_listener")

    def deliver(self, msg: Any, flow: Any) -> None:
        raise AssertionError("the raw handlers take every datagram")

    def bad_message(self, data: bytes, exc: Exception, flow: Any) -> None:
        raise AssertionError(exc)


def run(kind: str, n: int) -> None:
    from rtc64.io.udp import UdpListener  # noqa: PLC0415

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    taken: list[Any] = []

    def take(data: bytes, flow: Any) -> bool:
        taken.append(flow)
        return True

    listener = UdpListener(Owner(), sock, raw_response=take, raw_request=take)  # type: ignore[arg-type]
    data = {"request": REQUEST, "response": RESPONSE, "keepalive": b"\r\n\r\n"}[kind]
    host = "198.51.100.7"
    receive = listener.datagram_received
    for _ in range(n):
        receive(data, ("".join(host), 25100))  # a fresh str, as the loop gives
        taken.clear()
    sock.close()


def callgrind_ir(args: list[str], env: dict[str, str]) -> int:
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "bench.udp_listener", *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or m is None:
        raise RuntimeError(f"udp_listener run failed: {proc.stderr[-1500:]}")
    return int(m.group(1))


def measure(n: int, before: str | None, variants: list[str]) -> None:
    here = str(Path(__file__).resolve().parents[1])
    trees = [("this tree", str(Path(here) / "src"))]
    if before:
        trees.append((f"before ({before})", str(Path(before).resolve() / "src")))
    base = {k: v for k, v in os.environ.items() if k not in ("RTC64_PURE", "RTC64_COMPILED")}
    print(f"# load {os.getloadavg()[0]:.1f}; instructions per datagram (callgrind, N={n})")
    print("| datagram | tree | variant | instructions |")
    print("|---|---|---|---:|")
    for kind in KINDS:
        for name, src in trees:
            for variant in variants:
                env = {**base, "PYTHONPATH": f"{src}:{here}"}
                env["RTC64_PURE" if variant == "pure" else "RTC64_COMPILED"] = "1"
                one = callgrind_ir(["--kind", kind, "--n", str(n)], env)
                two = callgrind_ir(["--kind", kind, "--n", str(2 * n)], env)
                print(f"| {kind} | {name} | {variant} | {(two - one) / n:,.0f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.udp_listener", description=__doc__)
    ap.add_argument("--kind", choices=KINDS, default="request")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--measure", type=int, nargs="?", const=20000, metavar="N")
    ap.add_argument("--before", metavar="DIR", help="with --measure: also DIR/src's rtc64")
    ap.add_argument("--variant", action="append", choices=["pure", "compiled"])
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.before, args.variant or ["pure", "compiled"])
        return 0
    run(args.kind, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
