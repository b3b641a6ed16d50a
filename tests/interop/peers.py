"""Real peers inside the lab: rtc64 itself, SIPp and Kamailio, started and stopped by tests.

Every process runs in one of the lab's namespaces, writes its log into the test's tmp
directory (printed on failure) and is stopped at teardown by the lab.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.interop.lab import Host, stop

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP_TIMEOUT = 30


class Gateway:
    """``rtc64 serve`` running in a namespace."""

    def __init__(self, host: Host, workdir: Path, args: Sequence[str], config: str = "") -> None:
        self.host = host
        self.workdir = workdir
        self.log = workdir / "rtc64.log"
        argv = [sys.executable, "-m", "rtc64.cli", "--log-level", "debug", "serve"]
        argv += ["--data-dir", str(workdir / "data"), *args]
        if config:
            path = workdir / "rtc64.toml"
            path.write_text(config)
            argv[3:3] = ["--config", str(path)]
        self.proc = host.popen(argv, log=self.log)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "gateway ready" in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"rtc64 exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.1)
        raise RuntimeError(f"rtc64 not ready after {timeout} s:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        stop(self.proc)
        return self.proc.returncode


class Sipp:
    """One SIPp run (``-m`` calls) in a namespace; ``wait`` returns its exit status."""

    def __init__(
        self,
        host: Host,
        workdir: Path,
        name: str,
        scenario: str,
        *,
        local: str,
        port: int,
        remote: str | None = None,
        transport: str = "u1",
        calls: int = 1,
        keys: dict[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.workdir = workdir
        argv = ["sipp"]
        if remote:
            argv.append(remote)
        argv += ["-sf", str(SCENARIOS / scenario), "-i", local, "-p", str(port)]
        argv += ["-t", transport, "-m", str(calls), "-nostdin", "-timeout", str(SIPP_TIMEOUT)]
        argv += ["-timeout_error", "-trace_err", "-trace_msg", "-max_recv_loops", "1000"]
        for key, value in (keys or {}).items():
            argv += ["-key", key, value]
        argv += list(extra)
        self.log = workdir / f"sipp-{name}.log"
        self.proc = host.popen(argv, log=self.log, cwd=workdir)

    def wait(self, timeout: float = SIPP_TIMEOUT + 10) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc)
            return -1

    def messages(self) -> str:
        """Everything SIPp traced (messages and errors) for failure reports."""
        parts = []
        for path in sorted(self.workdir.glob("*_messages.log")) + sorted(
            self.workdir.glob("*_errors.log")
        ):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)


def wait_port(host: Host, proto: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on ``port`` (``udp``/``tcp``) inside ``host``."""
    deadline = time.monotonic() + timeout
    flag = "-lun" if proto == "udp" else "-ltn"
    while time.monotonic() < deadline:
        out = host.run("ss", flag, check=False).stdout
        if f":{port} " in out:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {proto} port {port} in {host.ns}")


KAMAILIO_CORE = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
loadpath "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "use_path", 1)
modparam("registrar", "path_mode", 0)
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here"); exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    if (is_method("REGISTER")) { save("location"); exit; }
    record_route();
    if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
    xlog("L_INFO", "core: $rm $ru via $du\\n");
    t_relay();
}
"""


class Kamailio:
    """Kamailio as an IPv4-only registrar + proxy core (usrloc in memory, Path support)."""

    def __init__(self, host: Host, workdir: Path, listen: str) -> None:
        self.log = workdir / "kamailio.log"
        config = workdir / "kamailio.cfg"
        config.write_text(KAMAILIO_CORE)
        argv = ["kamailio", "-f", str(config), "-DD", "-E", "-l", listen, "-Y", str(workdir)]
        argv += ["-P", str(workdir / "kamailio.pid"), "-w", str(workdir)]
        self.proc = host.popen(argv, log=self.log)
        proto, _, rest = listen.partition(":")
        wait_port(host, proto, int(rest.rsplit(":", 1)[1]))

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
