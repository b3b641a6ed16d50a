"""System calls and CPU per call / per REGISTER of ``rtc64 serve``, two source trees side by
side (issue 12: "cut the per-call and per-REGISTER cost").

For each tree and scenario (the SIPp scenarios of ``bench/sip_proxy.py``: ``v4`` calls,
``reg``, ``reg-auth``) a fresh ``rtc64 serve`` (SIP only, no shedding) gets a warm-up step,
then a CPU step (utime+stime of the process tree / successful calls), then a step with
``strace -c`` attached to every thread of the process tree: system calls per call are
load-independent. With ``--workers 2`` a last step runs with debug logs and counts the
messages handed from one worker to another ("handed to worker" lines, in every version).

    git archive BASE src | tar -x -C /tmp/before
    ip netns add sipcost-b && ip -n sipcost-b link set lo up
    ip netns exec sipcost-b .venv/bin/python -m bench.sipcost --before /tmp/before
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.sip_proxy import (
    SCENARIOS,
    Proxy,
    Scenario,
    Step,
    process_tree,
    rtc64_environ,
    rtc64_proxy,
    run_step,
    sip_only,
    uas_running,
)

ROOT = Path(__file__).resolve().parent.parent
_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")
_HANDED = re.compile(r" handed to worker \d")


def tree(src: Path) -> contextlib.AbstractContextManager[None]:
    """Run rtc64 from ``src`` (a checkout's root holding src/rtc64), pure Python."""
    return rtc64_environ({"PYTHONPATH": f"{src / 'src'}:{ROOT}", "RTC64_PURE": "1"})


def start(run_dir: Path, workers: int, level: str = "warning") -> Proxy:
    proxy = rtc64_proxy(run_dir, log_level=level, workers=workers, shedding=False)
    sip_only(run_dir)
    proxy.start(run_dir)
    return proxy


def threads(root: int) -> list[int]:
    out = []
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            out += [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    return out


def strace_step(
    sc: Scenario, proxy: Proxy, rate: int, duration: float, run_dir: Path, seq: int
) -> tuple[Step, dict[str, int]]:
    """A step with ``strace -c`` on every thread of the proxy: (step, calls by name)."""
    assert proxy.proc is not None
    out = run_dir / f"strace-{seq}.txt"
    argv = ["strace", "-c", "-o", str(out)]
    for tid in threads(proxy.proc.pid):
        argv += ["-p", str(tid)]
    tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    try:
        step = run_step(sc, proxy, rate, duration, run_dir, seq)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        m = _STRACE_ROW.match(line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = int(m.group(1))
    return step, counts


def crossings(
    sc: Scenario, src: Path, rate: int, duration: float, run_dir: Path, seq: int, workers: int
) -> tuple[int, int]:
    """(messages handed to another worker, successful calls) in four steps with debug
    logs, each from other UAC ports (the kernel's SO_REUSEPORT hash of a UAC's requests
    and of the UAS's answers decides whether anything crosses)."""
    with tree(src):
        proxy = start(run_dir, workers, "debug")
    ok = 0
    try:
        for k in range(4):
            ok += run_step(sc, proxy, rate, duration, run_dir, seq + 7 * k).ok
    finally:
        proxy.stop()
    assert proxy.log_path is not None
    return len(_HANDED.findall(proxy.log_path.read_text(errors="replace"))), ok


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sipcost", description=__doc__)
    ap.add_argument("--before", type=Path, help="a tree to compare with (holding src/rtc64)")
    ap.add_argument("--scenario", action="append", choices=[s.key for s in SCENARIOS])
    ap.add_argument("--call-rate", type=int, default=300)
    ap.add_argument("--reg-rate", type=int, default=500)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--no-cpu", action="store_true", help="(--workers > 1) crossings only")
    args = ap.parse_args()
    keys = args.scenario or ["v4", "reg", "reg-auth"]
    trees = [("after", ROOT)] + ([("before", args.before)] if args.before else [])
    run_dir = Path(tempfile.mkdtemp(prefix="rtc64-bench-sipcost-"))
    load = os.getloadavg()
    print(f"# run dir {run_dir}, workers {args.workers}, load {load[0]:.1f} {load[1]:.1f}")
    seq = 0
    with uas_running(run_dir):
        for sc in (s for s in SCENARIOS if s.key in keys):
            rate = args.reg_rate if sc.register else args.call_rate
            for name, src in trees:
                if args.no_cpu and args.workers > 1:
                    seq += 1
                    handed, ok = crossings(sc, src, 100, 3.0, run_dir, seq, args.workers)
                    print(f"{sc.key:8} {name:6} crossed the worker channel: {handed} messages, "
                          f"{ok} ok ops", flush=True)  # fmt: skip
                    continue
                with tree(src):
                    proxy = start(run_dir, args.workers)
                try:
                    seq += 1
                    run_step(sc, proxy, rate, 3.0, run_dir, seq)  # warm-up
                    seq += 1
                    step = run_step(sc, proxy, rate, args.duration, run_dir, seq)
                    counts: dict[str, int] = {}
                    traced = None
                    if not args.no_strace:
                        seq += 1
                        traced, counts = strace_step(sc, proxy, rate, args.duration, run_dir, seq)
                finally:
                    proxy.stop()
                load = os.getloadavg()
                print(
                    f"{sc.key:8} {name:6} {rate}/s ok {step.ok} failed {step.failed} "
                    f"cpu {step.cpu_ms_per_call:.3f} ms/op; load {load[0]:.1f}",
                    flush=True,
                )
                if args.workers > 1:
                    seq += 1
                    handed, ok = crossings(sc, src, 100, 3.0, run_dir, seq, args.workers)
                    print(f"    crossed the worker channel: {handed} messages, {ok} ok ops")
                if traced is not None and traced.ok:
                    total = sum(counts.values())
                    top = sorted(counts.items(), key=lambda kv: -kv[1])[:10]
                    shown = ", ".join(f"{k} {v / traced.ok:.2f}" for k, v in top)
                    print(f"    syscalls/op {total / traced.ok:.1f} (ok {traced.ok}): {shown}")
                time.sleep(1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
