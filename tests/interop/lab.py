"""Network-namespace lab: real IPv6-only and IPv4-only hosts on one machine.

``Lab`` builds the classic topology and always removes it::

    v6 host (IPv6 only) ==veth== gateway ==veth== v4 host (IPv4 only)
    fd00:64:6::2/64              fd00:64:6::1/64
                                 10.64.4.1/24       10.64.4.2/24

With ``dual_stack=True`` a fourth host with both families hangs off the gateway on its
own link (fd00:64:5::2/64 and 10.64.5.2/24, the gateway fd00:64:5::1 and 10.64.5.1):
a phone that can move between IPv4 and IPv6 mid-call.

Forwarding stays off in the gateway namespace, so the only way across is through a
process running there. The v6 host has no IPv4 at all (127.0.0.1 removed from lo), the v4
host has IPv6 disabled. Addresses are ULA/RFC 1918 inside our own namespaces and never
routed out. Processes started through ``Host.popen`` are killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

V6_GW = IPv6Address("fd00:64:6::1")
V6_HOST = IPv6Address("fd00:64:6::2")
V4_GW = IPv4Address("10.64.4.1")
V4_HOST = IPv4Address("10.64.4.2")
V6_DS_GW = IPv6Address("fd00:64:5::1")
V6_DS = IPv6Address("fd00:64:5::2")
V4_DS_GW = IPv4Address("10.64.5.1")
V4_DS = IPv4Address("10.64.5.2")


def is_root() -> bool:
    return os.geteuid() == 0


def require_lab(*tools: str) -> None:
    """Skip (not root) or fail (root but a tool is missing) before building a lab."""
    if not is_root():
        pytest.skip("interop test needs root for network namespaces (CI runs as root)")
    missing = [t for t in ("ip", *tools) if shutil.which(t) is None]
    if missing:
        pytest.fail(f"interop tools missing as root: {', '.join(missing)} (run make test)")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its stderr on failure."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    """One namespace, with the processes started in it."""

    ns: str
    addresses: list[IPv4Address | IPv6Address] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def v4(self) -> IPv4Address:
        return next(a for a in self.addresses if isinstance(a, IPv4Address))

    @property
    def v6(self) -> IPv6Address:
        return next(a for a in self.addresses if isinstance(a, IPv6Address))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *args, check=check)

    def popen(
        self,
        args: Sequence[str],
        *,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in this namespace (``ip netns exec`` execs it: same PID)."""
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with proc
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Stop what we started, then anything still running in the namespace (children
        of forking peers such as Kamailio would otherwise keep their ports)."""
        for proc in reversed(self.procs):
            stop(proc)
        self.procs.clear()
        deadline = time.monotonic() + 5
        while True:
            pids = sh("ip", "netns", "pids", self.ns, check=False).stdout.split()
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


class Lab:
    """The three-namespace topology (four with ``dual_stack``); use as a context manager."""

    def __init__(self, *, dual_stack: bool = False) -> None:
        tag = uuid.uuid4().hex[:6]
        self.gw = Host(f"r64gw-{tag}", [V6_GW, V4_GW])
        self.v6 = Host(f"r64v6-{tag}", [V6_HOST])
        self.v4 = Host(f"r64v4-{tag}", [V4_HOST])
        self.ds: Host | None = Host(f"r64ds-{tag}", [V6_DS, V4_DS]) if dual_stack else None
        self._tag = tag
        self._made: list[str] = []

    @property
    def hosts(self) -> tuple[Host, ...]:
        extra = (self.ds,) if self.ds is not None else ()
        return (self.gw, self.v6, self.v4, *extra)

    @property
    def dual(self) -> Host:
        """The dual-stack host (only with ``dual_stack=True``)."""
        assert self.ds is not None, "Lab(dual_stack=True) has the dual-stack host"
        return self.ds

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for host in self.hosts:
            sh("ip", "netns", "add", host.ns)
            self._made.append(host.ns)
            host.run("ip", "link", "set", "lo", "up")
        # IPv6-only host: no IPv4 anywhere, not even loopback.
        self.v6.run("ip", "-4", "addr", "flush", "dev", "lo")
        # IPv4-only host: IPv6 off entirely.
        self.v4.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        self.v4.run("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        self.gw.run("sysctl", "-qw", "net.ipv4.ip_forward=0")
        self.gw.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=0")
        self._veth(self.gw, f"g6{self._tag}", self.v6, f"h6{self._tag}")
        self._veth(self.gw, f"g4{self._tag}", self.v4, f"h4{self._tag}")
        self.gw.run("ip", "-6", "addr", "add", f"{V6_GW}/64", "dev", f"g6{self._tag}", "nodad")
        self.v6.run("ip", "-6", "addr", "add", f"{V6_HOST}/64", "dev", f"h6{self._tag}", "nodad")
        self.gw.run("ip", "-4", "addr", "add", f"{V4_GW}/24", "dev", f"g4{self._tag}")
        self.v4.run("ip", "-4", "addr", "add", f"{V4_HOST}/24", "dev", f"h4{self._tag}")
        # Each host reaches "the world" only through the gateway leg of its family.
        self.v6.run("ip", "-6", "route", "add", "default", "via", str(V6_GW))
        self.v4.run("ip", "-4", "route", "add", "default", "via", str(V4_GW))
        if self.ds is not None:
            self._build_dual_stack(self.ds)
        self._wait_reachable()

    def _build_dual_stack(self, ds: Host) -> None:
        """Its own link to the gateway; default routes of both families through it, so
        the gateway's main addresses (V6_GW, V4_GW) are reachable from it as well."""
        gw_if, ds_if = f"gd{self._tag}", f"hd{self._tag}"
        self._veth(self.gw, gw_if, ds, ds_if)
        self.gw.run("ip", "-6", "addr", "add", f"{V6_DS_GW}/64", "dev", gw_if, "nodad")
        self.gw.run("ip", "-4", "addr", "add", f"{V4_DS_GW}/24", "dev", gw_if)
        ds.run("ip", "-6", "addr", "add", f"{V6_DS}/64", "dev", ds_if, "nodad")
        ds.run("ip", "-4", "addr", "add", f"{V4_DS}/24", "dev", ds_if)
        ds.run("ip", "-6", "route", "add", "default", "via", str(V6_DS_GW))
        ds.run("ip", "-4", "route", "add", "default", "via", str(V4_DS_GW))

    def _veth(self, a: Host, a_if: str, b: Host, b_if: str) -> None:
        sh("ip", "link", "add", a_if, "netns", a.ns, "type", "veth", "peer", b_if, "netns", b.ns)
        a.run("ip", "link", "set", a_if, "up")
        b.run("ip", "link", "set", b_if, "up")

    def _wait_reachable(self) -> None:
        deadline = time.monotonic() + 10
        pairs: list[tuple[Host, IPv4Address | IPv6Address]] = [(self.v6, V6_GW), (self.v4, V4_GW)]
        if self.ds is not None:
            pairs += [(self.ds, V6_GW), (self.ds, V4_GW)]
        for host, target in pairs:
            while True:
                proc = host.run("ping", "-c1", "-W1", str(target), check=False)
                if proc.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{host.ns} cannot reach {target}: {proc.stdout}")
                time.sleep(0.1)

    def close(self) -> None:
        for host in self.hosts:
            host.stop_all()
        for ns in reversed(self._made):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        self._made.clear()


@contextlib.contextmanager
def lab(*, dual_stack: bool = False) -> Iterator[Lab]:
    """A fresh three-namespace lab (plus the dual-stack host if asked), removed afterwards
    even on failure."""
    with Lab(dual_stack=dual_stack) as topology:
        yield topology
