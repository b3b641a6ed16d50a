"""The REST API, ``rtc64 ctl`` and /metrics of a real ``rtc64 serve`` with real SIPp calls
in progress across the families.

Topology (tests/interop/lab.py): IPv6-only host fd00:64:6::2 — gateway (fd00:64:6::1,
10.64.4.1) — IPv4-only host 10.64.4.2. The console listens on the gateway's IPv6 address
(not loopback, so credentials are configured: an API token, a TURN token and the admin
password set with ``rtc64 admin set-password``); the clients are curl on the IPv6-only
host and ``rtc64 ctl`` inside the gateway's namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, media_dirs, report, wait_port
from tests.interop.webclient import (
    ADMIN_PASSWORD,
    TOKEN,
    TURN_TOKEN,
    Web,
    metric_samples,
    register,
    set_admin_password,
    web_config,
)

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "curl")

GW6, GW4 = f"[{V6_GW}]:5060", f"{V4_GW}:5060"
WEB = f"[{V6_GW}]:8064"
ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
    "--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
    "--domain", "example.net", "--media-ports", "30000-30100", "--only", "sip,media",
]  # fmt: skip
CALL_MS = 12000


def _gateway(net: Lab, work: Path) -> tuple[Gateway, Web]:
    set_admin_password(net.gw, work / "data")
    gw = Gateway(net.gw, work, ARGS, config=web_config(WEB))
    web = Web(net.v6, f"http://{WEB}", work)
    web.wait_up()
    return gw, web


def _ctl(net: Lab, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return net.gw.run(
        sys.executable, "-m", "rtc64.cli", "--config", str(work / "rtc64.toml"), "ctl", *args,
        check=False,
    )  # fmt: skip


def _register(net: Lab, work: Path) -> None:
    register(net.v6, work, str(V6_HOST), GW6)


def _call(net: Lab, work: Path, name: str, *, from_v6: bool) -> tuple[Sipp, Sipp]:
    """A call of CALL_MS with media: IPv6 host → IPv4 host, or the reverse."""
    caller_host, callee_host = (net.v6, net.v4) if from_v6 else (net.v4, net.v6)
    caller_ip, callee_ip = (V6_HOST, V4_HOST) if from_v6 else (V4_HOST, V6_HOST)
    uas_dir, uac_dir = media_dirs(work, name)
    uas_port = 5060 if from_v6 else 5080
    callee = Sipp(
        callee_host, uas_dir, f"{name}-uas", "uas_media.xml", local=str(callee_ip), port=uas_port,
        extra=["-mp", "6000" if from_v6 else "6100"],
    )  # fmt: skip
    wait_port(callee_host, "udp", uas_port)
    target = f"{callee_ip}:{uas_port}" if from_v6 else f"[{callee_ip}]:{uas_port}"
    caller = Sipp(
        caller_host, uac_dir, f"{name}-uac", "web_uac_call.xml", local=str(caller_ip),
        port=5070, remote=GW6 if from_v6 else GW4, keys={"target": target},
        extra=["-s", "callee", "-d", str(CALL_MS), "-mp", "6200" if from_v6 else "6300"],
    )  # fmt: skip
    return caller, callee


def test_api_ctl_and_metrics_with_calls_in_progress(net: Lab, work: Path) -> None:
    gw, web = _gateway(net, work)
    _register(net, work)

    regs = web.json("/api/registrations")
    (alice,) = regs["aors"]
    assert alice["aor"] == "sip:alice@example.net"
    (contact,) = alice["contacts"]
    assert contact["family"] == "IPv6"
    assert contact["transport"] == "udp"
    assert contact["received"] == f"[{V6_HOST}]:5090"
    assert web.json("/api/registrations?aor=sip:bob@example.net") == {"aors": []}

    out = _ctl(net, work, "registrations", "sip:alice@example.net")
    assert out.returncode == 0, out.stderr
    assert f"[{V6_HOST}]:5090" in out.stdout and "IPv6" in out.stdout

    c6, e6 = _call(net, work, "v6v4", from_v6=True)
    c4, e4 = _call(net, work, "v4v6", from_v6=False)
    try:
        body = web.wait_for(
            "/api/calls",
            lambda b: (
                len(b["calls"]) == 2 and all(c["answered"] and c["packets"] > 0 for c in b["calls"])
            ),
        )
        families = sorted(tuple(c["families"]) for c in body["calls"])
        assert families == [("IPv4", "IPv6"), ("IPv6", "IPv4")], body
        for c in body["calls"]:  # the proxy's view of each side, beside the relay's
            assert c["state"] == "confirmed" and c["relayed"] is True, c
            assert c["caller"]["transport"] == "udp" and c["callee"]["transport"] == "udp"
            assert c["caller"]["address"] in (f"[{V6_HOST}]:5070", f"{V4_HOST}:5070"), c
            assert c["callee"]["family"] == ("IPv4" if c["caller"]["family"] == "IPv6" else "IPv6")
        m = metric_samples(web.request("/metrics")[1])
        for caller, callee in (("IPv6", "IPv4"), ("IPv4", "IPv6")):
            labels = (("callee_family", callee), ("caller_family", caller),
                      ("relayed", "true"), ("state", "confirmed"))  # fmt: skip
            assert m.get(("rtc64_sip_calls", labels)) == 1, sorted(
                k for k in m if k[0] == "rtc64_sip_calls"
            )
        for c in body["calls"]:
            for leg in c["legs"]:
                rtp = [s for s in leg["streams"] if s["component"] == "rtp"]
                assert rtp and all(30000 <= s["relay_port"] <= 30100 for s in rtp), leg
                assert all(s["family"] == leg["family"] for s in rtp)
                assert all("jitter_ms" in s and "lost" in s for s in rtp)
        ctl_calls = _ctl(net, work, "calls", "--json")
        assert ctl_calls.returncode == 0, ctl_calls.stderr
        assert len(json.loads(ctl_calls.stdout)["calls"]) == 2
        table = _ctl(net, work, "calls").stdout
        assert table.count("confirmed") == 2 and f"IPv6 udp [{V6_HOST}]:5070" in table, table
        relay = _ctl(net, work, "relay")
        assert f"[{V6_GW}]:30" in relay.stdout and f"{V4_GW}:30" in relay.stdout, relay.stdout
        overview = web.json("/api/overview")
        assert overview["calls"]["by_families"] == {"IPv6→IPv4": 1, "IPv4→IPv6": 1}
        assert overview["registrations"]["by_family"] == {"IPv6": 1}
        status = web.json("/api/status")
        assert f"udp:[{V6_GW}]:5060" in status["listeners"]
        config = {row["key"]: row["value"] for row in status["config"]}
        assert config["web.token"] == "set, hidden"
        assert TOKEN not in json.dumps(status) and TURN_TOKEN not in json.dumps(status)
    finally:
        for p in (c6, e6, c4, e4):
            p.wait()
    assert c6.proc.returncode == 0 and c4.proc.returncode == 0, report(gw, c6, e6, c4, e4)
    web.wait_for("/api/calls", lambda b: b["calls"] == [])

    status, text = web.request("/metrics")
    assert status == 200
    m = metric_samples(text)

    def value(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    for fam in ("IPv6", "IPv4"):
        assert value("rtc64_sip_requests_total", method="INVITE", transport="udp", family=fam) >= 1
        assert value("rtc64_sip_requests_total", method="BYE", transport="udp", family=fam) >= 1
        assert value("rtc64_sip_responses_total", code="200", transport="udp", family=fam) >= 1
        assert value("rtc64_relay_packets_total", family=fam) > 0, text
    assert value("rtc64_registrations", family="IPv6", transport="udp") == 1
    assert not any(k[0] == "rtc64_sip_calls" for k in m)  # no call left
    for fam in ("IPv6", "IPv4"):  # every family shown, even at zero
        assert ("rtc64_happy_eyeballs_fallbacks_total", (("family", fam),)) in m
    assert value("rtc64_sip_requests_total", method="REGISTER", transport="udp", family="IPv6") >= 1
    assert "Traceback" not in gw.text()


def test_attacker_view_of_a_real_gateway(net: Lab, work: Path) -> None:
    gw, web = _gateway(net, work)
    # no credentials, a wrong token, the TURN token where it does not belong
    assert web.request("/api/calls", token=None)[0] == 401
    assert web.request("/metrics", token=None)[0] == 401
    assert web.request("/api/calls", token="x" * 30)[0] == 401
    assert web.request("/api/calls", token=TURN_TOKEN)[0] == 403
    assert web.request("/api/blocks/unblock", method="POST", token=TURN_TOKEN,
                       body={"target": "x"})[0] == 403  # fmt: skip
    status, text = web.request("/api/turn-credentials?username=app", token=TURN_TOKEN)
    assert status == 404, text  # no turn.secrets configured: nothing to sign with
    # a session without its CSRF token cannot change anything
    status, text = web.request(
        "/api/login", method="POST", token=None, cookies=True,
        body={"user": "admin", "password": ADMIN_PASSWORD},
    )  # fmt: skip
    assert status == 200, text
    csrf = json.loads(text)["csrf"]
    assert web.request("/api/calls", token=None, cookies=True)[0] == 200
    post = {"method": "POST", "token": None, "cookies": True, "body": {"target": "10.0.0.1"}}
    assert web.request("/api/blocks/unblock", **post)[0] == 403  # type: ignore[arg-type]
    status, _ = web.request("/api/blocks/unblock", headers={"X-CSRF-Token": csrf}, **post)  # type: ignore[arg-type]
    assert status == 200
    # a password guesser is slowed down
    codes = [
        web.request("/api/login", method="POST", token=None,
                    body={"user": "admin", "password": f"guess{i}"})[0]
        for i in range(6)
    ]  # fmt: skip
    assert codes[:5] == [401] * 5 and codes[5] == 429, codes
    reload_status, text = web.request("/api/reload", method="POST")
    assert reload_status in (202, 501), text  # 501 until the lifecycle work handles SIGHUP
    time.sleep(0.5)
    assert gw.alive(), "a reload request never kills the gateway"


def test_non_loopback_console_without_credentials_is_refused(net: Lab, work: Path) -> None:
    with pytest.raises(RuntimeError) as err:
        Gateway(net.gw, work, ARGS, config=f'[web]\nlisten = "{WEB}"\n')
    assert "web.listen" in str(err.value) and "loopback" in str(err.value)
    assert "Traceback" not in str(err.value)
