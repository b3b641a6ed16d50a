"""A callee whose IPv6 is broken: the lab for happy eyeballs in call routing (on ``lab.py``).

``BrokenV6Lab`` is ``lab.Lab(dual_stack=True)`` (forwarding still off in the gateway) plus:

- an unbound in the gateway namespace on ``[fd00:64:6::1]:53`` serving ``callee.test``
  with AAAA fd00:64:5::2 and A 10.64.5.2, the dual-stack host's two addresses (no NAPTR
  or SRV: RFC 3263 falls back to AAAA/A on port 5060, IPv6 first);
- with ``broken=True``, every UDP datagram reaching the dual-stack host over IPv6 is
  dropped there (nftables, input hook): the IPv6 path is silently broken (no ICMP, no
  send error at the gateway), IPv4 works;
- with ``resolv_conf=True``, ``/etc/netns/GATEWAY/resolv.conf`` naming that unbound, for
  processes that read resolv.conf (Kamailio's DNS client); removed at teardown.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.interop.lab import V4_DS, V6_DS, V6_GW, Lab
from tests.interop.nat64lab import Unbound, zone

CALLEE_DOMAIN = "callee.test"
CALLEE_ZONE = zone(CALLEE_DOMAIN, f"@ AAAA {V6_DS}\n@ A {V4_DS}\n")
NFT_TABLE = "r64broken"


class BrokenV6Lab(Lab):
    """The dual-stack lab with a DNS for ``callee.test`` and the callee's IPv6 dropped."""

    def __init__(self, *, broken: bool = True, resolv_conf: bool = False) -> None:
        super().__init__(dual_stack=True)
        self.broken = broken
        self.resolv_conf = resolv_conf
        self.workdir = Path(tempfile.mkdtemp(prefix="r64brokenv6-"))
        self.dns: Unbound | None = None

    @property
    def netns_etc(self) -> Path:
        return Path("/etc/netns") / self.gw.ns

    def _build(self) -> None:
        super()._build()
        self.dns = Unbound(self.gw, self.workdir / "unbound", {CALLEE_DOMAIN: CALLEE_ZONE})
        if self.resolv_conf:
            self.netns_etc.mkdir(parents=True, exist_ok=True)
            (self.netns_etc / "resolv.conf").write_text(f"nameserver {V6_GW}\n")
        if self.broken:
            self.break_ipv6()

    def break_ipv6(self) -> None:
        """Drop every IPv6 UDP datagram arriving at the dual-stack host (ND still works)."""
        ds = self.dual
        ds.run("nft", "add", "table", "ip6", NFT_TABLE)
        ds.run("nft", "add", "chain", "ip6", NFT_TABLE, "input",
               "{ type filter hook input priority 0; policy accept; }")  # fmt: skip
        ds.run("nft", "add", "rule", "ip6", NFT_TABLE, "input", "meta", "l4proto", "udp", "drop")

    def repair_ipv6(self) -> None:
        self.dual.run("nft", "delete", "table", "ip6", NFT_TABLE, check=False)

    def __enter__(self) -> BrokenV6Lab:
        super().__enter__()
        return self

    def close(self) -> None:
        super().close()
        if self.resolv_conf:
            shutil.rmtree(self.netns_etc, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
