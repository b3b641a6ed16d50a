# The TURN servers under test, started by the benchmark with their own ports and state in a
# temp dir, each pinned to one core with taskset: coturn (Debian `turnserver`, UDP only,
# long-term user + REST secret, loopback peers allowed) and rtc64 (`rtc64 serve --only turn`,
# a user from `rtc64 user add` + `--turn-secret`, loopback peers allowed). Readiness is a
# STUN Binding answered on the listener. CPU is utime+stime of the process tree from
# /proc/PID/stat (every thread and child).
"""TURN servers under test (coturn, rtc64): start, readiness, CPU, stop."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import turn_stun as stun
from bench.procstat import cpu_seconds, descendants

REALM = "bench.test"
USER = "bench"
PASSWORD = "bench-password-1"
SECRET = "bench-rest-secret-1"
PORTS = {"coturn": 34780, "rtc64": 34790}
# The servers never run at the same time: one relay range. It must be wide: coturn keeps a
# relay port ~1 s after Refresh 0, so N ports cap it at ~N allocations/s (4,536 ports:
# exactly 4,536/s at 42 % CPU). It overlaps the kernel's ephemeral range (32768-60999), and
# coturn 4.6.1 retries forever to bind a relay port another socket holds (1.6 M failed
# binds in 10 s when the sink sat on one): the sink stays out of it, and every run checks
# coturn's log for failed binds.
RELAY_PORTS = {"coturn": (36000, 60999), "rtc64": (36000, 60999)}
# The sink tries these first.
SINK_PORTS = (35996, 35999)


def udp_drops() -> dict[str, int]:
    """System-wide UDP receive-buffer drops (udp6: the servers' listener; udp4: the sink)."""
    out = {}
    with open("/proc/net/snmp") as f:
        lines = [ln.split() for ln in f if ln.startswith("Udp:")]
    out["udp4"] = int(lines[1][lines[0].index("RcvbufErrors")])
    with open("/proc/net/snmp6") as f:
        for ln in f:
            k, v = ln.split()
            if k == "Udp6RcvbufErrors":
                out["udp6"] = int(v)
    return out


def core_times(cpu: str | None) -> tuple[int, int, int]:
    """(busy, irq + softirq, total) jiffies of one core from /proc/stat."""
    if cpu is None:
        return 0, 0, 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return sum(v) - v[3] - v[4], v[5] + v[6], sum(v)
    return 0, 0, 0


def threads(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def binding_ok(addr: tuple[str, int], timeout: float = 0.2) -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        tid = stun.transaction_id()
        try:
            s.sendto(stun.encode(stun.BINDING, stun.REQUEST, tid, []), addr)
            r = stun.decode(s.recv(2048))
        except OSError:
            return False
        return r is not None and r.tid == tid and r.cls == stun.SUCCESS


class Server:
    """One TURN server process; ``start`` waits until it answers a Binding request."""

    def __init__(
        self,
        name: str,
        tmp: Path,
        cpu: str | None,
        extra: list[str],
        creds: str = "lt",
        relay_ports: tuple[int, int] | None = None,
        nice: int = 0,
    ) -> None:
        self.nice = nice
        self.name, self.cpu, self.extra, self.creds = name, cpu, extra, creds
        self.relay_ports = relay_ports or RELAY_PORTS[name]
        self.port = PORTS[name]
        self.addr = ("::1", self.port)
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_start = 0
        self.pids: list[int] = []
        self.start_timeout = 20.0
        if name == "rtc64":
            self._rtc64_user()
            # coturn has no per-user quota by default; rtc64's (10) would refuse the 500
            # allocations of the relay test and the 32 concurrent clients' (486).
            self.config = self.dir / "rtc64.toml"
            # No web console: its default [::1]:8064 is often held on the shared machine.
            self.config.write_text(
                "[turn]\nuser_quota = 1000000\nmax_allocations = 100000\n[web]\nenabled = false\n"
            )

    def command(self) -> list[str]:
        low, high = self.relay_ports
        if self.name == "coturn":
            cmd = [
                "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp",
                "--listening-ip", "::1", "--listening-ip", "127.0.0.1",
                "--listening-port", str(self.port),
                "--relay-ip", "127.0.0.1", "--relay-ip", "::1",
                "--min-port", str(low), "--max-port", str(high),
                "--allow-loopback-peers", "--realm", REALM,
                *(["--lt-cred-mech", "--user", f"{USER}:{PASSWORD}"] if self.creds == "lt"
                  else ["--use-auth-secret", f"--static-auth-secret={SECRET}"]),
                "--userdb", str(self.dir / "turndb"),
                "--pidfile", str(self.dir / "turnserver.pid"),
                "--log-file", str(self.log), "--simple-log",
            ]  # fmt: skip
        else:
            cmd = [
                *self._rtc64_argv(), "serve", "--config", str(self.config), "--only", "turn",
                "--data-dir", str(self.dir / "data"), "--domain", REALM,
                "--turn-listen", f"udp:[::1]:{self.port}",
                "--turn-listen", f"udp:127.0.0.1:{self.port}",
                "--turn-relay-address", "127.0.0.1", "--turn-relay-address", "::1",
                "--turn-allow-peer", "127.0.0.0/8", "--turn-allow-peer", "::1/128",
                *(["--turn-secret", SECRET] if self.creds == "rest" else []),
                "--media-ports", f"{low}-{high}",
                "--log-level", "warning",
            ]  # fmt: skip
        cmd += self.extra
        relative = self.nice - os.getpriority(os.PRIO_PROCESS, 0)  # nice -n is relative
        if relative:
            cmd = ["nice", "-n", str(relative), *cmd]
        if self.cpu is not None:
            cmd = ["taskset", "-c", self.cpu, *cmd]
        return cmd

    @staticmethod
    def _rtc64_argv() -> list[str]:
        return [sys.executable, "-m", "rtc64.cli"]

    def _rtc64_user(self) -> None:
        subprocess.run(
            [
                *self._rtc64_argv(),
                "user",
                "--data-dir",
                str(self.dir / "data"),
                "add",
                "--realm",
                REALM,
                "--password",
                PASSWORD,
                USER,
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self.log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            if binding_ok(self.addr):
                self.pids = descendants(self.proc.pid)  # taskset execs: the same pid
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} does not answer a Binding request: {self.tail()}")

    def bind_failures(self) -> int:
        """coturn's failed relay-port binds in its log (it retries a taken port forever)."""
        with contextlib.suppress(OSError), open(self.log, "rb") as f:
            f.seek(self.log_start)
            return f.read().count(b"errno=98")
        return 0

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids)

    def settle(self, limit: float = 20.0) -> None:
        """Wait until the server is idle (what an overloaded step left has drained)."""
        start = time.monotonic()
        last = self.cpu_seconds()
        while time.monotonic() - start < limit:
            time.sleep(0.3)
            now = self.cpu_seconds()
            if now - last < 0.3 * 0.05:
                return
            last = now

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
