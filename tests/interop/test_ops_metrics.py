"""Keepalive and fallback metrics, and the last answered keepalive, of a real ``rtc64
serve`` with real SIPp phones.

Topology (tests/interop/lab.py): a phone on the IPv6-only host registers and answers the
gateway's OPTIONS (SIPp ``-aa``); a phone on the IPv4-only host registers and goes silent.
For the happy-eyeballs test the gateway's namespace gets its own hosts file
(``/etc/netns/NS/hosts``, bind-mounted by ``ip netns exec``) naming a callee host with an
IPv6 address nobody answers on and the IPv4-only host's address.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, report, wait_port
from tests.interop.webclient import Web, metric_samples, web_config

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "curl")

WEB = f"[{V6_GW}]:8064"
GW6, GW4 = f"[{V6_GW}]:5060", f"{V4_GW}:5060"
CONFIG = (
    web_config(WEB) + f'[sip]\nlisten = ["udp:[{V6_GW}]:5060", "udp:{V4_GW}:5060"]\n'
    'trusted_networks = ["fd00:64:6::/64", "10.64.4.0/24"]\noverload_lag = 0\n'
    'domains = ["example.net"]\n'
    "[keepalive]\ninterval = 0.5\noptions_interval = 1\nmax_failures = 2\n"
    '[general]\nservices = ["sip", "media"]\n[media]\nports = "30000-30100"\n'
)
SILENT6 = "fd00:64:6::99"  # on the IPv6 link, no host: attempts there get no answer


def _metrics(web: Web) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = web.request("/metrics")
    assert status == 200, text
    return metric_samples(text)


def _value(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **kw: str) -> float:
    return m.get((name, tuple(sorted(kw.items()))), 0.0)


def _register(host_net: object, work: Path, name: str, local: str, remote: str) -> None:
    d = work / name
    d.mkdir()
    reg = Sipp(
        host_net, d, name, "register.xml", local=local, port=5070, remote=remote,  # type: ignore[arg-type]
        keys={"domain": "example.net", "expires": "300"}, extra=["-s", name],
    )  # fmt: skip
    assert reg.wait() == 0, reg.messages()


def test_last_keepalive_and_failures_by_family(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, [], config=CONFIG)
    web = Web(net.v6, f"http://{WEB}", work)
    web.wait_up()
    started = time.time()
    _register(net.v6, work, "alice", str(V6_HOST), GW6)
    phone = Sipp(net.v6, work, "phone", "uas.xml", local=str(V6_HOST), port=5070,
                 calls=10_000, extra=["-aa"])  # fmt: skip
    _register(net.v4, work, "bob", str(V4_HOST), GW4)  # registers, then nobody answers
    try:
        body = web.wait_for(
            "/api/registrations?aor=sip:alice@example.net",
            lambda b: bool(b["aors"]) and b["aors"][0]["contacts"][0]["last_keepalive"],
        )
        (contact,) = body["aors"][0]["contacts"]
        assert contact["keepalive"] == "reachable" and contact["rtt_ms"] is not None
        assert started <= contact["last_keepalive"] <= time.time() + 1, contact
        first = contact["last_keepalive"]
        later = web.wait_for(
            "/api/registrations?aor=sip:alice@example.net",
            lambda b: b["aors"][0]["contacts"][0]["last_keepalive"] > first,
        )  # every answered OPTIONS moves it on
        assert later["aors"][0]["contacts"][0]["keepalive_failures"] == 0
        out = net.gw.run(
            sys.executable, "-m", "rtc64.cli", "--config", str(work / "rtc64.toml"), "ctl",
            "registrations", "sip:alice@example.net", check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        today = datetime.now(UTC).strftime("%Y-%m-%dT")
        assert "reachable" in out.stdout and today in out.stdout, out.stdout
        web.wait_for(
            "/api/registrations?aor=sip:bob@example.net", lambda b: b["aors"] == [], timeout=30
        )  # unreachable after two unanswered OPTIONS: removed
        m = _metrics(web)
        assert _value(m, "rtc64_keepalive_failures_total", family="IPv4") >= 2, m
        assert _value(m, "rtc64_keepalive_unreachable_total", family="IPv4") >= 1
        # (an OPTIONS may reach alice's port before her phone is up: no IPv6 count asserted)
        assert ("rtc64_keepalive_failures_total", (("family", "IPv6"),)) in m
        assert _value(m, "rtc64_keepalive_unreachable_total", family="IPv6") == 0
        assert _value(m, "rtc64_keepalive_removed_total") >= 1
        assert _value(m, "rtc64_keepalive_replies_total") >= 2
        assert _value(m, "rtc64_keepalive_contacts") == 1
        assert phone.proc.poll() is None, report(gw, phone)
    finally:
        phone.proc.terminate()
        phone.wait()
    assert "Traceback" not in gw.text()


def test_happy_eyeballs_fallback_counted_by_the_family_that_won(net: Lab, work: Path) -> None:
    netns = Path("/etc/netns") / net.gw.ns
    netns.mkdir(parents=True, exist_ok=True)
    try:
        (netns / "hosts").write_text(
            f"127.0.0.1 localhost\n{SILENT6} callee.lab\n{V4_HOST} callee.lab\n"
        )
        gw = Gateway(net.gw, work, [], config=CONFIG)
        web = Web(net.v6, f"http://{WEB}", work)
        web.wait_up()
        (work / "uas").mkdir()
        (work / "uac").mkdir()
        callee = Sipp(net.v4, work / "uas", "uas", "uas.xml", local=str(V4_HOST), port=5060)
        wait_port(net.v4, "udp", 5060)
        caller = Sipp(
            net.v6, work / "uac", "uac", "uac.xml", local=str(V6_HOST), port=5072,
            remote=GW6, keys={"target": "callee.lab:5060"}, extra=["-s", "callee"],
        )  # fmt: skip
        assert caller.wait() == 0, report(gw, caller, callee)
        m = _metrics(web)
        assert _value(m, "rtc64_happy_eyeballs_fallbacks_total", family="IPv4") >= 1, m
        assert _value(m, "rtc64_happy_eyeballs_fallbacks_total", family="IPv6") == 0
        assert _value(m, "rtc64_sip_happy_eyeballs_fallbacks_total") >= 1
        for kind in ("nat64", "family"):  # both families have a listener: no DNS fallback
            for fam in ("IPv4", "IPv6"):
                assert ("rtc64_dns_fallbacks_total", (("family", fam), ("kind", kind))) in m, (
                    sorted(k for k in m if "dns" in k[0])
                )
        assert "answered on IPv4 after 1 silent attempt(s)" in gw.text(), gw.text()[-4000:]
    finally:
        (netns / "hosts").unlink(missing_ok=True)
        netns.rmdir()
    assert "Traceback" not in gw.text()


FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5099))
for i in range(30):
    s.sendto((
        "OPTIONS sip:{gw} SIP/2.0\\r\\nVia: SIP/2.0/UDP {me}:5099;branch=z9hG4bKflood%d\\r\\n"
        "From: <sip:flood@{me}>;tag=f%d\\r\\nTo: <sip:{gw}>\\r\\nCall-ID: flood-%d\\r\\n"
        "CSeq: 1 OPTIONS\\r\\nMax-Forwards: 70\\r\\nContent-Length: 0\\r\\n\\r\\n"
    ).format(gw=sys.argv[2], me=sys.argv[1]).replace("%d", str(i)).encode(), (sys.argv[2], 5060))
"""


def test_rate_limit_drops_and_blocks_by_family(net: Lab, work: Path) -> None:
    """An untrusted IPv4 source over ``sip.request_rate`` (5/s, burst 10; 30 OPTIONS at
    once): its new requests are dropped and counted under IPv4; nothing under IPv6 (the
    gateway's own probes, about one per second per listener, stay under the rate)."""
    untrusted = CONFIG.replace(
        'trusted_networks = ["fd00:64:6::/64", "10.64.4.0/24"]', "request_rate = 5"
    )
    gw = Gateway(net.gw, work, [], config=untrusted)
    web = Web(net.v6, f"http://{WEB}", work)
    web.wait_up()
    net.v4.run(sys.executable, "-c", FLOOD, str(V4_HOST), str(V4_GW))
    deadline = time.monotonic() + 20
    m = _metrics(web)
    while _value(m, "rtc64_sip_rate_limit_drops_total", family="IPv4") < 15:
        assert time.monotonic() < deadline, m  # the datagrams are all read by then
        time.sleep(0.2)
        m = _metrics(web)
    assert _value(m, "rtc64_sip_rate_limit_drops_total", family="IPv4") >= 15, m
    assert _value(m, "rtc64_sip_rate_limit_blocks_total", family="IPv4") >= 1
    assert _value(m, "rtc64_sip_rate_limit_drops_total", family="IPv6") == 0
    assert "rate limit: source 10.64.4.2" in gw.text(), gw.text()[-3000:]
