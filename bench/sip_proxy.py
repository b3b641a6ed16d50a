"""Calls/s and REGISTER/s through rtc64 and through Kamailio, same machine, same run (SIPp).

For each proxy (Kamailio 5.6 as a stateful proxy with 4 children, then rtc64) and each
scenario (IPv4→IPv4, IPv6→IPv6, IPv6→IPv4 bridging, REGISTER), a SIPp UAC drives
0-second calls (INVITE/100/180/200/ACK/BYE/200, Record-Routed, so ACK and BYE cross the
proxy too) through the proxy to a SIPp UAS, at stepped rates of ``duration`` seconds each.
A step passes when fewer than 0.1 % of its calls failed and SIPp kept up with the target
rate; the result is the highest passing step (the step list stops at the first failure,
which is retried once against noise from other processes on the machine).

CPU per call: utime+stime of the proxy's whole process tree (/proc/PID/stat) over a step,
divided by the calls completed in it, reported at the fixed moderate rate ``CPU_RATE``
(the fairer figure on a 2-core machine where SIPp competes with the proxy for the cores).

Issue 12: rtc64 runs ``--sip-workers`` processes (default: one per core) and every step is
driven by ``--pairs`` SIPp UAC/UAS pairs in parallel (default 2: one SIPp saturates near
1,100 calls/s), each at rate/pairs; their counts are summed. ``reg-auth`` registers with
digest authentication (401, then credentials; users from an injection file, one password;
the UAC sends from 127.0.0.2, which neither proxy trusts).

Only loopback addresses (127.0.0.1, 127.0.0.2, ::1) are used. Ports: rtc64 25060, Kamailio
25080, UAS 25070+, UAC 25100+. Run ``python -m bench sip [--quick]`` or, for one proxy/scenario
with a profiler attached, ``python -m bench.sip_proxy --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
RTC64 = ROOT / ".venv" / "bin" / "rtc64"
# A worktree without its own venv runs the rtc64 on this interpreter's path (PYTHONPATH).
RTC64_ARGV = [str(RTC64)] if RTC64.exists() else [sys.executable, "-m", "rtc64.cli"]
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

PROXY_PORT = {"kamailio": 25080, "rtc64": 25060}
UAS_PORT = 25070
UAC_PORT = 25100
DOMAIN = "bench.test"
CPU_RATE = 300
MAX_FAILED = 0.001
CLK_TCK = os.sysconf("SC_CLK_TCK")

CALL_STEPS = [150, 300, 400, 500, 700, 1000, 1400, 1700, 2000, 2800, 4000]
REGISTER_STEPS = [300, 600, 1000, 2000, 3000, 4500, 6000, 8000, 11000]
QUICK_CALL_STEPS = [300, 600, 1200, 2400]
QUICK_REGISTER_STEPS = [300, 1500, 4000, 8000]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    uac_ip: str  # the UAC's address; the proxy socket of the same family receives
    uas_ip: str | None  # the callee (None: REGISTER, answered by the proxy)

    @property
    def register(self) -> bool:
        return self.uas_ip is None

    @property
    def proxy_ip(self) -> str:
        return "::1" if ":" in self.uac_ip else "127.0.0.1"

    @property
    def auth(self) -> bool:
        return self.key == "reg-auth"


SCENARIOS = [
    Scenario("v4", "IPv4 → IPv4 call", "127.0.0.1", "127.0.0.1"),
    Scenario("v6", "IPv6 → IPv6 call", "::1", "::1"),
    Scenario("v6v4", "IPv6 → IPv4 call (bridged)", "::1", "127.0.0.1"),
    Scenario("reg", "REGISTER (IPv4)", "127.0.0.1", None),
    Scenario("reg-auth", "REGISTER with digest (IPv4)", "127.0.0.2", None),
]
AUTH_USERS = 2000  # users of the digest REGISTER scenario (each re-registers in turn)
AUTH_PASSWORD = "bench-secret"
PAIRS = 2  # SIPp UAC/UAS pairs per step


def hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# -- /proc helpers ----------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces: split after the closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """utime+stime of ``root`` and its live descendants, in seconds."""
    total = 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def udp_bound(port: int) -> bool:
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(name) as fh:
            for line in fh.readlines()[1:]:
                local = line.split()[1]
                if int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_port(port: int, bound: bool, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while udp_bound(port) != bound:
        if time.monotonic() > deadline:
            state = "bound" if bound else "free"
            raise RuntimeError(f"UDP port {port} not {state} after {timeout:.0f} s")
        time.sleep(0.05)


def wait_serving(port: int, probes: int = 8, timeout: float = 60.0) -> None:
    """Until OPTIONS from ``probes`` source ports (the kernel spreads them over the SIP
    workers) are all answered with something other than 503."""
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(probes)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    try:
        pending = set(range(probes))
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError("rtc64 workers not serving")
            for n in list(pending):
                sock = socks[n]
                local, tag = sock.getsockname()[1], f"{n}-{time.time_ns()}"
                msg = (
                    f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{local};rport;branch=z9hG4bK-ready{tag}\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:ready@{DOMAIN}>;tag=r{n}\r\n"
                    f"To: <sip:{DOMAIN}>\r\nCall-ID: ready{n}-{time.time_ns()}\r\n"
                    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                )
                sock.sendto(msg.encode(), ("127.0.0.1", port))
                sock.settimeout(0.5)
                with contextlib.suppress(OSError):
                    reply = sock.recv(4096)
                    if reply.startswith(b"SIP/2.0 ") and not reply.startswith(b"SIP/2.0 503"):
                        pending.discard(n)
    finally:
        for sock in socks:
            sock.close()


def udp_rcvbuf_errors() -> int:
    """System-wide UDP receive-buffer overflows (IPv4 + IPv6): the first sign of overload."""
    total = 0
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/snmp").read_text().splitlines()
        udp = [line.split() for line in lines if line.startswith("Udp:")]
        total += int(udp[1][udp[0].index("RcvbufErrors")])
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/snmp6").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "Udp6RcvbufErrors":
                total += int(value.split()[0])
    return total


# -- proxies ------------------------------------------------------------------------------

KAMAILIO_CFG = """\
#!KAMAILIO
# Generated by bench/sip_proxy.py: a minimal stateful proxy and in-memory registrar.
debug=-1
log_stderror=yes
children={children}
auto_aliases=no
disable_tcp=yes
dns=no
rev_dns=no
mhomed=0

loadpath "{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_double_rr", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("REGISTER")) {{
        if ($si == "127.0.0.2") {{
            if (!pv_www_authenticate("$td", "{password}", "0")) {{
                www_challenge("$td", "0");
                exit;
            }}
        }}
        if (!save("location")) sl_reply_error();
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            if (!t_relay()) sl_reply_error();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) t_relay();
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    t_check_trans();
    if (is_method("INVITE|SUBSCRIBE")) record_route();
    if (!t_relay()) sl_reply_error();
    exit;
}}
"""


@dataclass
class Proxy:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    start_timeout: float = 15.0
    """Seconds to wait for the SIP port (a gateway loading 100,000 bindings takes longer)."""

    @property
    def port(self) -> int:
        return PROXY_PORT[self.name]

    def start(self, run_dir: Path) -> None:
        self.log_path = run_dir / f"{self.name}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
        try:
            wait_port(self.port, True, self.start_timeout)
            if self.name == "rtc64":  # the supervisor binds before its workers serve
                wait_serving(self.port)
            time.sleep(0.5 if self.name == "rtc64" else 1.0)  # children / loop settle
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; see {self.log_path}") from None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


KAMAILIO_SHM_MB = 2048


def kamailio_proxy(run_dir: Path, children: int = 4) -> Proxy:
    cfg = run_dir / "kamailio.cfg"
    cfg.write_text(
        KAMAILIO_CFG.format(children=children, modules=KAMAILIO_MODULES, password=AUTH_PASSWORD)
    )
    rundir = run_dir / "kamailio-run"
    rundir.mkdir(exist_ok=True)
    port = PROXY_PORT["kamailio"]
    # Shared memory: 256 MB ran out at 2,000 calls/s (transactions waiting out their
    # timers) and at 10,000 REGISTER/s (usrloc's contacts): "could not allocate shared
    # memory" and 500s, a limit of the bench's setting, not of Kamailio's CPU.
    argv = [
        "kamailio", "-f", str(cfg), "-DD", "-E", "-m", str(KAMAILIO_SHM_MB), "-M", "16",
        "-Y", str(rundir),
        "-l", f"udp:127.0.0.1:{port}", "-l", f"udp:[::1]:{port}",
    ]  # fmt: skip
    return Proxy("kamailio", argv)


def rtc64_proxy(
    run_dir: Path, log_level: str = "warning", workers: int = 0, shedding: bool = True
) -> Proxy:
    cfg = run_dir / "rtc64.toml"
    users = ", ".join(
        f'{{name = "u{n:05d}", password = "{AUTH_PASSWORD}"}}' for n in range(AUTH_USERS)
    )
    # SIPp 3.6 answers MD5 challenges only.
    lag = "" if shedding else "overload_lag = 0\n"  # --no-shedding: raw capacity
    cfg.write_text(
        f'[sip]\nrequest_rate = 0\n{lag}[auth]\nalgorithms = ["MD5"]\nusers = [{users}]\n'
    )
    data = run_dir / "rtc64-data"
    port = PROXY_PORT["rtc64"]
    argv = [
        *RTC64_ARGV, "serve", "--config", str(cfg),
        "--sip-listen", f"udp:127.0.0.1:{port}", "--sip-listen", f"udp:[::1]:{port}",
        "--trusted-network", "127.0.0.1/32", "--trusted-network", "::1/128",
        "--domain", DOMAIN, "--data-dir", str(data), "--log-level", log_level,
        "--sip-workers", str(workers),
        # Kamailio never touches SDP; with "auto" rtc64 would relay every bench call
        # (loopback c= addresses count as unusable) and the figure would include media.
        "--media-policy", "never",
    ]  # fmt: skip
    return Proxy("rtc64", argv)


def sip_only(run_dir: Path, *, web: bool = True) -> None:
    """No TURN server or web console in the proxy of ``rtc64_proxy``: they would bind their
    default ports, which other runs on a shared machine hold at times, and are not what
    is measured (``web``: False for an older tree without a ``[web]`` section)."""
    with (run_dir / "rtc64.toml").open("a") as fh:
        fh.write("[turn]\nenabled = false\n" + ("[web]\nenabled = false\n" if web else ""))


@contextlib.contextmanager
def rtc64_environ(extra: dict[str, str]) -> Iterator[None]:
    """Start rtc64 with ``extra`` in the environment (``PYTHONPATH`` of another tree,
    ``RTC64_PURE`` or ``RTC64_COMPILED``; a build choice not in ``extra`` is cleared), and
    put the environment back afterwards."""
    names = ("PYTHONPATH", "RTC64_PURE", "RTC64_COMPILED")
    saved = {k: os.environ.get(k) for k in names}
    for k in ("RTC64_PURE", "RTC64_COMPILED"):
        os.environ.pop(k, None)
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


# -- SIPp -----------------------------------------------------------------------------------


def uas_argv(ip: str, pair: int = 0) -> list[str]:
    media = (26000 if ":" not in ip else 26010) + 20 * pair
    control = (28800 if ":" not in ip else 28801) + 2 * pair
    return [
        "sipp", "-sf", str(SCENARIO_DIR / "uas_call.xml"), "-i", ip, "-p", str(UAS_PORT + pair),
        "-mp", str(media), "-cp", str(control), "-nostdin", "-buff_size", "4194304",
        "-recv_timeout", "10000", "-max_recv_loops", "100000", "-max_sched_loops", "100000",
    ]  # fmt: skip


def uac_argv(
    sc: Scenario, proxy_port: int, rate: int, calls: int, uac_port: int, stats: Path,
    pair: int = 0, users: Path | None = None,
) -> list[str]:  # fmt: skip
    control = 28810 + uac_port % 100
    argv = ["sipp"]
    if sc.auth:
        argv += ["-sf", str(SCENARIO_DIR / "uac_register_auth.xml"), "-key", "domain", DOMAIN]
        argv += ["-inf", str(users or "USERS.csv"), "-auth_uri", DOMAIN]
    elif sc.register:
        argv += ["-sf", str(SCENARIO_DIR / "uac_register.xml"), "-key", "domain", DOMAIN]
    else:
        assert sc.uas_ip is not None
        argv += ["-sf", str(SCENARIO_DIR / "uac_call.xml")]
        argv += ["-key", "target", hostport(sc.uas_ip, UAS_PORT + pair)]
    argv += [
        "-i", sc.uac_ip, "-p", str(uac_port), "-mp", str(26100 + 4 * (uac_port % 100)),
        "-cp", str(control), hostport(sc.proxy_ip, proxy_port),
        "-r", str(rate), "-m", str(calls), "-l", str(max(rate * 6, 1000)),
        "-recv_timeout", "4000", "-timeout", f"{calls // rate + 20}s",
        "-buff_size", "4194304", "-max_recv_loops", "100000", "-max_sched_loops", "100000",
        "-nostdin", "-trace_stat", "-stf", str(stats), "-fd", "1",
        "-trace_err", "-error_file", str(stats.with_suffix(".err")),
    ]  # fmt: skip
    return argv


@dataclass
class Step:
    rate: int
    created: int = 0
    ok: int = 0
    failed: int = 0
    retrans: int = 0
    wall: float = 0.0
    cpu_s: float = 0.0
    rcvbuf_errors: int = 0

    @property
    def achieved(self) -> float:
        return self.ok / self.wall if self.wall else 0.0

    @property
    def passed(self) -> bool:
        return (
            self.created > 0
            and self.failed <= self.created * MAX_FAILED
            and self.ok >= self.created - self.created * MAX_FAILED
        )

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / self.ok if self.ok else float("nan")


@dataclass
class Outcome:
    proxy: str
    scenario: str
    steps: list[Step] = field(default_factory=list)
    command: str = ""

    @property
    def best(self) -> int:
        passed = [s.rate for s in self.steps if s.passed]
        return max(passed) if passed else 0

    @property
    def cpu_ms(self) -> float:
        at = [s for s in self.steps if s.rate == CPU_RATE and s.passed]
        return at[-1].cpu_ms_per_call if at else float("nan")


def read_stats(path: Path) -> dict[str, str]:
    with contextlib.suppress(OSError), path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
        if rows:
            return rows[-1]
    return {}


def users_file(run_dir: Path, pair: int, pairs: int) -> Path:
    """The digest users of one UAC (every ``pairs``-th user: pairs never share an AOR)."""
    path = run_dir / f"users-{pair}-of-{pairs}.csv"
    if not path.exists():
        rows = [
            f"u{n:05d};[authentication username=u{n:05d} password={AUTH_PASSWORD}]"
            for n in range(pair, AUTH_USERS, pairs)
        ]
        path.write_text("SEQUENTIAL\n" + "\n".join(rows) + "\n")
    return path


def run_step(
    sc: Scenario, proxy: Proxy, rate: int, duration: float, run_dir: Path, seq: int,
    pairs: int = PAIRS,
) -> Step:  # fmt: skip
    """One step: ``pairs`` UACs at rate/pairs each, at once; their counts summed."""
    assert proxy.proc is not None
    total = max(int(rate * duration), 1)
    share = max(rate // pairs, 1)
    calls = max(total // pairs, 1)
    uacs: list[tuple[subprocess.Popen[bytes], Path]] = []
    step = Step(rate)
    buf0, cpu0, t0 = udp_rcvbuf_errors(), cpu_seconds(proxy.proc.pid), time.monotonic()
    try:
        for pair in range(pairs):
            uac_port = UAC_PORT + (seq * pairs + pair) % 50
            wait_port(uac_port, False, 20)
            stats = run_dir / f"uac-{proxy.name}-{sc.key}-{rate}-{seq}-{pair}.csv"
            users = users_file(run_dir, pair, pairs) if sc.auth else None
            argv = uac_argv(sc, proxy.port, share, calls, uac_port, stats, pair, users)
            out = run_dir / f"uac-{proxy.name}-{sc.key}-{rate}-{seq}-{pair}.out"
            with out.open("wb") as fh:
                uacs.append((subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT), stats))
        for uac, _ in uacs:
            uac.wait(calls / share + 40)
    finally:  # timed out or interrupted: never leave a UAC sending
        for uac, _ in uacs:
            if uac.poll() is None:
                uac.kill()
                uac.wait()
    step.wall = time.monotonic() - t0
    step.cpu_s = cpu_seconds(proxy.proc.pid) - cpu0
    step.rcvbuf_errors = udp_rcvbuf_errors() - buf0
    for _, stats in uacs:
        row = read_stats(stats)
        created = int(row.get("TotalCallCreated", 0) or 0)
        step.created += max(created, calls)  # calls never created count as failed
        step.ok += int(row.get("SuccessfulCall(C)", 0) or 0)
        step.failed += int(row.get("FailedCall(C)", 0) or 0) + max(calls - created, 0)
        step.retrans += int(row.get("Retransmissions(C)", 0) or 0)
    return step


@contextlib.contextmanager
def uas_running(run_dir: Path, pairs: int = PAIRS) -> Iterator[None]:
    procs = []
    try:
        for ip in ("127.0.0.1", "::1"):
            for pair in range(pairs):
                log = (run_dir / f"uas-{'v6' if ':' in ip else 'v4'}-{pair}.log").open("wb")
                argv = uas_argv(ip, pair)
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        time.sleep(1.0)
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"SIPp UAS exited; see {run_dir}/uas-*.log")
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def measure(
    proxy: Proxy, scenarios: list[Scenario], steps_for: dict[bool, list[int]],
    duration: float, run_dir: Path, log: bool = True, pairs: int = PAIRS,
) -> list[Outcome]:  # fmt: skip
    outcomes = []
    seq = 0
    for sc in scenarios:
        oc = Outcome(proxy.name, sc.key)
        calls = int(CPU_RATE * duration)
        oc.command = shlex.join(
            uac_argv(sc, proxy.port, CPU_RATE, calls, UAC_PORT, Path("STATS.csv"))
        )
        for rate in steps_for[sc.register]:
            for attempt in (1, 2):
                seq += 1
                step = run_step(sc, proxy, rate, duration, run_dir, seq, pairs)
                oc.steps.append(step)
                if log:
                    print(
                        f"  {proxy.name:8} {sc.key:5} {rate:6}/s: ok {step.ok:6} "
                        f"failed {step.failed:5} retrans {step.retrans:5} "
                        f"rcvbuf-drops {step.rcvbuf_errors:5} {step.achieved:6.0f}/s done "
                        f"cpu {step.cpu_ms_per_call:6.3f} ms/call "
                        f"({100 * step.cpu_s / step.wall:5.1f}% of a core) "
                        f"{'PASS' if step.passed else 'FAIL'}",
                        flush=True,
                    )
                # let retransmissions and timers drain (longer after an overload)
                time.sleep(1.0 if step.passed else 8.0)
                if step.passed or attempt == 2:
                    break
            if not step.passed:
                break
        outcomes.append(oc)
    return outcomes


def stray_kamailio() -> list[str]:
    out = subprocess.run(["pgrep", "-a", "kamailio"], capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line.strip()]


def table(outcomes: list[Outcome]) -> str:
    by = {(o.proxy, o.scenario): o for o in outcomes}
    lines = [
        "| scenario | Kamailio /s | rtc64 /s | rtc64/Kamailio | CPU ms/call Kamailio "
        f"| CPU ms/call rtc64 (both at {CPU_RATE}/s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for sc in SCENARIOS:
        k, r = by.get(("kamailio", sc.key)), by.get(("rtc64", sc.key))
        if k is None and r is None:
            continue
        kb = k.best if k else 0
        rb = r.best if r else 0
        ratio = f"{rb / kb:.2f}" if kb and r else "-"
        kc = f"{k.cpu_ms:.3f}" if k else "-"
        rc = f"{r.cpu_ms:.3f}" if r else "-"
        lines.append(
            f"| {sc.title} | {kb if k else '-'} | {rb if r else '-'} | {ratio} | {kc} | {rc} |"
        )
    return "\n".join(lines)


def run(
    quick: bool = False,
    proxies: tuple[str, ...] = ("kamailio", "rtc64"),
    scenario_keys: tuple[str, ...] = ("v4", "v6", "v6v4", "reg", "reg-auth"),
    steps: list[int] | None = None,
    duration: float | None = None,
    profile: str | None = None,
    keep: bool = False,
    workers: int = 0,
    pairs: int = PAIRS,
    shedding: bool = True,
    metrics: int = 0,
) -> int:
    for tool in ("sipp", "kamailio"):
        if shutil.which(tool) is None:
            print(f"{tool} not installed (scripts/install-system-deps.sh)", file=sys.stderr)
            return 1
    busy = [p for p in (*PROXY_PORT.values(), UAS_PORT, UAS_PORT + 1) if udp_bound(p)]
    if busy:
        print(f"UDP ports {busy} in use (a stray kamailio or bench run?): stop it first")
        return 1
    stray = stray_kamailio()
    if stray:
        # Not ours (the system service must not run; other test runs may): CPU noise.
        print("note: other kamailio processes are running:", *stray, sep="\n  ")
    duration = duration or (3.0 if quick else 10.0)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # run the finally blocks: stop SIPp and the proxies

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    steps_for = {
        False: steps or (QUICK_CALL_STEPS if quick else CALL_STEPS),
        True: steps or (QUICK_REGISTER_STEPS if quick else REGISTER_STEPS),
    }
    scenarios = [s for s in SCENARIOS if s.key in scenario_keys]
    run_dir = Path(tempfile.mkdtemp(prefix="rtc64-bench-sip-"))
    print(
        f"# SIP proxy benchmark: {platform.node()}, {os.cpu_count()} CPUs, "
        f"{duration:.0f} s steps, {pairs} SIPp pair(s), rtc64 --sip-workers {workers} "
        f"(0: one per core), load average {os.getloadavg()[0]:.2f}, run dir {run_dir}",
        flush=True,
    )
    outcomes: list[Outcome] = []
    started = time.monotonic()
    commands = {}
    with uas_running(run_dir, pairs):
        for name in proxies:
            for sc in scenarios:  # a fresh proxy per scenario: no state or timers carried over
                proxy = (
                    kamailio_proxy(run_dir)
                    if name == "kamailio"
                    else rtc64_proxy(run_dir, workers=workers, shedding=shedding)
                )
                commands[name] = shlex.join(proxy.argv)
                if metrics and name == "rtc64":
                    with (run_dir / "rtc64.toml").open("a") as fh:
                        fh.write(f'[web]\nlisten = "[::1]:{metrics}"\n')
                proxy.start(run_dir)
                spy = None
                try:
                    if profile and name == "rtc64":
                        assert proxy.proc is not None
                        spy = subprocess.Popen(
                            [str(ROOT / ".venv" / "bin" / "py-spy"), "record", "--pid",
                             str(proxy.proc.pid), "--rate", "200", "--nonblocking",
                             "--format", "raw" if profile.endswith(".txt") else "flamegraph",
                             "-o", profile],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        )  # fmt: skip
                    outcomes += measure(proxy, [sc], steps_for, duration, run_dir, pairs=pairs)
                finally:
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(30)
                    if metrics and name == "rtc64":
                        print_counters(metrics, sc.key)
                    proxy.stop()
                    if proxy.log_path is not None and proxy.log_path.exists():
                        proxy.log_path.rename(run_dir / f"{name}-{sc.key}.log")
                    shutil.rmtree(run_dir / "rtc64-data", ignore_errors=True)
    elapsed = time.monotonic() - started
    print()
    print(table(outcomes))
    print()
    print(f"Proxy commands (run dir {run_dir}, {elapsed:.0f} s in all):")
    for name, cmd in commands.items():
        print(f"  {name}: {cmd}")
    print("UAC commands:")
    for oc in outcomes:
        print(f"  {oc.proxy} {oc.scenario}: {oc.command}")
    result = {
        "duration": duration,
        "quick": quick,
        "commands": commands,
        "outcomes": [{**asdict(o), "best": o.best, "cpu_ms_per_call": o.cpu_ms} for o in outcomes],
    }
    (run_dir / "results.json").write_text(json.dumps(result, indent=1))
    if not keep:
        for f in run_dir.glob("uac-*"):
            if f.suffix == ".csv":
                f.unlink()
    return 0


COUNTERS = re.compile(
    r"^rtc64_sip_(?:raw_\w+|in_dialog_at_once|requests_in|responses_in|worker_\w+)\S* ", re.M
)


def print_counters(port: int, scenario: str) -> None:
    """The proxy's raw-path and worker-channel counters from /metrics (``--metrics``)."""
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError as exc:
        print(f"# {scenario}: /metrics not read: {exc}", flush=True)
        return
    lines = [ln for ln in text.splitlines() if COUNTERS.match(ln + " ")]
    print(f"# {scenario}: rtc64 counters at the end: " + "; ".join(lines), flush=True)


def main(quick: bool = False) -> int:
    return run(quick=quick)


def cli() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sip_proxy", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--proxy", action="append", choices=sorted(PROXY_PORT))
    ap.add_argument("--scenario", action="append", choices=[s.key for s in SCENARIOS])
    ap.add_argument("--steps", help="comma-separated rates, e.g. 300,600")
    ap.add_argument("--duration", type=float, help="seconds per step")
    ap.add_argument("--profile", help="py-spy output for rtc64 (.svg flamegraph, .txt raw)")
    ap.add_argument("--keep", action="store_true", help="keep SIPp statistics files")
    ap.add_argument("--workers", type=int, default=0, help="rtc64 --sip-workers (0: cores)")
    ap.add_argument("--pairs", type=int, default=PAIRS, help="SIPp UAC/UAS pairs per step")
    ap.add_argument(
        "--no-shedding", action="store_true", help="rtc64 sip.overload_lag = 0 (no 503s)"
    )
    ap.add_argument(
        "--metrics", type=int, default=0, metavar="PORT",
        help="rtc64's web console on [::1]:PORT; print its raw-path counters after each scenario",
    )  # fmt: skip
    args = ap.parse_args()
    return run(
        quick=args.quick,
        proxies=tuple(args.proxy or ("kamailio", "rtc64")),
        scenario_keys=tuple(args.scenario or [s.key for s in SCENARIOS]),
        steps=[int(x) for x in args.steps.split(",")] if args.steps else None,
        duration=args.duration,
        profile=args.profile,
        keep=args.keep,
        workers=args.workers,
        pairs=args.pairs,
        shedding=not args.no_shedding,
        metrics=args.metrics,
    )


if __name__ == "__main__":
    raise SystemExit(cli())
