"""Instructions per REGISTER and per call through the whole ``rtc64 serve`` (issue 12).

``bench/icount.py`` counts the pure cores only; this runs the real gateway (one SIP
process, SIP only, no shedding) under ``valgrind --tool=callgrind`` and drives it with
the SIPp scenarios of ``bench/sip_proxy.py`` at a low rate (valgrind slows Python ~50 times).
After a warm-up step the counters are zeroed (``callgrind_control -z``), N operations run,
then 40 s more (their transactions' Timer J/D fire inside the window) and the counters
are dumped; the same wall time idle right after (nothing of the step left) is counted the
same way (self-pings, sweeps) and subtracted. Instructions per operation do not depend on
the machine's load; the SQLite writer thread is included (valgrind runs every thread).

    ip netns add cc && ip -n cc link set lo up
    ip netns exec cc .venv/bin/python -m bench.callcost --scenario reg --scenario reg-auth
    git archive BASE src | tar -x -C /tmp/before        # then: --before /tmp/before
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import sip_proxy
from bench.sip_proxy import SCENARIOS, Proxy, Scenario, rtc64_proxy, run_step, uas_running

ROOT = Path(__file__).resolve().parent.parent
_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def start(run_dir: Path, src: Path, variant: str) -> Proxy:
    proxy = rtc64_proxy(run_dir, workers=1, shedding=False)
    with (run_dir / "rtc64.toml").open("a") as fh:
        fh.write("[turn]\nenabled = false\n[web]\nenabled = false\n")
    proxy.argv = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={run_dir}/cg.out.%p",
        sys.executable, "-m", "rtc64.cli", *proxy.argv[len(sip_proxy.RTC64_ARGV) :],
    ]  # fmt: skip
    os.environ["PYTHONPATH"] = f"{src / 'src'}:{ROOT}"
    for key in ("RTC64_PURE", "RTC64_COMPILED"):
        os.environ.pop(key, None)
    os.environ["RTC64_PURE" if variant == "pure" else "RTC64_COMPILED"] = "1"
    proxy.start_timeout = 300.0
    log = (run_dir / "rtc64.log").open("wb")
    proxy.log_path = run_dir / "rtc64.log"
    proxy.proc = subprocess.Popen(proxy.argv, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
    try:
        sip_proxy.wait_port(proxy.port, True, 300.0)
        sip_proxy.wait_serving(proxy.port, probes=2, timeout=300.0)
    except RuntimeError:
        proxy.stop()
        raise RuntimeError(f"rtc64 did not start; see {proxy.log_path}") from None
    return proxy


DRAIN = 40.0  # > Timer J/D (32 s): the transactions of a step end inside its window
KEEP: Path | None = None  # --keep DIR: the busy steps' dumps, for callgrind_annotate


def counted(pid: int, run_dir: Path, what: str) -> int:
    """Instructions since the last zeroing (a dump named ``what``), then zero again."""
    before = set(run_dir.glob("cg.out.*"))
    subprocess.run(["callgrind_control", "-d", what, str(pid)], check=True, capture_output=True)
    for _ in range(600):
        new = [p for p in set(run_dir.glob("cg.out.*")) - before if p.stat().st_size]
        if new:
            time.sleep(0.5)
            total = sum(int(m) for p in new for m in _TOTALS.findall(p.read_text()[-4096:]))
            if total:
                for p in new:
                    if KEEP is not None and what.startswith("busy"):
                        p.rename(KEEP / f"{what}-{p.name}")
                    else:
                        p.unlink()
                subprocess.run(["callgrind_control", "-z", str(pid)], check=True,
                               capture_output=True)  # fmt: skip
                return total
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump for {what}")


def measure(sc: Scenario, src: Path, variant: str, ops: int, rate: int) -> tuple[float, int]:
    """(instructions per successful operation, operations that succeeded)."""
    run_dir = Path(tempfile.mkdtemp(prefix="rtc64-bench-callcost-"))
    with uas_running(run_dir, pairs=1):
        proxy = start(run_dir, src, variant)
        try:
            assert proxy.proc is not None
            pid = proxy.proc.pid
            run_step(sc, proxy, rate, max(ops // 3, 20) / rate, run_dir, 1, pairs=1)  # warm-up
            time.sleep(DRAIN)  # the warm-up's transactions end before counting starts
            counted(pid, run_dir, "warm")
            t0 = time.monotonic()
            step = run_step(sc, proxy, rate, ops / rate, run_dir, 2, pairs=1)
            time.sleep(DRAIN)  # every timer the step armed fires inside its window
            busy = counted(pid, run_dir, f"busy-{sc.key}-{variant}-{src.name}")
            idle_for = time.monotonic() - t0
            time.sleep(idle_for)
            idle = counted(pid, run_dir, "idle")
        finally:
            proxy.stop()
    if step.failed or not step.ok:
        print(f"  warning: {step.failed} failed, {step.retrans} retransmissions", flush=True)
    return (busy - idle) / step.ok, step.ok


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.callcost", description=__doc__)
    ap.add_argument("--tree", type=Path, default=ROOT, help="the tree to count (src/rtc64)")
    ap.add_argument("--before", type=Path, help="another tree (holding src/rtc64) to count")
    ap.add_argument("--scenario", action="append", choices=[s.key for s in SCENARIOS])
    ap.add_argument("--variant", action="append", choices=["pure", "compiled"])
    ap.add_argument("--ops", type=int, default=200)
    ap.add_argument("--reg-rate", type=int, default=10)
    ap.add_argument("--call-rate", type=int, default=4)
    ap.add_argument("--keep", type=Path, help="keep the busy steps' callgrind dumps here")
    args = ap.parse_args()
    global KEEP  # noqa: PLW0603
    KEEP = args.keep
    keys = args.scenario or ["reg", "reg-auth", "v4"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up on kill
    trees = [("after", args.tree.resolve())]
    if args.before:
        trees.append(("before", args.before.resolve()))
    saved = dict(os.environ)
    print(f"# load {os.getloadavg()[0]:.1f}; instructions per operation (callgrind)")
    print("| scenario | tree | variant | ok ops | instructions per op |")
    print("|---|---|---|---:|---:|")
    try:
        for sc in (s for s in SCENARIOS if s.key in keys):
            rate = args.reg_rate if sc.register else args.call_rate
            for name, src in trees:
                for variant in args.variant or ["pure"]:
                    per_op, ok = measure(sc, src, variant, args.ops, rate)
                    print(f"| {sc.key} | {name} | {variant} | {ok} | {per_op:,.0f} |", flush=True)
                    os.environ.clear()
                    os.environ.update(saved)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
