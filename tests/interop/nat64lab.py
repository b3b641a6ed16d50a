"""DNS, DNS64/NAT64 and PREF64 pieces for interop labs (on top of ``lab.py``).

- ``Unbound``: an unbound serving test zones as ``auth-zone`` (``for-upstream: yes``,
  ``for-downstream: no``: unbound's dns64 module only synthesises from those), with
  optional ``dns64-prefix``; it also serves ``ipv4only.arpa`` (A 192.0.0.170/171) so RFC
  7050 discovery works without the Internet.
- ``Nat64Lab``: the ``lab.Lab`` topology with forwarding on in the gateway, tayga as the
  NAT64 (PLAT) on a TUN there with the ULA prefix ``fd64:64:64::/96`` (tayga refuses the
  well-known prefix for private IPv4), and an unbound with dns64 on ``[fd00:64:6::1]:53``
  serving ``v4only.test`` (``pbx.v4only.test`` A 10.64.4.2 only). The IPv6-only host
  reaches the IPv4-only host at ``fd64:64:64::a40:402`` through tayga.
- ``python -m tests.interop.nat64lab ...`` runs helpers inside a namespace: ``targets``
  (``Resolver.targets`` as JSON), ``ra-responder`` (scapy: answer a Router Solicitation
  with an RA carrying PREF64; Debian's radvd 2.19 has no ``nat64prefix``), ``udp-echo``
  and ``udp-send``.
Everything started is killed by PID and the namespaces are deleted, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, Host, Lab, sh

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
RTC64 = str(ROOT / ".venv" / "bin" / "rtc64")
NAT64_PREFIX = IPv6Network("fd64:64:64::/96")
TAYGA_POOL = "192.168.255.0/24"
TAYGA_V4 = IPv4Address("192.168.255.1")
V4ONLY_ZONE = "v4only.test"
V4ONLY_NAME = f"pbx.{V4ONLY_ZONE}"
V4ONLY_SYNTH = IPv6Address("fd64:64:64::a40:402")  # 10.64.4.2 under NAT64_PREFIX
IPV4ONLY_ARPA_ZONE = (
    "$ORIGIN ipv4only.arpa.\n$TTL 300\n"
    "@ SOA ns.ipv4only.arpa. hostmaster.ipv4only.arpa. 1 3600 600 86400 60\n"
    "@ NS ns.ipv4only.arpa.\nns A 192.0.0.170\n@ A 192.0.0.170\n@ A 192.0.0.171\n"
)


def zone(origin: str, body: str, ttl: int = 300) -> str:
    """A zone file: SOA (negative TTL 60) and NS for ``origin``, then ``body``."""
    return (
        f"$ORIGIN {origin}.\n$TTL {ttl}\n"
        f"@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 60\n"
        f"@ NS ns.{origin}.\nns AAAA {V6_GW}\n{body}"
    )


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` every 50 ms until it is true; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Unbound:
    """unbound in ``host``'s namespace, serving ``zones`` ({origin: zone text})."""

    def __init__(
        self,
        host: Host,
        workdir: Path,
        zones: Mapping[str, str],
        *,
        listen: Sequence[IPv4Address | IPv6Address] = (V6_GW,),
        port: int = 53,
        dns64_prefix: IPv6Network | None = None,
        extra: str = "",
    ) -> None:
        self.host = host
        self.listen = listen
        self.port = port
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "server:",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{workdir}"',
            '  pidfile: ""',
            "  use-syslog: no",
            '  logfile: ""',
            "  verbosity: 1",
            "  do-daemonize: no",
            f"  port: {port}",
            *(f"  interface: {a}" for a in listen),
            "  access-control: ::/0 allow",
            "  access-control: 0.0.0.0/0 allow",
            "  qname-minimisation: no",
            "  rrset-roundrobin: no",  # answers in zone order: tests can compare lists
            "  do-not-query-localhost: yes",
            '  local-zone: "test." nodefault',  # RFC 6761 names are blocked by default
            f'  module-config: "{"dns64 " if dns64_prefix else ""}iterator"',
        ]
        if dns64_prefix is not None:
            lines.append(f"  dns64-prefix: {dns64_prefix}")
        lines.append(extra)
        for origin, text in {"ipv4only.arpa": IPV4ONLY_ARPA_ZONE, **zones}.items():
            path = workdir / f"{origin}.zone"
            path.write_text(text)
            lines += [
                "auth-zone:",
                f"  name: {origin}",
                f'  zonefile: "{path}"',
                "  for-upstream: yes",
                "  for-downstream: no",
            ]
        self.conf = workdir / "unbound.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        sh("unbound-checkconf", str(self.conf))
        self.proc = host.popen(["unbound", "-d", "-c", str(self.conf)], log=workdir / "unbound.log")
        wait_for("unbound to listen", self._listening)

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"unbound exited {self.proc.returncode}: see {self.conf.parent}")
        out = self.host.run("ss", "-Hlun", f"sport = :{self.port}", check=False).stdout
        return all(str(a) in out for a in self.listen)

    @property
    def server(self) -> str:
        """The ``dns.servers`` entry for this unbound, e.g. ``[fd00:64:6::1]:53``."""
        a = self.listen[0]
        return f"[{a}]:{self.port}" if a.version == 6 else f"{a}:{self.port}"


class Nat64Lab(Lab):
    """``Lab`` plus tayga (NAT64) and unbound (DNS64) in the gateway; a context manager."""

    def __init__(self) -> None:
        super().__init__()
        self.workdir = Path(tempfile.mkdtemp(prefix="r64nat64-"))
        self.tun = f"nat64{self._tag}"
        self.dns: Unbound | None = None

    def _build(self) -> None:
        super()._build()
        self.gw.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.gw.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        conf = self.workdir / "tayga.conf"
        conf.write_text(
            f"tun-device {self.tun}\nipv4-addr {TAYGA_V4}\nprefix {NAT64_PREFIX}\n"
            f"dynamic-pool {TAYGA_POOL}\ndata-dir {self.workdir}\n"
        )
        self.gw.run("tayga", "-c", str(conf), "--mktun")
        self.gw.run("ip", "link", "set", self.tun, "up")
        self.gw.run("ip", "-4", "addr", "add", str(V4_GW), "dev", self.tun)
        self.gw.run("ip", "-6", "addr", "add", str(V6_GW), "dev", self.tun, "nodad")
        self.gw.run("ip", "-4", "route", "add", TAYGA_POOL, "dev", self.tun)
        self.gw.run("ip", "-6", "route", "add", str(NAT64_PREFIX), "dev", self.tun)
        tayga = self.gw.popen(["tayga", "-c", str(conf), "-d"], log=self.workdir / "tayga.log")
        time.sleep(0.2)
        if tayga.poll() is not None:
            raise RuntimeError(f"tayga exited: {(self.workdir / 'tayga.log').read_text()}")
        self.dns = Unbound(
            self.gw,
            self.workdir / "unbound",
            {V4ONLY_ZONE: zone(V4ONLY_ZONE, f"pbx A {V4_HOST}\n")},
            dns64_prefix=NAT64_PREFIX,
        )

    def __enter__(self) -> Nat64Lab:
        super().__enter__()
        return self

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_kea(
    host: Host,
    workdir: Path,
    interface: str,
    subnet: str,
    *,
    v6only: int | None = 1800,
    leases: Path | None = None,
    name: str = "kea",
) -> subprocess.Popen[bytes]:
    """Kea DHCPv4 in ``host`` serving ``subnet`` (a /24: pool .100-.199) on ``interface``,
    with option 108 (``v6-only-preferred``) when ``v6only`` is set; leases kept in
    ``leases`` (CSV) or in memory. Its log is ``workdir/<name>.log``; returns once Kea
    is serving."""
    net = subnet.rsplit(".", 1)[0]
    pool: dict[str, object] = {
        "id": 1, "subnet": subnet, "pools": [{"pool": f"{net}.100 - {net}.199"}],
    }  # fmt: skip
    if v6only is not None:
        pool["option-data"] = [{"name": "v6-only-preferred", "data": str(v6only)}]
    database: dict[str, object] = {"type": "memfile", "persist": leases is not None}
    if leases is not None:
        database |= {"name": str(leases), "lfc-interval": 0}
    config = workdir / f"{name}.json"
    config.write_text(json.dumps({"Dhcp4": {
        "interfaces-config": {"interfaces": [interface], "dhcp-socket-type": "raw"},
        "lease-database": database,
        "valid-lifetime": 600,
        "subnet4": [pool],
        "loggers": [{"name": "kea-dhcp4", "severity": "DEBUG", "debuglevel": 40,
                     "output_options": [{"output": "stdout"}]}],
    }}))  # fmt: skip
    env = {"KEA_PIDFILE_DIR": str(workdir), "KEA_LOCKFILE_DIR": str(workdir)}
    log = workdir / f"{name}.log"
    kea = host.popen(["kea-dhcp4", "-c", str(config)], log=log, env=env)

    def serving() -> bool:
        if kea.poll() is not None:
            raise RuntimeError(f"kea exited: {log.read_text()[-2000:]}")
        return "DHCP4_STARTED" in log.read_text()

    wait_for("Kea", serving, timeout=20)
    return kea


def in_ns(host: Host, *args: str, timeout: float = 30) -> str:
    """Run ``python -m tests.interop.nat64lab ARGS`` in ``host``; its stdout."""
    proc = host.run(
        "env", f"PYTHONPATH={ROOT}", PYTHON, "-m", "tests.interop.nat64lab", *args, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nat64lab {' '.join(args)} in {host.ns}: {proc.stderr.strip()}")
    return proc.stdout


# ---- helpers run inside a namespace ------------------------------------------------------


def _targets(args: argparse.Namespace) -> None:
    from rtc64.io.resolver import ResolveError, Resolver  # noqa: PLC0415
    from rtc64.sip.uri import parse_uri  # noqa: PLC0415

    async def main() -> object:
        resolver = Resolver(args.server, timeout=args.timeout, hosts={})
        try:
            found = await resolver.targets(parse_uri(args.uri.encode()))  # type: ignore[arg-type]
        except ResolveError as exc:
            return {"status": exc.status, "reason": exc.reason}
        return [[t.transport.value, str(t.address), t.port, t.host] for t in found]

    print(json.dumps(asyncio.run(main())))


def _ra_responder(args: argparse.Namespace) -> None:
    from scapy.arch import get_if_hwaddr  # noqa: PLC0415
    from scapy.layers.inet6 import (  # noqa: PLC0415
        ICMPv6ND_RA,
        ICMPv6ND_RS,
        ICMPv6NDOptPREF64,
        IPv6,
    )
    from scapy.layers.l2 import Ether  # noqa: PLC0415
    from scapy.sendrecv import AsyncSniffer, send  # noqa: PLC0415

    prefix = IPv6Network(args.prefix)
    plc = {96: 0, 64: 1, 56: 2, 48: 3, 40: 4, 32: 5}[prefix.prefixlen]
    own = get_if_hwaddr(args.iface)
    sniffer = AsyncSniffer(
        iface=args.iface,
        count=1,
        # Only solicitations from others: the sniffer also sees this host's own RS.
        lfilter=lambda p: ICMPv6ND_RS in p and Ether in p and p[Ether].src != own,
        started_callback=lambda: print("ready", flush=True),
    )
    sniffer.start()
    sniffer.join(timeout=args.wait)
    if sniffer.running:
        sniffer.stop()
    if not sniffer.results:
        print("no router solicitation", flush=True)
        sys.exit(1)
    rs = sniffer.results[0]
    print(f"RS from {rs[IPv6].src}", flush=True)
    ra = (
        IPv6(src=args.source, dst="ff02::1", hlim=255)
        / ICMPv6ND_RA(routerlifetime=0)
        / ICMPv6NDOptPREF64(
            scaledlifetime=args.lifetime // 8, plc=plc, prefix=str(prefix.network_address)
        )
    )
    send(ra, iface=args.iface, verbose=False)
    print("RA sent", flush=True)


def _udp_echo(args: argparse.Namespace) -> None:
    family = socket.AF_INET6 if ":" in args.address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((args.address, args.port))
        print("ready", flush=True)
        data, peer = sock.recvfrom(2048)
        print(f"got {data.decode()} from {peer[0]}", flush=True)
        sock.sendto(b"echo:" + data, peer)


def _udp_send(args: argparse.Namespace) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(args.timeout)
        sock.sendto(args.data.encode(), (args.address, args.port))
        data, peer = sock.recvfrom(2048)
        print(json.dumps({"data": data.decode(), "from": peer[0]}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nat64lab")
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("targets")
    p.add_argument("uri")
    p.add_argument("--server", action="append", required=True)
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(run=_targets)
    p = sub.add_parser("ra-responder")
    p.add_argument("--iface", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--lifetime", type=int, default=1800)
    p.add_argument("--source", default="fe80::64")
    p.add_argument("--wait", type=float, default=20.0)
    p.set_defaults(run=_ra_responder)
    p = sub.add_parser("udp-echo")
    p.add_argument("address")
    p.add_argument("port", type=int)
    p.set_defaults(run=_udp_echo)
    p = sub.add_parser("udp-send")
    p.add_argument("address")
    p.add_argument("port", type=int)
    p.add_argument("data")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(run=_udp_send)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
