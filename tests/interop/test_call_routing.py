"""Call routing that never hangs: happy eyeballs over a broken IPv6 path, and NAT64.

Real peers in network namespaces; as root these run, never skip, and clean up always.

- Broken IPv6 (``brokenv6.BrokenV6Lab``): the callee's domain has AAAA and A, IPv6
  datagrams to the callee vanish. SIPp on the IPv6-only host calls through rtc64 in the
  gateway; the call completes over IPv4 because the IPv4 attempt starts 250 ms after the
  silent IPv6 one, and the next call goes to IPv4 first (family health cache). No timing
  is asserted (benchmarks measure it: ``python -m bench routing``).
- NAT64 (``nat64lab.Nat64Lab``): rtc64 on the IPv6-only host, without an IPv4 listener and
  without ``nat64.prefix``, discovers the prefix (RFC 7050 from the lab's DNS64) and calls
  the IPv4-only SIPp by name (DNS64 synthesises the AAAA) and by IPv4 literal (rtc64
  synthesises), with ``--media-policy nat64``: the caller gets the callee's SDP with the
  NAT64-synthesised address instead of 10.64.4.2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.brokenv6 import CALLEE_DOMAIN, BrokenV6Lab
from tests.interop.lab import V4_DS, V4_GW, V4_HOST, V6_DS, V6_GW, V6_HOST, require_lab
from tests.interop.nat64lab import NAT64_PREFIX, V4ONLY_NAME, V4ONLY_SYNTH, Nat64Lab
from tests.interop.peers import Gateway, Sipp, report, wait_port

pytestmark = pytest.mark.interop


def _dir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    return path


def test_broken_ipv6_callee_is_reached_over_ipv4(tmp_path: Path) -> None:
    require_lab("sipp", "ss", "nft", "unbound", "unbound-checkconf")
    with BrokenV6Lab() as net:
        assert net.dns is not None
        gw = Gateway(
            net.gw,
            tmp_path,
            ["--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
             "--trusted-network", "fd00:64:6::/64", "--dns-server", net.dns.server,
             "--sip-workers", "2"],
        )  # fmt: skip
        # Two SIP workers: the first call goes to
        # worker 0's own port, the second to worker 1's, so the second call's worker knows
        # the destination's broken IPv6 only from what the first told it.
        private = gw.private_ports()
        assert sorted(private) == [0, 1], gw.text()[-3000:]
        # The callee answers on both families; only IPv4 datagrams reach it.
        uas4 = Sipp(net.dual, _dir(tmp_path, "uas4"), "uas4", "uas.xml", local=str(V4_DS),
                    port=5060, calls=2)  # fmt: skip
        uas6 = Sipp(net.dual, _dir(tmp_path, "uas6"), "uas6", "uas.xml", local=str(V6_DS),
                    port=5060, calls=1)  # fmt: skip
        wait_port(net.dual, "udp", 5060)
        # Two calls one after the other to sip:bob@callee.test, one through each worker.
        for k in (0, 1):
            uac = Sipp(
                net.v6, _dir(tmp_path, f"uac{k}"), f"uac{k}", "uac.xml", local=str(V6_HOST),
                port=5070, remote=private[k], calls=1, keys={"target": CALLEE_DOMAIN},
                extra=["-s", "bob"],
            )  # fmt: skip
            assert uac.wait() == 0, report(gw, uac, uas4)
        assert uas4.wait() == 0, report(gw, uac, uas4)
        log = gw.text()
        # The first call: the IPv6 attempt stayed silent, IPv4 answered (and was relayed:
        # the caller is IPv6-only).
        fallbacks = [line for line in log.splitlines() if "happy eyeballs:" in line]
        assert any(
            f"happy eyeballs: {CALLEE_DOMAIN} answered on IPv4 after 1 silent attempt(s)" in line
            for line in fallbacks
        ), log[-8000:]
        # The second call went to IPv4 first (IPv6 is penalised for this destination, in
        # every worker): one fallback in all.
        answered = [line for line in fallbacks if "answered on IPv4" in line]
        assert len(answered) == 1, "\n".join(fallbacks)
        # Nothing ever reached the callee over IPv6.
        assert "INVITE" not in uas6.messages(), uas6.messages()
        assert gw.alive()


@pytest.mark.parametrize(
    "target",
    [pytest.param(V4ONLY_NAME, id="by-name"), pytest.param(f"{V4_HOST}:5060", id="by-literal")],
)
def test_ipv6_only_gateway_reaches_ipv4_only_callee_through_nat64(
    tmp_path: Path, target: str
) -> None:
    require_lab("sipp", "ss", "tayga", "unbound", "unbound-checkconf")
    with Nat64Lab() as net:
        assert net.dns is not None
        gw = Gateway(
            net.v6,
            tmp_path,
            ["--sip-listen", f"udp:[{V6_HOST}]:5060", "--trusted-network", "fd00:64:6::/64",
             "--dns-server", net.dns.server, "--media-policy", "nat64"],
        )  # fmt: skip
        log = gw.text()
        assert f"NAT64 prefix {NAT64_PREFIX} from " in log, log
        uas = Sipp(net.v4, _dir(tmp_path, "uas"), "uas", "uas.xml", local=str(V4_HOST), port=5060)
        wait_port(net.v4, "udp", 5060)
        uac = Sipp(
            net.v6, _dir(tmp_path, "uac"), "uac", "uac.xml", local=str(V6_HOST), port=5070,
            remote=f"[{V6_HOST}]:5060", keys={"target": target}, extra=["-s", "bob"],
        )  # fmt: skip
        assert uac.wait() == 0, report(gw, uac, uas)
        assert uas.wait() == 0, report(gw, uac, uas)
        # The callee's SDP (c=IN IP4 10.64.4.2) reached the caller synthesised, unrelayed.
        received = _received_sdp(uac)
        assert f"c=IN IP6 {V4ONLY_SYNTH}" in received, uac.messages()
        assert f"o=- 2 2 IN IP6 {V4ONLY_SYNTH}" in received, uac.messages()
        assert str(V4_HOST) not in received, uac.messages()
        # The callee got the caller's SDP untouched (it answers by symmetric RTP).
        assert f"c=IN IP6 {V6_HOST}" in uas.messages()
        assert gw.alive()


def _received_sdp(uac: Sipp) -> str:
    """The SDP lines of the responses SIPp received (its -trace_msg log)."""
    out: list[str] = []
    for path in uac.workdir.glob("*_messages.log"):
        for block in path.read_text(errors="replace").split("----------------------------"):
            if "message received" in block and "SIP/2.0 200" in block:
                out += [ln.strip() for ln in block.splitlines() if ln.strip()[1:2] == "="]
    return "\n".join(out)
