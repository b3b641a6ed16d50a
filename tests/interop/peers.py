"""Real peers inside the lab: rtc64 itself, SIPp and Kamailio, started and stopped by tests.

Every process runs in one of the lab's namespaces, writes its log into the test's tmp
directory (printed on failure) and is stopped at teardown by the lab.
"""

from __future__ import annotations

import re
import struct
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

    def _wait_ready(self, timeout: float = 60.0) -> None:
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

    def private_ports(self, prefix: str = "udp:[") -> dict[int, str]:
        """{worker: "address:port"} of each SIP worker's private port whose listen spec
        starts with ``prefix`` (the supervisor logs them; {} for one process)."""
        found = {}
        text = self.text()
        for k, ports in re.findall(r"SIP worker (\d+): own ports (.*?), media ports", text):
            for spec in ports.split(", "):
                if spec.startswith(prefix):
                    found[int(k)] = spec.split(":", 1)[1]
        return found

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


G711_PCAP = "/usr/share/sip-tester/g711a.pcap"


def media_dirs(work: Path, name: str) -> tuple[Path, Path]:
    """Fresh working directories of a SIPp callee and caller with media, (uas, uac): the
    callee's ``uas_media.xml`` plays ``rtp.pcap``, 200 packets of SIPp's own G.711 capture."""
    uas_dir, uac_dir = work / f"{name}-uas", work / f"{name}-uac"
    for d in (uas_dir, uac_dir):
        d.mkdir()
    subprocess.run(
        ["tcpdump", "-Z", "root", "-r", G711_PCAP, "-c", "200", "-w", str(uas_dir / "rtp.pcap")],
        check=True, capture_output=True,
    )  # fmt: skip
    return uas_dir, uac_dir


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


# baresip 1.0 configuration (keys as in the template ``baresip -f EMPTYDIR -t 1`` writes;
# 1.0 has no ``sip_transports`` or ``net_prefer_ipv6``, unknown keys are silently ignored).
# ausine runs only at 48 kHz stereo in 1.0, hence the explicit rates and channels; alsa's
# "null" device plays into nothing, so no sound card is needed. ``menu`` provides the
# dial/hangup commands ctrl_tcp executes and prints the call events the tests wait for.
BARESIP_CONFIG = """poll_method epoll
sip_listen {sip_listen}
call_local_timeout 120
call_max_calls 4
audio_player alsa,null
audio_alert alsa,null
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
auplay_srate 48000
auplay_channels 2
audio_buffer 20-160
rtp_tos 184
rtp_ports {rtp_low}-{rtp_high}
rtp_stats yes
rtcp_mux no
jitter_buffer_delay 5-10
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module alsa.so
module_tmp uuid.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen {ctrl}
"""


class Baresip:
    """A scripted baresip 1.0 softphone (tone source, no sound card) driven over ctrl_tcp.

    Its log (``-v`` plus the ``-s`` SIP trace) is what the tests wait on: baresip 1.0's
    lines are ``AOR: {0/UDP/v6} 200 OK (...) [1 binding]`` after registering,
    ``AOR: Call established: PEER`` and ``AOR: Call with PEER terminated (duration: N secs)``.
    Registration needs a registrar that challenges with MD5 only: libre 1.1 fails the whole
    request with ENOSYS ("Register: Function not implemented") as soon as any
    WWW/Proxy-Authenticate header carries another algorithm, whatever its position.
    """

    RTP_PORTS = (10000, 10099)
    CTRL_PORT = 4444

    def __init__(self, host: Host, workdir: Path, *, address: str, account: str) -> None:
        self.host = host
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        v6 = ":" in address
        self.ctrl = ("::1" if v6 else "127.0.0.1", self.CTRL_PORT)
        ctrl_text = f"[::1]:{self.CTRL_PORT}" if v6 else f"127.0.0.1:{self.CTRL_PORT}"
        sip_listen = f"[{address}]:5060" if v6 else f"{address}:5060"
        (workdir / "config").write_text(
            BARESIP_CONFIG.format(
                sip_listen=sip_listen,
                rtp_low=self.RTP_PORTS[0],
                rtp_high=self.RTP_PORTS[1],
                ctrl=ctrl_text,
            )
        )
        (workdir / "accounts").write_text(account + "\n")
        (workdir / "contacts").write_text("")
        self.log = workdir / "baresip.log"
        self.proc = host.popen(["baresip", "-f", str(workdir), "-v", "-s"], log=self.log)
        wait_port(host, "tcp", self.CTRL_PORT)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def command(self, command: str, params: str = "") -> str:
        """Send one ctrl_tcp command (netstring JSON) from inside the phone's namespace."""
        script = (
            "import json,socket,sys\n"
            f"s=socket.create_connection(({self.ctrl[0]!r},{self.ctrl[1]}),timeout=5)\n"
            f"m=json.dumps({{'command':{command!r},'params':{params!r},'token':'t'}}).encode()\n"
            "s.sendall(b'%d:%s,'%(len(m),m))\n"
            "buf=b''\n"
            "s.settimeout(3)\n"
            "try:\n"
            "    while b'\"response\"' not in buf:\n"
            "        d=s.recv(65536)\n"
            "        if not d: break\n"
            "        buf+=d\n"
            "except OSError: pass\n"
            "sys.stdout.write(buf.decode('utf-8','replace'))\n"
        )
        return self.host.run(sys.executable, "-c", script, check=False).stdout

    def wait_for(self, text: str, timeout: float = 15.0) -> bool:
        """Wait until ``text`` appears in the log (False on timeout or if baresip exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.text():
                return True
            if self.proc.poll() is not None:
                return text in self.text()
            time.sleep(0.1)
        return False

    def wait_registered(self, timeout: float = 15.0) -> bool:
        """Wait for baresip's "registered" line (``{0/UDP/v6} 200 OK``), not any 200 OK."""
        return self.wait_for("} 200 OK", timeout)

    def stop(self) -> None:
        """SIGTERM: baresip unregisters (needs the registrar still up) and exits."""
        stop(self.proc)


class Capture:
    """tcpdump in a namespace: UDP packets to a host's RTP port range, counted as they come.

    ``-U`` writes each packet to the pcap file at once, so ``packets`` can read the count
    while the capture runs and tests can wait for media instead of sleeping.
    """

    def __init__(self, host: Host, workdir: Path, name: str, dst: str, ports: tuple[int, int]):
        self.file = workdir / f"{name}.pcap"
        self.host = host
        self.log = workdir / f"{name}.tcpdump.log"
        expr = f"udp and dst host {dst} and dst portrange {ports[0]}-{ports[1]}"
        self.proc = host.popen(
            ["tcpdump", "-i", "any", "-n", "-U", "-w", str(self.file), expr], log=self.log
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        """tcpdump says "listening on ..." once the filter is attached to the socket."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "listening on" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"tcpdump not capturing: {self.log.read_text(errors='replace')}")

    def packets(self) -> int:
        """Packets written so far (pcap records; a record still being written is not counted)."""
        try:
            data = self.file.read_bytes()
        except FileNotFoundError:
            return 0
        if len(data) < 24:
            return 0
        order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        count, offset = 0, 24
        while offset + 16 <= len(data):
            (caplen,) = struct.unpack_from(order + "I", data, offset + 8)
            offset += 16 + caplen
            if offset > len(data):
                break
            count += 1
        return count

    def wait_packets(self, minimum: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.packets() >= minimum:
                return True
            time.sleep(0.1)
        return self.packets() >= minimum

    def count(self) -> int:
        """Stop the capture and count what it wrote."""
        stop(self.proc)
        out = self.host.run("tcpdump", "-n", "-r", str(self.file), check=False).stdout
        return sum(1 for line in out.splitlines() if " UDP" in line)


def sipp_received(workdir: Path, start: str) -> list[str]:
    """Messages SIPp received (``-trace_msg`` logs in ``workdir``) whose first line starts
    with ``start``, in file order."""
    found = []
    for path in sorted(workdir.glob("*_messages.log")):
        for block in re.split(r"\n-{20,}[^\n]*\n", path.read_text(errors="replace")):
            _head, _, message = block.partition(" message received ")
            if not message:
                continue
            message = message.split("\n", 1)[1].lstrip("\n") if "\n" in message else ""
            if message.startswith(start):
                found.append(message)
    return found


def report(*parts: Gateway | Sipp, gateway_tail: int = 8000, sipp_tail: int = 3000) -> str:
    """What a failed interop assertion prints: the tail of each peer's log and the SIP
    messages SIPp exchanged."""
    out = []
    for p in parts:
        if isinstance(p, Gateway):
            out.append("--- rtc64\n" + p.text()[-gateway_tail:])
        else:
            out.append(f"--- sipp {p.name}\n" + p.log.read_text(errors="replace")[-sipp_tail:])
            out.append(p.messages())
    return "\n".join(out)
