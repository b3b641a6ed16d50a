"""Call routing with broken IPv6: time from INVITE to the callee's first response.

The callee's domain ``callee.test`` has AAAA and A (``tests/interop/brokenv6.py``); every
IPv6 datagram to the callee is dropped at the callee (silently: no ICMP, no send error).
A SIPp UAC on the IPv6-only host calls ``sip:bob@callee.test`` through a proxy in the
gateway namespace (forwarding off; the test DNS is an unbound there), one call at a time;
a SIPp UAS on the callee's IPv4 address answers 180 then 200. SIPp's response time
``first`` runs from the INVITE to the first response other than the proxy's own 100
Trying: the callee's 180 (or the proxy's final error when nothing answered).

Runs, same lab, same run:

- ``rtc64``: happy eyeballs (250 ms attempt delay) with ``dns.family_penalty = 0``, so
  every call starts with the broken IPv6 address (a cold cache each time);
- ``rtc64-cached``: the default family health cache (600 s): the first call races, the
  others go to IPv4 first;
- ``kamailio``: Kamailio 5.6 stateful proxy with its DNS failover (internal DNS cache,
  ``use_dns_failover``, ``dns_try_ipv6``, ``dns_srv_lb``, IPv6 first: ``dns_cache_flags=4``)
  and tm ``fr_timer`` (default 2 s here; Kamailio's own default is 30 s): it fails over
  to the next address when ``fr_timer`` expires. Its DNS server comes from
  ``/etc/netns/GATEWAY/resolv.conf``. ``dns_try_naptr=no``: with NAPTR lookups on and
  ``dns_cache_flags=4``, Kamailio 5.6 answered ``478 Unresolvable destination`` for this
  name (it has no NAPTR or SRV), while rtc64 and Kamailio's default order resolve it;
- ``kamailio-v4first``: the same with Kamailio's default order (A before AAAA);
- ``rtc64-no-he``: ``dns.happy_eyeballs = false`` (plain RFC 3263: the branch uses the
  first target only), fewer calls: each waits for Timer B (32 s).

The path's round trip is measured with ping (caller → gateway over IPv6, gateway →
callee over IPv4). Needs root (network namespaces), sipp, kamailio, unbound, nft.
``python -m bench routing [--quick]`` or ``python -m bench.call_routing --help``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.interop.brokenv6 import CALLEE_DOMAIN, BrokenV6Lab
from tests.interop.lab import V4_DS, V4_GW, V6_DS, V6_GW, V6_HOST, Host, stop
from tests.interop.peers import SCENARIOS as TEST_SCENARIOS
from tests.interop.peers import wait_port

ROOT = Path(__file__).resolve().parent.parent
RTC64 = ROOT / ".venv" / "bin" / "rtc64"
UAC_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "uac_route.xml"
UAS_SCENARIO = TEST_SCENARIOS / "uas.xml"  # 180 then 200
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
PORTS = {"rtc64": 5060, "kamailio": 5080}
UAC_PORT = 5070
TIMER_B = 32.0

KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
use_dns_cache=yes
use_dns_failover=yes
dns_try_ipv6=yes
dns_srv_lb=yes
dns_try_naptr=no
{flags}
loadpath "{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
modparam("tm", "fr_timer", {fr_timer})
modparam("tm", "fr_inv_timer", 60000)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here"); exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    t_relay();
}}
"""


@dataclass
class Run:
    key: str
    title: str
    proxy: str  # rtc64 | kamailio
    calls: int
    concurrent: int = 1
    rtc64_config: str = ""
    kamailio_flags: str = ""
    fr_timer_ms: int = 2000
    times_ms: list[float] = field(default_factory=list)
    answered: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    commands: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.times_ms:
            return "no response times recorded"
        t = sorted(self.times_ms)
        p95 = t[min(len(t) - 1, max(0, round(0.95 * len(t)) - 1))]
        fails = ", ".join(f"{n} x {s}" for s, n in sorted(self.failed.items())) or "none"
        return (
            f"n={len(t)} median {statistics.median(t):.1f} ms, p95 {p95:.1f} ms, "
            f"min {t[0]:.1f}, max {t[-1]:.1f}; answered {self.answered}, failed {fails}"
        )


def ping_rtt(host: Host, target: str, count: int = 10) -> float:
    """Average ping round trip in ms."""
    out = host.run("ping", "-c", str(count), "-i", "0.05", "-q", target, check=False).stdout
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    return float(m.group(1)) if m else float("nan")


def start_proxy(net: BrokenV6Lab, run: Run, workdir: Path) -> subprocess.Popen[bytes]:
    assert net.dns is not None
    port = PORTS[run.proxy]
    if run.proxy == "rtc64":
        cfg = workdir / "rtc64.toml"
        cfg.write_text(run.rtc64_config)
        argv = [
            str(RTC64), "--log-level", "info", "serve", "--config", str(cfg),
            "--data-dir", str(workdir / "data"),
            "--sip-listen", f"udp:[{V6_GW}]:{port}", "--sip-listen", f"udp:{V4_GW}:{port}",
            "--trusted-network", "fd00:64:6::/64", "--dns-server", net.dns.server,
            "--media-policy", "never",  # Kamailio does not touch SDP either
        ]  # fmt: skip
        log = workdir / "rtc64.log"
        proc = net.gw.popen(argv, log=log)
        deadline = time.monotonic() + 20
        while "gateway ready" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rtc64 not ready: {log.read_text(errors='replace')}")
            time.sleep(0.1)
    else:
        cfg = workdir / "kamailio.cfg"
        cfg.write_text(
            KAMAILIO_CFG.format(
                modules=KAMAILIO_MODULES, fr_timer=run.fr_timer_ms, flags=run.kamailio_flags
            )
        )
        rundir = workdir / "kamailio-run"
        rundir.mkdir()
        argv = [
            "kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(rundir), "-w", str(rundir),
            "-l", f"udp:[{V6_GW}]:{port}", "-l", f"udp:{V4_GW}:{port}",
        ]  # fmt: skip
        proc = net.gw.popen(argv, log=workdir / "kamailio.log")
        wait_port(net.gw, "udp", port)
    run.commands.append(f"ip netns exec GW {shlex.join(argv)}")
    return proc


def run_once(net: BrokenV6Lab, run: Run, base: Path) -> None:
    workdir = base / run.key
    workdir.mkdir()
    proxy = start_proxy(net, run, workdir)
    uas_argv = [
        "sipp", "-sf", str(UAS_SCENARIO), "-i", str(V4_DS), "-p", "5060", "-m", str(run.calls),
        "-nostdin", "-timeout", f"{int(run.calls * (TIMER_B + 10) + 30)}s",
    ]  # fmt: skip
    uas = net.dual.popen(uas_argv, log=workdir / "uas.log", cwd=workdir)
    # The callee's IPv6 address answers too, if anything ever reached it.
    uas6 = net.dual.popen(
        ["sipp", "-sf", str(UAS_SCENARIO), "-i", str(V6_DS), "-p", "5060", "-nostdin"],
        log=workdir / "uas6.log",
        cwd=workdir,
    )
    wait_port(net.dual, "udp", 5060)
    uac_dir = workdir / "uac"
    uac_dir.mkdir()
    uac_argv = [
        "sipp", f"[{V6_GW}]:{PORTS[run.proxy]}", "-sf", str(UAC_SCENARIO),
        "-i", str(V6_HOST), "-p", str(UAC_PORT), "-key", "target", CALLEE_DOMAIN,
        "-m", str(run.calls), "-l", str(run.concurrent), "-r", "10",
        "-nostdin", "-timeout", f"{int(run.calls * (TIMER_B + 10) + 30)}s",
        "-trace_rtt", "-rtt_freq", "1", "-trace_logs", "-trace_err",
    ]  # fmt: skip
    run.commands.append(f"ip netns exec V6 {shlex.join(uac_argv)}")
    t0 = time.monotonic()
    uac = net.v6.popen(uac_argv, log=uac_dir / "uac.log", cwd=uac_dir)
    uac.wait(run.calls * (TIMER_B + 15) + 60)
    run.wall = time.monotonic() - t0
    read_results(run, uac_dir)
    for proc in (uac, uas, uas6, proxy):  # not the gateway's unbound
        stop(proc)
    if (workdir / "rtc64.log").exists():
        text = (workdir / "rtc64.log").read_text(errors="replace")
        run.log_lines = [ln for ln in text.splitlines() if "answered on" in ln][:3]
    # Free port 5060 on the callee and the proxies' ports before the next run.
    for host, port in ((net.dual, 5060), (net.gw, PORTS[run.proxy]), (net.v6, UAC_PORT)):
        deadline = time.monotonic() + 15
        while f":{port} " in host.run("ss", "-lun", check=False).stdout:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)


def read_results(run: Run, uac_dir: Path) -> None:
    for path in uac_dir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            fields = line.split(";")
            if len(fields) >= 3:
                run.times_ms.append(float(fields[1]))
    for path in uac_dir.glob("*_logs.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("answered"):
                run.answered += 1
            elif line.startswith("failed"):
                status = line.split()[1] if len(line.split()) > 1 else "?"
                run.failed[status] = run.failed.get(status, 0) + 1


def runs(calls: int, fr_timer: int) -> list[Run]:
    return [
        Run("rtc64", "rtc64, happy eyeballs, cold cache every call (family_penalty = 0)",
            "rtc64", calls, rtc64_config="[dns]\nfamily_penalty = 0.0\n"),
        Run("rtc64-cached", "rtc64, happy eyeballs, family health cache (default 600 s)",
            "rtc64", calls),
        Run("kamailio",
            f"Kamailio 5.6, DNS failover, IPv6 first (dns_cache_flags=4), fr_timer {fr_timer} ms",
            "kamailio", calls, kamailio_flags="dns_cache_flags=4", fr_timer_ms=fr_timer),
        Run("kamailio-v4first",
            f"Kamailio 5.6, DNS failover, default order (A first), fr_timer {fr_timer} ms",
            "kamailio", calls, fr_timer_ms=fr_timer),
        Run("rtc64-no-he", "rtc64, dns.happy_eyeballs = false", "rtc64", 2, concurrent=2,
            rtc64_config="[dns]\nhappy_eyeballs = false\n"),
    ]  # fmt: skip


def main(quick: bool = False, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.call_routing")
    parser.add_argument("--calls", type=int, default=5 if quick else 20)
    parser.add_argument("--only", action="append", help="run keys (default all)")
    parser.add_argument("--fr-timer", type=int, default=2000, help="Kamailio fr_timer, ms")
    args = parser.parse_args(argv or [])
    if os.geteuid() != 0:
        print("routing: needs root (network namespaces); skipped")
        return 0
    selected = [r for r in runs(args.calls, args.fr_timer) if not args.only or r.key in args.only]
    base = Path(tempfile.mkdtemp(prefix="r64bench-routing-"))
    print(f"call routing, broken IPv6 to {CALLEE_DOMAIN}; work files in {base}")
    with BrokenV6Lab(resolv_conf=True) as net:
        rtt6 = ping_rtt(net.v6, str(V6_GW))
        rtt4 = ping_rtt(net.gw, str(V4_DS))
        print(f"path round trip: caller→gateway {rtt6:.3f} ms, gateway→callee {rtt4:.3f} ms")
        for run in selected:
            print(f"- {run.title} ...", flush=True)
            run_once(net, run, base)
            print(f"  {run.summary()} (wall {run.wall:.1f} s)")
            for line in run.log_lines[:1]:
                print(f"  rtc64 log: {line.split('rtc64.proxy: ', 1)[-1]}")
    print("\ncommands:")
    for run in selected:
        for cmd in run.commands:
            print(f"  [{run.key}] {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
