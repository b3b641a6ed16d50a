"""Deterministic cost of the SIP cores per call and per REGISTER: instruction counts.

Timings on the shared 2-core VM move ±20 %; instructions executed do not. The workload is
what the proxy's pure cores do for one bench call (the five datagrams SIPp sends through
it, as in ``bench/scenarios``: INVITE, 200, ACK, BYE, 200: parse, then the proxy's edits on
the forwarded copy) and for one REGISTER (parse + Contact/Expires parsing + the 200 built
from it). Each iteration uses fresh Call-IDs, tags and branches, like SIPp.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.icount --calls 300      # run for N and 2N: the difference / N
    python -m bench.icount --measure            # does both under valgrind, both variants
    python -m bench.icount --measure 200 --before /tmp/before   # + another revision's src

``--measure`` runs valgrind itself for the pure and the compiled build (RTC64_PURE=1,
RTC64_COMPILED=1), at N and 2N iterations, and prints instructions per call and per
REGISTER (the difference removes interpreter start-up and imports).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

INVITE = (
    b"INVITE sip:callee@127.0.0.1:25070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:25100;rport;branch=z9hG4bK-%(n)d-1-0\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "bench" <sip:caller@127.0.0.1:25100>;tag=b4242c%(n)d\r\n'
    b"To: <sip:callee@127.0.0.1:25070>\r\n"
    b"Call-ID: %(n)d-4242@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:caller@127.0.0.1:25100;transport=UDP>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 117\r\n\r\n"
    b"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 26100 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
OK_INVITE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:25060;branch=z9hG4bK-p%(n)d;rport=25060\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:25100;rport=25100;branch=z9hG4bK-%(n)d-1-0\r\n"
    b"Record-Route: <sip:127.0.0.1:25060;lr>\r\n"
    b'From: "bench" <sip:caller@127.0.0.1:25100>;tag=b4242c%(n)d\r\n'
    b"To: <sip:callee@127.0.0.1:25070>;tag=u%(n)d\r\n"
    b"Call-ID: %(n)d-4242@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:127.0.0.1:25070;transport=UDP>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
IN_DIALOG = (
    b"%(m)s sip:127.0.0.1:25070;transport=UDP SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:25100;rport;branch=z9hG4bK-%(n)d-%(s)d-2\r\n"
    b"Route: <sip:127.0.0.1:25060;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "bench" <sip:caller@127.0.0.1:25100>;tag=b4242c%(n)d\r\n'
    b"To: <sip:callee@127.0.0.1:25070>;tag=u%(n)d\r\n"
    b"Call-ID: %(n)d-4242@127.0.0.1\r\n"
    b"CSeq: %(s)d %(m)s\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OK_BYE = OK_INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 2 BYE").replace(
    b"Record-Route: <sip:127.0.0.1:25060;lr>\r\n", b""
)
REGISTER = (
    b"REGISTER sip:bench.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:25100;rport;branch=z9hG4bK-r%(n)d\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:u%(n)d@bench.test>;tag=r%(n)d\r\n"
    b"To: <sip:u%(n)d@bench.test>\r\n"
    b"Call-ID: r%(n)d@127.0.0.1\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Contact: <sip:u%(n)d@127.0.0.1:25100>;expires=3600\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def one_call(n: int) -> int:
    """The cores' work for one bench call; returns bytes produced (kept live)."""
    from rtc64.sip.edit import forward_request, forward_response  # noqa: PLC0415
    from rtc64.sip.framing import parse_datagram  # noqa: PLC0415
    from rtc64.sip.message import Request, Response, make_response  # noqa: PLC0415
    from rtc64.sip.serializer import serialize  # noqa: PLC0415

    via = b"SIP/2.0/UDP 127.0.0.1:25060;branch=z9hG4bK-p%d" % n
    rr = b"<sip:127.0.0.1:25060;lr>"
    out = 0
    invite = parse_datagram(INVITE % {b"n": n})
    assert isinstance(invite, Request)
    out += len(serialize(make_response(invite, 100)))
    out += len(forward_request(invite, via=via, record_route=rr))
    for data in (OK_INVITE % {b"n": n}, OK_BYE % {b"n": n}):
        resp = parse_datagram(data)
        assert isinstance(resp, Response)
        out += len(forward_response(resp))
    for method, seq in ((b"ACK", 1), (b"BYE", 2)):
        req = parse_datagram(IN_DIALOG % {b"m": method, b"n": n, b"s": seq})
        assert isinstance(req, Request)
        out += len(forward_request(req, via=via, pop_route=True))
    return out


def one_register(n: int) -> int:
    from rtc64.sip.framing import parse_datagram  # noqa: PLC0415
    from rtc64.sip.headers import contacts, expires  # noqa: PLC0415
    from rtc64.sip.message import Request, make_response  # noqa: PLC0415
    from rtc64.sip.serializer import serialize  # noqa: PLC0415

    reg = parse_datagram(REGISTER % {b"n": n})
    assert isinstance(reg, Request)
    found = contacts(reg)
    assert found
    expires(reg)
    return len(serialize(make_response(reg, 200)))


def workload(calls: int, registers: int) -> int:
    total = 0
    for n in range(calls):
        total += one_call(n)
    for n in range(registers):
        total += one_register(n)
    return total


def callgrind_ir(args: list[str], env: dict[str, str], module: str = "bench.icount") -> int:
    """Instructions executed by ``python -m MODULE ARGS`` under callgrind."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", module, *args],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if m is None:
        raise RuntimeError(f"no callgrind total in: {proc.stderr[-400:]}")
    return int(m.group(1))


def variants(before: str | None) -> list[tuple[str, dict[str, str]]]:
    """(name, environment) per build to count: pure, compiled, and ``before``'s sources."""
    extras: list[tuple[str, dict[str, str]]] = [
        ("pure", {"RTC64_PURE": "1"}),
        ("compiled", {"RTC64_COMPILED": "1"}),
    ]
    if before:
        here = str(Path(__file__).resolve().parents[1])
        src = str(Path(before).resolve() / "src")
        extras.insert(0, (f"before ({before})", {"PYTHONPATH": f"{src}:{here}"}))
    base = {k: v for k, v in os.environ.items() if k not in ("RTC64_PURE", "RTC64_COMPILED")}
    return [(name, {**base, **extra}) for name, extra in extras]


def measure(n: int, before: str | None = None) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind not installed", file=sys.stderr)
        return 1
    print("| variant | instructions per call | instructions per REGISTER |")
    print("|---|---:|---:|")
    for variant, env in variants(before):
        base = callgrind_ir(["--calls", "0", "--registers", "0", "--warm", str(n)], env)
        per_call = (callgrind_ir(["--calls", str(n), "--warm", str(n)], env) - base) / n
        per_reg = (callgrind_ir(["--registers", str(n), "--warm", str(n)], env) - base) / n
        print(f"| {variant} | {per_call:,.0f} | {per_reg:,.0f} |", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.icount", description=__doc__)
    ap.add_argument("--calls", type=int, default=0)
    ap.add_argument("--registers", type=int, default=0)
    ap.add_argument("--warm", type=int, default=0, help="untimed warm-up calls+REGISTERs")
    ap.add_argument("--measure", type=int, nargs="?", const=200, metavar="N")
    ap.add_argument("--before", metavar="DIR", help="with --measure: also DIR/src's rtc64")
    args = ap.parse_args()
    if args.measure:
        return measure(args.measure, args.before)
    # Warm-up with distinct numbers so that the measured iterations see the same cache state
    # (bounded URI/host caches) whatever N is.
    workload(args.warm, args.warm)
    base = 10**6
    for n in range(args.calls):
        one_call(base + n)
    for n in range(args.registers):
        one_register(base + n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
