"""WebRTC through the TURN server under test with Debian's headless Chromium (issue 10).

Loopback variants run in the lab's gateway namespace: one page, two RTCPeerConnections,
``iceTransportPolicy: "relay"`` and the server as the only ICE server at ``turn:[::1]:3478``
over UDP or TCP, with long-term or TURN REST credentials. A data channel carries 200
messages intact, a WebAudio oscillator sends RTP, and getStats() shows a relay/relay pair
whose relayed address is IPv4 although the browser reached the server over IPv6 (no
REQUESTED-ADDRESS-FAMILY from browsers: the server's default decides). A wrong password
gives an ``icecandidateerror`` 401 and no pair. The last test puts one browser on the
IPv6-only host (relay only) and one on the IPv4-only host (host candidates only).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, Lab, is_root

try:
    from playwright.sync_api import sync_playwright

    from tests.interop.turnbrowser import Chromium, connect, exchange, wait_rtp
except ImportError:  # the test extra is not installed: skip unless root (CI), where it fails
    if is_root():
        raise
    pytest.skip("needs playwright (pip install -e .[test])", allow_module_level=True)
from tests.interop.turnlab import TurnServer, TurnSetup, listeners, rest_credentials, start_turn

pytestmark = pytest.mark.interop
LAB_TOOLS = ("turnserver", "chromium", "ss")

LOOPBACK_V6, LOOPBACK_V4 = IPv6Address("::1"), IPv4Address("127.0.0.1")
USERS = {"alice": "wonderland-7"}
SECRET = "rest-secret-for-the-browser"
MESSAGES = 200


def _ice(url: str, username: str, credential: str) -> list[dict[str, Any]]:
    return [{"urls": [url], "username": username, "credential": credential}]


def _diagnose(server: TurnServer, *browsers: Chromium) -> str:
    console = "\n".join(line for b in browsers for line in b.console[-20:])
    return f"--- console\n{console}\n--- {server.kind}\n{server.text()[-3000:]}"


def _loopback_server(net: Lab, work: Path, *, rest: bool) -> TurnServer:
    setup = TurnSetup(
        listeners(LOOPBACK_V6, LOOPBACK_V4),
        (LOOPBACK_V4, LOOPBACK_V6),
        users={} if rest else USERS,
        secret=SECRET if rest else None,
        allow_peers=("127.0.0.0/8",),
    )
    return start_turn(net.gw, work, setup)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("credentials", ["long-term", "rest"])
def test_two_peer_connections_relay_through_turn(
    net: Lab, work: Path, transport: str, credentials: str
) -> None:
    rest = credentials == "rest"
    server = _loopback_server(net, work, rest=rest)
    url = f"turn:[::1]:3478?transport={transport}"
    user, password = "alice", USERS["alice"]
    if rest:  # as an application server gets them: ``rtc64 turn credentials`` (rtc64)
        cred = rest_credentials(server, "alice")
        user, password = cred["username"], cred["password"]
        assert server.kind != "rtc64" or url in cred["uris"], cred
    ice = _ice(url, user, password)
    with Chromium(net.gw, work) as browser:
        a, b = (browser, "a"), (browser, "b")
        browser.call("makeSide", "a", ice)
        browser.call("makeSide", "b", ice)
        assert connect(a, b), _diagnose(server, browser)
        sent, received = exchange(a, b, MESSAGES)
        assert received == sent, _diagnose(server, browser)
        ours, theirs = wait_rtp(a, b)
        assert ours["rtpSent"] > 0 and theirs["rtpReceived"] > 0, (ours, theirs)
        for report in (ours, theirs):
            local, remote = report["local"], report["remote"]
            assert (local["type"], remote["type"]) == ("relay", "relay"), report
            assert local["relayProtocol"] == transport, report
            assert "[::1]" in local["url"], report  # the browser reached TURN over IPv6 ...
            assert ip_address(local["address"]) == LOOPBACK_V4, report  # ... relayed in IPv4
        browser.call("closeAll")


def test_wrong_password_gives_icecandidateerror_401_and_no_pair(net: Lab, work: Path) -> None:
    server = _loopback_server(net, work, rest=False)
    with Chromium(net.gw, work) as browser:
        browser.call("makeSide", "a", _ice("turn:[::1]:3478?transport=udp", "alice", "wrong"))
        browser.call("makeSide", "b", _ice("turn:[::1]:3478?transport=udp", "alice", "wrong"))
        assert not connect((browser, "a"), (browser, "b"), timeout=5), _diagnose(server, browser)
        errors = browser.call("waitErrors", "a", 5000)
        assert [e["errorCode"] for e in errors][:1] == [401], errors
        assert all(e["errorCode"] == 401 for e in errors), errors
        assert not [c for c in browser.call("candidates", "a") if "typ relay" in c]
        assert browser.call("report", "a")["pair"] is None


def test_ipv6_only_browser_reaches_ipv4_only_browser(net: Lab, work: Path) -> None:
    """Browser A on the IPv6-only host, relay only, TURN at the gateway's IPv6 address;
    browser B on the IPv4-only host with host candidates only. The only path is A's IPv4
    relay on the gateway (the server allows exactly B's address as a peer)."""
    setup = TurnSetup(
        listeners(V6_GW, V4_GW), (V4_GW, V6_GW), users=USERS, allow_peers=(f"{V4_HOST}/32",)
    )
    server = start_turn(net.gw, work, setup)
    ice = _ice(f"turn:[{V6_GW}]:3478?transport=udp", "alice", USERS["alice"])
    with (
        sync_playwright() as pw,
        Chromium(net.v6, work, pw) as one,
        Chromium(net.v4, work, pw) as two,
    ):
        one.call("makeSide", "a", ice)
        two.call("makeSide", "b", [], "all")
        a, b = (one, "a"), (two, "b")
        assert connect(a, b), _diagnose(server, one, two)
        sent, received = exchange(a, b, MESSAGES)
        assert received == sent, _diagnose(server, one, two)
        ours, theirs = wait_rtp(a, b)
        assert ours["rtpSent"] > 0 and theirs["rtpReceived"] > 0, (ours, theirs)
        assert ours["local"]["type"] == "relay", ours
        assert ip_address(ours["local"]["address"]) == V4_GW, ours
        assert ip_address(ours["remote"]["address"]) == V4_HOST, ours
        assert ip_address(theirs["remote"]["address"]) == V4_GW, theirs
