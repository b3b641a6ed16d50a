# The TURN benchmark's report: one markdown section for bench/RESULTS.md with the exact
# command, the machine state, a table per run (coturn, rtc64, ratio rtc64/coturn), the
# agreement between runs, every step, and a py-spy summary of rtc64 when one was taken.
"""Report and profile helpers for ``bench/turn.py``."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## TURN server: rtc64 vs coturn"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cmd_out(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout + out.stderr).strip()


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _commit() -> str:
    head = _cmd_out(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"])
    dirty = _cmd_out(["git", "-C", str(HERE), "status", "--porcelain", "--", "src"])
    return head + (" + uncommitted changes in src/" if dirty else "")


def _loop_name() -> str:
    try:
        from rtc64.io.loop import loop_name  # noqa: PLC0415
    except ImportError:
        return "?"
    return loop_name()


# --- metrics ------------------------------------------------------------------------


def _get(d: dict[str, Any], key: str, attr: str) -> float | None:
    s = d.get(key)
    return None if s is None else float(getattr(s, attr))


METRICS: list[tuple[str, str, str, str]] = [
    ("allocations/s, long-term credentials (higher is better)", "alloc_lt", "rate", ",.0f"),
    ("server CPU per allocation, long-term, ms", "alloc_lt", "ms_per_alloc", ".3f"),
    ("server CPU during it, % of one core", "alloc_lt", "cpu", ".0%"),
    (
        "→ long-term allocations per CPU-second (1 / CPU per allocation)",
        "alloc_lt",
        "per_cpu_s",
        ",.0f",
    ),
    ("allocations/s, REST credentials (higher is better)", "alloc_rest", "rate", ",.0f"),
    ("server CPU per allocation, REST, ms", "alloc_rest", "ms_per_alloc", ".3f"),
    ("server CPU during it, % of one core", "alloc_rest", "cpu", ".0%"),
    (
        "→ REST allocations per CPU-second (1 / CPU per allocation)",
        "alloc_rest",
        "per_cpu_s",
        ",.0f",
    ),
    ("relay CPU at {calls} pps, % of one core (lower is better)", "calls", "cpu", ".1%"),
    ("relay CPU per packet at {calls} pps, µs (lower is better)", "calls", "us_per_packet", ".2f"),
    ("irq + softirq on the server's core at {calls} pps, % of one core", "calls", "softirq", ".1%"),
    ("loss at {calls} pps", "calls", "loss", ".3%"),
    ("latency p50 at {calls} pps, µs (send → sink)", "calls", "p50", ".0f"),
    ("latency p99 at {calls} pps, µs", "calls", "p99", ".0f"),
    ("max packets/s with < 1 % loss (higher is better)", "max", "rate", ",.0f"),
    ("relay CPU at that rate, % of one core", "max", "cpu", ".1%"),
    ("flat out: delivered packets/s", "flat", "delivered", ",.0f"),
    ("flat out: loss", "flat", "loss", ".1%"),
]


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == 0:
        return "-"
    return f"{b / a:.2f}"


def _fmt(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(args: argparse.Namespace, summary: dict[str, dict[str, Any]]) -> str:
    co, rt = summary.get("coturn", {}), summary.get("rtc64", {})
    calls = f"{args.channels * 50:,}"
    rows = ["| metric | coturn | rtc64 | rtc64 / coturn |", "|---|---:|---:|---:|"]
    for label, key, attr, fmt in METRICS:
        if key not in co and key not in rt:
            continue
        a, b = _get(co, key, attr), _get(rt, key, attr)
        sa, sb = _fmt(a, fmt), _fmt(b, fmt)
        if key == "max":
            sa = ("≥ " if co.get("max_limited") else "") + sa
            sb = ("≥ " if rt.get("max_limited") else "") + sb
        rows.append(f"| {label.format(calls=calls)} | {sa} | {sb} | {_ratio(a, b)} |")
    return "\n".join(rows)


def agreement(runs: list[dict[str, dict[str, Any]]]) -> str:
    """Per metric and server: the value in each run and the spread (max/min - 1)."""
    if len(runs) < 2:
        return ""
    lines = ["| figure | server | " + " | ".join(f"run {i + 1}" for i in range(len(runs)))
             + " | spread |", "|---|---|" + "---:|" * (len(runs) + 1)]  # fmt: skip
    key_metrics = [
        m for m in METRICS if m[2] in ("rate", "per_cpu_s", "us_per_packet") and m[1] != "flat"
    ]
    for label, key, attr, fmt in key_metrics:
        for server in ("coturn", "rtc64"):
            vals = [_get(r.get(server, {}), key, attr) for r in runs]
            if all(v is None for v in vals):
                continue
            got = [v for v in vals if v]
            spread = f"{max(got) / min(got) - 1:.0%}" if len(got) > 1 else "-"
            short = label.split(" (")[0].format(calls="25,000")
            cells = " | ".join(_fmt(v, fmt) for v in vals)
            lines.append(f"| {short} | {server} | {cells} | {spread} |")
    ratios = []
    for label, key, attr, _ in key_metrics:
        vals = [_ratio(_get(r.get("coturn", {}), key, attr), _get(r.get("rtc64", {}), key, attr))
                for r in runs]  # fmt: skip
        ratios.append(f"| {label.split(' (')[0].format(calls='25,000')} | rtc64 / coturn | "
                      + " | ".join(vals) + " | |")  # fmt: skip
    return "\n".join(lines + ratios)


def render(
    args: argparse.Namespace,
    runs: list[dict[str, dict[str, Any]]],
    ceiling: Any,
    steps: list[Any],
    elapsed: float,
    load_start: str,
    profile: dict[str, str],
) -> str:
    via_main = sys.argv[0].endswith("__main__.py")
    cmd = ("python -m bench " if via_main else "python -m bench.turn ") + " ".join(sys.argv[1:])
    pin = ("not pinned" if args.no_pin
           else "servers pinned to CPU 0, clients + sink + this process to CPU 1")  # fmt: skip
    tables = "\n\n".join(
        f"Run {i + 1}{' of ' + str(len(runs)) if len(runs) > 1 else ''}:\n\n{table(args, s)}"
        for i, s in enumerate(runs)
    )
    agree = agreement(runs)
    agree = f"\nAgreement between the runs (spread = max / min - 1):\n\n{agree}\n" if agree else ""
    detail = "\n".join(f"    {s.line()}" for s in steps)  # the ceiling is the first step
    gen = ""
    if ceiling:
        gen = (
            f"Generator ceiling on its core (the {args.channels} sockets straight to the sink,"
            f" no server): {ceiling.delivered:,.0f} pps sent and received."
        )
    prof = ""
    if "relay" in profile:
        prof += f"\nrtc64 relaying {args.channels * 50:,} pps, py-spy:\n\n{profile['relay']}\n"
    if "alloc" in profile:
        prof += f"\nrtc64 during the long-term allocation step, py-spy:\n\n{profile['alloc']}\n"
    return f"""{SECTION}

Command: `.venv/bin/{cmd.strip()}` (run {time.strftime("%Y-%m-%d %H:%M")} UTC, {elapsed:.0f} s).
coturn {_cmd_out(["turnserver", "--version"]).splitlines()[0]} (Debian `turnserver`: UDP
listeners on `[::1]` and 127.0.0.1, relay addresses 127.0.0.1 and ::1,
`--allow-loopback-peers`, `--lt-cred-mech --user` or `--use-auth-secret`, default threads,
its default logging to a file) against rtc64 at {_commit()} (`rtc64 serve --only turn`,
{_loop_name()}, the same listeners, `--turn-allow-peer` 127.0.0.0/8 and ::1/128, the user
from `rtc64 user add` or `--turn-secret`, `user_quota` raised from 10 as coturn has none,
log level warning); relay ports {_ports(args)} for both. Both servers `nice {args.nice}`,
{pin}. Clients: Python {sys.version.split()[0]}, bench/turn_load.py with the benchmark's
own STUN encoder (bench/turn_stun.py), same processes for both servers.

- Allocations: {args.clients} concurrent clients in {args.alloc_workers} processes, each
  looping Allocate → 401 → Allocate with credentials → Refresh 0 on a fresh socket, every
  cycle from the next source address of 127.77.0.0/16 (as many browsers would: rtc64 limits
  401s to 20/s per source address, and coturn keeps a deallocated 5-tuple ~1 s) to the
  127.0.0.1 listener; {args.alloc_seconds:g} s counted after {args.warm:g} s.
- Relay: {args.channels} allocations from `::1` sockets to the `[::1]` listener without
  REQUESTED-ADDRESS-FAMILY (every relayed address checked to be IPv4), one ChannelBind each
  to IPv4 peers (4 sink sockets on 127.0.0.1), ChannelData with 172-byte payloads
  round-robin; {args.seconds:g} s counted per step after {args.warm:g} s, every step on a
  freshly started server. Loss counted per step at the sink (0.5 s drain); latency is
  send → sink receive on CLOCK_MONOTONIC (Python on both ends, so a floor of tens of µs).
- Server CPU: utime+stime of its process tree (/proc/PID/stat, all threads) over the
  counted seconds. "its core busy" in the step lines is CPU 0 from /proc/stat (irq, softirq
  and other processes included). {gen}

Ratio = rtc64 / coturn (for CPU lower is better, for rates higher is better).

{tables}
{agree}
Machine: {os.cpu_count()} cores, {_cpu_model()}; {load_start} at the start, {load()} at the end
("others" in the step lines: CPU used by other processes during the step).

All steps (drops: system-wide UDP receive-buffer overflows; udp6 = the servers' listeners,
udp4 = the sink):

{detail}
{prof}"""


def _ports(args: argparse.Namespace) -> str:
    from bench.turn_servers import RELAY_PORTS  # noqa: PLC0415

    low, high = args.relay_ports or RELAY_PORTS["rtc64"]
    return f"{low}-{high}"


def write_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("" if nxt < 0 else old[nxt:])
    RESULTS.write_text(new.rstrip("\n") + "\n")


# --- py-spy ----------------------------------------------------------------------------


def py_spy() -> str | None:
    """py-spy next to this interpreter (the venv's, ``pip install rtc64[bench]``) or on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    cmd = [py_spy() or "py-spy", "record", "--native", "-r", "250", "-d", str(int(seconds)),
           "-f", "raw", "-o", str(out), "-p", str(pid)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish_profile(proc: subprocess.Popen[bytes], raw: Path, keep: Path | None) -> str:
    """Top frames by own samples and by inclusive samples from py-spy's collapsed stacks."""
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "(py-spy did not finish)"
    if not raw.exists():
        return "(py-spy wrote nothing)"
    if keep is not None:
        keep.write_bytes(raw.read_bytes())
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        if _idle(frames):
            idle += int(n)
            continue
        total += int(n)
        own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
    if not total:
        return "(no samples)"
    rows = ["| frame | own | inclusive |", "|---|---:|---:|"]
    top = [f for f, _ in own.most_common(12)]
    python = [f for f, _ in incl.most_common() if ".py)" in f and f not in top]
    for f in top + python[:16]:
        rows.append(f"| `{f}` | {own[f] / total:.1%} | {incl[f] / total:.1%} |")
    return (
        f"{total} busy samples of the main thread ({idle} idle samples left out: "
        "epoll waits, the executor's idle threads); own = leaf frame, inclusive = anywhere "
        "on the stack; the top leaves, then the Python frames by inclusive share\n\n"
        + "\n".join(rows)
    )


def _idle(frames: list[str]) -> bool:
    leaf = frames[-1]
    return leaf.startswith(("epoll_wait", "epoll_pwait")) or any(
        f.startswith(("Thread._bootstrap", "_queue_SimpleQueue_get")) for f in frames
    )


def _short(frame: str) -> str:
    """``func (path/to/file.py:12)`` → ``func (file.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({file})" if file else name
