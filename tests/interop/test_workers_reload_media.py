"""SIGHUP with a new ``media.ports`` on a gateway of SIP workers (the default: one per
core) and the supervisor's TURN server (issue 14).

Topology (tests/interop/lab.py): SIPp on the IPv6-only host calls SIPp on the IPv4-only
host through the gateway, G.711 both ways through the relay of whichever worker took the
call. Mid-call the range moves from 30000-30999 to 31000-31999: the call keeps its relay
ports and its media flows on; a new call sent to each worker's private port gets ports in
that worker's slice of the new range; a TURN allocation made after the reload relays from
TURN's slice (the last). Then a range too small for every process is refused by each
process with an error naming ``media.ports``, and the range in force stays.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from rtc64.settings import media_slices
from tests.interop.lab import V4_GW, V4_HOST, V6_GW, Lab, stop
from tests.interop.peers import Gateway, report, wait_port
from tests.interop.reloadlab import media_call, packets_of, relay_ports, wait_log
from tests.interop.turnlab import parse_uclient
from tests.interop.webclient import Web, web_config

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "curl", "turnutils_uclient", "turnutils_peer", "tcpdump")

WEB = f"[{V6_GW}]:8064"
SECRET = "workers-reload-rest-secret"
OLD, NEW, TOO_SMALL = (30000, 30999), (31000, 31999), (32000, 32007)


def _config(ports: tuple[int, int]) -> str:
    # no sip.workers: the default, one SIP worker per core
    return (
        web_config(WEB) + '[general]\nservices = ["sip", "media", "turn"]\n'
        f'[sip]\nlisten = ["udp:[{V6_GW}]:5060", "udp:{V4_GW}:5060"]\n'
        'trusted_networks = ["fd00:64:6::/64", "10.64.4.0/24"]\noverload_lag = 0\n'
        f'[media]\nports = "{ports[0]}-{ports[1]}"\n'
        f'[turn]\nlisten = ["udp:[{V6_GW}]:3478"]\nrelay_addresses = ["{V4_GW}"]\n'
        f'allow_peers = ["{V4_HOST}/32"]\nsecrets = ["{SECRET}"]\n'
    )


def _inside(ports: set[int], span: tuple[int, int]) -> bool:
    return bool(ports) and all(span[0] <= p <= span[1] for p in ports)


def test_sip_workers_and_turn_take_their_slices_of_a_reloaded_media_range(
    net: Lab, work: Path
) -> None:
    gw = Gateway(net.gw, work, [], config=_config(OLD))
    log = wait_log(gw, "gateway ready: ")
    found = re.search(r"gateway ready: (\d+) SIP workers", log)
    assert found is not None, log[-3000:]
    count = int(found.group(1))
    assert count >= 2, "default sip.workers: one per core (this lab needs two cores)"
    private = gw.private_ports()
    assert sorted(private) == list(range(count)), gw.text()[-3000:]
    web = Web(net.v6, f"http://{WEB}", work)
    web.wait_up()
    calls = [media_call(net, work, "first", 5060, 14000)]
    peer = net.v4.popen(["turnutils_peer", "-L", str(V4_HOST), "-p", "3480"], log=work / "peer.log")
    uclients: list[subprocess.Popen[bytes]] = []
    try:
        body = web.wait_for(
            "/api/calls", lambda b: any(c["answered"] and c["packets"] > 0 for c in b["calls"])
        )
        (first,) = body["calls"]
        ports = relay_ports(first)
        assert _inside(ports, OLD), first

        (work / "rtc64.toml").write_text(_config(NEW))
        gw.proc.send_signal(signal.SIGHUP)
        log = wait_log(gw, "configuration reloaded", count=count + 1)  # workers + TURN
        reloaded = [x for x in log.splitlines() if "configuration reloaded" in x]
        assert len(reloaded) == count + 1 and all("media.ports" in x for x in reloaded), reloaded
        assert "need a restart" not in log, log[-3000:]
        slices = media_slices(NEW, count + 1)
        for k in range(count):
            line = next(x for x in log.splitlines() if f"w{k}: media relay for new calls" in x)
            assert f"ports {slices[k][0]}-{slices[k][1]} " in line, line
        assert f"TURN relay ports for new allocations: {slices[-1][0]}-{slices[-1][1]}" in log

        # the call in progress keeps its relay ports and its media flows on
        before = packets_of(web.json("/api/calls"), first["call_id"])
        (still,) = web.json("/api/calls")["calls"]
        assert relay_ports(still) == ports, still
        web.wait_for("/api/calls", lambda b: packets_of(b, first["call_id"]) > before + 20)

        # a new call on each worker (its private port) gets ports in its new slice
        for k in range(count):
            caller, callee = media_call(
                net, work, f"w{k}", 5062 + 2 * k, 2000, remote=private[k]
            )  # fmt: skip
            calls.append((caller, callee))
            body = web.wait_for(
                "/api/calls",
                lambda b: any(c["call_id"] != first["call_id"] and c["answered"]
                              and relay_ports(c) for c in b["calls"]),
            )  # fmt: skip
            (new,) = [c for c in body["calls"] if c["call_id"] != first["call_id"]]
            assert _inside(relay_ports(new), slices[k]), (k, new, slices)
            assert caller.wait() == 0, report(gw, caller, callee)
            callee.wait()
            web.wait_for("/api/calls", lambda b: len(b["calls"]) == 1)

        # a TURN allocation made now relays from TURN's slice
        wait_port(net.v4, "udp", 3480)
        ulog = work / "uclient.log"
        uclients.append(net.v6.popen(
            ["turnutils_uclient", "-v", "-c", "-n", "200", "-z", "20", "-m", "1", "-u", "app",
             "-W", SECRET, "-e", str(V4_HOST), "-r", "3480", str(V6_GW)], log=ulog,
        ))  # fmt: skip
        body = web.wait_for(
            "/api/turn", lambda b: any(a["to_peer_bytes"] > 0 for a in b["allocations"])
        )
        relayed = {
            int(r["address"].rpartition(":")[2])
            for a in body["allocations"] if a["to_peer_bytes"] > 0 for r in a["relays"]
        }  # fmt: skip
        assert _inside(relayed, slices[-1]), (body, slices)
        result = parse_uclient(uclients[0].wait(60), ulog.read_text(errors="replace"))
        assert result.returncode == 0 and result.lost == 0, str(result)

        # too small for every process: each one refuses it, naming the key
        (work / "rtc64.toml").write_text(_config(TOO_SMALL))
        gw.proc.send_signal(signal.SIGHUP)
        log = wait_log(gw, "reload rejected", count=count + 1)
        rejected = [x for x in log.splitlines() if "reload rejected" in x]
        assert all("media.ports" in x and "32000-32007" in x for x in rejected), rejected
        assert "SIGHUP: media.ports not changed" in log
        status = web.json("/api/status")
        config = {row["key"]: row["value"] for row in status["config"]}
        assert config["media.ports"] == "31000-31999", config
    finally:
        for proc in uclients:
            if proc.poll() is None:
                stop(proc)
        stop(peer)
        for p in calls:
            p[0].wait()
            p[1].wait()
    assert calls[0][0].proc.returncode == 0, report(gw, *calls[0])
    log = gw.text()
    assert "ended: bye-caller 200" in log
    assert gw.alive() and "Traceback" not in log, log[-6000:]
