"""CLAT translator engines; tayga (Debian) in a network namespace of its own is the default.

Rules (RFC 6877 §6.3, RFC 7335, RFC 6145/7915 via tayga, LAB-NOTES "NAT64, DNS64, PREF64,
CLAT"):

- One instance = one namespace ``rtc64-clat<i>`` holding: a veth end (the CLAT's IPv4
  ``192.0.0.2i/31``), a macvlan on the uplink (its own MAC, the CLAT's dedicated IPv6
  address answered by proxy-ND after DAD), tayga on a TUN with ``map host_v4 clat_v6``,
  forwarding on inside the namespace only. The host gets the other veth end
  (``192.0.0.(2i+1)/31``, MTU ``mtu``) and an IPv4 default route through it: the host's
  forwarding sysctls and firewall are never touched.
- Configuration is APPLIED with ``ip``/``sysctl``/``tayga`` commands run as argument lists
  (never a shell), inside the namespace where it belongs; state is never read from ``ip``
  output: DAD is read from ``/proc/net/if_inet6`` inside the namespace, processes are found
  by their network namespace inode, links and namespaces by ``/sys/class/net`` and
  ``/run/netns``.
- ``start`` first removes what a previous instance of the slot left (idempotent), and on
  any failure removes what it built (rollback). Deleting the namespace removes the veth
  pair, the macvlan, the TUN and with them the host's address and route.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import IO, Protocol

NS_PREFIX = "rtc64-clat"
LINK_PREFIX = "r64clat"
NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08
DAD_TIMEOUT = 5.0


class EngineError(Exception):
    """An engine could not bring an instance up; the message names the step."""


class DadError(EngineError):
    """Another node holds the CLAT's IPv6 address: choose another one."""


@dataclass(frozen=True, slots=True)
class ClatConfig:
    """Everything one instance needs, names and addresses decided by the caller."""

    slot: int
    uplink: str
    namespace: str
    host_veth: str
    ns_veth: str
    macvlan: str
    tun: str
    host_v4: IPv4Address
    clat_v4: IPv4Address
    clat_v6: IPv6Address
    plat: IPv6Network
    router: IPv6Address
    mtu: int
    workdir: Path


@dataclass(frozen=True, slots=True)
class Counters:
    to_clat_packets: int
    from_clat_packets: int
    to_clat_bytes: int
    from_clat_bytes: int


class Engine(Protocol):
    """A translator engine (tayga today; Jool or a kernel translator could follow)."""

    name: str

    def start(self, cfg: ClatConfig) -> None: ...
    def stop(self, cfg: ClatConfig) -> None: ...
    def alive(self, cfg: ClatConfig) -> bool: ...
    def counters(self, cfg: ClatConfig) -> Counters | None: ...


def _exec(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    # Argument lists we build from validated names and addresses; no shell. ip, sysctl
    # and tayga are looked up on PATH like the administrator's own commands.
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False, timeout=20)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"{' '.join(args)}: {exc}") from None


def run(*args: str) -> None:
    proc = _exec(args)
    if proc.returncode != 0:
        raise EngineError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")


def ns_run(ns: str, *args: str) -> None:
    run("ip", "netns", "exec", ns, *args)


def ns_pids(ns: str) -> list[int]:
    """Processes whose network namespace is ``ns`` (by inode, not by name)."""
    try:
        target = (NETNS_DIR / ns).stat().st_ino
    except OSError:
        return []
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if (entry / "ns" / "net").stat().st_ino == target:
                pids.append(int(entry.name))
    return pids


def remove_namespace(ns: str) -> list[str]:
    """Kill what runs in ``ns`` and delete it; what was removed."""
    removed: list[str] = []
    for pid in ns_pids(ns):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"process {pid} in {ns}")
    if (NETNS_DIR / ns).exists():
        with contextlib.suppress(EngineError):
            run("ip", "netns", "delete", ns)
        removed.append(f"namespace {ns}")
    return removed


def remove_link(name: str) -> list[str]:
    if (SYS_NET / name).exists():
        with contextlib.suppress(EngineError):
            run("ip", "link", "delete", name)
        return [f"link {name}"]
    return []


def kill_recorded(workdir: Path) -> list[str]:
    """Kill the translators whose pid files a crashed instance left in ``workdir`` (a pid
    is killed only while its command line still names that instance's tayga config).

    The namespace's processes cannot always be found through ``/run/netns``: a daemon run
    under ``ip netns exec`` has its own mount namespace, where a cleanup run from another
    one may see an unmounted placeholder instead of the namespace."""
    removed: list[str] = []
    if not workdir.is_dir():
        return removed
    for pidfile in sorted(workdir.glob("tayga*.pid")):
        conf = pidfile.with_suffix(".conf")
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if cmdline[0].endswith(b"tayga") and str(conf).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)
                removed.append(f"process {pid} (tayga, {conf.name})")
        with contextlib.suppress(OSError):
            pidfile.unlink()
    return removed


def cleanup_all(ns_prefix: str = NS_PREFIX, workdir: Path | None = None) -> list[str]:
    """Remove every namespace and host link an instance (ours) may have left, and the
    translators recorded in ``workdir``."""
    removed: list[str] = [] if workdir is None else kill_recorded(workdir)
    if NETNS_DIR.is_dir():
        for entry in sorted(NETNS_DIR.iterdir()):
            if entry.name.startswith(ns_prefix) and entry.name[len(ns_prefix) :].isdigit():
                removed += remove_namespace(entry.name)
    for entry in sorted(SYS_NET.iterdir()):
        if entry.name.startswith(LINK_PREFIX):
            removed += remove_link(entry.name)
    return removed


def _counter(link: str, name: str) -> int:
    return int((SYS_NET / link / "statistics" / name).read_text())


def link_counters(host_link: str) -> Counters | None:
    """Packets and bytes the host sent into / got from a CLAT (its veth's statistics)."""
    try:
        return Counters(
            _counter(host_link, "tx_packets"),
            _counter(host_link, "rx_packets"),
            _counter(host_link, "tx_bytes"),
            _counter(host_link, "rx_bytes"),
        )
    except (OSError, ValueError):
        return None


def _dad_state(ns: str, address: IPv6Address) -> int | None:
    """The IFA flags of ``address`` in ``ns`` (``/proc/net/if_inet6``), None if absent."""
    proc = _exec(("ip", "netns", "exec", ns, "cat", "/proc/net/if_inet6"))
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0] == address.exploded.replace(":", ""):
            return int(fields[4], 16)
    return None


class Tayga:
    """tayga (Debian) as the CLAT translator, one process per namespace."""

    name = "tayga"

    def __init__(self, binary: str = "tayga") -> None:
        self.binary = binary
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, cfg: ClatConfig) -> None:
        self.stop(cfg)
        try:
            self._build(cfg)
        except BaseException:
            self.stop(cfg)
            raise

    def _build(self, cfg: ClatConfig) -> None:
        ns = cfg.namespace
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", cfg.host_veth, "mtu", str(cfg.mtu), "type", "veth",
            "peer", "name", cfg.ns_veth, "mtu", str(cfg.mtu), "netns", ns)  # fmt: skip
        run("ip", "link", "add", cfg.macvlan, "link", cfg.uplink, "type", "macvlan",
            "mode", "bridge")  # fmt: skip
        run("ip", "link", "set", cfg.macvlan, "netns", ns)
        for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
            ns_run(ns, "sysctl", "-qw", key)
        ns_run(ns, "sysctl", "-qw", f"net.ipv6.conf.{cfg.macvlan}.accept_dad=1")
        ns_run(ns, "ip", "link", "set", "lo", "up")
        ns_run(ns, "ip", "link", "set", cfg.ns_veth, "up")
        ns_run(ns, "ip", "-4", "addr", "add", f"{cfg.clat_v4}/31", "dev", cfg.ns_veth)
        ns_run(ns, "ip", "link", "set", cfg.macvlan, "up")
        self._claim(cfg)
        conf = cfg.workdir / f"tayga{cfg.slot}.conf"
        tayga_v6 = IPv6Address(int(cfg.clat_v6) ^ 1)  # tayga's own (ICMPv6 errors only)
        conf.write_text(
            f"tun-device {cfg.tun}\nipv4-addr {cfg.clat_v4}\nipv6-addr {tayga_v6}\n"
            f"prefix {cfg.plat}\nmap {cfg.host_v4} {cfg.clat_v6}\n"
        )
        ns_run(ns, self.binary, "-c", str(conf), "--mktun")
        ns_run(ns, "ip", "link", "set", cfg.tun, "up")
        ns_run(ns, "ip", "-4", "route", "add", "default", "dev", cfg.tun)
        ns_run(ns, "ip", "-6", "route", "add", f"{cfg.clat_v6}/128", "dev", cfg.tun)
        ns_run(ns, "ip", "-6", "route", "add", "default", "via", str(cfg.router),
               "dev", cfg.macvlan, "onlink")  # fmt: skip
        log = (cfg.workdir / f"tayga{cfg.slot}.log").open("wb")
        with log:
            proc = self._popen(ns, conf, log)
        self.procs[cfg.slot] = proc
        (cfg.workdir / f"tayga{cfg.slot}.pid").write_text(f"{proc.pid}\n")  # for cleanup
        time.sleep(0.2)
        if proc.poll() is not None:
            raise EngineError(f"tayga exited {proc.returncode}: see {cfg.workdir}")
        run("ip", "link", "set", cfg.host_veth, "up")
        run("ip", "-4", "addr", "add", f"{cfg.host_v4}/31", "dev", cfg.host_veth)
        run("ip", "-4", "route", "add", "default", "via", str(cfg.clat_v4), "dev",
            cfg.host_veth, "metric", str(2048 + cfg.slot), "mtu", str(cfg.mtu))  # fmt: skip

    def _popen(self, ns: str, conf: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(  # noqa: S603  (see _exec)
                ("ip", "netns", "exec", ns, self.binary, "-c", str(conf), "-d"),  # noqa: S607
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise EngineError(f"cannot start {self.binary}: {exc}") from None

    def _claim(self, cfg: ClatConfig) -> None:
        """DAD for the CLAT address on the macvlan (RFC 4862 §5.4), then proxy-ND for it."""
        ns = cfg.namespace
        ns_run(ns, "ip", "-6", "addr", "add", f"{cfg.clat_v6}/128", "dev", cfg.macvlan)
        deadline = time.monotonic() + DAD_TIMEOUT
        while True:
            flags = _dad_state(ns, cfg.clat_v6)
            if flags is None or flags & IFA_F_DADFAILED:
                raise DadError(f"DAD failed for {cfg.clat_v6} on {cfg.uplink}")
            if not flags & IFA_F_TENTATIVE:
                break
            if time.monotonic() > deadline:
                raise EngineError(f"DAD for {cfg.clat_v6} did not finish in {DAD_TIMEOUT} s")
            time.sleep(0.1)
        ns_run(ns, "ip", "-6", "addr", "del", f"{cfg.clat_v6}/128", "dev", cfg.macvlan)
        ns_run(ns, "sysctl", "-qw", f"net.ipv6.conf.{cfg.macvlan}.proxy_ndp=1")
        ns_run(ns, "ip", "-6", "neigh", "add", "proxy", str(cfg.clat_v6), "dev", cfg.macvlan)

    def stop(self, cfg: ClatConfig) -> None:
        proc = self.procs.pop(cfg.slot, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            (cfg.workdir / f"tayga{cfg.slot}.pid").unlink()
        remove_namespace(cfg.namespace)
        for name in (cfg.host_veth, cfg.macvlan):
            remove_link(name)

    def alive(self, cfg: ClatConfig) -> bool:
        proc = self.procs.get(cfg.slot)
        return proc is not None and proc.poll() is None

    def counters(self, cfg: ClatConfig) -> Counters | None:
        return link_counters(cfg.host_veth)


def engines() -> Sequence[str]:
    return ("tayga",)
