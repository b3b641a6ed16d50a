"""TURN server: rtc64 vs coturn, same clients, same run, loopback (``python -m bench turn``).

What one run does (per ``--runs``, the servers alternate: coturn, rtc64, coturn, ...):

1. Allocations per second: ``--clients`` concurrent Python clients (``--alloc-workers``
   processes) each loop Allocate → 401 → Allocate with credentials → Refresh LIFETIME=0,
   on a fresh UDP socket per cycle from the next address of 127.77.0.0/16 (one source
   address per client, as browsers have: rtc64 limits 401s per source address) to the
   servers' 127.0.0.1 listener, for ``--alloc-seconds`` after a warm-up; once
   with long-term credentials (user ``bench``), once with TURN REST credentials (the
   ``use-auth-secret`` scheme). Figure: completed cycles/s and server CPU per allocation.
2. Relay CPU per packet: ``--channels`` allocations from ``::1`` sockets (no
   REQUESTED-ADDRESS-FAMILY: the relay must be IPv4), one ChannelBind each to an IPv4 peer
   (sink sockets on 127.0.0.1), ChannelData with a 172-byte payload round-robin at
   ``--channels`` x 50 pps (25,000 pps). CPU: utime+stime of the server's process tree
   (/proc/PID/stat) over the counted seconds.
3. Highest rate with < 1 % loss: the same set-up, rates ramped by ``--ramp-step`` from
   ``--ramp-start`` until a step loses ≥ 1 % (or sends < 97 % of its rate), then bisected
   to ``--resolution``; then flat out. Every step of 2-3 runs on a freshly started server
   with fresh allocations (an overloaded server must not carry its backlog into the next
   step); a step during which other processes used more than 0.25 core is tried again (up
   to ``--attempts`` in all) and the quietest kept (the machine is shared); before each
   try the bench waits up to 3 s for a quiet second. The generator's ceiling keeps its
   best try.

The servers are pinned to CPU 0 (``taskset -c 0``), the generators, sink and this process
to CPU 1, all at ``--nice`` -5 (other sessions share the machine); the generator's own
ceiling (``--channels`` sockets straight to the sink) is measured first. ``--profile S``
records rtc64 with py-spy for S seconds at 25,000 pps and during an allocation step
(separate, uncounted steps, in the first run).
``--write-results`` replaces the section "TURN server: rtc64 vs coturn" of
bench/RESULTS.md. Needs coturn's ``turnserver``; loopback only.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import turn_load as load
from bench import turn_report as report
from bench.procstat import all_ticks, cpu_seconds
from bench.turn_servers import (
    PASSWORD,
    SECRET,
    SINK_PORTS,
    USER,
    Server,
    core_times,
    udp_drops,
)

MAX_OTHERS = 0.25
QUIET_WAIT = 3.0  # seconds a step may wait for the other processes to quieten
SOURCE_NET = 77  # allocation clients come from 127.77.0.0/16, 127.78.0.0/16, ...
LOSS_LIMIT = 0.01
_CTX = mp.get_context("fork")


@dataclasses.dataclass
class AllocStep:
    server: str
    creds: str
    seconds: float
    completed: int
    requests: int
    failures: dict[str, int]
    cpu: float  # server CPU, fraction of one core
    gen_cpu: float  # the client processes' CPU
    others: float

    @property
    def rate(self) -> float:
        return self.completed / self.seconds

    @property
    def ms_per_alloc(self) -> float:
        return self.cpu * self.seconds / max(self.completed, 1) * 1e3

    @property
    def per_cpu_s(self) -> float:
        """Allocations per second of server CPU: the rate on a core of its own."""
        return 1e3 / self.ms_per_alloc if self.completed else 0.0

    def line(self) -> str:
        fails = ", ".join(f"{k} {v}" for k, v in self.failures.items()) or "none"
        return (
            f"{self.server:7} alloc {self.creds:4}: {self.rate:7,.0f}/s "
            f"({self.completed} in {self.seconds:.0f} s), server CPU {self.cpu:6.1%} "
            f"({self.ms_per_alloc:.3f} ms/alloc), clients' CPU {self.gen_cpu:4.0%}, "
            f"failures: {fails}; others {self.others:.2f} cores"
        )


@dataclasses.dataclass
class RelayStep:
    server: str
    offered: float  # pps asked for; 0 = flat out
    sent: int
    received: int
    seconds: float
    cpu: float
    gen_cpu: float
    latency_us: list[int]  # p50, p90, p99, max
    drops: dict[str, int]
    others: float
    core: float  # the server's core busy (all processes, irq and softirq included)
    softirq: float  # irq + softirq time on the server's core (loopback delivery)

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 1.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def delivered(self) -> float:
        return self.received / self.seconds

    @property
    def us_per_packet(self) -> float:
        return self.cpu * self.seconds / max(self.received, 1) * 1e6

    @property
    def p50(self) -> int:
        return self.latency_us[0]

    @property
    def p99(self) -> int:
        return self.latency_us[2]

    def ok(self) -> bool:
        return self.loss < LOSS_LIMIT and (self.offered == 0 or self.rate >= 0.97 * self.offered)

    def line(self) -> str:
        what = "flat out" if self.offered == 0 else f"{self.offered:>8,.0f} pps"
        p50, p90, p99, mx = self.latency_us
        return (
            f"{self.server:7} {what}: sent {self.rate:>8,.0f}/s, delivered "
            f"{self.delivered:>8,.0f}/s, loss {self.loss:6.2%}, server CPU {self.cpu:6.1%} "
            f"({self.us_per_packet:5.2f} us/pkt), its core busy {self.core:4.0%} "
            f"(softirq {self.softirq:4.0%}), "
            f"gen CPU {self.gen_cpu:4.0%}, latency "
            f"p50/p90/p99/max {p50}/{p90}/{p99}/{mx} us, drops {self.drops}, "
            f"others {self.others:.2f} cores"
        )


def _others(a0: dict[int, int], a1: dict[int, int], ours: set[int], wall: float) -> float:
    ticks = sum(t - a0.get(p, 0) for p, t in a1.items() if p not in ours)
    return ticks / os.sysconf("SC_CLK_TCK") / wall


def _better(s: RelayStep, best: RelayStep, ceiling: bool) -> bool:
    """The generator's ceiling keeps its highest attempt; other steps the quietest."""
    return s.delivered > best.delivered if ceiling else s.others < best.others


def wait_quiet(ours: set[int], limit: float = QUIET_WAIT) -> None:
    """Wait (at most ``limit`` s) for a 1-s window in which other processes used little CPU."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        a0, t0 = all_ticks(), time.monotonic()
        time.sleep(1.0)
        if _others(a0, all_ticks(), ours, time.monotonic() - t0) <= MAX_OTHERS:
            return


def _sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.gen_cpus = None if args.no_pin else {1}
        self.server_cpu = None if args.no_pin else "0"
        self.steps: list[AllocStep | RelayStep] = []
        sink_conn, child = _CTX.Pipe()
        self.nice = args.nice
        self.sink_proc = _CTX.Process(
            target=load.sink, args=(child, SINK_PORTS, self.gen_cpus), daemon=True
        )
        self.sink_proc.start()
        self.sink: Connection = sink_conn
        self.peers: list[tuple[str, int]] = self.sink.recv()
        self.step_id = 0
        self.profile: dict[str, str] = {}  # "relay" / "alloc": py-spy summary of rtc64

    def close(self) -> None:
        self.sink.send(("quit",))
        self.sink_proc.join(5)

    def server(self, name: str, creds: str = "lt") -> Server:
        extra = self.args.coturn_args if name == "coturn" else self.args.rtc64_args
        return Server(
            name, self.tmp, self.server_cpu, extra.split(), creds, self.args.relay_ports,
            self.args.nice,
        )  # fmt: skip

    def _ours(self, server: Server | None, procs: list[Any]) -> set[int]:
        pids = {os.getpid(), self.sink_proc.pid or 0, *(p.pid or 0 for p in procs)}
        return pids | set(server.pids if server else [])

    # --- allocations per second -------------------------------------------------------

    def alloc(self, srv: Server, mode: str) -> AllocStep:
        best: AllocStep | None = None
        for _ in range(self.args.attempts):
            wait_quiet(self._ours(None, []))
            srv.start()
            try:
                s = self._alloc(srv, mode)
            finally:
                srv.stop()
            print("  " + s.line(), flush=True)
            _warn_binds(srv)
            if best is None or s.others < best.others:
                best = s
            if s.others <= MAX_OTHERS:
                break
            print(f"  (busy machine: {s.others:.2f} cores used by others, step repeated)")
        assert best is not None
        self.steps.append(best)
        return best

    def alloc_profile(self, name: str, seconds: float) -> None:
        """An uncounted long-term allocation step with py-spy on the server."""
        srv = self.server(name, "lt")
        srv.start()
        try:
            s = self._alloc(srv, "lt", seconds)
        finally:
            srv.stop()
        print(f"  (profiled, not counted) {s.line()}", flush=True)

    def _alloc(self, srv: Server, mode: str, profile: float = 0.0) -> AllocStep:
        a = self.args
        creds = load.CredentialSource(mode, USER, PASSWORD, SECRET)
        start = time.monotonic() + 0.3
        count_from, end = start + a.warm, start + a.warm + a.alloc_seconds
        workers, conns = [], []
        per = [a.clients // a.alloc_workers + (i < a.clients % a.alloc_workers)
               for i in range(a.alloc_workers)]  # fmt: skip
        server = ("127.0.0.1", srv.port)
        for i, n in enumerate(per):
            mine, theirs = _CTX.Pipe()
            net = SOURCE_NET + i  # 127.<net>.0.0/16: a source address per cycle
            args = (theirs, server, creds, n, net, start, count_from, end, self.gen_cpus)
            p = _CTX.Process(target=load.alloc_worker, args=args, daemon=True)
            p.start()
            workers.append(p)
            conns.append(mine)
        _sleep_until(count_from)
        raw = self.tmp / f"{srv.name}-alloc.pyspy"
        spy = (
            report.start_profile(srv.pids[0], min(profile, a.alloc_seconds), raw)
            if profile
            else None
        )
        gens = [p.pid for p in workers]
        c0, g0, a0, t0 = srv.cpu_seconds(), load_cpu(gens), all_ticks(), time.monotonic()
        _sleep_until(end)
        c1, g1, a1, t1 = srv.cpu_seconds(), load_cpu(gens), all_ticks(), time.monotonic()
        completed = requests = 0
        failures: Counter[str] = Counter()
        for c in conns:
            done, reqs, fails = c.recv()
            completed, requests = completed + done, requests + reqs
            failures.update(fails)
        for p in workers:
            p.join(5)
        if spy is not None:
            self.profile["alloc"] = report.finish_profile(spy, raw, None)
        return AllocStep(
            srv.name, mode, t1 - t0, completed, requests, dict(failures),
            (c1 - c0) / (t1 - t0), (g1 - g0) / (t1 - t0),
            _others(a0, a1, self._ours(srv, workers), t1 - t0),
        )  # fmt: skip

    # --- relay --------------------------------------------------------------------------

    def senders(self, srv: Server | None) -> tuple[list[Any], list[Connection]]:
        """Start the sender processes; each sets up its share of the allocations."""
        a = self.args
        creds = load.CredentialSource("lt", USER, PASSWORD, SECRET)
        procs, conns = [], []
        for i in range(a.senders):
            n = a.channels // a.senders + (i < a.channels % a.senders)
            mine, theirs = _CTX.Pipe()
            addr = None if srv is None else srv.addr
            p = _CTX.Process(
                target=load.relay_sender,
                args=(theirs, addr, creds, n, self.peers, self.gen_cpus),
                daemon=True,
            )
            p.start()
            procs.append(p)
            conns.append(mine)
        for c in conns:
            msg = c.recv()
            if msg[0] != "ready":
                raise RuntimeError(f"sender set-up on {srv and srv.name}: {msg[1]}")
        return procs, conns

    def relay_step(self, name: str, rate: float, profile: float = 0.0) -> RelayStep:
        """One step on a fresh server (``name`` "direct": no server), repeated when busy."""
        best: RelayStep | None = None
        for _ in range(self.args.attempts):
            wait_quiet(self._ours(None, []))
            s = self._relay_once(name, rate, profile)
            print("  " + s.line(), flush=True)
            if best is None or _better(s, best, name == "direct"):
                best = s
            if s.others <= MAX_OTHERS or profile:
                break
            print(f"  (busy machine: {s.others:.2f} cores used by others, step repeated)")
        assert best is not None
        if not profile:
            self.steps.append(best)
        return best

    def _relay_once(self, name: str, rate: float, profile: float) -> RelayStep:
        a = self.args
        srv = None if name == "direct" else self.server(name)
        if srv is not None:
            srv.start()
        procs: list[Any] = []
        conns: list[Connection] = []
        try:
            procs, conns = self.senders(srv)
            if srv is not None:
                srv.settle()
            self.step_id += 1
            start = time.monotonic() + 0.2
            secs = profile or a.seconds
            count_from, end = start + a.warm, start + a.warm + secs
            for c in conns:
                c.send(("run", self.step_id, rate / len(conns), start, count_from, end))
            spy = None
            _sleep_until(count_from)
            if profile and srv is not None:
                spy = report.start_profile(srv.pids[0], secs, self.tmp / "rtc64.pyspy")
            pids = srv.pids if srv else []
            gens = [p.pid for p in procs] + [self.sink_proc.pid]
            c0, g0, d0 = load_cpu(pids), load_cpu(gens), udp_drops()
            a0, k0, t0 = all_ticks(), core_times(self.server_cpu), time.monotonic()
            _sleep_until(end)
            c1, g1, d1 = load_cpu(pids), load_cpu(gens), udp_drops()
            a1, k1, t1 = all_ticks(), core_times(self.server_cpu), time.monotonic()
            sent = sum(c.recv()[1] for c in conns)
            time.sleep(0.5)  # in flight / queued
            self.sink.send(("result", self.step_id))
            received, latency = self.sink.recv()
            if spy is not None:
                self.profile["relay"] = report.finish_profile(
                    spy, self.tmp / "rtc64.pyspy", self.args.profile_out
                )
        finally:
            for c in conns:
                c.send(("quit",))
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()
            if srv is not None:
                srv.stop()
                _warn_binds(srv)
        wall = t1 - t0
        return RelayStep(
            name, rate, sent, received, secs, (c1 - c0) / wall, (g1 - g0) / wall, latency,
            {k: d1[k] - d0[k] for k in d1}, _others(a0, a1, self._ours(srv, procs), wall),
            (k1[0] - k0[0]) / max(k1[2] - k0[2], 1), (k1[1] - k0[1]) / max(k1[2] - k0[2], 1),
        )  # fmt: skip

    def find_max(self, name: str, ceiling: float) -> tuple[RelayStep | None, bool]:
        """The highest passing step, and whether the search stopped at ``ceiling``."""
        a = self.args
        good: RelayStep | None = None
        bad: float | None = None
        rate = a.ramp_start
        while rate <= ceiling:
            s = self.relay_step(name, rate)
            if not s.ok():
                bad = rate
                break
            good, rate = s, rate + a.ramp_step
        if bad is None:
            return good, True
        low = good.offered if good else 0.0
        while bad - low > a.resolution:
            mid = round((low + bad) / 2 / 500) * 500
            if mid <= low or mid >= bad:
                break
            s = self.relay_step(name, mid)
            if s.ok():
                good, low = s, mid
            else:
                bad = mid
        return good, False


def _warn_binds(srv: Server) -> None:
    if n := srv.bind_failures():
        print(f"  WARNING: {srv.name} logged {n} failed relay-port binds (port taken)")


def load_cpu(pids: list[int | None]) -> float:

    return cpu_seconds([p for p in pids if p])


def run(args: argparse.Namespace) -> int:
    for tool in ("turnserver", "taskset"):
        if "coturn" in args.servers and shutil.which(tool) is None:
            print(f"turn bench: {tool} not found (Debian package coturn)", file=sys.stderr)
            return 1
    if args.profile and report.py_spy() is None:
        print("turn bench: --profile needs py-spy (pip install -e .[bench])", file=sys.stderr)
        return 1
    if args.quick:
        args.alloc_seconds, args.seconds = min(args.alloc_seconds, 3.0), min(args.seconds, 3.0)
        args.ramp_step *= 2
        args.resolution *= 2
    if args.channels < args.senders:
        args.senders = 1
    if not args.no_pin:
        os.sched_setaffinity(0, {1})
    load.renice(args.nice)
    # SIGTERM unwinds like Ctrl-C: servers stopped, client processes told to quit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="rtc64-turnbench-"))
    started = time.monotonic()
    load_start = report.load()
    runs: list[dict[str, dict[str, Any]]] = []
    bench = Bench(args, tmp)
    print(f"turn bench: servers {', '.join(args.servers)}; {load_start}", flush=True)
    try:
        ceiling = bench.relay_step("direct", 0) if "relay" in args.parts else None
        for run_no in range(args.runs):
            summary: dict[str, dict[str, Any]] = {}
            for name in args.servers:
                print(f"run {run_no + 1}: {name}", flush=True)
                summary[name] = one_server(bench, name, ceiling)
            runs.append(summary)
    finally:
        bench.close()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report.render(
        args, runs, ceiling, bench.steps, time.monotonic() - started, load_start, bench.profile
    )
    print(text)
    if args.write_results:
        report.write_section(text)
        print(f"written to {report.RESULTS}")
    return 0


def one_server(bench: Bench, name: str, ceiling: RelayStep | None) -> dict[str, Any]:
    args = bench.args
    out: dict[str, Any] = {}
    if "alloc" in args.parts:
        out["alloc_lt"] = bench.alloc(bench.server(name, "lt"), "lt")
        out["alloc_rest"] = bench.alloc(bench.server(name, "rest"), "rest")
        if args.profile and name == "rtc64" and "alloc" not in bench.profile:
            bench.alloc_profile(name, args.profile)
    if "relay" in args.parts:
        out["calls"] = bench.relay_step(name, args.channels * 50.0)
        if args.profile and name == "rtc64" and "relay" not in bench.profile:
            bench.relay_step(name, args.channels * 50.0, profile=args.profile)
        # Up to the generator's ceiling, but never below the ramp's first steps: a ceiling
        # measured while others took the CPU would otherwise stop the search before it starts.
        limit = max(0.95 * (ceiling.rate if ceiling else 150_000), args.ramp_start * 3)
        out["max"], out["max_limited"] = bench.find_max(name, limit)
        out["flat"] = bench.relay_step(name, 0)
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench.turn", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="3 s steps, coarser search")
    ap.add_argument("--servers", type=lambda s: s.split(","), default=["coturn", "rtc64"],
                    help="comma-separated, in order: coturn,rtc64")  # fmt: skip
    ap.add_argument("--parts", type=lambda s: s.split(","), default=["alloc", "relay"],
                    help="comma-separated: alloc,relay")  # fmt: skip
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole comparison")
    ap.add_argument("--clients", type=int, default=32, help="concurrent allocation clients")
    ap.add_argument("--alloc-workers", type=int, default=2, help="client processes")
    ap.add_argument("--alloc-seconds", type=float, default=10.0)
    ap.add_argument("--channels", type=int, default=500, help="allocations, one channel each")
    ap.add_argument("--senders", type=int, default=1, help="ChannelData sender processes")
    ap.add_argument("--seconds", type=float, default=5.0, help="counted seconds per relay step")
    ap.add_argument("--warm", type=float, default=1.0, help="uncounted seconds first")
    ap.add_argument("--ramp-start", type=float, default=30000.0)
    ap.add_argument("--ramp-step", type=float, default=10000.0)
    ap.add_argument("--resolution", type=float, default=2500.0)
    ap.add_argument("--profile", type=float, default=0.0, metavar="S",
                    help="py-spy rtc64 for S seconds at 25k pps")  # fmt: skip
    ap.add_argument("--profile-out", type=Path, default=None, help="keep py-spy's raw output")
    ap.add_argument("--relay-ports", type=_port_range, default=None, metavar="LOW-HIGH",
                    help="servers' relay port range (default 36000-60999)")  # fmt: skip
    ap.add_argument("--coturn-args", default="", help="extra turnserver arguments")
    ap.add_argument("--rtc64-args", default="", help="extra `rtc64 serve` arguments")
    ap.add_argument("--nice", type=int, default=-5,
                    help="nice value of servers and clients (the machine is shared)")  # fmt: skip
    ap.add_argument("--attempts", type=int, default=3,
                    help="tries of a busy step (others > 0.25 core)")  # fmt: skip
    ap.add_argument("--no-pin", action="store_true", help="no taskset pinning")
    ap.add_argument("--keep-tmp", action="store_true", help="keep logs and state")
    ap.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    return ap


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if (
        not sep
        or not low.isdigit()
        or not high.isdigit()
        or not 1024 <= int(low) < int(high) < 65536
    ):
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW-HIGH, 1024 <= LOW < HIGH < 65536")
    return int(low), int(high)


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    for s in args.servers:
        if s not in ("coturn", "rtc64"):
            _parser().error(f"--servers: unknown server {s!r} (coturn, rtc64)")
    for p in args.parts:
        if p not in ("alloc", "relay"):
            _parser().error(f"--parts: unknown part {p!r} (alloc, relay)")
    if min(args.clients, args.alloc_workers, args.channels, args.senders, args.attempts) < 1:
        _parser().error(
            "--clients, --alloc-workers, --channels, --senders and --attempts must be >= 1"
        )
    return args


def main(quick: bool = False, argv: list[str] | None = None) -> int:
    args = parse_args([] if argv is None else argv)
    args.quick = args.quick or quick
    return run(args)


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
