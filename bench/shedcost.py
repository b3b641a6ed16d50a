"""CPU per request refused under overload, in-process (issue 12: "at 2x capacity goodput
stays at capacity"): shedding must cost much less than serving, or the refused work alone
saturates the loop (RFC 6357 §3.1).

The proxy of ``tests/unit/gateway/test_proxy.Harness`` (real transaction layer, SQLite
store, a recording sender: no sockets) is held at the lowest admitted fraction; N distinct
INVITEs arrive as from a UDP listener, either parsed first and refused by the parsed path
(``Proxy.on_message``), or looked at raw first (``Proxy.shed_raw``, what the UDP listeners
do). CPU time (``time.process_time``) per refused request, so the figure hardly depends on
other load; the socket's receive and send are not included (the same in both).

    python -m bench.shedcost [--requests 20000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tests.unit.gateway.test_proxy import CALLER, Harness, invite, run, udp_flow

from rtc64.sip.framing import parse_datagram


def measure(raw: bool, requests: int) -> float:
    """Microseconds of CPU per INVITE refused with 503."""
    result: list[float] = []

    async def body(h: Harness) -> None:
        h.proxy.admission.target = 0.1
        h.proxy.admission.observe(h.clock.now, 5.0)
        h.proxy.admission.stats.fraction = 1e-9
        msgs = [invite(branch=b"z9hG4bK%d" % i, call_id=b"c%d@test" % i) for i in range(requests)]
        flow = udp_flow(CALLER)
        started = time.process_time()
        for data in msgs:
            if not (raw and h.proxy.shed_raw(data, flow)):
                h.proxy.on_message(parse_datagram(data), flow)
        result.append((time.process_time() - started) / requests * 1e6)
        assert h.proxy.stats.overloaded == requests and len(h.sender.sent) == requests

    run(Path(tempfile.mkdtemp(prefix="rtc64-shedcost-")), body, max_transactions=10**9)
    return result[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shedcost")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    from rtc64 import _compiled  # noqa: PLC0415

    parsed = measure(False, args.requests)
    raw = measure(True, args.requests)
    print(f"compiled cores: {_compiled.install().compiled}, load {os.getloadavg()[0]:.2f}")
    print(f"| refused by | CPU per 503, µs |\n|---|---:|\n| parsed path | {parsed:.1f} |")
    print(f"| raw look (shed_raw) | {raw:.1f} |\nratio parsed/raw: {parsed / raw:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
