"""CPU per call and per REGISTER: Kamailio, rtc64 pure Python and rtc64 mypyc-compiled.

Same SIPp scenarios, ports and accounting as ``bench/sip_proxy.py`` (CPU = utime+stime of
the proxy's process tree over the step / successful calls), but at one fixed rate and
interleaved: every round runs each variant once per scenario, in rotating order, so drift
in the shared machine's load spreads over all variants. Reports the median of the rounds.

    python -m bench.percall                       # 3 rounds, 8 s steps, v4 calls + REGISTER
    python -m bench.percall --rounds 5 --scenario v4 --scenario v6v4 --call-rate 300
    git archive BASE src | tar -x -C /tmp/before          # then: --before /tmp/before

The compiled variant runs with RTC64_COMPILED=1 (refuses to start on a missing or stale
build: run ``python scripts/build_compiled.py`` first); the pure one with RTC64_PURE=1.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import sip_proxy
from bench.sip_proxy import (
    PROXY_PORT,
    SCENARIOS,
    Proxy,
    Step,
    kamailio_proxy,
    rtc64_environ,
    rtc64_proxy,
    run_step,
    sip_only,
    uas_running,
    udp_bound,
)

VARIANTS = {
    "kamailio": {},
    "rtc64-pure": {"RTC64_PURE": "1"},
    "rtc64-compiled": {"RTC64_COMPILED": "1"},
}


def shift_ports(offset: int) -> None:
    """Move every port ``bench/sip_proxy.py`` uses by ``offset`` (SIP, SIPp media and control),
    so this bench can run while someone else's ``python -m bench sip`` holds the defaults."""
    if not offset:
        return
    for name in PROXY_PORT:
        PROXY_PORT[name] += offset
    sip_proxy.UAS_PORT += offset
    sip_proxy.UAC_PORT += offset
    orig_uas, orig_uac = sip_proxy.uas_argv, sip_proxy.uac_argv

    def shifted(argv: list[str]) -> list[str]:
        out = list(argv)
        for i, arg in enumerate(out[:-1]):
            if arg in ("-mp", "-cp"):
                out[i + 1] = str(int(out[i + 1]) + offset)
        return out

    sip_proxy.uas_argv = lambda ip: shifted(orig_uas(ip))  # type: ignore[assignment]
    sip_proxy.uac_argv = lambda *a: shifted(orig_uac(*a))  # type: ignore[assignment]


def make_proxy(variant: str, run_dir: Path) -> Proxy:
    if variant == "kamailio":
        return kamailio_proxy(run_dir)
    proxy = rtc64_proxy(run_dir)
    sip_only(run_dir, web=variant != "rtc64-before")  # an older tree may have no [web]
    return proxy


def run(
    rounds: int,
    duration: float,
    call_rate: int,
    reg_rate: int,
    keys: list[str],
    variants: list[str],
) -> int:
    busy = [p for p in (*PROXY_PORT.values(), sip_proxy.UAS_PORT) if udp_bound(p)]
    if busy:
        print(f"UDP ports {busy} in use (a stray kamailio or bench run?): stop it first")
        return 1
    scenarios = [s for s in SCENARIOS if s.key in keys]

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # run the finally blocks: stop SIPp and the proxies

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started in the background (ignored)
    run_dir = Path(tempfile.mkdtemp(prefix="rtc64-bench-percall-"))
    print(f"# per-call CPU, {rounds} rounds of {duration:.0f} s, run dir {run_dir}", flush=True)
    results: dict[tuple[str, str], list[Step]] = {}
    seq = 0
    with uas_running(run_dir):
        for r in range(rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for sc in scenarios:
                rate = reg_rate if sc.register else call_rate
                for variant in order:
                    with rtc64_environ(VARIANTS[variant]):
                        proxy = make_proxy(variant, run_dir)
                        proxy.start(run_dir)
                    try:
                        seq += 1
                        step = run_step(sc, proxy, rate, duration, run_dir, seq)
                    finally:
                        proxy.stop()
                    results.setdefault((variant, sc.key), []).append(step)
                    print(
                        f"  round {r + 1} {sc.key:5} {variant:15} {rate}/s: ok {step.ok:6} "
                        f"failed {step.failed:4} cpu {step.cpu_ms_per_call:.3f} ms "
                        f"({100 * step.cpu_s / step.wall:5.1f}% of a core)",
                        flush=True,
                    )
                    time.sleep(1.0)
    print()
    print(f"| scenario | rate | {' | '.join(variants)} |")
    print("|---|---:|" + "---:|" * len(variants))
    for sc in scenarios:
        rate = reg_rate if sc.register else call_rate
        cells = []
        for v in variants:
            steps = results.get((v, sc.key), [])
            good = [s.cpu_ms_per_call for s in steps if s.passed]
            runs = " / ".join(f"{s.cpu_ms_per_call:.2f}{'' if s.passed else '!'}" for s in steps)
            med = f"**{statistics.median(good):.3f}**" if good else "-"
            cells.append(f"{med} ({runs})")
        print(f"| {sc.title} | {rate}/s | {' | '.join(cells)} |")
    print(
        "\nms CPU per successful call/REGISTER: median of passing rounds (each round; ! = "
        "round with > 0.1 % failures)"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.percall", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--call-rate", type=int, default=300)
    ap.add_argument("--reg-rate", type=int, default=500)
    ap.add_argument("--scenario", action="append", choices=[s.key for s in SCENARIOS])
    ap.add_argument("--variant", action="append", choices=list(VARIANTS))
    ap.add_argument("--port-offset", type=int, default=5000, help="added to every bench port")
    ap.add_argument(
        "--before",
        metavar="DIR",
        help="also run 'rtc64-before': the rtc64 in DIR/src (e.g. `git archive REV src | tar -x`)",
    )
    args = ap.parse_args()
    shift_ports(args.port_offset)
    variants = args.variant or list(VARIANTS)
    if args.before:
        path = f"{Path(args.before).resolve() / 'src'}:{sip_proxy.ROOT}"
        VARIANTS["rtc64-before"] = {"PYTHONPATH": path}
        variants = ["rtc64-before", *variants]
    return run(
        args.rounds,
        args.duration,
        args.call_rate,
        args.reg_rate,
        args.scenario or ["v4", "reg"],
        variants,
    )


if __name__ == "__main__":
    sys.exit(main())
