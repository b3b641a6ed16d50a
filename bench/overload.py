"""Overload: capacity, then 20 s at twice capacity, then 20 s at half capacity (SIPp, UDP).

1. Capacity: 0-second IPv4 calls through the proxy at stepped rates (``sip_proxy.run_step``,
   5 s steps, < 0.1 % failed calls); capacity C = the highest passing step.
2. Overload: a SIPp UAC offers 2C calls/s for ``--overload`` seconds; as it stops a second
   UAC offers C/2 calls/s for ``--after`` seconds; then ``--idle`` seconds without calls.
   The UAC scenario (``scenarios/uac_call_overload.xml``) acknowledges a 503 and ends the
   call there (SIPp counts it successful: the 503s from its message counts are taken off);
   SIPp's per-second statistics give, per second, calls attempted / succeeded / answered
   503 / failed otherwise (timeouts, unexpected messages).
3. A pinger sends OPTIONS to the proxy every 100 ms (the answer may be 200 or 503: both
   show how long a request waits); per second: median and worst round trip, unanswered.
4. RSS of the proxy (/proc/PID/status) every second; the longest GC pause from the
   gateway's debug log (``rtc64.gc``: full collections, young ones >= 10 ms).

Recovery = the first second after the overload from which every later second of the
half-capacity phase has >= 99 % of its calls succeeding. Only loopback is used.
Run ``python -m bench overload`` (both proxies; ``--quick``: 10 s phases) or
``python -m bench.overload --help`` (rtc64 alone unless ``--kamailio``). Kamailio gets its
own capacity search and then the same offered rates as rtc64 (its own 2x is beyond what
SIPp generates on this machine).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.sip_proxy import (
    SCENARIO_DIR,
    SCENARIOS,
    UAC_PORT,
    UAS_PORT,
    Proxy,
    hostport,
    kamailio_proxy,
    rtc64_proxy,
    run_step,
    uas_running,
    udp_bound,
    wait_port,
)

CAPACITY_STEPS = [150, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 1000, 1200]
V4 = next(s for s in SCENARIOS if s.key == "v4")
UAC_MAX_RATE = 700


# -- measurements running beside the load ---------------------------------------------------


class Pinger(threading.Thread):
    """OPTIONS to the proxy every ``every`` seconds; round trips by send second."""

    def __init__(self, port: int, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(0.02)
        self.port = port
        self.every = every
        self.sent: dict[int, float] = {}
        self.rtt: dict[int, float] = {}
        self.status: dict[int, int] = {}
        self._halt = threading.Event()

    def _request(self, seq: int) -> bytes:
        local = self.sock.getsockname()[1]
        return (
            f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-bp-{seq};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag=bp\r\n"
            f"To: <sip:127.0.0.1:{self.port}>\r\nCall-ID: bench-ping-{seq}\r\n"
            f"CSeq: {seq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def run(self) -> None:
        seq, next_at = 0, time.time()
        while not self._halt.is_set():
            now = time.time()
            if now >= next_at:
                seq += 1
                self.sent[seq] = now
                with contextlib.suppress(OSError):
                    self.sock.send(self._request(seq))
                next_at += self.every
            try:
                data = self.sock.recv(65535)
            except (TimeoutError, OSError):
                continue
            m = re.search(rb"Call-ID: bench-ping-(\d+)", data)
            if m and int(m.group(1)) in self.sent and int(m.group(1)) not in self.rtt:
                got = int(m.group(1))
                self.rtt[got] = time.time() - self.sent[got]
                self.status[got] = int(data[8:11])

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.sock.close()


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.5):
            self.samples.append((time.time(), rss_mb(self.pid)))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


_GC_LINE = re.compile(
    r"^(\S+ \S+) .*rtc64\.gc: gc: (?:full collection|generation (\d)) took ([\d.]+) s"
)


def gc_pauses(log: Path) -> list[tuple[float, float, str]]:
    """(epoch, pause, generation) from the gateway's debug log."""
    out = []
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            m = _GC_LINE.match(line)
            if m is None:
                continue
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            epoch = when.replace(tzinfo=datetime.now().astimezone().tzinfo).timestamp()
            out.append((epoch, float(m.group(3)), m.group(2) or "2"))
    return out


# -- the SIPp load ----------------------------------------------------------------------------


def uac_overload_argv(
    proxy_port: int, rate: int, calls: int, uac_port: int, stats: Path
) -> list[str]:
    assert V4.uas_ip is not None
    control = 28810 + uac_port % 100
    return [
        "sipp", "-sf", str(SCENARIO_DIR / "uac_call_overload.xml"),
        "-key", "target", hostport(V4.uas_ip, UAS_PORT),
        "-i", V4.uac_ip, "-p", str(uac_port), "-mp", str(27000 + 20 * (uac_port % 10)),
        "-cp", str(control), hostport(V4.uac_ip, proxy_port),
        "-r", str(rate), "-m", str(calls), "-l", str(max(rate * 10, 1000)),
        "-recv_timeout", "4000", "-timeout", f"{calls // max(rate, 1) + 30}s",
        "-buff_size", "4194304", "-max_recv_loops", "100000", "-max_sched_loops", "100000",
        "-nostdin", "-trace_stat", "-stf", str(stats), "-fd", "1",
        "-trace_counts", "-trace_err", "-error_file", str(stats.with_suffix(".err")),
    ]  # fmt: skip


def _epoch(text: str) -> float:
    return float(text.rsplit("\t", maxsplit=1)[-1])


def sipp_rows(stats: Path) -> list[dict[str, str]]:
    with contextlib.suppress(OSError), stats.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))
    return []


def sipp_counts(run_dir: Path, pid: int) -> list[dict[str, str]]:
    """SIPp's -trace_counts file (message counts, cumulative, every -fd seconds)."""
    with (
        contextlib.suppress(OSError),
        (run_dir / f"uac_call_overload_{pid}_counts.csv").open(newline="") as fh,
    ):
        return list(csv.DictReader(fh, delimiter=";"))
    return []


@dataclass
class Second:
    t: int
    attempted: int = 0
    ok: int = 0
    shed: int = 0
    failed: int = 0
    ping_ms: list[float] = field(default_factory=list)
    ping_lost: int = 0
    rss: float = float("nan")
    gc_max: float = 0.0


@dataclass
class Run:
    proxy: str
    capacity: int
    seconds: dict[int, Second]
    rss_before: float
    rss_peak: float
    rss_after_load: float
    rss_idle: float
    longest_gc: float
    commands: list[str]
    phases: tuple[float, float]


def overload(
    proxy: Proxy, capacity: int, run_dir: Path, overload_s: float, after_s: float, idle_s: float
) -> Run:
    assert proxy.proc is not None
    pid = proxy.proc.pid
    high, low = 2 * capacity, max(capacity // 2, 1)
    pinger, rss = Pinger(proxy.port), RssSampler(pid)
    time.sleep(2.0)
    rss_before = rss_mb(pid)
    pinger.start()
    rss.start()
    time.sleep(2.0)
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    commands = []
    t0 = time.time()
    n = 0
    for phase, (rate, seconds) in enumerate(((high, overload_s), (low, after_s))):
        # one SIPp UAC tops out near 1,000 calls/s here: split higher rates
        parts = -(-rate // UAC_MAX_RATE)
        for k in range(parts):
            share = rate // parts + (1 if k < rate % parts else 0)
            port = UAC_PORT + 60 + n
            wait_port(port, False, 20)
            stats = run_dir / f"ovl-{proxy.name}-{n}.csv"
            argv = uac_overload_argv(proxy.port, share, int(share * seconds), port, stats)
            commands.append(shlex.join(argv))
            out = (run_dir / f"ovl-{proxy.name}-{n}.out").open("wb")
            uac = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=run_dir)
            procs.append((uac, stats))
            n += 1
        end = overload_s if phase == 0 else overload_s + after_s
        time.sleep(max(0.0, t0 + end - time.time()))
    t_end = time.time()
    for p, _ in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    rss_after_load = rss_mb(pid)
    time.sleep(max(0.0, t_end + idle_s - time.time()))
    rss_idle = rss_mb(pid)
    pinger.stop()
    rss.stop()

    seconds: dict[int, Second] = {}

    def sec(at: float) -> Second:
        t = int(at - t0) if at >= t0 else -1 - int(t0 - at)
        return seconds.setdefault(t, Second(t))

    for uac, stats in procs:
        for row in sipp_rows(stats):
            s = sec(_epoch(row["CurrentTime"]) - 0.5)
            s.attempted += int(row.get("OutgoingCall(P)", 0) or 0)
            s.ok += int(row.get("SuccessfulCall(P)", 0) or 0)
            s.failed += int(row.get("FailedCall(P)", 0) or 0)
        prev = 0
        for row in sipp_counts(run_dir, uac.pid):
            col = next((k for k in row if k.endswith("_503_Recv")), None)
            if col is None or not row.get(col, "").isdigit():
                continue
            s = sec(_epoch(row["CurrentTime"]) - 0.5)
            s.shed += int(row[col]) - prev
            prev = int(row[col])
    for seq, sent in pinger.sent.items():
        s = sec(sent)
        if seq in pinger.rtt:
            s.ping_ms.append(1000 * pinger.rtt[seq])
        elif sent < time.time() - 5:
            s.ping_lost += 1
    for at, value in rss.samples:
        s = sec(at)
        s.rss = value if s.rss != s.rss else max(s.rss, value)
    longest = 0.0
    for at, pause, _gen in gc_pauses(proxy.log_path or run_dir / "none"):
        if at >= t0 - 2:
            s = sec(at)
            s.gc_max = max(s.gc_max, pause)
            longest = max(longest, pause)
    # SIPp counts a call ended by stop_call (after its 503) as successful
    for s in seconds.values():
        s.ok = max(0, s.ok - s.shed)
    peak = max((v for _, v in rss.samples), default=float("nan"))
    return Run(
        proxy.name, capacity, seconds, rss_before, peak, rss_after_load, rss_idle,
        longest, commands, (overload_s, after_s),
    )  # fmt: skip


def capacity_of(proxy: Proxy, run_dir: Path, steps: list[int], duration: float) -> int:
    best = 0
    seq = 1000
    for rate in steps:
        for attempt in (1, 2):
            seq += 1
            step = run_step(V4, proxy, rate, duration, run_dir, seq)
            print(
                f"  {proxy.name:8} capacity {rate:5}/s: ok {step.ok:6} failed {step.failed:5} "
                f"{'PASS' if step.passed else 'FAIL'}",
                flush=True,
            )
            time.sleep(1.0 if step.passed else 8.0)
            if step.passed or attempt == 2:
                break
        if not step.passed:
            break
        best = rate
    return best


# -- report -----------------------------------------------------------------------------------


def report(run: Run) -> str:
    o, a = run.phases
    lines = [
        f"### {run.proxy}: capacity {run.capacity} calls/s; {2 * run.capacity}/s for {o:.0f} s, "
        f"then {run.capacity // 2}/s for {a:.0f} s",
        "",
        "| s | phase | attempted | succeeded | 503 | failed | ping p50 ms | ping max ms "
        "| ping lost | RSS MB | GC max ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in sorted(run.seconds):
        s = run.seconds[t]
        if t < -2 or t > o + a + 5:
            continue
        phase = "before" if t < 0 else "2x" if t < o else "half" if t < o + a else "after"
        p50 = f"{statistics.median(s.ping_ms):.0f}" if s.ping_ms else "-"
        pmax = f"{max(s.ping_ms):.0f}" if s.ping_ms else "-"
        lines.append(
            f"| {t} | {phase} | {s.attempted} | {s.ok} | {s.shed} | {s.failed} | {p50} | {pmax} "
            f"| {s.ping_lost} | {s.rss:.0f} | {1000 * s.gc_max:.0f} |"
        )
    over = [run.seconds[t] for t in run.seconds if 0 <= t < o]
    half = [(t, run.seconds[t]) for t in sorted(run.seconds) if o <= t < o + a]
    first_503 = next((s.t for s in sorted(over, key=lambda s: s.t) if s.shed), None)
    goodput = sum(s.ok for s in over) / o if o else 0.0
    recovered = None
    for i, (t, _) in enumerate(half):
        if all(s.attempted == 0 or s.ok >= 0.99 * s.attempted for _, s in half[i:]):
            recovered = t - o
            break
    pings = [p for s in over for p in s.ping_ms]
    half_failed = sum(s.failed + s.shed for _, s in half)
    lines += [
        "",
        f"- first 503 at +{first_503} s of the overload; 503s in all: "
        f"{sum(s.shed for s in over)} of {sum(s.attempted for s in over)} calls attempted",
        f"- goodput during the overload: {goodput:.0f} calls/s = "
        f"{goodput / run.capacity:.2f} x capacity",
        f"- ping during the overload: median {statistics.median(pings) if pings else 0:.0f} ms, "
        f"worst {max(pings) if pings else 0:.0f} ms",
        f"- recovered (every later second >= 99 % succeeded) "
        f"{'after ' + str(recovered) + ' s' if recovered is not None else 'NOT within the phase'} "
        f"of half-capacity load; failed calls in that phase: {half_failed}",
        f"- RSS before {run.rss_before:.0f} MB, peak {run.rss_peak:.0f} MB, at the end of the load "
        f"{run.rss_after_load:.0f} MB, after the idle period {run.rss_idle:.0f} MB",
        f"- longest GC pause logged: {1000 * run.longest_gc:.0f} ms",
    ]
    return "\n".join(lines)


def run(
    quick: bool = False,
    kamailio: bool = False,
    capacity: int | None = None,
    overload_s: float | None = None,
    after_s: float | None = None,
    idle_s: float | None = None,
) -> int:
    for tool in ("sipp",) + (("kamailio",) if kamailio else ()):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode:
            print(f"{tool} not installed (scripts/install-system-deps.sh)", file=sys.stderr)
            return 1
    busy = [p for p in (25060, 25080, UAS_PORT) if udp_bound(p)]
    if busy:
        print(f"UDP ports {busy} in use (another bench run?): stop it first")
        return 1
    overload_s = overload_s or (10.0 if quick else 20.0)
    after_s = after_s or (10.0 if quick else 20.0)
    idle_s = idle_s or (20.0 if quick else 45.0)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    run_dir = Path(tempfile.mkdtemp(prefix="rtc64-bench-overload-"))
    load = os.getloadavg()[0]
    print(
        f"# overload benchmark: {platform.node()}, {os.cpu_count()} CPUs, load {load:.1f}, "
        f"run dir {run_dir}",
        flush=True,
    )
    runs = []
    with uas_running(run_dir):
        rtc = rtc64_proxy(run_dir, log_level="debug")
        rtc.start(run_dir)
        try:
            assert rtc.proc is not None
            fresh = rss_mb(rtc.proc.pid)
            cap = capacity or capacity_of(rtc, run_dir, CAPACITY_STEPS, 5.0)
            after_search = rss_mb(rtc.proc.pid)
            if not capacity:  # let the search's transactions end and memory come back
                time.sleep(idle_s)
            print(
                f"  rtc64 RSS: fresh {fresh:.0f} MB, after the capacity search "
                f"{after_search:.0f} MB, {idle_s:.0f} s later {rss_mb(rtc.proc.pid):.0f} MB",
                flush=True,
            )
            runs.append(overload(rtc, cap, run_dir, overload_s, after_s, idle_s))
        finally:
            rtc.stop()
        print(f"  rtc64 command: {shlex.join(rtc.argv)}")
        if kamailio:
            kam = kamailio_proxy(run_dir)
            kam.start(run_dir)
            try:
                kcap = capacity_of(kam, run_dir, CAPACITY_STEPS, 5.0)
                print(f"  kamailio capacity {kcap}/s (SIPp's own limit caps it on this machine)")
                time.sleep(3.0)
                runs.append(overload(kam, runs[0].capacity, run_dir, overload_s, after_s, 10.0))
            finally:
                kam.stop()
    print()
    for r in runs:
        print(report(r))
        print()
        for cmd in r.commands:
            print(f"  UAC: {cmd}")
        print()
    return 0


def main(quick: bool = False) -> int:
    return run(quick=quick, kamailio=True)


def cli() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10 s phases")
    ap.add_argument("--kamailio", action="store_true", help="Kamailio in the same run")
    ap.add_argument("--capacity", type=int, help="skip the search: calls/s")
    ap.add_argument("--overload", type=float, help="seconds at 2x capacity (20)")
    ap.add_argument("--after", type=float, help="seconds at half capacity (20)")
    ap.add_argument("--idle", type=float, help="seconds idle before the last RSS (45)")
    args = ap.parse_args()
    return run(args.quick, args.kamailio, args.capacity, args.overload, args.after, args.idle)


if __name__ == "__main__":
    raise SystemExit(cli())
