"""Media relay: rtc64 vs rtpengine (userspace), same sessions, same generator, one run.

What one run does (``python -m bench relay`` or ``python -m bench.relay_vs_rtpengine``):

1. Builds ``bench/rtpgen.c`` (a small C generator + sink, ``gcc -O2``) into a temp dir.
2. Starts ``rtpengine`` (Debian ``rtpengine-daemon``, ``--table=-1``: userspace only; one
   logical interface ``lo`` holding 127.0.0.1 and ::1) and rtc64's stand-alone relay
   (``python -m rtc64 relay``), one after the other, each on its own ng port and
   media port range, pinned to CPU 0 (``--no-pin`` to let the scheduler choose).
3. Starts the generator pinned to CPU 1: one sending socket on ``::1``, one sink socket on
   ``127.0.0.1``. First it measures itself without a relay (127.0.0.1 → 127.0.0.1): its
   ceiling and the direct-path latency floor.
4. Sets up ``--streams`` sessions in each relay over ng (offer: the caller's IPv6 SDP with
   ``address family`` IP4; answer: the callee's IPv4 SDP pointing at the sink).
5. For each relay: the call-like load (``--streams`` x 50 packets/s), then increasing
   rates (round-robin over the same streams) to find the highest rate with < 1 % loss
   (ramp by ``--ramp-step``, then bisect), then flat out. Every step of the search runs on
   a freshly started relay with fresh sessions (an overloaded rtpengine does not recover),
   after the relay's CPU has settled; a step during which other processes used more than
   0.25 core is repeated up to twice (the machine may be shared).
   Packets are 172 bytes (12-byte RTP header + 160), carrying a step id and the send time
   (CLOCK_REALTIME); the sink reads the kernel receive timestamp (SO_TIMESTAMPNS), so the
   latency is generator sendto → relay → sink socket, without the sink's scheduling.
   Relay CPU = utime+stime of the relay's processes (/proc/PID/stat, all threads and
   children) over the counted seconds of a step.

``--write-results`` replaces the section "Media relay: rtc64 vs rtpengine" of
bench/RESULTS.md with this run's table. Needs ``rtpengine`` and ``gcc``; only loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procstat import CLK_TCK, all_ticks, cpu_seconds, descendants
from rtc64.relay.bencode import Value, decode, encode

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Media relay: rtc64 vs rtpengine"
RTPENGINE_NG = 22230
RTC64_NG = 22231
RTPENGINE_PORTS = (40000, 43999)
RTC64_PORTS = (34000, 37999)
LOSS_LIMIT = 0.01
MAX_OTHERS = 0.25


# --- small helpers ------------------------------------------------------------------


def _sdp(host: str, port: int) -> str:
    fam = "IP6" if ":" in host else "IP4"
    return (
        f"v=0\r\no=- 1 1 IN {fam} {host}\r\ns=-\r\nc=IN {fam} {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def _udp_errors() -> dict[str, int]:
    """System-wide UDP receive-buffer drops (IPv4: the sink; IPv6: the relays' A side)."""
    out = {}
    with open("/proc/net/snmp") as f:
        lines = [ln.split() for ln in f if ln.startswith("Udp:")]
    out["udp4_rcvbuf"] = int(lines[1][lines[0].index("RcvbufErrors")])
    with open("/proc/net/snmp6") as f:
        for ln in f:
            k, v = ln.split()
            if k == "Udp6RcvbufErrors":
                out["udp6_rcvbuf"] = int(v)
    return out


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


_COOKIES = itertools.count(1)


class NgClient:
    """Cookie + bencode over UDP, with retransmission."""

    def __init__(self, port: int) -> None:
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.5)
        self.n = 0

    def __call__(self, request: dict[str, object]) -> dict[bytes, Value]:
        self.n += 1
        cookie = b"%d-%d" % (os.getpid(), next(_COOKIES))
        data = cookie + b" " + encode(request)  # type: ignore[arg-type]
        for _ in range(6):
            self.sock.sendto(data, self.addr)
            try:
                while True:
                    reply = self.sock.recv(65535)
                    got, _, body = reply.partition(b" ")
                    if got == cookie:
                        value = decode(body)
                        assert isinstance(value, dict)
                        return value
            except TimeoutError:
                continue
        raise RuntimeError(f"ng {self.addr}: no reply to {request.get('command')}")

    def close(self) -> None:
        self.sock.close()


def _media_port(sdp: bytes) -> int:
    m = re.search(rb"^m=audio (\d+) ", sdp, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"no m=audio in {sdp!r}")
    return int(m.group(1))


def setup_sessions(
    ng: NgClient, tag: str, streams: int, caller: tuple[str, int], callee: tuple[str, int]
) -> list[int]:
    """Offer/answer ``streams`` calls; the relay ports the caller must send to."""
    targets = []
    for i in range(streams):
        cid = f"{tag}-{i}"
        r = ng(
            {
                "command": "offer",
                "call-id": cid,
                "from-tag": "caller",
                "sdp": _sdp(*caller),
                "address family": "IP4",
            }
        )
        if r.get(b"result") != b"ok":
            raise RuntimeError(f"{tag}: offer failed: {r}")
        r = ng(
            {
                "command": "answer",
                "call-id": cid,
                "from-tag": "caller",
                "to-tag": "callee",
                "sdp": _sdp(*callee),
            }
        )
        if r.get(b"result") != b"ok":
            raise RuntimeError(f"{tag}: answer failed: {r}")
        sdp = r[b"sdp"]
        assert isinstance(sdp, bytes)
        if b"c=IN IP6 ::1" not in sdp:
            raise RuntimeError(f"{tag}: answer SDP is not IPv6: {sdp!r}")
        targets.append(_media_port(sdp))
    return targets


def _wait_ng(port: int, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    ng = NgClient(port)
    ng.sock.settimeout(0.2)
    try:
        for _ in range(50):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(RuntimeError):
                if ng({"command": "ping"}).get(b"result") == b"pong":
                    return
    finally:
        ng.close()
    raise RuntimeError(f"{name} does not answer ng ping: {log.read_text()[-2000:]}")


# --- the generator --------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    relay: str
    offered: float  # packets/s asked for (0: flat out)
    sent: int
    received: int
    seconds: float
    relay_cpu: float  # fraction of one core
    gen_cpu: float
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    drops: dict[str, int]
    load: str
    others: float  # CPU of all other processes during the step, cores

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
        return self.relay_cpu * self.seconds / max(self.received, 1) * 1e6

    def line(self) -> str:
        what = "flat out" if self.offered == 0 else f"{self.offered:>8,.0f} pps"
        return (
            f"{self.relay:9} {what}: sent {self.rate:>8,.0f}/s, "
            f"delivered {self.delivered:>8,.0f}/s, loss {self.loss:6.2%}, "
            f"relay CPU {self.relay_cpu:5.1%} "
            f"({self.us_per_packet:5.2f} us/pkt), gen CPU {self.gen_cpu:4.0%}, "
            f"latency p50/p90/p99/max {self.p50_us}/{self.p90_us}/{self.p99_us}/{self.max_us} us, "
            f"drops {self.drops}, "
            f"others {self.others:.2f} cores"
        )


class Generator:
    def __init__(self, binary: Path, src: str, sink: str, cpu: str | None) -> None:
        cmd = [str(binary), src, sink]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        words = self._read().split()
        self.src_port, self.sink_port = int(words[1]), int(words[2])
        self.step_id = 0

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("rtpgen exited")
        return line.strip()

    def _cmd(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def targets(self, host: str, ports: list[int], path: Path) -> None:
        path.write_text("".join(f"{p}\n" for p in ports))
        self._cmd(f"targets {host} {path}")
        assert self._read() == f"T {len(ports)}"

    def run(self, relay: str, pids: list[int], rate: float, warm: float, secs: float) -> Step:
        """One step; repeated (up to twice) when other processes took > 0.25 core meanwhile."""
        best: Step | None = None
        for _ in range(3):
            s = self._run(relay, pids, rate, warm, secs)
            if best is None or s.others < best.others:
                best = s
            if s.others <= MAX_OTHERS:
                break
            print(f"  (busy machine: {s.others:.2f} cores used by others, step repeated)")
        assert best is not None
        return best

    def _run(self, relay: str, pids: list[int], rate: float, warm: float, secs: float) -> Step:
        self.step_id += 1
        if pids:
            self.settle(pids)
        self._cmd(f"run {self.step_id} {rate} {warm} {secs} 0.5")
        line = self._read()
        assert line == "W", line
        t0, c0, g0, d0 = time.monotonic(), cpu_seconds(pids), self._gen_cpu(), _udp_errors()
        a0 = all_ticks()
        m = self._read().split()
        t1, c1, g1, d1 = time.monotonic(), cpu_seconds(pids), self._gen_cpu(), _udp_errors()
        a1 = all_ticks()
        ours = {*pids, self.proc.pid, os.getpid()}
        others = sum(t - a0.get(p, 0) for p, t in a1.items() if p not in ours) / CLK_TCK
        r = self._read().split()
        assert m[0] == "M" and r[0] == "R", (m, r)
        wall = t1 - t0
        return Step(
            relay=relay,
            offered=rate,
            sent=int(r[1]),
            received=int(r[2]),
            seconds=float(m[2]),
            relay_cpu=(c1 - c0) / wall,
            gen_cpu=(g1 - g0) / wall,
            p50_us=int(r[3]),
            p90_us=int(r[4]),
            p99_us=int(r[5]),
            max_us=int(r[6]),
            drops={k: d1[k] - d0[k] for k in d1},
            load=_load(),
            others=others / (t1 - t0),
        )

    def settle(self, pids: list[int], limit: float = 20.0) -> float:
        """Wait until the relay has drained what an overloaded step left in its queues."""
        start = time.monotonic()
        last = cpu_seconds(pids)
        while time.monotonic() - start < limit:
            time.sleep(0.3)
            now = cpu_seconds(pids)
            if now - last < 0.3 * 0.05:
                break
            last = now
        return time.monotonic() - start

    def _gen_cpu(self) -> float:
        return cpu_seconds([self.proc.pid])

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._cmd("quit")
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the run --------------------------------------------------------------------------


class Relay:
    """One relay process under test; stop + start gives it fresh sessions."""

    def __init__(self, name: str, cmd: list[str], ng_port: int, log: Path) -> None:
        self.name, self.cmd, self.ng_port, self.log = name, cmd, ng_port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.targets: list[int] = []
        self.setup_seconds = 0.0

    def start(self, gen: Generator, streams: int) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        _wait_ng(self.ng_port, self.proc, self.name, self.log)
        ng = NgClient(self.ng_port)
        t = time.monotonic()
        try:
            self.targets = setup_sessions(
                ng, self.name, streams, ("::1", gen.src_port), ("127.0.0.1", gen.sink_port)
            )
        finally:
            ng.close()
        self.setup_seconds = time.monotonic() - t
        self.pids = descendants(self.proc.pid)  # taskset execs the relay: same pid

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _step(gen: Generator, relay: Relay, rate: float, warm: float, secs: float) -> Step:
    gen.targets("::1", relay.targets, relay.log.with_suffix(".targets"))
    s = gen.run(relay.name, relay.pids, rate, warm, secs)
    print("  " + s.line(), flush=True)
    return s


def find_max(
    gen: Generator,
    relay: Relay,
    streams: int,
    start: float,
    step: float,
    ceiling: float,
    warm: float,
    secs: float,
    resolution: float,
    log: list[Step],
) -> Step | None:
    """Ramp the rate by ``step`` until loss >= 1 %, then bisect down to ``resolution``.

    Every step runs on a freshly started relay with fresh sessions: an overloaded relay
    may not recover by itself (rtpengine 10.5 userspace does not: see RESULTS.md), and the
    next step must not measure that.
    """

    def ok(s: Step, rate: float) -> bool:
        return s.loss < LOSS_LIMIT and s.rate >= 0.97 * rate

    good: Step | None = None
    bad: float | None = None
    rate = start
    while rate <= ceiling:
        relay.stop()
        relay.start(gen, streams)
        s = _step(gen, relay, rate, warm, secs)
        log.append(s)
        if ok(s, rate):
            good = s
            rate += step
        else:
            bad = rate
            break
    if bad is None:
        return good
    low = good.offered if good else 0.0
    while bad - low > resolution:
        mid = round((low + bad) / 2 / 500) * 500
        if mid <= low or mid >= bad:
            break
        relay.stop()
        relay.start(gen, streams)
        s = _step(gen, relay, mid, warm, secs)
        log.append(s)
        if ok(s, mid):
            good, low = s, mid
        else:
            bad = mid
    return good


def run(args: argparse.Namespace) -> int:
    for tool in ("rtpengine", "gcc", "taskset"):
        if shutil.which(tool) is None:
            print(f"relay bench: {tool} not found", file=sys.stderr)
            return 1
    running = subprocess.run(
        ["pgrep", "-x", "rtpengine"], check=False, capture_output=True, text=True
    )
    if running.stdout.strip():
        print(
            f"relay bench: an rtpengine is already running (pid {running.stdout.split()})"
            " - stop the system service first",
            file=sys.stderr,
        )
        return 1
    quick = args.quick
    warm = 1.0
    secs = 3.0 if quick else args.seconds
    pin_relay = None if args.no_pin else "0"
    pin_gen = None if args.no_pin else "1"
    streams = args.streams
    tmp = Path(tempfile.mkdtemp(prefix="rtc64-relaybench-"))
    steps: list[Step] = []
    summary: dict[str, dict[str, Step | None]] = {}
    started = time.monotonic()
    print(f"relay bench: {streams} streams, {secs:g} s per step, {_load()}", flush=True)
    try:
        binary = tmp / "rtpgen"
        subprocess.run(
            ["gcc", "-O2", "-o", str(binary), str(HERE / "rtpgen.c"), "-lpthread"], check=True
        )

        # Generator alone: ceiling and direct-path latency floor (127.0.0.1 -> 127.0.0.1).
        base = Generator(binary, "127.0.0.1", "127.0.0.1", pin_gen)
        try:
            base.targets("127.0.0.1", [base.sink_port] * streams, tmp / "base.targets")
            floor = base.run("direct", [], streams * 50.0, warm, secs)
            print("  " + floor.line(), flush=True)
            ceiling = base.run("direct", [], 0, warm, secs)
            print("  " + ceiling.line(), flush=True)
        finally:
            base.close()
        steps += [floor, ceiling]

        rte_cmd = [
            "rtpengine", "--foreground", "--table=-1",
            "--interface=lo/127.0.0.1", "--interface=lo/::1",
            f"--listen-ng=127.0.0.1:{RTPENGINE_NG}",
            f"--port-min={RTPENGINE_PORTS[0]}", f"--port-max={RTPENGINE_PORTS[1]}",
            "--timeout=3600", "--silent-timeout=3600", "--log-stderr", "--log-level=4",
        ]  # fmt: skip
        if args.rtpengine_threads:
            rte_cmd.append(f"--num-threads={args.rtpengine_threads}")
        rtc_cmd = [
            sys.executable, "-m", "rtc64", "relay",
            "--ng-listen", f"udp:127.0.0.1:{RTC64_NG}",
            "--media-address", "127.0.0.1", "--media-address", "::1",
            "--media-ports", f"{RTC64_PORTS[0]}-{RTC64_PORTS[1]}",
            "--media-timeout", "3600", "--log-level", "warning",
        ]  # fmt: skip
        if pin_relay is not None:
            rte_cmd = ["taskset", "-c", pin_relay, *rte_cmd]
            rtc_cmd = ["taskset", "-c", pin_relay, *rtc_cmd]
        relays = [
            Relay("rtpengine", rte_cmd, RTPENGINE_NG, tmp / "rtpengine.log"),
            Relay("rtc64", rtc_cmd, RTC64_NG, tmp / "rtc64.log"),
        ]
        if args.only:
            relays = [r for r in relays if r.name == args.only]
        gen = Generator(binary, "::1", "127.0.0.1", pin_gen)
        try:
            for relay in relays:
                try:
                    relay.start(gen, streams)
                    print(
                        f"{relay.name} (pids {relay.pids}): {streams} sessions set up over ng"
                        f" in {relay.setup_seconds:.2f} s",
                        flush=True,
                    )
                    calls = _step(gen, relay, streams * 50.0, warm, secs)
                    steps.append(calls)
                    best = find_max(
                        gen, relay, streams,
                        start=args.ramp_start, step=args.ramp_step * (2 if quick else 1),
                        ceiling=ceiling.rate * 0.95, warm=warm, secs=secs,
                        resolution=args.ramp_step / (2 if quick else 4), log=steps,
                    )  # fmt: skip
                    relay.stop()
                    relay.start(gen, streams)
                    flat = _step(gen, relay, 0, warm, secs)
                    steps.append(flat)
                    summary[relay.name] = {"calls": calls, "max": best, "flat": flat}
                finally:
                    relay.stop()
        finally:
            gen.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    text = report(args, summary, floor, ceiling, steps, elapsed)
    print(text)
    if args.write_results:
        write_section(text)
        print(f"written to {RESULTS}")
    return 0


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == 0:
        return "-"
    return f"{b / a:.2f}"


def report(
    args: argparse.Namespace,
    summary: dict[str, dict[str, Step | None]],
    floor: Step,
    ceiling: Step,
    steps: list[Step],
    elapsed: float,
) -> str:
    rte = summary.get("rtpengine", {})
    rtc = summary.get("rtc64", {})

    def get(d: dict[str, Step | None], key: str, attr: str) -> float | None:
        s = d.get(key)
        return None if s is None else float(getattr(s, attr))

    rows = []

    def row(label: str, key: str, attr: str, fmt: str, minus: float = 0.0) -> None:
        a, b = get(rte, key, attr), get(rtc, key, attr)
        a2 = None if a is None else a - minus
        b2 = None if b is None else b - minus
        rows.append(
            f"| {label} | {'-' if a2 is None else format(a2, fmt)} | "
            f"{'-' if b2 is None else format(b2, fmt)} | {_ratio(a2, b2)} |"
        )

    n = args.streams
    row(
        f"relay CPU at {n * 50:,} pps ({n} streams x 50 pps), % of one core",
        "calls",
        "relay_cpu",
        ".1%",
    )
    row("relay CPU per packet, µs", "calls", "us_per_packet", ".2f")
    row(f"loss at {n * 50:,} pps", "calls", "loss", ".3%")
    row(f"latency p50 at {n * 50:,} pps, µs (gen → relay → sink)", "calls", "p50_us", ".0f")
    row(f"latency p99 at {n * 50:,} pps, µs", "calls", "p99_us", ".0f")
    row("added latency p50 (minus direct path), µs", "calls", "p50_us", ".0f", floor.p50_us)
    row("added latency p99 (minus direct path), µs", "calls", "p99_us", ".0f", floor.p99_us)
    row("max packets/s with < 1 % loss", "max", "rate", ",.0f")
    row("relay CPU at that rate, % of one core", "max", "relay_cpu", ".1%")
    row("latency p50 at that rate, µs", "max", "p50_us", ".0f")
    row("latency p99 at that rate, µs", "max", "p99_us", ".0f")
    row("flat out: delivered packets/s", "flat", "delivered", ",.0f")
    row("flat out: loss", "flat", "loss", ".1%")
    row("flat out: relay CPU, % of one core", "flat", "relay_cpu", ".1%")
    pin = "not pinned" if args.no_pin else "relay pinned to CPU 0, generator+sink to CPU 1"
    cmd = "python -m bench relay" + (" --quick" if args.quick else "")
    if sys.argv and sys.argv[0].endswith("relay_vs_rtpengine.py"):
        cmd = "python -m bench.relay_vs_rtpengine " + " ".join(sys.argv[1:])
    detail = "\n".join(f"    {s.line()}" for s in steps)
    return f"""{SECTION}

Command: `.venv/bin/{cmd}` (run {time.strftime("%Y-%m-%d %H:%M")}, {elapsed:.0f} s).
{n} sessions set up over ng in each relay (offer from an IPv6 caller with `address family`
IP4, answer from the IPv4 callee); 172-byte RTP packets from one `::1` socket to the relays'
IPv6 ports, relayed to one `127.0.0.1` sink; {pin}. rtpengine {_rtpengine_version()}
userspace (`--table=-1`, {_threads(args)}), rtc64 `python -m rtc64 relay` (one
process, {_loop_name()}, default settings: RTP statistics on). Relay CPU: utime+stime from
/proc/PID/stat over the counted {floor.seconds:.0f} s of each step. Latency: generator's
CLOCK_REALTIME before `sendto` to the kernel receive timestamp (SO_TIMESTAMPNS) of the
relayed packet at the sink; "added" subtracts the direct generator → sink path at the same
rate (p50 {floor.p50_us} µs, p99 {floor.p99_us} µs). Generator ceiling on its core:
{ceiling.delivered:,.0f} pps sent and received without a relay. Ratio = rtc64 / rtpengine.

| metric | rtpengine | rtc64 | ratio |
|---|---|---|---|
{chr(10).join(rows)}

Machine: {os.cpu_count()} cores, {_cpu_model()}; {steps[-1].load} at the end
(another benchmark may share the machine: loads per step below).

All steps (drops: system-wide UDP receive-buffer overflows during the step; udp6 = the
relays' IPv6 side, udp4 = the sink):

{detail}
"""


def _threads(args: argparse.Namespace) -> str:
    if args.rtpengine_threads:
        return f"`--num-threads={args.rtpengine_threads}`"
    return "default threads"


def _rtpengine_version() -> str:
    out = subprocess.run(["rtpengine", "--version"], check=False, capture_output=True, text=True)
    return (out.stdout + out.stderr).strip().replace("Version: ", "")


def _loop_name() -> str:
    from rtc64.io.loop import loop_name  # noqa: PLC0415

    return loop_name()


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def write_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("" if nxt < 0 else old[nxt:])
    RESULTS.write_text(new.rstrip("\n") + "\n")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench.relay_vs_rtpengine", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="3 s steps, coarser ramp")
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=5.0, help="counted seconds per step")
    ap.add_argument("--ramp-start", type=float, default=30000.0)
    ap.add_argument("--ramp-step", type=float, default=10000.0)
    ap.add_argument("--only", choices=("rtpengine", "rtc64"), help="measure one relay")
    ap.add_argument(
        "--rtpengine-threads",
        type=int,
        default=0,
        help="rtpengine --num-threads (default: its own)",
    )
    ap.add_argument("--no-pin", action="store_true", help="no taskset pinning")
    ap.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    return ap


def main(quick: bool = False, argv: list[str] | None = None) -> int:
    args = _parser().parse_args([] if argv is None else argv)
    args.quick = args.quick or quick
    return run(args)


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
