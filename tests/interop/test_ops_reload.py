"""SIGHUP reloads media options, ``sip.domains`` and TURN listeners of a running ``rtc64
serve`` while a SIPp call with media and a TURN allocation are in progress.

Topology (tests/interop/lab.py): SIPp on the IPv6-only host calls SIPp on the IPv4-only
host through the gateway (G.711 both ways through the relay); ``turnutils_uclient`` on the
IPv6-only host relays through the gateway's TURN server to ``turnutils_peer`` on the
IPv4-only host. Mid-call and mid-allocation the configuration file changes the relay's
port range and timeout, adds a SIP domain, adds a TURN TCP listener and removes the IPv4
UDP one; the call and the allocation go on untouched, the next call gets the new ports, a
phone registers in the new domain, and the API shows it all.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from rtc64.settings import media_slices
from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab, stop
from tests.interop.peers import Gateway, Sipp, report, wait_port
from tests.interop.reloadlab import GW6, media_call, packets_of, relay_ports, wait_log
from tests.interop.turnlab import parse_uclient
from tests.interop.webclient import Web, web_config

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "curl", "turnutils_uclient", "turnutils_peer", "tcpdump")

WEB = f"[{V6_GW}]:8064"
SECRET = "reload-lab-rest-secret"
CALL_MS = 14000


def _config(*, ports: str, timeout: int, domains: str, turn_listen: str, quota: int) -> str:
    # one process (test_workers_reload_media.py: the same with SIP workers)
    return (
        web_config(WEB) + f'[general]\nservices = ["sip", "media", "turn"]\n'
        f'[sip]\nworkers = 1\nlisten = ["udp:[{V6_GW}]:5060", "udp:{V4_GW}:5060"]\n'
        'trusted_networks = ["fd00:64:6::/64", "10.64.4.0/24"]\noverload_lag = 0\n'
        f"domains = {domains}\n"
        f'[media]\nports = "{ports}"\ntimeout = {timeout}\n'
        f'[turn]\nlisten = {turn_listen}\nrelay_addresses = ["{V4_GW}", "{V6_GW}"]\n'
        f'allow_peers = ["{V4_HOST}/32"]\nsecrets = ["{SECRET}"]\nuser_quota = {quota}\n'
    )


BEFORE = _config(
    ports="30000-30100",
    timeout=60,
    domains='["example.net"]',
    turn_listen=f'["udp:[{V6_GW}]:3478", "udp:{V4_GW}:3478"]',
    quota=10,
)
AFTER = _config(
    ports="31000-31100",
    timeout=45,
    domains='["example.net", "reload.example"]',
    turn_listen=f'["udp:[{V6_GW}]:3478", "tcp:[{V6_GW}]:3478"]',
    quota=20,
)


def _register(net: Lab, work: Path, name: str) -> bool:
    """sip:carol@reload.example registers from the IPv6 host (trusted: no challenge)."""
    d = work / f"reg-{name}"
    d.mkdir()
    reg = Sipp(
        net.v6, d, f"reg-{name}", "register.xml", local=str(V6_HOST), port=5090, remote=GW6,
        keys={"domain": "reload.example", "expires": "300"}, extra=["-s", "carol"],
    )  # fmt: skip
    return reg.wait() == 0


def test_reload_media_domains_and_turn_listeners_with_a_call_and_an_allocation(
    net: Lab, work: Path
) -> None:
    gw = Gateway(net.gw, work, [], config=BEFORE)
    web = Web(net.v6, f"http://{WEB}", work)
    web.wait_up()
    assert not _register(net, work, "early"), "reload.example is not served yet"
    # the call's media (about 7 s of G.711 from the caller) flows across the reload
    caller, callee = media_call(net, work, "first", 5060, CALL_MS)
    peer = net.v4.popen(["turnutils_peer", "-L", str(V4_HOST), "-p", "3480"], log=work / "peer.log")
    wait_port(net.v4, "udp", 3480)
    ulog = work / "uclient.log"
    client = net.v6.popen(
        ["turnutils_uclient", "-v", "-c", "-n", "600", "-z", "20", "-m", "1", "-u", "app",
         "-W", SECRET, "-e", str(V4_HOST), "-r", "3480", str(V6_GW)],
        log=ulog,
    )  # fmt: skip
    try:
        body = web.wait_for(
            "/api/calls",
            lambda b: any(c["answered"] and c["packets"] > 0 for c in b["calls"]),
        )
        (first,) = body["calls"]
        ports = relay_ports(first)
        assert ports and all(30000 <= p <= 30100 for p in ports), first
        web.wait_for("/api/turn", lambda b: any(a["to_peer_bytes"] > 0 for a in b["allocations"]))

        (work / "rtc64.toml").write_text(AFTER)
        gw.proc.send_signal(signal.SIGHUP)
        log = wait_log(gw, "configuration reloaded")
        reloaded = next(line for line in log.splitlines() if "configuration reloaded" in line)
        for key in (
            "media.ports",
            "media.timeout",
            "sip.domains",
            "turn.listen",
            "turn.user_quota",
        ):
            assert key in reloaded, reloaded
        assert "need a restart" not in log, log[-3000:]
        assert "media relay for new calls: " in log and "ports 31000-31100" in log
        assert f"TURN listeners opened: tcp:[{V6_GW}]:3478; closed: udp:{V4_GW}:3478" in log
        assert f"[{V6_GW}]:3478 " in net.gw.run("ss", "-ltn").stdout
        assert f"{V4_GW}:3478 " not in net.gw.run("ss", "-lun").stdout

        # the call in progress keeps its relay ports and its media keeps flowing
        before = packets_of(web.json("/api/calls"), first["call_id"])
        (still,) = web.json("/api/calls")["calls"]
        assert relay_ports(still) == ports, still
        web.wait_for("/api/calls", lambda b: packets_of(b, first["call_id"]) > before + 20)
        # a new call gets the new range
        second, second_callee = media_call(net, work, "second", 5062, 4000)
        body = web.wait_for(
            "/api/calls",
            lambda b: any(c["call_id"] != first["call_id"] and c["answered"] and relay_ports(c)
                          for c in b["calls"]),
        )  # fmt: skip
        (new,) = [c for c in body["calls"] if c["call_id"] != first["call_id"]]
        assert all(31000 <= p <= 31100 for p in relay_ports(new)), new
        assert second.wait() == 0, report(gw, second, second_callee)
        # the new domain is served: a phone registers in it
        assert _register(net, work, "late"), (work / "reg-late" / "sipp-reg-late.log").read_text()
        regs = web.json("/api/registrations?aor=sip:carol@reload.example")
        assert [a["aor"] for a in regs["aors"]] == ["sip:carol@reload.example"], regs
        status = web.json("/api/status")
        assert f"tcp:[{V6_GW}]:3478" in status["turn_listeners"], status
        assert f"udp:{V4_GW}:3478" not in status["turn_listeners"], status
        config = {row["key"]: row["value"] for row in status["config"]}
        assert config["media.ports"] == "31000-31100", config
    finally:
        try:
            client.wait(60)
        except subprocess.TimeoutExpired:
            stop(client)
        stop(peer)
        for p in (caller, callee):
            p.wait()
    assert caller.proc.returncode == 0, report(gw, caller, callee)
    result = parse_uclient(client.returncode, ulog.read_text(errors="replace"))
    assert result.returncode == 0, str(result)
    assert result.sent == 600 and result.lost == 0, str(result)  # the allocation went on
    log = gw.text()
    assert "ended: bye-caller 200" in log
    assert "Traceback" not in log, log[-6000:]


def test_reload_rejects_media_settings_that_cannot_apply(net: Lab, work: Path) -> None:
    """A relay address not on this host, and a TURN listener that cannot be bound: the
    same one-line errors as at start; nothing changes."""
    gw = Gateway(net.gw, work, [], config=BEFORE)
    path = work / "rtc64.toml"
    path.write_text(BEFORE.replace("[media]\n", '[media]\naddresses = ["192.0.2.77"]\n'))
    gw.proc.send_signal(signal.SIGHUP)
    line = next(x for x in wait_log(gw, "reload rejected").splitlines() if "reload rejected" in x)
    assert "media.addresses" in line and "192.0.2.77" in line, line
    path.write_text(
        BEFORE.replace(f'"udp:{V4_GW}:3478"]', f'"udp:{V4_GW}:3478", "udp:192.0.2.78:3478"]')
    )
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while gw.text().count("reload rejected") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    second = [x for x in gw.text().splitlines() if "reload rejected" in x][1:]
    assert second and "turn.listen" in second[0] and "192.0.2.78" in second[0], second
    assert f"{V4_GW}:3478 " in net.gw.run("ss", "-lun").stdout
    assert "configuration reloaded" not in gw.text()
    assert gw.alive() and "Traceback" not in gw.text()


def test_sip_workers_reload_media_and_domains_each_on_its_slice(net: Lab, work: Path) -> None:
    """With two SIP workers each worker reloads: domains, media timeouts and the media port
    range apply, each worker taking its slice of the new range."""
    workers = (
        '[sip]\nworkers = 2\nlisten = ["udp:[{gw}]:5060", "udp:{gw4}:5060"]\n'
        'trusted_networks = ["fd00:64:6::/64", "10.64.4.0/24"]\noverload_lag = 0\n'
        "domains = {domains}\n"
        '[general]\nservices = ["sip", "media"]\n[media]\nports = "{ports}"\ntimeout = {timeout}\n'
    )
    before = workers.format(gw=V6_GW, gw4=V4_GW, domains='["example.net"]',
                            ports="30000-30400", timeout=60)  # fmt: skip
    gw = Gateway(net.gw, work, [], config=before)
    assert not _register(net, work, "early")
    after = workers.format(gw=V6_GW, gw4=V4_GW, domains='["example.net", "reload.example"]',
                           ports="31000-31400", timeout=45)  # fmt: skip
    (work / "rtc64.toml").write_text(after)
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while gw.text().count("configuration reloaded") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [x for x in gw.text().splitlines() if "configuration reloaded" in x]
    assert len(lines) == 2, gw.text()[-4000:]  # one per worker
    assert all("sip.domains" in x and "media.timeout" in x for x in lines), lines
    assert all("media.ports" in x for x in lines), lines
    assert "need a restart, not applied" not in gw.text()
    for k, (low, high) in enumerate(media_slices((31000, 31400), 2)):
        assert f"w{k}: media relay for new calls: " in gw.text()
        assert f"ports {low}-{high} (calls in progress keep theirs)" in gw.text()
    assert _register(net, work, "late"), (work / "reg-late" / "sipp-reg-late.log").read_text()
    assert gw.alive() and "Traceback" not in gw.text()


def test_sip_workers_reload_turn_listeners_in_the_supervisor_with_an_allocation(
    net: Lab, work: Path
) -> None:
    """With SIP workers TURN runs in the supervisor: SIGHUP opens and closes its listeners
    there (once, not per worker) while an allocation on an unchanged listener goes on."""
    workers = (
        '[general]\nservices = ["sip", "media", "turn"]\n'
        f'[sip]\nworkers = 2\nlisten = ["udp:[{V6_GW}]:5060", "udp:{V4_GW}:5060"]\n'
        'trusted_networks = ["fd00:64:6::/64", "10.64.4.0/24"]\noverload_lag = 0\n'
        'domains = ["example.net"]\n[media]\nports = "30000-30400"\n'
        "[turn]\nlisten = {listen}\n"
        f'relay_addresses = ["{V4_GW}", "{V6_GW}"]\nallow_peers = ["{V4_HOST}/32"]\n'
        f'secrets = ["{SECRET}"]\nuser_quota = {{quota}}\n'
    )
    before = workers.format(listen=f'["udp:[{V6_GW}]:3478", "udp:{V4_GW}:3478"]', quota=10)
    after = workers.format(listen=f'["udp:[{V6_GW}]:3478", "tcp:[{V6_GW}]:3478"]', quota=20)
    gw = Gateway(net.gw, work, [], config=before)
    peer = net.v4.popen(["turnutils_peer", "-L", str(V4_HOST), "-p", "3480"], log=work / "peer.log")
    wait_port(net.v4, "udp", 3480)
    ulog = work / "uclient.log"
    client = net.v6.popen(
        ["turnutils_uclient", "-v", "-c", "-n", "600", "-z", "20", "-m", "1", "-u", "app",
         "-W", SECRET, "-e", str(V4_HOST), "-r", "3480", str(V6_GW)],
        log=ulog,
    )  # fmt: skip
    try:
        wait_log(gw, "TURN runs in the supervisor")
        time.sleep(2)  # the allocation is made and data flows before the reload
        (work / "rtc64.toml").write_text(after)
        gw.proc.send_signal(signal.SIGHUP)
        log = wait_log(gw, "TURN listeners opened")
        assert f"TURN listeners opened: tcp:[{V6_GW}]:3478; closed: udp:{V4_GW}:3478" in log
        assert log.count("TURN listeners opened") == 1, log[-4000:]  # the supervisor's alone
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and f"[{V6_GW}]:3478 " not in net.gw.run("ss", "-ltn").stdout
        ):
            time.sleep(0.1)
        assert f"[{V6_GW}]:3478 " in net.gw.run("ss", "-ltn").stdout
        assert f"{V4_GW}:3478 " not in net.gw.run("ss", "-lun").stdout
        log = gw.text()
        warnings = [x for x in log.splitlines() if "need a restart, not applied" in x]
        assert not any("turn." in x for x in warnings), warnings  # applied, not held
    finally:
        try:
            client.wait(60)
        except subprocess.TimeoutExpired:
            stop(client)
        stop(peer)
    result = parse_uclient(client.returncode, ulog.read_text(errors="replace"))
    assert result.returncode == 0, str(result)
    assert result.sent == 600 and result.lost == 0, str(result)  # the allocation went on
    assert gw.alive() and "Traceback" not in gw.text(), gw.text()[-6000:]
