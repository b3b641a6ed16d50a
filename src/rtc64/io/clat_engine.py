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
- MSS clamping (RFC 6877 §6.4 spirit, RFC 879): TCP SYNs the namespace forwards, either
  way, get an MSS of at most the IPv4 MTU minus 40, so a peer or a forwarded host with a
  1500-octet MTU never sends segments that do not fit the translated path. The rule is in
  an nftables table inside the namespace: nothing on the host.
- Shared address (``cfg.shared``: the link gives only a /128): no macvlan; tayga maps the
  host's IPv4 to an internal ULA address, the namespace routes IPv6 to the host over the
  veth (link-local next hops), and the host's table ``ip6 <namespace>`` (nftables, ours)
  SNATs that address to the shared one on the uplink; conntrack maps the replies back.
  That table also drops every forwarded packet other than the CLAT's flows: in from the
  veth only out the uplink and only from the internal address; to the veth only from the
  uplink and only replies (``ct state established,related``). Forwarding is enabled with
  Linux's per-interface ``force_forwarding`` (6.17+) on the veth (ours) and, when
  ``all.forwarding`` is off, on the uplink, whose forwarding our table then limits to the
  veth (so nothing that was not forwarded before is forwarded now); the uplink's previous
  value is recorded in the work dir and restored on stop and by cleanup. ``forwarding``
  itself (RA acceptance, router flag) and the host's own tables are never touched: its
  firewall still sees and may drop the CLAT's packets.
- ``start`` first removes what a previous instance of the slot left (idempotent), and on
  any failure removes what it built (rollback). Deleting the namespace removes the veth
  pair, the macvlan, the TUN and with them the host's address and route; the host's
  nftables table and the uplink's sysctl are removed/restored by ``stop``.
"""

from __future__ import annotations

import contextlib
import json
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
PROC_IPV6_CONF = Path("/proc/sys/net/ipv6/conf")
HOST_LL = IPv6Address("fe80::1")
NS_LL = IPv6Address("fe80::2")
TCP_IPV4_HEADERS = 40
IPV6_MIN_MTU = 1280


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
    shared: IPv6Address | None = None
    """The host's address the CLAT shares (``clat_v6`` is then the internal one)."""

    @property
    def mss(self) -> int:
        return self.mtu - TCP_IPV4_HEADERS

    @property
    def table(self) -> str:
        """The host's nftables table (``ip6`` family) in the shared-address policy."""
        return self.namespace


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


def _exec(args: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # Argument lists we build from validated names and addresses; no shell. ip, sysctl,
    # nft and tayga are looked up on PATH like the administrator's own commands.
    try:
        return subprocess.run(  # noqa: S603
            args, input=stdin, capture_output=True, text=True, check=False, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"{' '.join(args)}: {exc}") from None


def run(*args: str, stdin: str | None = None) -> None:
    proc = _exec(args, stdin)
    if proc.returncode != 0:
        raise EngineError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")


def ns_run(ns: str, *args: str, stdin: str | None = None) -> None:
    run("ip", "netns", "exec", ns, *args, stdin=stdin)


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


def mss_ruleset(mss: int) -> str:
    """The namespace's table: clamp the MSS of forwarded SYNs (both ways) to ``mss``."""
    return (
        "table ip rtc64-mss {\n  chain forward {\n"
        "    type filter hook forward priority mangle; policy accept;\n"
        f"    tcp flags syn tcp option maxseg size > {mss} tcp option maxseg size set {mss}\n"
        "  }\n}\n"
    )


def shared_ruleset(cfg: ClatConfig, limit_uplink: bool) -> str:
    """The host's table for a shared address: SNAT of the translator's internal address
    to ``cfg.shared`` on the uplink, and a forward filter letting only the CLAT's flows
    through (``limit_uplink``: the uplink forwards only because of us, so nothing else)."""
    up, veth = json.dumps(cfg.uplink), json.dumps(cfg.host_veth)
    limit = f"    iifname {up} oifname != {veth} drop\n" if limit_uplink else ""
    return (
        f"table ip6 {cfg.table} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    oifname {up} ip6 saddr {cfg.clat_v6} counter snat to {cfg.shared}\n"
        "  }\n  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        f"    iifname {veth} oifname != {up} drop\n"
        f"    iifname {veth} ip6 saddr != {cfg.clat_v6} drop\n"
        f"    oifname {veth} iifname != {up} drop\n"
        f"    oifname {veth} ct state != {{ established, related }} drop\n"
        f"{limit}  }}\n}}\n"
    )


def host_tables(prefix: str) -> list[str]:
    """The host's ``ip6`` nftables tables named ``<prefix><slot>`` (ours); none without
    nft (nothing of ours can exist then)."""
    try:
        proc = _exec(("nft", "-j", "list", "tables", "ip6"))
    except EngineError:
        return []
    if proc.returncode != 0:
        return []
    try:
        items = json.loads(proc.stdout).get("nftables", [])
    except (ValueError, AttributeError):
        return []
    names = [i["table"].get("name", "") for i in items if isinstance(i, dict) and "table" in i]
    return [n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()]


def remove_table(name: str) -> list[str]:
    if name not in host_tables(name.rstrip("0123456789")):
        return []
    with contextlib.suppress(EngineError):
        run("nft", "delete", "table", "ip6", name)
    return [f"nftables table ip6 {name}"]


def _sysctl_path(ifname: str, key: str) -> Path:
    return PROC_IPV6_CONF / ifname / key


def enable_uplink_forwarding(cfg: ClatConfig) -> bool:
    """Let the uplink forward the CLAT's replies; True when we turned it on (then recorded
    in the work dir for ``restore_forwarding``), False when the host already forwards."""
    if (PROC_IPV6_CONF / "all" / "forwarding").read_text().strip() != "0":
        return False
    path = _sysctl_path(cfg.uplink, "force_forwarding")
    if not path.exists():
        raise EngineError(
            "a shared CLAT address needs per-interface IPv6 forwarding (Linux 6.17+ "
            "force_forwarding) or net.ipv6.conf.all.forwarding=1"
        )
    if path.read_text().strip() != "0":
        return False
    record = {"uplink": cfg.uplink, "previous": "0"}
    (cfg.workdir / f"forwarding{cfg.slot}.json").write_text(json.dumps(record) + "\n")
    path.write_text("1\n")
    return True


def restore_forwarding(workdir: Path, slot: int | None = None) -> list[str]:
    """Put back the uplinks' ``force_forwarding`` recorded by ``enable_uplink_forwarding``."""
    restored: list[str] = []
    pattern = "forwarding*.json" if slot is None else f"forwarding{slot}.json"
    for record in sorted(workdir.glob(pattern)) if workdir.is_dir() else ():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(record.read_text())
            uplink, previous = str(data["uplink"]), str(data["previous"])
            if "/" not in uplink and previous in ("0", "1"):
                _sysctl_path(uplink, "force_forwarding").write_text(previous + "\n")
                restored.append(f"force_forwarding={previous} on {uplink}")
        with contextlib.suppress(OSError):
            record.unlink()
    return restored


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
    for table in host_tables(ns_prefix):
        removed += remove_table(table)
    if workdir is not None:
        removed += restore_forwarding(workdir)
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
        # A shared address carries IPv6 over the veth too: Linux disables IPv6 below 1280
        # octets, so the link gets 1280 and IPv4 keeps ``mtu`` by its routes and the clamp.
        mtu = str(cfg.mtu if cfg.shared is None else max(cfg.mtu, IPV6_MIN_MTU))
        run("ip", "link", "add", cfg.host_veth, "mtu", mtu, "type", "veth",
            "peer", "name", cfg.ns_veth, "mtu", mtu, "netns", ns)  # fmt: skip
        if cfg.shared is None:
            run("ip", "link", "add", cfg.macvlan, "link", cfg.uplink, "type", "macvlan",
                "mode", "bridge")  # fmt: skip
            run("ip", "link", "set", cfg.macvlan, "netns", ns)
        for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
            ns_run(ns, "sysctl", "-qw", key)
        ns_run(ns, "ip", "link", "set", "lo", "up")
        ns_run(ns, "ip", "link", "set", cfg.ns_veth, "up")
        ns_run(ns, "ip", "-4", "addr", "add", f"{cfg.clat_v4}/31", "dev", cfg.ns_veth)
        ns_run(ns, "nft", "-f", "-", stdin=mss_ruleset(cfg.mss))
        if cfg.shared is None:
            ns_run(ns, "sysctl", "-qw", f"net.ipv6.conf.{cfg.macvlan}.accept_dad=1")
            ns_run(ns, "ip", "link", "set", cfg.macvlan, "up")
            self._claim(cfg)
        else:
            ns_run(ns, "ip", "-6", "addr", "add", f"{NS_LL}/64", "dev", cfg.ns_veth, "nodad")
        conf = cfg.workdir / f"tayga{cfg.slot}.conf"
        tayga_v6 = IPv6Address(int(cfg.clat_v6) ^ 1)  # tayga's own (ICMPv6 errors only)
        conf.write_text(
            f"tun-device {cfg.tun}\nipv4-addr {cfg.clat_v4}\nipv6-addr {tayga_v6}\n"
            f"prefix {cfg.plat}\nmap {cfg.host_v4} {cfg.clat_v6}\n"
        )
        ns_run(ns, self.binary, "-c", str(conf), "--mktun")
        ns_run(ns, "ip", "link", "set", cfg.tun, "up")
        ns_run(ns, "ip", "-4", "route", "add", "default", "dev", cfg.tun, "mtu", str(cfg.mtu))
        ns_run(ns, "ip", "-6", "route", "add", f"{cfg.clat_v6}/128", "dev", cfg.tun)
        if cfg.shared is None:
            ns_run(ns, "ip", "-6", "route", "add", "default", "via", str(cfg.router),
                   "dev", cfg.macvlan, "onlink")  # fmt: skip
        else:
            ns_run(ns, "ip", "-6", "route", "add", "default", "via", str(HOST_LL),
                   "dev", cfg.ns_veth)  # fmt: skip
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
        if cfg.shared is not None:
            self._share(cfg)

    def _share(self, cfg: ClatConfig) -> None:
        """The host's side of a shared address: route to the internal address, per-link
        forwarding, and our nftables table (SNAT + forward filter)."""
        run("ip", "-6", "addr", "add", f"{HOST_LL}/64", "dev", cfg.host_veth, "nodad")
        run("ip", "-6", "route", "add", f"{cfg.clat_v6}/128", "via", str(NS_LL),
            "dev", cfg.host_veth)  # fmt: skip
        veth = _sysctl_path(cfg.host_veth, "force_forwarding")
        limit = enable_uplink_forwarding(cfg)
        run("nft", "-f", "-", stdin=shared_ruleset(cfg, limit))
        if (PROC_IPV6_CONF / "all" / "forwarding").read_text().strip() == "0":
            veth.write_text("1\n")  # our own link: it forwards what the translator sends

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
        if cfg.shared is not None or (cfg.workdir / f"forwarding{cfg.slot}.json").exists():
            remove_table(cfg.table)
            restore_forwarding(cfg.workdir, cfg.slot)

    def alive(self, cfg: ClatConfig) -> bool:
        proc = self.procs.get(cfg.slot)
        return proc is not None and proc.poll() is None

    def counters(self, cfg: ClatConfig) -> Counters | None:
        return link_counters(cfg.host_veth)


def engines() -> Sequence[str]:
    return ("tayga",)
