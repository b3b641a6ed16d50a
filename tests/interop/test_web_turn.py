"""TURN allocations in the API and /metrics, with credentials an application server got
from /api/turn-credentials with its own token, used by coturn's ``turnutils_uclient``.

Topology (tests/interop/lab.py): the IPv6-only host allocates on the gateway's TURN
server (no REQUESTED-ADDRESS-FAMILY: an IPv4 relay, RFC 8656 §7.2) and talks to
``turnutils_peer`` on the IPv4-only host; the console listens on the gateway's IPv6
address with an API token and a TURN-only token.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, Lab, stop
from tests.interop.peers import Gateway, wait_port
from tests.interop.webclient import TURN_TOKEN, Web, metric_samples, web_config

pytestmark = pytest.mark.interop
LAB_TOOLS = ("turnutils_uclient", "turnutils_peer", "ss", "curl")

WEB = f"[{V6_GW}]:8064"
SECRET = "rest-secret-for-the-web-lab"
ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
    "--media-ports", "30000-30100", "--only", "sip,media,turn",
    "--turn-listen", f"udp:[{V6_GW}]:3478", "--turn-listen", f"udp:{V4_GW}:3478",
    "--turn-relay-address", str(V4_GW), "--turn-relay-address", str(V6_GW),
    "--turn-allow-peer", f"{V4_HOST}/32",
]  # fmt: skip


def test_turn_allocation_listed_with_rest_credentials(net: Lab, work: Path) -> None:
    config = web_config(WEB) + f'[turn]\nsecrets = ["{SECRET}"]\n'
    gw = Gateway(net.gw, work, ARGS, config=config)
    web = Web(net.v6, f"http://{WEB}", work)
    web.wait_up()
    status, text = web.request("/api/turn-credentials?username=app-user&ttl=600", token=TURN_TOKEN)
    assert status == 200, text
    cred = json.loads(text)
    assert cred["username"].endswith(":app-user") and cred["ttl"] == 600
    assert any(u.startswith(f"turn:[{V6_GW}]:3478") for u in cred["uris"]), cred["uris"]
    assert web.request("/api/turn", token=TURN_TOKEN)[0] == 403

    peer = net.v4.popen(["turnutils_peer", "-L", str(V4_HOST), "-p", "3480"], log=work / "peer.log")
    wait_port(net.v4, "udp", 3480)
    client = net.v6.popen(
        ["turnutils_uclient", "-c", "-n", "400", "-z", "20", "-m", "1", "-u", cred["username"],
         "-w", cred["password"], "-e", str(V4_HOST), "-r", "3480", str(V6_GW)],
        log=work / "uclient.log",
    )  # fmt: skip
    try:
        body = web.wait_for(
            "/api/turn",
            lambda b: any(a["to_peer_bytes"] > 0 for a in b["allocations"]),
            timeout=30,
        )
    finally:
        try:
            client.wait(60)
        except subprocess.TimeoutExpired:
            stop(client)
        stop(peer)
    # uclient may hold more than one allocation; the one that relayed is checked
    (alloc,) = [a for a in body["allocations"] if a["to_peer_bytes"] > 0]
    assert all(a["username"] == cred["username"] for a in body["allocations"]), body
    assert alloc["client"]["family"] == "IPv6"
    assert alloc["client"]["address"].startswith("[fd00:64:6::2]:")
    assert alloc["username"] == cred["username"]
    assert [r["family"] for r in alloc["relays"]] == ["IPv4"]
    assert alloc["relays"][0]["address"].startswith(f"{V4_GW}:")
    assert alloc["peers"] == [str(V4_HOST)]
    assert alloc["from_peer_bytes"] > 0

    m = metric_samples(web.request("/metrics")[1])
    created = ("rtc64_turn_allocations_created_total",
               (("client_family", "IPv6"), ("relay_family", "IPv4")))  # fmt: skip
    assert m.get(created, 0) >= 1, sorted(k for k in m if "turn" in k[0])
    labels = (("client_family", "IPv6"), ("direction", "to_peer"), ("relay_family", "IPv4"))
    relayed = ("rtc64_turn_relayed_bytes_total", labels)
    assert m.get(relayed, 0) > 0
    assert "Traceback" not in gw.text()
