"""Keepalives at scale: 100,000 registered contacts (half IPv6, half IPv4) kept open with
pinhole keepalives every 25 s and OPTIONS every 120 s, with real sockets (issue 11).

Everything runs in a network namespace of its own (created and removed here; root needed):
lo carries 127.0.0.0/8 and a local route for fd00:bee::/64, so every contact has its own
address. ``bench.keepalive_sink`` plays the phones (it answers every OPTIONS from the
contact's own address and counts the pinhole keepalives).

For each mode (keepalives off, then on) the store is filled directly with the same
100,000 bindings (SQLite, as ``rtc64 serve`` keeps it), ``rtc64 serve`` starts on
udp:127.0.0.1:25060 and udp:[::1]:25060 with the defaults (25 s / 120 s), and after a
warm-up the gateway's CPU (utime+stime from /proc/PID/stat) is measured over a window of
one OPTIONS interval, then its RSS (/proc/PID/status). Then SIPp sets up calls through it
at a fixed rate (``bench.sip_proxy.run_step``, IPv4 → IPv4) while the keepalives go on,
and failed calls are counted. Memory per contact is the RSS difference (on - off) / N and,
exactly, the bytes the schedule allocates per contact (``tracemalloc``, in-process, after
two simulated OPTIONS rounds).

``python -m bench.keepalive`` (``--quick``: 10,000 contacts, short windows;
``--overload-lag 0``: the gateway's admission control does not shed, to tell calls the
gateway could not handle from calls it shed during a queueing spike).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from bench.sip_proxy import (
    PROXY_PORT,
    RTC64_ARGV,
    SCENARIOS,
    Proxy,
    cpu_seconds,
    process_tree,
    run_step,
    uas_running,
    udp_rcvbuf_errors,
)
from rtc64.gateway.keepalive.schedule import KeepaliveSchedule, KeepaliveSettings, SendOptions
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.sqlite import SqliteStore

SINK_PORT, SINK_PORTS = 20000, 8
V4_BASE, V6_BASE = IPv4Address("127.16.0.1"), IPv6Address("fd00:bee::1")
PORT = PROXY_PORT["rtc64"]
CALL_RATE = 100


def bindings(n: int, wall: float) -> list[Binding]:
    """``n`` UDP bindings, even ones IPv6, odd ones IPv4, each with its own address."""
    out = []
    for i in range(n):
        v6 = i % 2 == 0
        ip = V6_BASE + i if v6 else V4_BASE + i
        host = f"[{ip}]" if v6 else str(ip)
        port = SINK_PORT + i % SINK_PORTS
        out.append(
            Binding(
                aor=f"sip:u{i}@bench.test",
                contact=f"sip:u{i}@{host}:{port}".encode(),
                expires_at=wall + 7200,
                call_id=b"bench-%d" % i,
                cseq=1,
                transport="udp",
                listener=f"udp:[::1]:{PORT}" if v6 else f"udp:127.0.0.1:{PORT}",
                received_ip=ip,
                received_port=port,
                user_agent=b"bench",
            )
        )
    return out


def fill_store(data_dir: Path, n: int) -> None:
    """The SQLite store of ``rtc64 serve`` holding ``n`` fresh bindings."""
    path = data_dir / store_file_name()

    async def create() -> None:
        await (await SqliteStore.open(path)).close()

    asyncio.run(create())
    rows = [(b.aor, 0, b.expires_at, b.to_json()) for b in bindings(n, time.time())]
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO bindings (aor, pos, expires_at, data) VALUES (?,?,?,?)", rows)


def store_file_name() -> str:
    from rtc64.gateway.location.backends import parse_store_url  # noqa: PLC0415

    spec = parse_store_url("sqlite", Path("/D"))
    assert spec.path is not None
    return spec.path.name


def schedule_bytes(n: int) -> float:
    """Bytes the keepalive schedule allocates per contact (tracemalloc), after 250
    simulated seconds with every OPTIONS answered but the last round's."""
    items = bindings(n, 1000.0)
    for b in items:
        b.to_row()  # the row the store holds (shared with the schedule), not counted
    rng = random.Random(1)
    counter = itertools.count()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    s = KeepaliveSchedule(
        KeepaliveSettings(),
        rng=rng.random,
        new_token=lambda: b"%020x" % next(counter),
    )
    for b in items:
        s.add(b, 0.0, 1000.0)
    when = s.get_timer()
    while when is not None and when < 250.0:
        for action in s.handle_timer(when):
            if isinstance(action, SendOptions) and when < 240.0:
                s.on_reply(action.token, 200, action.target.transport, action.target.remote, when)
        when = s.get_timer()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(s) == n
    return used / n


@dataclass
class Mode:
    keepalive: bool
    contacts: int
    window_s: float = 0.0
    cpu_s: float = 0.0
    rss_kb: int = 0
    pings: int = 0
    options: int = 0
    calls_ok: int = 0
    calls_failed: int = 0
    call_retrans: int = 0
    call_cpu_pct: float = 0.0
    rcvbuf_errors: int = 0
    removed: int = 0
    calls_503: int = 0
    """Failed calls that were shed (503 under overload) rather than lost."""
    probe_samples: int = 0
    probe_worst_s: float = 0.0
    """Longest answer to the responsiveness OPTIONS over the window and the calls."""
    probe_slow: int = 0
    """Answers slower than 0.1 s."""
    stalls: int = 0
    """Overload episodes the gateway logged (queueing above sip.overload_lag)."""
    worst_stall_s: float = 0.0
    worst_full_gc_s: float = 0.0
    worst_full_gc_cpu_s: float = 0.0
    """CPU time of that collection (its own work, without waiting for a core)."""
    late_ticks: int = 0
    """Lag-monitor ticks >= 0.1 s late (the gateway logs each with its CPU gap)."""
    worst_own_s: float = 0.0
    """The longest lateness the loop's own work explains: max over late ticks of
    min(lateness, CPU the loop used since the tick before); the rest was waiting."""
    runq_wait_s: float = 0.0
    """Seconds the gateway waited for a core over the window and the calls."""
    busy_s: float = 0.0
    """Wall seconds of the window and the calls."""
    load: float = 0.0
    """The machine's 1-minute load average after the calls (2 cores, shared)."""
    command: str = ""

    @property
    def cpu_pct(self) -> float:
        return 100 * self.cpu_s / self.window_s if self.window_s else 0.0


def rss_kb(root: int) -> int:
    """Resident memory of ``root`` and its live descendants (the SIP workers)."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
            total += int(found.group(1)) if found else 0
    return total


def runqueue_wait(root: int) -> float:
    """Seconds the threads of ``root`` and its descendants have spent runnable but
    waiting for a core (/proc/PID/task/*/schedstat, second field): what a shared machine
    adds to their lag."""
    total = 0
    for pid in process_tree(root):
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def sink_counts(path: Path) -> tuple[int, int]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("t=")]
    if not lines:
        return 0, 0
    found = re.search(r"pings=(\d+) options=(\d+)", lines[-1])
    assert found
    return int(found.group(1)), int(found.group(2))


class Responsiveness:
    """The gateway's answer time seen from outside: an OPTIONS (``Max-Forwards: 0``,
    answered by the gateway itself, never forwarded) to its IPv4 listener every
    ``every`` seconds from a thread; the longest wait for an answer and how many waited
    more than 0.1 s (rtc64's default ``sip.overload_lag``). One outstanding at a time: a
    stall shows once, as long as it lasted."""

    def __init__(self, port: int, every: float = 0.02) -> None:
        self.port, self.every = port, every
        self.samples, self.slow, self.worst, self.lost = 0, 0, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Responsiveness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", self.port))
        sock.settimeout(5.0)
        host, lport = sock.getsockname()[:2]
        local = f"{host}:{lport}"
        for seq in itertools.count(1):
            if self._stop.is_set():
                break
            msg = (
                f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {local};branch=z9hG4bK-resp-{seq};rport\r\n"
                f"Max-Forwards: 0\r\nFrom: <sip:probe@{local}>;tag=p\r\n"
                f"To: <sip:127.0.0.1:{self.port}>\r\nCall-ID: resp-{seq}\r\n"
                f"CSeq: {seq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            sent = time.monotonic()
            sock.send(msg)
            while True:
                try:
                    data = sock.recv(65535)
                except OSError:
                    self.lost += 1
                    break
                if f"Call-ID: resp-{seq}\r\n".encode() in data:
                    wait = time.monotonic() - sent
                    self.samples += 1
                    self.worst = max(self.worst, wait)
                    self.slow += wait > 0.1
                    break
            self._stop.wait(self.every)
        sock.close()


def wait_log(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not in {path} after {timeout:.0f} s")
        time.sleep(0.2)


def run_mode(
    run_dir: Path,
    sink_log: Path,
    keepalive: bool,
    n: int,
    warmup: float,
    window: float,
    overload_lag: float | None = None,
    workers: int = 0,
) -> Mode:
    data = run_dir / f"data-{'on' if keepalive else 'off'}"
    data.mkdir()
    fill_store(data, n)
    cfg = run_dir / "rtc64.toml"
    lag = "" if overload_lag is None else f"overload_lag = {overload_lag}\n"
    cfg.write_text(f"[sip]\nrequest_rate = 0\n{lag}")
    argv = [
        *RTC64_ARGV, "serve", "--config", str(cfg), "--data-dir", str(data),
        "--sip-listen", f"udp:127.0.0.1:{PORT}", "--sip-listen", f"udp:[::1]:{PORT}",
        "--trusted-network", "127.0.0.0/8", "--trusted-network", "::1/128",
        "--domain", "bench.test", "--log-level", "info", "--media-policy", "never",
        "--keepalive", "true" if keepalive else "false", "--sip-workers", str(workers),
    ]  # fmt: skip
    mode = Mode(keepalive, n, command=shlex.join(argv))
    proxy = Proxy("rtc64", argv, start_timeout=120.0)
    proxy.start(run_dir)
    assert proxy.proc is not None and proxy.log_path is not None
    try:
        wait_log(proxy.log_path, "gateway ready", 120)
        pid = proxy.proc.pid
        time.sleep(warmup)
        p0, o0 = sink_counts(sink_log)
        with Responsiveness(PORT) as probe:
            wait0 = runqueue_wait(pid)
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(window)
            mode.cpu_s, mode.window_s = cpu_seconds(pid) - cpu0, time.monotonic() - t0
            p1, o1 = sink_counts(sink_log)
            mode.pings, mode.options = p1 - p0, o1 - o0
            mode.rss_kb = rss_kb(pid)
            with uas_running(run_dir):
                step = run_step(SCENARIOS[0], proxy, CALL_RATE, min(window, 30.0), run_dir, 1)
            mode.runq_wait_s, mode.busy_s = runqueue_wait(pid) - wait0, time.monotonic() - t0
        mode.probe_samples, mode.probe_worst_s = probe.samples, probe.worst
        mode.probe_slow = probe.slow
        mode.calls_ok, mode.calls_failed = step.ok, step.failed
        mode.load = os.getloadavg()[0]
        mode.call_retrans, mode.rcvbuf_errors = step.retrans, step.rcvbuf_errors
        mode.call_cpu_pct = 100 * step.cpu_s / step.wall
        log = proxy.log_path.read_text(errors="replace")
        mode.removed = log.count("unreachable (")
        stalls = [float(x) for x in re.findall(r"overload: ([\d.]+) s queued", log)]
        mode.stalls, mode.worst_stall_s = len(stalls), max(stalls, default=0.0)
        late = re.findall(r"event loop ([\d.]+) s late \(([\d.]+) s of CPU", log)
        mode.late_ticks = len(late)
        mode.worst_own_s = max((min(float(w), float(c)) for w, c in late), default=0.0)
        pauses = re.findall(r"full collection took ([\d.]+) s \(([\d.]+) s CPU", log)
        worst = max(((float(w), float(c)) for w, c in pauses), default=(0.0, 0.0))
        mode.worst_full_gc_s, mode.worst_full_gc_cpu_s = worst
        # SIPp writes an .err file per UAC only when calls failed (one UAC per pair)
        for n, err in enumerate(sorted(run_dir.glob("uac-rtc64-v4-100-1*.err"))):
            mode.calls_503 += err.read_text(errors="replace").count("received 'SIP/2.0 503")
            err.rename(run_dir / f"calls-{'on' if keepalive else 'off'}-{n}.err")
    finally:
        proxy.stop()
    return mode


def inside(args: argparse.Namespace) -> int:
    """The benchmark proper, run inside the namespace."""
    if args.nice:
        # The gateway, the sink and SIPp inherit it. With autogroup scheduling a nice
        # value only counts inside its session's group: a session of our own, niced.
        with contextlib.suppress(OSError):
            os.setsid()
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(f"{args.nice}\n")
        os.nice(args.nice)
    n, warmup, window = args.contacts, args.warmup, args.window
    run_dir = Path(tempfile.mkdtemp(prefix="rtc64-bench-keepalive-"))
    sink_log = run_dir / "sink.log"
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.keepalive_sink", "--ports", f"{SINK_PORT}:{SINK_PORTS}"],
        stdout=sink_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_log(sink_log, "sink ready", 10)
        buf0 = udp_rcvbuf_errors()
        lag = args.overload_lag
        modes = [
            run_mode(run_dir, sink_log, ka, n, warmup, window, lag, args.workers)
            for ka in (False, True)
        ]
        buf = udp_rcvbuf_errors() - buf0
    finally:
        sink.terminate()
        sink.wait(10)
    per_contact = schedule_bytes(n)
    off, on = modes
    print(
        f"contacts {n} (half IPv6, half IPv4), window {window:.0f} s after {warmup:.0f} s, "
        f"--sip-workers {args.workers} (0: one per core; CPU and RSS of every process)"
    )
    print("| keepalives | CPU of one core | RSS | pings/s | OPTIONS/s | calls ok/failed "
          "(of which 503) | CPU during calls | stalls (worst) | worst full GC (CPU) "
          "| answer time worst (> 0.1 s of samples) | late ticks (worst own work) "
          "| waited for a core | load |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in modes:
        print(
            f"| {'on' if m.keepalive else 'off'} | {m.cpu_pct:.1f} % | {m.rss_kb / 1024:.0f} MiB "
            f"| {m.pings / m.window_s:.0f} | {m.options / m.window_s:.0f} "
            f"| {m.calls_ok}/{m.calls_failed} ({m.calls_503}) | {m.call_cpu_pct:.1f} % "
            f"| {m.stalls} ({m.worst_stall_s:.2f} s) | {m.worst_full_gc_s:.2f} s "
            f"({m.worst_full_gc_cpu_s:.3f} s) "
            f"| {m.probe_worst_s:.3f} s ({m.probe_slow} of {m.probe_samples}) "
            f"| {m.late_ticks} ({m.worst_own_s:.3f} s) "
            f"| {100 * m.runq_wait_s / m.busy_s if m.busy_s else 0:.0f} % | {m.load:.1f} |"
        )
    print(f"keepalive CPU (on - off): {on.cpu_pct - off.cpu_pct:.1f} % of one core")
    print(f"RSS per contact (on - off): {(on.rss_kb - off.rss_kb) * 1024 / n:.0f} B")
    print(f"schedule allocations per contact (tracemalloc): {per_contact:.0f} B")
    print(f"contacts removed as unreachable: {on.removed}; UDP rcvbuf drops: {buf}")
    print(f"command (on): {on.command}")
    result = {
        "modes": [asdict(m) for m in modes],
        "schedule_bytes_per_contact": per_contact,
        "rcvbuf_errors": buf,
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    print(f"details: {run_dir}")
    return 0


def main(quick: bool = False, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.keepalive")
    parser.add_argument("--contacts", type=int, default=10_000 if quick else 100_000)
    parser.add_argument("--warmup", type=float, default=10.0 if quick else 30.0)
    parser.add_argument("--window", type=float, default=30.0 if quick else 120.0)
    parser.add_argument(
        "--overload-lag",
        type=float,
        default=None,
        help="sip.overload_lag for the gateway (0: no shedding; default: rtc64's 0.1 s)",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="rtc64 --sip-workers (default 0: one per core)"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of every benchmark process (e.g. -15 on a shared machine: the "
        "gateway, the phones and SIPp get the cores first; their wait is reported)",
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        print("bench.keepalive needs root (its own network namespace)", file=sys.stderr)
        return 2
    ns = f"r64kb-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "-6", "route", "add", "local", "fd00:bee::/64", "dev", "lo"],
            ["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"],
        ):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
        forwarded = [
            f"--{k.replace('_', '-')}={v}"
            for k, v in vars(args).items()
            if k != "inside" and v is not None
        ]
        child = [sys.executable, "-m", "bench.keepalive", "--inside", *forwarded]
        return subprocess.run(["ip", "netns", "exec", ns, *child], check=False).returncode
    finally:
        subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    sys.exit(main(quick="--quick" in sys.argv, argv=[a for a in sys.argv[1:] if a != "--quick"]))
